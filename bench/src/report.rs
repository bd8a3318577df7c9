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
        }
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
}

impl Metric {
    pub(crate) fn of(self, record: &Record) -> f64 {
        match self {
            Self::MedianUs => record.median_us,
            Self::MbPerS => record.mb_per_s,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::MedianUs => "median time (us)",
            Self::MbPerS => "bandwidth (MB/s)",
        }
    }
}

/// The columns of a table: one per series, then each Lightbeam series' figure over each other library's
/// that sends the same way (lends or gives its buffers).
pub(crate) struct Table {
    series: Vec<Series>,
    /// The transport of each Lightbeam series between ranks 0 and 1, for the header.
    links: Vec<(Series, &'static str)>,
    ratios: Vec<(Series, Series)>,
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
        Self { series: series.to_vec(), links, ratios, metric }
    }

    pub(crate) fn header(&self, title: &str) -> String {
        let mut line = format!("# {title}\n");
        if !self.links.is_empty() {
            let links: Vec<String> =
                self.links.iter().map(|(s, link)| format!("{} over {link}", s.name())).collect();
            line += &format!("# between ranks 0 and 1: {}\n", links.join(", "));
        }
        let ratios = if self.ratios.is_empty() { "" } else { "; a/b: series a's figure over series b's" };
        line += &format!("# {}{ratios}\n{:>10}", self.metric.label(), "size");
        for s in &self.series {
            line += &format!(" {:>16}", s.name());
        }
        for (lightbeam, other) in &self.ratios {
            let name = ratio_name(*lightbeam, *other);
            line += &format!(" {name:>w$}", w = ratio_width(&name));
        }
        line
    }

    /// The row of one size; `records` are that size's, one per series.
    pub(crate) fn row(&self, size: usize, records: &[Record]) -> String {
        let figure = |s: Series| records.iter().find(|r| r.series == s.name()).map(|r| self.metric.of(r));
        let mut line = format!("{:>10}", show_size(size));
        for &s in &self.series {
            line += &format!(" {:>16}", figure(s).map_or_else(|| "-".into(), show_figure));
        }
        for &(lightbeam, other) in &self.ratios {
            let ratio = figure(lightbeam).zip(figure(other)).map(|(a, b)| a / b);
            let width = ratio_width(&ratio_name(lightbeam, other));
            line += &format!(" {:>width$}", ratio.map_or_else(|| "-".into(), show_figure));
        }
        line
    }
}

/// The header of the column of `lightbeam`'s figure over `other`'s.
fn ratio_name(lightbeam: Series, other: Series) -> String {
    format!("{}/{}", lightbeam.name(), other.name())
}

/// The width of a ratio column: its header's, at least 10.
fn ratio_width(name: &str) -> usize {
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
                "benchmark,ranks,transport,series,size,iterations,median_us,min_us,max_us,mb_per_s,link_0_1"
            )?;
            for r in self.benchmarks.iter().flat_map(|b| &b.records) {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{}",
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
}
