//! The SVG plot of one benchmark: its figure against message size, one line per series, both axes
//! logarithmic (sizes placed by their base-2 logarithm, so powers of two fall on the labels); an overlap
//! in percent goes on a linear axis from 0 to 100.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{BenchmarkRun, Metric};
use crate::sizes::show_size;

type Failure = Box<dyn std::error::Error>;

/// Draws `run` into the SVG file `path`, titled `title`.
pub(crate) fn draw(run: &BenchmarkRun, title: &str, path: &Path) -> Result<(), String> {
    draw_chart(run, title, path).map_err(|e| format!("plotting {}: {e}", path.display()))
}

fn draw_chart(run: &BenchmarkRun, title: &str, path: &Path) -> Result<(), Failure> {
    let linear = run.metric == Metric::OverlapPct;
    let points = |series: &str| -> Vec<(f64, f64)> {
        let records = run.records.iter().filter(|r| r.series == series);
        records
            .map(|r| ((r.size as f64).log2(), run.metric.of(r)))
            .filter(|&(_, y)| y.is_finite() && (linear || y > 0.0))
            .collect()
    };
    let mut names: Vec<&str> = Vec::new();
    for record in &run.records {
        if !names.contains(&record.series) {
            names.push(record.series);
        }
    }
    let lines: Vec<(&str, Vec<(f64, f64)>)> = names.iter().map(|&n| (n, points(n))).collect();
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|(_, line)| line.iter().copied()).collect();
    if all.is_empty() {
        return Err("nothing to plot".into());
    }
    let (x_min, x_max) = bounds(all.iter().map(|p| p.0));
    let (y_min, y_max) = bounds(all.iter().map(|p| p.1));

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let x = x_min - 0.5..x_max + 0.5;
    match linear {
        true => draw_lines(&root, run, title, &lines, x, 0.0..100.0)?,
        false => draw_lines(&root, run, title, &lines, x, (y_min / 1.5..y_max * 1.5).log_scale())?,
    }
    root.present()?;
    Ok(())
}

/// Draws `lines` (each a series' name and points) on `root`, with `y` as the vertical axis.
fn draw_lines<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    run: &BenchmarkRun,
    title: &str,
    lines: &[(&str, Vec<(f64, f64)>)],
    x: std::ops::Range<f64>,
    y: Y,
) -> Result<(), Failure>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc(run.metric.label())
        .x_label_formatter(&|log2| show_size(log2.exp2().round() as usize))
        .draw()?;
    for (i, (name, line)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, 0.0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
