//! `lbm-bench`: an OSU-style benchmark of Lightbeam beside raw ZeroMQ and MPI, run under `mpirun`.
//!
//! ```text
//! mpirun -n 2 lbm-bench latency
//! mpirun -n 4 lbm-bench all --json bench.json --plot bench.svg
//! ```
//! Every subcommand measures, in the same run on the same ranks, Lightbeam (its default mesh, shared
//! memory between ranks of one node, and a second mesh with ZeroMQ forced), raw ZeroMQ doing the same
//! pattern (copying and zero-copy sends) and MPI, and prints a table with Lightbeam's ratios. See
//! `docs/BENCHMARKS.md` for what the figures mean.

mod collectives;
mod halo;
mod nonblocking;
mod p2p;
mod plot;
mod raw;
mod reductions;
mod report;
mod series;
mod sizes;
mod timing;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use lightbeam::mesh::{or_abort, Mesh, MeshConfig, Rank, Source, Tag};
use lightbeam::Protocol;
use lightbeam::Transport as SameNode;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::collectives::Collective;
use crate::nonblocking::Overlapped;
use crate::reductions::Typed;
use crate::report::{BenchmarkRun, Metric, Overlap, Record, Run, Table};
use crate::series::{Peers, Series};
use crate::sizes::{parse_size, show_size};
use crate::timing::{Schedule, Summary, Trial};

/// OSU-style benchmarks of Lightbeam beside raw ZeroMQ and MPI, in the same run. Run under mpirun.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    benchmark: Which,
    /// Message sizes, comma-separated (8, 64K, 1MiB, ...). Default: 8 B, then powers of 4 from 16 B to
    /// 64 MiB; for ibcast and iallreduce 8 B, 64 KiB, 1 MiB and 16 MiB; for window-bw 8 B, 64 KiB, 1 MiB
    /// and 4 MiB.
    #[arg(long, global = true, value_delimiter = ',', value_parser = parse_size)]
    sizes: Option<Vec<usize>>,
    /// Leave out sizes above this (with the default sweep or --sizes).
    #[arg(long, global = true, value_parser = parse_size)]
    max_size: Option<usize>,
    /// Timed iterations per size and series. Default as OSU: latency 1000 (100 above 8 KiB), bandwidth
    /// 100 (20), collectives 1000 (100); fewer for large sizes, see --budget.
    #[arg(long, global = true)]
    iterations: Option<usize>,
    /// Untimed iterations before the timed ones. Default: a tenth of the iterations, at least 1.
    #[arg(long, global = true)]
    warmup: Option<usize>,
    /// Cut the iterations of large sizes so that one series moves about this many bytes per size (at
    /// least 5 iterations are kept).
    #[arg(long, global = true, default_value = "1G", value_parser = parse_size)]
    budget: usize,
    /// Time this many operations back to back as one sample (the figure is per operation), as OSU's
    /// benchmarks time their loops, instead of one operation after each barrier (not ibcast and
    /// iallreduce, whose every call is timed with its computation). Default 1.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    back_to_back: u32,
    /// Measure only these series (comma-separated: lightbeam, lightbeam-zmq, lightbeam-owned,
    /// lightbeam-nb, zmq-copy, zmq-zerocopy, mpi). Default: all that apply. lightbeam is the default mesh
    /// (shared memory between ranks of one node), lightbeam-zmq a second mesh with ZeroMQ forced between
    /// every pair, lightbeam-nb the default mesh's non-blocking calls (the non-blocking benchmarks).
    #[arg(long, global = true, value_delimiter = ',')]
    series: Option<Vec<String>>,
    /// ibcast and iallreduce: also take Lightbeam's figure without its progress mechanism (series
    /// lightbeam: the calls started in a scope with `Progress::OnWait`, whose wait runs them).
    #[arg(long, global = true)]
    without_progress: bool,
    /// How ZeroMQ connects the ranks (raw ZeroMQ, lightbeam-zmq, and the default mesh between nodes): tcp
    /// (any nodes) or ipc (one node). The default mesh uses shared memory between ranks of one node.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Lightbeam's broadcast switches from the binomial tree to the pipelined chain at this size (the
    /// raw ZeroMQ broadcast follows). Default: Lightbeam's.
    #[arg(long, global = true, value_parser = parse_size)]
    pipeline_threshold: Option<usize>,
    /// The piece size of Lightbeam's pipelined chain (and of the raw ZeroMQ one). Default: Lightbeam's.
    #[arg(long, global = true, value_parser = parse_size)]
    chunk_size: Option<usize>,
    /// Write every figure to this JSON file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Write every figure to this CSV file.
    #[arg(long, global = true)]
    csv: Option<PathBuf>,
    /// Draw an SVG plot of each benchmark (with `all`, one file per benchmark: NAME-latency.svg, ...;
    /// none for the barrier, which has no sizes).
    #[arg(long, global = true)]
    plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Tcp,
    Ipc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Which {
    /// One-way latency: ping-pong between ranks 0 and 1, half the round trip (osu_latency).
    Latency,
    /// Streaming bandwidth from rank 0 to rank 1: windows of messages, each acknowledged (osu_bw).
    Bandwidth,
    /// One-way latency with every rank at once: all pairs ping-pong together (osu_multi_lat).
    ///
    /// Rank i plays with rank i + n/2 for i < n/2, so the rank count must be even. The figure is half
    /// the round trip, each iteration timed by its slowest rank.
    MultiLatency,
    /// Halo exchange: on a ring, every rank swaps `size` bytes with each neighbour; time per iteration.
    ///
    /// Lightbeam sends both, then receives both; MPI posts both receives and both sends at once, then
    /// waits for all four, as stencil codes do. With 2 ranks both neighbours are the same rank (two
    /// messages each way, told apart by their tags).
    Halo,
    /// Broadcast from rank 0 (osu_bcast).
    #[command(alias = "broadcast")]
    Bcast,
    /// Scatter from rank 0, `size` bytes to each rank (osu_scatter).
    Scatter,
    /// Gather to rank 0, `size` bytes from each rank (osu_gather).
    Gather,
    /// All-to-all, `size` bytes between every pair of ranks (osu_alltoall).
    Alltoall,
    /// Lightbeam's shared broadcast from rank 0 (one read-only copy per node, prepared by the root off
    /// the clock; each rank drops its view after each iteration) beside MPI_Bcast.
    BcastShared,
    /// All-reduce: every rank's `size` bytes of f64 summed, the sum on every rank (osu_allreduce).
    #[command(alias = "all-reduce")]
    Allreduce,
    /// Reduce to rank 0: every rank's `size` bytes of f64 summed (osu_reduce).
    Reduce,
    /// All-gather, `size` bytes of f64 from each rank to every rank (osu_allgather).
    #[command(alias = "all-gather")]
    Allgather,
    /// Barrier (osu_barrier): no data, so one row, at 0 B, whatever the sizes.
    Barrier,
    /// Overlap of a non-blocking broadcast from rank 0 with computation (osu_ibcast): t_pure, t_cpu,
    /// t_total and overlap % of Lightbeam's scope call and MPI_Ibcast.
    Ibcast,
    /// Overlap of a non-blocking all-reduce (f64 summed) with computation (osu_iallreduce), as ibcast.
    Iallreduce,
    /// Bandwidth from rank 0 to rank 1 with 64 non-blocking sends in flight (osu_bw's window): rank 0
    /// starts 64 sends and waits for them all, then receives an acknowledgement; rank 1 starts 64
    /// receives, waits for them all, and acknowledges.
    WindowBw,
    /// One-way latency between ranks 0 and 1 with the blocking calls, with non-blocking ones started and
    /// waited for at once (one scope open throughout), and with MPI's blocking calls; the column
    /// lightbeam-nb-minus-lightbeam is what the start and the wait add.
    NbLatency,
    /// Every benchmark above, in that order (multi-latency only with an even number of ranks).
    All,
}

impl Which {
    const EACH: [Self; 17] = [
        Self::Latency,
        Self::Bandwidth,
        Self::MultiLatency,
        Self::Halo,
        Self::Bcast,
        Self::Scatter,
        Self::Gather,
        Self::Alltoall,
        Self::BcastShared,
        Self::Allreduce,
        Self::Reduce,
        Self::Allgather,
        Self::Barrier,
        Self::Ibcast,
        Self::Iallreduce,
        Self::WindowBw,
        Self::NbLatency,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Bandwidth => "bandwidth",
            Self::MultiLatency => "multi-latency",
            Self::Halo => "halo",
            Self::Bcast => "bcast",
            Self::Scatter => "scatter",
            Self::Gather => "gather",
            Self::Alltoall => "alltoall",
            Self::BcastShared => "bcast-shared",
            Self::Allreduce => "allreduce",
            Self::Reduce => "reduce",
            Self::Allgather => "allgather",
            Self::Barrier => "barrier",
            Self::Ibcast => "ibcast",
            Self::Iallreduce => "iallreduce",
            Self::WindowBw => "window-bw",
            Self::NbLatency => "nb-latency",
            Self::All => "all",
        }
    }

    fn collective(self) -> Option<Collective> {
        match self {
            Self::Bcast => Some(Collective::Bcast),
            Self::Scatter => Some(Collective::Scatter),
            Self::Gather => Some(Collective::Gather),
            Self::Alltoall => Some(Collective::Alltoall),
            Self::BcastShared => Some(Collective::BcastShared),
            _ => None,
        }
    }

    /// The typed collective (or barrier) this benchmark measures, if it is one.
    fn typed(self) -> Option<Typed> {
        match self {
            Self::Allreduce => Some(Typed::AllReduce),
            Self::Reduce => Some(Typed::Reduce),
            Self::Allgather => Some(Typed::AllGather),
            Self::Barrier => Some(Typed::Barrier),
            _ => None,
        }
    }

    /// The non-blocking call whose overlap with computation this benchmark measures, if it is one.
    fn overlapped(self) -> Option<Overlapped> {
        match self {
            Self::Ibcast => Some(Overlapped::Bcast),
            Self::Iallreduce => Some(Overlapped::AllReduce),
            _ => None,
        }
    }

    fn series(self) -> &'static [Series] {
        match (self, self.collective()) {
            (Self::Ibcast | Self::Iallreduce | Self::WindowBw | Self::NbLatency, _) => &Series::NONBLOCKING,
            (Self::MultiLatency, _) => &Series::PAIRS,
            (Self::Halo, _) => &Series::HALO,
            (_, Some(Collective::BcastShared)) => &Series::SHARED,
            (_, Some(_)) => &Series::COLLECTIVE,
            _ if self.typed().is_some() => &Series::TYPED,
            (_, None) => &Series::POINT_TO_POINT,
        }
    }

    /// Whether only ranks 0 and 1 take part (the others wait).
    fn between_first_two(self) -> bool {
        matches!(self, Self::Latency | Self::Bandwidth | Self::WindowBw | Self::NbLatency)
    }

    /// Why this benchmark cannot run on `ranks` ranks with these `sizes`, if it cannot.
    fn unfit(self, ranks: usize, sizes: &[usize]) -> Option<&'static str> {
        match self {
            _ if sizes.is_empty() => Some("no message sizes left to measure"),
            Self::Latency | Self::Bandwidth | Self::All if ranks < 2 => {
                Some("latency and bandwidth need 2 ranks or more (mpirun -n 2)")
            }
            Self::WindowBw | Self::NbLatency if ranks < 2 => {
                Some("window-bw and nb-latency need 2 ranks or more (mpirun -n 2)")
            }
            Self::MultiLatency if ranks < 2 || ranks % 2 == 1 => {
                Some("multi-latency pairs the ranks: it needs an even number of them (mpirun -n 2, 4, ...)")
            }
            Self::Halo if ranks < 2 => Some("halo needs 2 ranks or more (mpirun -n 2)"),
            Self::Allreduce | Self::Reduce | Self::Allgather | Self::Iallreduce
                if sizes.iter().any(|s| s % reductions::ELEMENT != 0) =>
            {
                Some(
                    "allreduce, reduce, allgather and iallreduce send f64 elements: every size a multiple of \
                     8 bytes",
                )
            }
            _ => None,
        }
    }

    fn metric(self) -> Metric {
        match self {
            Self::Bandwidth | Self::WindowBw => Metric::MbPerS,
            _ if self.overlapped().is_some() => Metric::OverlapPct,
            _ => Metric::MedianUs,
        }
    }

    /// OSU's iteration counts: (up to 8 KiB, above).
    fn default_iterations(self) -> (usize, usize) {
        match self {
            Self::Bandwidth | Self::WindowBw => (100, 20),
            _ => (1000, 100),
        }
    }

    /// The sizes measured when none are given.
    fn default_sizes(self) -> Vec<usize> {
        match self {
            Self::Ibcast | Self::Iallreduce => vec![8, 64 << 10, 1 << 20, 16 << 20],
            Self::WindowBw => vec![8, 64 << 10, 1 << 20, 4 << 20],
            _ => sizes::default_sizes(),
        }
    }

    /// Messages per window of a bandwidth benchmark.
    fn window(self, size: usize) -> usize {
        match self {
            Self::WindowBw => p2p::WINDOW,
            _ => p2p::window(size),
        }
    }

    /// Bytes one iteration moves between ranks, to scale iterations down for large sizes.
    fn bytes_per_iteration(self, size: usize, ranks: usize) -> usize {
        let others = ranks.saturating_sub(1).max(1);
        match self {
            Self::Latency | Self::NbLatency => 2 * size,
            Self::MultiLatency => ranks * size,
            Self::Halo => 2 * ranks * size,
            Self::Bandwidth | Self::WindowBw => self.window(size) * size,
            Self::Alltoall | Self::Allgather => size * ranks * others,
            Self::Allreduce | Self::Iallreduce => 2 * size * others,
            _ => size * others,
        }
    }

    /// This rank's part of the benchmark with `series` at `size`.
    fn trial<'p>(
        self,
        peers: &'p Peers<'p>,
        series: Series,
        size: usize,
    ) -> Result<Box<dyn Trial + 'p>, String> {
        if let Some(typed) = self.typed() {
            return Ok(Box::new(typed.trial(peers, series, size)?));
        }
        Ok(match (self, self.collective()) {
            (Self::Latency | Self::NbLatency, _) => Box::new(p2p::PingPong::new(peers, series, size)),
            (Self::Bandwidth | Self::WindowBw, _) => {
                Box::new(p2p::Stream::new(peers, series, size, self.window(size)))
            }
            (Self::MultiLatency, _) => Box::new(p2p::PingPong::pairs(peers, series, size)),
            (Self::Halo, _) => Box::new(halo::Halo::new(peers, series, size)),
            (_, Some(collective)) => Box::new(collective.trial(peers, series, size)?),
            (_, None) => {
                unreachable!("`all` runs each benchmark in turn; ibcast and iallreduce measure alone")
            }
        })
    }

    /// The sizes this benchmark measures: the barrier's one row has none.
    fn sizes(self, sizes: &[usize]) -> &[usize] {
        match self {
            Self::Barrier => &[0],
            _ => sizes,
        }
    }

    /// Turns an iteration's seconds into the microseconds the table reports: one way for latency, per
    /// message for bandwidth, per call for collectives, per exchange for the halo.
    fn microseconds(self, size: usize) -> f64 {
        match self {
            Self::Latency | Self::MultiLatency | Self::NbLatency => 0.5e6,
            Self::Bandwidth | Self::WindowBw => 1e6 / self.window(size) as f64,
            _ => 1e6,
        }
    }
}

impl Cli {
    /// Checks every argument MPI's ranks cannot check alone.
    fn validate(&self, ranks: usize) -> Result<(), String> {
        let known = Series::KNOWN.map(Series::name);
        if let Some(name) = self.series.iter().flatten().find(|name| !known.contains(&name.as_str())) {
            return Err(format!("unknown series {name:?}: choose from {}", known.join(", ")));
        }
        if self.sizes.iter().flatten().any(|&s| s == 0) {
            return Err("message sizes start at 1 byte".into());
        }
        if let Some(reason) = self.benchmark.unfit(ranks, &self.sizes(self.benchmark)) {
            return Err(reason.into());
        }
        if self.benchmark == Which::Barrier && self.plot.is_some() {
            return Err("the barrier has one figure and no sizes: nothing to plot (leave out --plot)".into());
        }
        Ok(())
    }

    /// The sizes `which` measures: those asked for or its default, less those above --max-size.
    fn sizes(&self, which: Which) -> Vec<usize> {
        let mut sizes = self.sizes.clone().unwrap_or_else(|| which.default_sizes());
        sizes.retain(|&s| self.max_size.is_none_or(|max| s <= max));
        sizes
    }

    fn schedule(&self, which: Which, size: usize, ranks: usize) -> Schedule {
        let (small, large) = which.default_iterations();
        let wanted = self.iterations.unwrap_or(if size <= 8192 { small } else { large });
        let affordable = (self.budget / which.bytes_per_iteration(size, ranks).max(1)).max(5);
        let iterations = wanted.min(affordable).max(1);
        Schedule { warmup: self.warmup.unwrap_or((iterations / 10).max(1)), iterations }
    }

    /// The benchmarks to run: the one asked for, or with `all` every one that fits the rank count and
    /// its sizes (rank 0 says which it leaves out).
    fn benchmarks(&self, me: usize, ranks: usize) -> Vec<Which> {
        if self.benchmark != Which::All {
            return vec![self.benchmark];
        }
        let unfit = |w: &Which| w.unfit(ranks, &self.sizes(*w));
        let (fit, unfit): (Vec<Which>, Vec<Which>) =
            Which::EACH.into_iter().partition(|w| unfit(w).is_none());
        if me == 0 {
            let mut reasons: Vec<&str> =
                unfit.into_iter().filter_map(|w| w.unfit(ranks, &self.sizes(w))).collect();
            reasons.dedup();
            for reason in reasons {
                eprintln!("lbm-bench: left out of all: {reason}");
            }
        }
        fit
    }

    /// The series `which` measures: those asked for that apply, or all that apply. The overlap
    /// benchmarks' blocking Lightbeam series (no progress) only with --without-progress or when named.
    fn series(&self, which: Which) -> Vec<Series> {
        let named = |s: &Series| self.series.as_ref().map(|names| names.iter().any(|n| n == s.name()));
        let no_progress = |s: &Series| which.overlapped().is_some() && s.is_lightbeam() && !s.nonblocking;
        let wanted = |s: &Series| match named(s) {
            Some(named) => named,
            None => !no_progress(s) || self.without_progress,
        };
        which.series().iter().copied().filter(wanted).collect()
    }

    fn plot_path(&self, which: Which) -> Option<PathBuf> {
        let path = self.plot.as_ref().filter(|_| which != Which::Barrier)?;
        if self.benchmark != Which::All {
            return Some(path.clone());
        }
        let stem = path.file_stem().map_or_else(|| "lbm-bench".into(), |s| s.to_string_lossy().into_owned());
        Some(path.with_file_name(format!("{stem}-{}.svg", which.name())))
    }
}

/// Prints where a run is, on stderr: rewritten in place on a terminal, one line per size otherwise.
struct Progress {
    terminal: bool,
}

impl Progress {
    fn show(&self, which: Which, step: usize, steps: usize, size: usize) {
        let line = format!("lbm-bench {} [{step}/{steps}] {} ...", which.name(), show_size(size));
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&self) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
    }
}

fn run_benchmark(
    cli: &Cli,
    peers: &Peers<'_>,
    which: Which,
    transport: &str,
) -> Result<BenchmarkRun, String> {
    let (me, n) = (peers.rank(), peers.size());
    let mut run = BenchmarkRun { benchmark: which.name(), metric: which.metric(), records: Vec::new() };
    // Latency and bandwidth: ranks 0 and 1 measure on a communicator of their own; the others wait in a
    // blocking Lightbeam receive, not in an MPI barrier that would spin on the cores the two need.
    let pair = (which.between_first_two() && n > 2)
        .then(|| peers.world.split_by_color(if me < 2 { Color::with_value(0) } else { Color::undefined() }));
    let sizes = cli.sizes(which);
    let sizes = which.sizes(&sizes);
    let peers = match &pair {
        None => *peers,
        Some(Some(comm)) => Peers { world: comm, ..*peers },
        Some(None) => {
            wait_for_pair(peers, sizes.len())?;
            return Ok(run);
        }
    };
    let series = cli.series(which);
    let links: Vec<Option<&str>> = series.iter().map(|&s| peers.link(s)).collect();
    let table = Table::new(&series, &links, which.metric());
    let progress = Progress { terminal: me == 0 && std::io::stderr().is_terminal() };
    let quiet = me != 0;
    if !quiet {
        let idle = if pair.is_some() { " (ranks 0 and 1 measure, the others wait)" } else { "" };
        println!("{}", table.header(&format!("lbm-bench {}: {n} ranks, {transport}{idle}", which.name())));
    }
    for (i, &size) in sizes.iter().enumerate() {
        let schedule = cli.schedule(which, size, n);
        if !quiet {
            progress.show(which, i + 1, sizes.len(), size);
        }
        let figures = measure(cli, &peers, which, &series, size, schedule)?;
        let row: Vec<Record> = series
            .iter()
            .zip(&links)
            .zip(figures)
            .map(|((&s, &link), (time, overlap))| {
                let record = Record::new(which.name(), s, link, size, schedule.iterations, time);
                match overlap {
                    Some(overlap) => record.with_overlap(overlap),
                    None => record,
                }
            })
            .collect();
        if !quiet {
            progress.done();
            println!("{}", table.row(size, &row));
        }
        if pair.is_some() && me == 0 {
            (2..n).try_for_each(|rank| {
                peers.mesh.send(Rank(rank), SIZE_DONE, &[0u8; 0]).map_err(|e| e.to_string())
            })?;
        }
        run.records.extend(row);
    }
    Ok(run)
}

/// This rank's part of `which` with each of `series` at `size`: each one's time in microseconds (as
/// the table reports it), and for the overlap benchmarks its overlap.
fn measure<'p>(
    cli: &Cli,
    peers: &'p Peers<'p>,
    which: Which,
    series: &[Series],
    size: usize,
    schedule: Schedule,
) -> Result<Vec<(Summary, Option<Overlap>)>, String> {
    if let Some(call) = which.overlapped() {
        let figures = nonblocking::measure(call, peers, series, size, schedule)?;
        return Ok(figures.into_iter().map(|(time, overlap)| (time, Some(overlap))).collect());
    }
    let times = cli.back_to_back as usize;
    let times = if which == Which::NbLatency {
        p2p::time_in_scope(peers, series, size, schedule, times, |s| which.trial(peers, s, size))?
    } else {
        let mut trials = series
            .iter()
            .map(|&s| which.trial(peers, s, size).map(|trial| timing::back_to_back(trial, times)))
            .collect::<Result<Vec<_>, _>>()?;
        timing::time_interleaved(peers.world, schedule, &mut trials)?
    };
    let scale = which.microseconds(size) / f64::from(cli.back_to_back);
    Ok(times.iter().map(|t| (Summary::of(t).scaled(scale), None)).collect())
}

/// The tag of rank 0's word to the waiting ranks that a point-to-point size is done.
const SIZE_DONE: Tag = Tag(0x0d);

/// A rank outside a point-to-point benchmark: waits (without using a core) for rank 0 to finish each size.
fn wait_for_pair(peers: &Peers<'_>, sizes: usize) -> Result<(), String> {
    let within = Duration::from_secs(3600);
    (0..sizes)
        .try_for_each(|_| peers.mesh.recv_timeout(Source::Rank(Rank(0)), SIZE_DONE, within).map(drop))
        .map_err(|e| e.to_string())
}

fn write_outputs(cli: &Cli, run: &Run) -> Result<(), String> {
    if let Some(path) = &cli.json {
        run.write_json(path)?;
    }
    if let Some(path) = &cli.csv {
        run.write_csv(path)?;
    }
    for benchmark in &run.benchmarks {
        let which = Which::EACH.into_iter().find(|w| w.name() == benchmark.benchmark);
        if let Some(path) = which.and_then(|w| cli.plot_path(w)) {
            let title = format!("lbm-bench {}: {} ranks, {}", benchmark.benchmark, run.ranks, run.transport);
            plot::draw(benchmark, &title, &path)?;
            eprintln!("lbm-bench: wrote {}", path.display());
        }
    }
    Ok(())
}

fn written(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display())).unwrap_or_default()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let universe = mpi::initialize().expect("MPI initializes once per process");
    let world = universe.world();
    // Every rank checks the same arguments alike, so all of them can end cleanly (MPI finalized).
    if let Err(reason) = cli.validate(world.size() as usize) {
        if world.rank() == 0 {
            eprintln!("lbm-bench: {reason}");
        }
        return ExitCode::from(2);
    }
    let protocol = match cli.transport {
        Transport::Tcp => Protocol::Tcp,
        Transport::Ipc => Protocol::Ipc,
    };
    let defaults = MeshConfig::default();
    let config = MeshConfig::default()
        .with_protocol(protocol)
        .with_pipeline_threshold(cli.pipeline_threshold.unwrap_or(defaults.pipeline_threshold))
        .with_chunk_size(cli.chunk_size.unwrap_or(defaults.chunk_size));
    let (mesh, bootstrap) = timed_bootstrap(&world, config.clone());
    let (zmq_mesh, zmq_bootstrap) = timed_bootstrap(&world, config.with_same_node(SameNode::ZeroMq));
    let raw = or_abort(&world, raw::RawMesh::connect(&world, &mesh));
    let peers = Peers { world: &world, mesh: &mesh, zmq_mesh: &zmq_mesh, raw: &raw };
    or_abort(&world, peers.connect_all());
    let benchmarks = cli.benchmarks(peers.rank(), peers.size());
    let transport = format!("{:?}", cli.transport).to_lowercase();
    if peers.rank() == 0 {
        println!(
            "# Lightbeam mesh of {} ranks over {transport} formed in {:.1} ms ({:.1} ms with ZeroMQ forced)\n",
            peers.size(),
            bootstrap.as_secs_f64() * 1e3,
            zmq_bootstrap.as_secs_f64() * 1e3
        );
    }
    let mut runs = Vec::new();
    for &which in &benchmarks {
        runs.push(or_abort(&world, run_benchmark(&cli, &peers, which, &transport)));
        if peers.rank() == 0 {
            println!();
        }
    }
    let hosts = or_abort(&world, hosts(&peers));
    if peers.rank() == 0 {
        let run = Run {
            lbm_bench: env!("CARGO_PKG_VERSION"),
            ranks: peers.size(),
            transport,
            hosts,
            command: std::env::args().collect(),
            benchmarks: runs,
        };
        or_abort(&world, write_outputs(&cli, &run));
        let files = [cli.json.as_deref(), cli.csv.as_deref()].map(written).concat();
        if !files.is_empty() {
            eprintln!("lbm-bench: wrote{files}");
        }
    }
    ExitCode::SUCCESS
}

/// Forms a mesh with `config` (every rank starting together), and how long that took.
fn timed_bootstrap(world: &SimpleCommunicator, config: MeshConfig) -> (Mesh, Duration) {
    world.barrier();
    let started = std::time::Instant::now();
    let mesh = or_abort(world, Mesh::bootstrap(world, config));
    (mesh, started.elapsed())
}

/// Every rank's Lightbeam endpoint, to record where the run ran.
fn hosts(peers: &Peers<'_>) -> Result<Vec<String>, String> {
    (0..peers.size())
        .map(|r| peers.mesh.endpoint(Rank(r)).map(|e| e.to_string()).map_err(|e| e.to_string()))
        .collect()
}
