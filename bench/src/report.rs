//! What a run found: one record per benchmark, size and series; the OSU-like table printed as rows
//! complete, with Lightbeam's ratios; and the JSON and CSV files of every figure.

use std::io::Write;

use serde::Serialize;

use crate::series::Series;
use crate::sizes::show_size;
use crate::timing::Summary;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Record {
    pub(crate) benchmark: &'static str,
    pub(crate) series: &'static str,
    /// For a Lightbeam series, the transport its mesh used between ranks 0 and 1 (`shm` or `zeromq`).
    pub(crate) link_0_1: Option<&'static str>,
    pub(crate) size: usize,
    pub(crate) iterations: usize,
    /// Median time in microseconds: one way (latency), per message (bandwidth), per call (collectives).
    pub(crate) median_us: f64,
    pub(crate) min_us: f64,
    pub(crate) max_us: f64,
    /// `size` over the median time, in MB/s (10^6 bytes per second, as OSU reports).
    pub(crate) mb_per_s: f64,
    /// The overlap benchmarks' figures (their time above is the call's alone, t_pure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) overlap: Option<Overlap>,
}

impl Record {
    pub(crate) fn new(
        benchmark: &'static str,
        series: Series,
        link_0_1: Option<&'static str>,
        size: usize,
        iterations: usize,
        time: Summary,
    ) -> Self {
        Self {
            benchmark,
            series: series.name(),
            link_0_1,
            size,
            iterations,
            median_us: time.median,
            min_us: time.min,
            max_us: time.max,
            mb_per_s: size as f64 / time.median,
            overlap: None,
        }
    }

    pub(crate) fn with_overlap(self, overlap: Overlap) -> Self {
        Self { overlap: Some(overlap), ..self }
    }
}

/// How much of a non-blocking call hides behind a computation between its start and its wait, as
/// osu_ibcast and osu_iallreduce measure it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Overlap {
    /// Median time of the computation alone, in microseconds (t_cpu; sized to last the call's t_pure,
    /// timed between the start and the wait).
    pub(crate) cpu_us: f64,
    /// Median time of start, computation and wait, in microseconds (t_total).
    pub(crate) total_us: f64,
    /// OSU's overlap: max(0, 100 - 100 * (t_total - t_cpu) / t_pure).
    pub(crate) percent: f64,
    /// Median time of the computation with no call in flight, in microseconds (t_cpu_alone: t_cpu
    /// above it is the core the call's progress took from the computation).
    pub(crate) cpu_alone_us: f64,
}

impl Overlap {
    /// The overlap of a call that takes `pure` alone, with a computation that takes `alone` by itself
    /// and `cpu` while the call is in flight, the whole taking `total`.
    pub(crate) fn new(pure: f64, cpu: f64, total: f64, alone: f64) -> Self {
        let percent = (100.0 - 100.0 * (total - cpu) / pure).max(0.0);
        Self { cpu_us: cpu, total_us: total, percent, cpu_alone_us: alone }
    }
}

/// Which figure a benchmark's table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Metric {
    /// Median time in microseconds (lower is better).
    MedianUs,
    /// Bandwidth in MB/s (higher is better).
    MbPerS,
    /// OSU's overlap of a non-blocking call with computation, in percent (higher is better).
    OverlapPct,
}

impl Metric {
    pub(crate) fn of(self, record: &Record) -> f64 {
        match self {
            Self::MedianUs => record.median_us,
            Self::MbPerS => record.mb_per_s,
            Self::OverlapPct => record.overlap.map_or(f64::NAN, |o| o.percent),
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::MedianUs => "median time (us)",
            Self::MbPerS => "bandwidth (MB/s)",
            Self::OverlapPct => "overlap with computation (%)",
        }
    }
}

/// The columns of a table: one per series, then each Lightbeam series' figure over each other library's
/// that sends the same way (lends or gives its buffers), then (for times) each non-blocking Lightbeam
/// series' figure less its blocking twin's. The overlap benchmarks print a line per size and series
/// instead, with the four figures of each.
pub(crate) struct Table {
    series: Vec<Series>,
    /// The transport of each Lightbeam series between ranks 0 and 1, for the header.
    links: Vec<(Series, &'static str)>,
    ratios: Vec<(Series, Series)>,
    differences: Vec<(Series, Series)>,
    metric: Metric,
}

impl Table {
    /// The table of `series`, whose links between ranks 0 and 1 are `links` (one per series).
    pub(crate) fn new(series: &[Series], links: &[Option<&'static str>], metric: Metric) -> Self {
        let lightbeam = || series.iter().filter(|s| s.is_lightbeam());
        let ratios = series
            .iter()
            .filter(|s| !s.is_lightbeam())
            .flat_map(|&other| lightbeam().filter(move |l| l.gives == other.gives).map(move |&l| (l, other)))
            .collect();
        let links = series.iter().zip(links).filter_map(|(&s, link)| Some((s, (*link)?))).collect();
        let twin = |nb: Series| Series { nonblocking: false, ..nb };
        let differences = series
            .iter()
            .filter(|s| s.nonblocking && metric == Metric::MedianUs && series.contains(&twin(**s)))
            .map(|&nb| (nb, twin(nb)))
            .collect();
        Self { series: series.to_vec(), links, ratios, differences, metric }
    }

    pub(crate) fn header(&self, title: &str) -> String {
        let mut line = format!("# {title}\n");
        if !self.links.is_empty() {
            let links: Vec<String> =
                self.links.iter().map(|(s, link)| format!("{} over {link}", s.name())).collect();
            line += &format!("# between ranks 0 and 1: {}\n", links.join(", "));
        }
        if self.metric == Metric::OverlapPct {
            return line + &self.overlap_header();
        }
        let ratios = if self.ratios.is_empty() { "" } else { "; a/b: series a's figure over series b's" };
        let differences = if self.differences.is_empty() { "" } else { "; a-minus-b: a's less b's (us)" };
        line += &format!("# {}{ratios}{differences}\n{:>10}", self.metric.label(), "size");
        for s in &self.series {
            line += &format!(" {:>16}", s.name());
        }
        for column in self.derived() {
            line += &format!(" {:>w$}", column.name, w = column_width(&column.name));
        }
        line
    }

    /// The ratio and difference columns.
    fn derived(&self) -> impl Iterator<Item = Derived> + '_ {
        let ratios = self.ratios.iter().map(|&(a, b)| Derived {
            name: format!("{}/{}", a.name(), b.name()),
            of: (a, b),
            make: |a, b| a / b,
        });
        let differences = self.differences.iter().map(|&(a, b)| Derived {
            name: format!("{}-minus-{}", a.name(), b.name()),
            of: (a, b),
            make: |a, b| a - b,
        });
        ratios.chain(differences)
    }

    fn overlap_header(&self) -> String {
        let mut line = format!(
            "# {}: max(0, 100 - 100 * (t_total - t_cpu) / t_pure), as OSU's; medians in us\n",
            self.metric.label()
        );
        line += "# t_pure: the call started and waited for at once; t_cpu: a busy loop sized to last \
                 t_pure, run between start and wait; t_total: start, loop, wait; t_cpu_alone: the loop with \
                 no call in flight (t_cpu above it: the call's progress took the loop's core, which OSU's \
                 overlap counts as overlap)\n";
        if self.series.iter().any(|s| s.is_lightbeam() && !s.nonblocking) {
            line += "# lightbeam (no progress): the same calls in a scope with Progress::OnWait (no lane \
                     thread: the wait runs them), as without any progress mechanism\n";
        }
        line + &format!(
            "{:>10} {:>16} {:>10} {:>10} {:>10} {:>11} {:>11}",
            "size", "series", "t_pure", "t_cpu", "t_total", "overlap(%)", "t_cpu_alone"
        )
    }

    /// The row of one size; `records` are that size's, one per series.
    pub(crate) fn row(&self, size: usize, records: &[Record]) -> String {
        if self.metric == Metric::OverlapPct {
            return self.overlap_rows(size, records);
        }
        let figure = |s: Series| records.iter().find(|r| r.series == s.name()).map(|r| self.metric.of(r));
        let mut line = format!("{:>10}", show_size(size));
        for &s in &self.series {
            line += &format!(" {:>16}", figure(s).map_or_else(|| "-".into(), show_figure));
        }
        for column in self.derived() {
            let derived = figure(column.of.0).zip(figure(column.of.1)).map(|(a, b)| (column.make)(a, b));
            let width = column_width(&column.name);
            line += &format!(" {:>width$}", derived.map_or_else(|| "-".into(), show_figure));
        }
        line
    }

    /// A line per series: its t_pure, t_cpu, t_total and overlap.
    fn overlap_rows(&self, size: usize, records: &[Record]) -> String {
        let lines = self.series.iter().filter_map(|&s| {
            let record = records.iter().find(|r| r.series == s.name())?;
            let overlap = record.overlap?;
            let figures =
                [record.median_us, overlap.cpu_us, overlap.total_us, overlap.percent, overlap.cpu_alone_us]
                    .map(show_figure);
            let note = if s.is_lightbeam() && !s.nonblocking { " (no progress)" } else { "" };
            Some(format!(
                "{:>10} {:>16} {:>10} {:>10} {:>10} {:>11} {:>11}{note}",
                show_size(size),
                s.name(),
                figures[0],
                figures[1],
                figures[2],
                figures[3],
                figures[4]
            ))
        });
        lines.collect::<Vec<_>>().join("\n")
    }
}

/// A column made from two series' figures: a ratio, or a difference.
struct Derived {
    name: String,
    of: (Series, Series),
    make: fn(f64, f64) -> f64,
}

/// The width of a ratio or difference column: its header's, at least 10.
fn column_width(name: &str) -> usize {
    name.len().max(10)
}

/// A figure with at least three significant digits (two decimals from 1 up, one from 100 up).
fn show_figure(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 1,
        v if v >= 1.0 => 2,
        0.0 => 2,
        v => (2 - v.log10().floor() as i32).clamp(2, 9) as usize,
    };
    format!("{value:.decimals$}")
}

/// Everything one invocation measured, as written to JSON.
#[derive(Debug, Serialize)]
pub(crate) struct Run {
    pub(crate) lbm_bench: &'static str,
    pub(crate) ranks: usize,
    pub(crate) transport: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) command: Vec<String>,
    pub(crate) benchmarks: Vec<BenchmarkRun>,
}

/// One benchmark's figures.
#[derive(Debug, Serialize)]
pub(crate) struct BenchmarkRun {
    pub(crate) benchmark: &'static str,
    pub(crate) metric: Metric,
    pub(crate) records: Vec<Record>,
}

impl Run {
    pub(crate) fn write_json(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
    }

    pub(crate) fn write_csv(&self, path: &std::path::Path) -> Result<(), String> {
        let write = || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            writeln!(
                out,
                "benchmark,ranks,transport,series,size,iterations,median_us,min_us,max_us,mb_per_s,link_0_1,\
                 cpu_us,total_us,overlap_pct,cpu_alone_us"
            )?;
            for r in self.benchmarks.iter().flat_map(|b| &b.records) {
                let overlap = r.overlap.map_or_else(
                    || ",,,".into(),
                    |o| format!("{:.3},{:.3},{:.1},{:.3}", o.cpu_us, o.total_us, o.percent, o.cpu_alone_us),
                );
                writeln!(
                    out,
                    "{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{},{overlap}",
                    r.benchmark,
                    self.ranks,
                    self.transport,
                    r.series,
                    r.size,
                    r.iterations,
                    r.median_us,
                    r.min_us,
                    r.max_us,
                    r.mb_per_s,
                    r.link_0_1.unwrap_or_default()
                )?;
            }
            out.flush()
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_lightbeam_with_the_same_kind_of_send() {
        let links = [Some("shm"), Some("zeromq"), Some("shm"), None, None, None];
        let table = Table::new(&Series::POINT_TO_POINT, &links, Metric::MbPerS);
        let header = table.header("t");
        assert!(header.contains("lightbeam-owned/zmq-zerocopy") && header.contains("lightbeam/zmq-copy"));
        assert!(header.contains("lightbeam/mpi") && header.contains("lightbeam-zmq/mpi"));
        assert!(header.contains("lightbeam-zmq/zmq-copy") && !header.contains("lightbeam-owned/mpi"));
        assert!(
            header.contains("ranks 0 and 1: lightbeam over shm, lightbeam-zmq over zeromq, lightbeam-owned")
        );
        let time = Summary { median: 2.0, min: 1.0, max: 3.0 };
        let records = [
            Record::new("bandwidth", Series::LIGHTBEAM_OWNED, Some("shm"), 8, 1, time),
            Record::new("bandwidth", Series::ZMQ_ZERO_COPY, None, 8, 1, Summary { median: 4.0, ..time }),
        ];
        let row = table.row(8, &records);
        assert!(row.contains("4.00") && row.contains("2.00") && row.contains(" - "), "{row}");
        assert_eq!(
            [show_figure(4235.38), show_figure(0.002041), show_figure(0.5)],
            ["4235.4", "0.00204", "0.500"]
        );
    }

    #[test]
    fn start_and_wait_less_blocking_is_a_column_of_time_tables_only() {
        let series = Series::NONBLOCKING;
        let table = Table::new(&series, &[Some("shm"), Some("shm"), None], Metric::MedianUs);
        let header = table.header("t");
        assert!(header.contains("lightbeam-nb/mpi") && header.contains("lightbeam-nb-minus-lightbeam"));
        let time = |median| Summary { median, min: median, max: median };
        let records = [
            Record::new("nb-latency", Series::LIGHTBEAM, None, 8, 1, time(2.0)),
            Record::new("nb-latency", Series::LIGHTBEAM_NB, None, 8, 1, time(2.5)),
            Record::new("nb-latency", Series::MPI, None, 8, 1, time(1.0)),
        ];
        assert!(table.row(8, &records).ends_with(" 0.500"), "{}", table.row(8, &records));
        let bandwidth = Table::new(&series, &[None; 3], Metric::MbPerS).header("t");
        assert!(!bandwidth.contains("minus"), "{bandwidth}");
    }

    #[test]
    fn overlap_is_osu_s_and_each_series_gets_a_line() {
        // OSU: max(0, 100 - 100 * (t_total - t_cpu) / t_pure).
        assert_eq!(Overlap::new(10.0, 10.0, 12.0, 10.0).percent, 80.0);
        assert_eq!(Overlap::new(10.0, 10.0, 25.0, 10.0).percent, 0.0);
        let series = [Series::LIGHTBEAM, Series::LIGHTBEAM_NB, Series::MPI];
        let table = Table::new(&series, &[None; 3], Metric::OverlapPct);
        assert!(table.header("t").contains("lightbeam (no progress)"));
        let time = Summary { median: 10.0, min: 9.0, max: 11.0 };
        let records = series.map(|s| {
            let record = Record::new("ibcast", s, None, 64, 1, time);
            record.with_overlap(Overlap::new(10.0, 10.0, 12.0, 9.5))
        });
        let rows = table.row(64, &records);
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines.len(), 3, "{rows}");
        assert!(lines[0].ends_with("(no progress)") && lines[1].contains("lightbeam-nb"), "{rows}");
        let words: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(words, ["64", "B", "mpi", "10.00", "10.00", "12.00", "80.00", "9.50"]);
        assert!(Metric::OverlapPct.of(&records[2]) == 80.0);
    }
}
