//! The main demo: rank 0 broadcasts a generated dataset to every rank over Lightbeam, every rank verifies
//! its checksum, and rank 0 reports size, time, throughput, the algorithm and every rank's peak memory,
//! beside MPI_Bcast of the same data. Then the shared broadcast: one read-only copy per node that every
//! rank reads in place, with its time and what it added to the node's and to each rank's memory.
//!
//! Run: `mpirun -n 4 target/release/examples/broadcast [--size 256MiB] [--root 0] [--no-mpi-compare]`
//! (`./scripts/demo.sh` builds it and runs it at 4 ranks). Exits non-zero if any rank's data is wrong.

#[path = "common/data.rs"]
mod data;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use data::{checksum, fill_pattern, pattern};
use lightbeam::mesh::{Mesh, MeshConfig, Rank};
use lightbeam::mpi::topology::SimpleCommunicator;
use lightbeam::mpi::traits::*;
use lightbeam::shm::{SharedBytes, SharedBytesMut};

struct Args {
    size: usize,
    root: usize,
    compare_mpi: bool,
}

fn parse_size(text: &str) -> Option<usize> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale = match &text[digits.len()..].to_ascii_lowercase()[..] {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(scale)
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { size: 256 << 20, root: 0, compare_mpi: true };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size" => {
                let text = value()?;
                args.size =
                    parse_size(&text).ok_or_else(|| format!("bad size {text:?}: try 4096, 64KiB, 256MiB"))?
            }
            "--root" => args.root = value()?.parse().map_err(|_| "--root takes a rank number".to_string())?,
            "--no-mpi-compare" => args.compare_mpi = false,
            "--help" | "-h" => {
                return Err("usage: broadcast [--size 256MiB] [--root 0] [--no-mpi-compare]".into());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(args)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn rate(bytes: usize, time: Duration) -> String {
    format!("{:.0} MiB/s", mib(bytes) / time.as_secs_f64().max(1e-9))
}

/// The time from a barrier until every rank has its data: each rank reports in to the root after its
/// part is done, and the root stops the clock when the last report arrives.
fn timed(
    world: &SimpleCommunicator,
    mesh: &Mesh,
    root: Rank,
    work: impl FnOnce() -> lightbeam::Result<()>,
) -> lightbeam::Result<Duration> {
    world.barrier();
    let started = Instant::now();
    work()?;
    if mesh.rank() == root {
        mesh.gather_into_root(&[], &mut Vec::new())?;
    } else {
        mesh.gather_into(root, &[])?;
    }
    Ok(started.elapsed())
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn run(world: &SimpleCommunicator, args: &Args) -> Outcome {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    broadcast_and_verify(world, &mesh, args)?;
    report_peak_memory(&mesh, args)?;
    let mpi_time = match args.compare_mpi {
        true => Some(compare_with_mpi(world, args, &mesh)?),
        false => None,
    };
    share_and_report(world, &mesh, args, mpi_time)
}

fn broadcast_and_verify(world: &SimpleCommunicator, mesh: &Mesh, args: &Args) -> Outcome {
    let (root, n) = (Rank(args.root), mesh.size());
    let is_root = mesh.rank() == root;
    let reporter = Rank((args.root + n - 1) % n); // the last rank the data reaches prints progress
    let algorithm = mesh.broadcast_algorithm(args.size);
    let mut data = Vec::new();
    if is_root {
        println!("broadcasting {:.1} MiB from rank {} to {n} ranks ({algorithm})", mib(args.size), root.0);
        data = pattern(args.size, 42);
    }
    // On a terminal the progress line redraws every 5 %; into a file (a batch job's output) it is a line
    // every 25 %.
    let (step, end) = if std::io::stderr().is_terminal() { (5, "\r") } else { (25, "\n") };
    let mut last_shown = 0;
    let elapsed = timed(world, mesh, root, || {
        mesh.broadcast_with_progress(root, &mut data, |done, total| {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            if mesh.rank() == reporter && n > 1 && (percent >= last_shown + step || done == total) {
                last_shown = percent;
                eprint!("  progress: {:.0}/{:.0} MiB ({percent}%){end}", mib(done), mib(total));
                if done == total && end == "\r" {
                    eprintln!();
                }
                std::io::stderr().flush().ok();
            }
        })?;
        Ok(())
    })?;

    // Every rank checks its copy; the root compares all checksums with its own.
    let expected_sum = if is_root { checksum(&data) } else { 0 };
    let sum = checksum(&data);
    let mut sums = Vec::new();
    if is_root {
        mesh.gather_into_root(&sum.to_le_bytes(), &mut sums)?;
    } else {
        mesh.gather_into(root, &sum.to_le_bytes())?;
    }
    if !is_root {
        return match data.len() == args.size {
            true => Ok(()),
            false => Err(format!("received {} bytes, not {}", data.len(), args.size).into()),
        };
    }
    let bad: Vec<usize> = (0..n).filter(|&r| sums[r] != expected_sum.to_le_bytes()).collect();
    println!(
        "lightbeam: {:.1} MiB to {n} ranks in {:.3} s = {} ({algorithm})",
        mib(args.size),
        elapsed.as_secs_f64(),
        rate(args.size, elapsed)
    );
    if !bad.is_empty() {
        return Err(format!("WRONG DATA on ranks {bad:?}").into());
    }
    println!("verified: all {n} ranks hold checksum {expected_sum:#018x}");
    Ok(())
}

/// This process's peak resident memory so far (Linux `VmHWM`), in bytes.
fn peak_resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Every rank's peak resident memory through the broadcast, against the buffer it had to hold.
fn report_peak_memory(mesh: &Mesh, args: &Args) -> Outcome {
    let mine = peak_resident_bytes().unwrap_or(0) as u64;
    let root = Rank(args.root);
    if mesh.rank() != root {
        mesh.gather_into(root, &mine.to_le_bytes())?;
        return Ok(());
    }
    let mut peaks = Vec::new();
    mesh.gather_into_root(&mine.to_le_bytes(), &mut peaks)?;
    let peaks: Vec<usize> =
        peaks.iter().filter_map(|p| Some(u64::from_le_bytes(p[..].try_into().ok()?) as usize)).collect();
    let (low, high) = (peaks.iter().min().copied().unwrap_or(0), peaks.iter().max().copied().unwrap_or(0));
    println!(
        "peak resident memory per rank: {:.0} to {:.0} MiB (the buffer is {:.0} MiB: at most {:.0} MiB more)",
        mib(low),
        mib(high),
        mib(args.size),
        mib(high.saturating_sub(args.size))
    );
    Ok(())
}

/// MPI_Bcast of the same amount, timed the same way, for comparison; returns its time.
fn compare_with_mpi(
    world: &SimpleCommunicator,
    args: &Args,
    lightbeam_mesh: &Mesh,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let root = Rank(args.root);
    let mut buffer = vec![0u8; args.size.max(1)];
    if lightbeam_mesh.rank() == root {
        fill_pattern(&mut buffer, 42);
    }
    let elapsed = timed(world, lightbeam_mesh, root, || {
        world.process_at_rank(args.root as i32).broadcast_into(&mut buffer[..args.size.max(1)]);
        Ok(())
    })?;
    if lightbeam_mesh.rank() == root {
        println!("MPI_Bcast: same data in {:.3} s = {}", elapsed.as_secs_f64(), rate(args.size, elapsed));
    }
    Ok(elapsed)
}

/// A line of `/proc/meminfo` or `/proc/self/status` (`field` with its colon), in bytes.
fn memory_field(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with(field));
    let kib = line.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    kib.unwrap_or(0) << 10
}

/// The root fills the data straight into shared memory and shares it: every rank gets a read-only view
/// of one copy per node, checks it in place, and reports what its private memory grew by; the root
/// reports the time (beside MPI_Bcast's) and what the node's shared memory grew by while every view is
/// held.
fn share_and_report(
    world: &SimpleCommunicator,
    mesh: &Mesh,
    args: &Args,
    mpi_time: Option<Duration>,
) -> Outcome {
    let root = Rank(args.root);
    let is_root = mesh.rank() == root;
    let node_before = memory_field("/proc/meminfo", "Shmem:");
    let own_before = memory_field("/proc/self/status", "RssAnon:");
    let mut prepared = None;
    if is_root {
        let started = Instant::now();
        let mut bytes = SharedBytesMut::new(args.size)?;
        fill_pattern(&mut bytes, 42);
        prepared = Some((bytes.freeze()?, started.elapsed()));
    }
    let mut view = None;
    let elapsed = timed(world, mesh, root, || {
        view = Some(match &prepared {
            Some((bytes, _)) => mesh.broadcast_shared_root(bytes).map(|()| bytes.clone())?,
            None => mesh.broadcast_shared(root)?,
        });
        Ok(())
    })?;
    let view: SharedBytes = view.expect("set by the broadcast");
    let (sum, own_growth) =
        (checksum(&view), memory_field("/proc/self/status", "RssAnon:").saturating_sub(own_before));
    let mut reports = Vec::new();
    let report = [sum.to_le_bytes(), own_growth.to_le_bytes()].concat();
    if !is_root {
        mesh.gather_into(root, &report)?;
        world.barrier(); // every view is held until the root has read the node's memory
        return Ok(());
    }
    mesh.gather_into_root(&report, &mut reports)?;
    let node_growth = memory_field("/proc/meminfo", "Shmem:").saturating_sub(node_before);
    world.barrier();
    let word = |r: &[u8], at: usize| u64::from_le_bytes(r[at..at + 8].try_into().expect("8 bytes"));
    let bad: Vec<usize> = (0..reports.len()).filter(|&r| word(&reports[r], 0) != sum).collect();
    let most_own = reports.iter().map(|r| word(r, 8)).max().unwrap_or(0);
    let (prepared_in, n) = (prepared.map_or(Duration::ZERO, |(_, t)| t), mesh.size());
    let versus = mpi_time.map_or(String::new(), |t| {
        format!(" = {:.3} x MPI_Bcast's time", elapsed.as_secs_f64() / t.as_secs_f64())
    });
    println!(
        "shared broadcast: {:.1} MiB to {n} ranks in {:.4} s{versus} (filling it in shared memory took {:.3} s first)",
        mib(args.size),
        elapsed.as_secs_f64(),
        prepared_in.as_secs_f64()
    );
    println!(
        "  memory: the node's shared memory grew by {:.1} MiB for {n} views ({:.2} x the data); each rank's own by at most {:.1} MiB",
        mib(node_growth as usize),
        node_growth as f64 / args.size.max(1) as f64,
        mib(most_own as usize)
    );
    if !bad.is_empty() {
        return Err(format!("WRONG SHARED DATA on ranks {bad:?}").into());
    }
    println!("verified: all {n} ranks read checksum {sum:#018x} in place");
    Ok(())
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    let args = parse_args().and_then(|args| match args.root < world.size() as usize {
        true => Ok(args),
        false => Err(format!("--root {} is not a rank of this {}-rank job", args.root, world.size())),
    });
    let args = match args {
        Ok(args) => args,
        Err(message) => {
            if world.rank() == 0 {
                eprintln!("{message}");
            }
            world.abort(2)
        }
    };
    lightbeam::mesh::or_abort(&world, run(&world, &args));
}
