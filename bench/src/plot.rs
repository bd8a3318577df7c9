//! The SVG plot of one benchmark: its figure against message size, one line per series, both axes
//! logarithmic (sizes placed by their base-2 logarithm, so powers of two fall on the labels).

use std::path::Path;

use plotters::prelude::*;

use crate::report::BenchmarkRun;
use crate::sizes::show_size;

/// Draws `run` into the SVG file `path`, titled `title`.
pub(crate) fn draw(run: &BenchmarkRun, title: &str, path: &Path) -> Result<(), String> {
    draw_chart(run, title, path).map_err(|e| format!("plotting {}: {e}", path.display()))
}

fn draw_chart(run: &BenchmarkRun, title: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let points = |series: &str| -> Vec<(f64, f64)> {
        let records = run.records.iter().filter(|r| r.series == series);
        records
            .map(|r| ((r.size as f64).log2(), run.metric.of(r)))
            .filter(|&(_, y)| y.is_finite() && y > 0.0)
            .collect()
    };
    let mut names: Vec<&str> = Vec::new();
    for record in &run.records {
        if !names.contains(&record.series) {
            names.push(record.series);
        }
    }
    let all: Vec<(f64, f64)> = names.iter().flat_map(|n| points(n)).collect();
    if all.is_empty() {
        return Err("nothing to plot".into());
    }
    let (x_min, x_max) = bounds(all.iter().map(|p| p.0));
    let (y_min, y_max) = bounds(all.iter().map(|p| p.1));

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min - 0.5..x_max + 0.5, (y_min / 1.5..y_max * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc(run.metric.label())
        .x_label_formatter(&|log2| show_size(log2.exp2().round() as usize))
        .draw()?;
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = points(name);
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, 0.0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
