//! A short run of every lbm-bench subcommand under real `mpirun` (a few iterations: it proves the
//! benchmark works end to end and writes what it says; no timing is asserted).

use std::time::Duration;

use lbm_tests::mpirun::{mpirun, Run};

const BENCH: &str = env!("CARGO_BIN_EXE_lbm-bench");
const LIMIT: Duration = Duration::from_secs(240);
const QUICK: [&str; 6] = ["--sizes", "8,64K", "--iterations", "3", "--warmup", "1"];

#[track_caller]
fn bench(ranks: usize, args: &[&str]) -> Run {
    let run = mpirun(ranks, LIMIT, BENCH, args);
    assert!(
        run.success,
        "lbm-bench {args:?} at {ranks} ranks failed\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
    run
}

/// The words after the size of the first table row for `size` that contains `containing`.
fn words<'a>(stdout: &'a str, size: &str, containing: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(size) && l.contains(containing))
        .unwrap_or_else(|| panic!("no {size} row with {containing:?} in:\n{stdout}"));
    line.split_whitespace().skip(2).collect()
}

/// The figures of the table row for `size`, with no column left empty.
fn row<'a>(stdout: &'a str, size: &str) -> Vec<&'a str> {
    let figures = words(stdout, size, "");
    assert!(positive(&figures), "empty or bad figure in the {size} row of:\n{stdout}");
    figures
}

fn positive(figures: &[&str]) -> bool {
    figures.iter().all(|f| f.parse::<f64>().is_ok_and(|v| v > 0.0))
}

/// Runs `subcommand` quickly at `ranks` ranks and checks its table: a row per size with `columns`
/// figures (series and ratios), and the progress line.
#[track_caller]
fn quick(ranks: usize, subcommand: &str, columns: usize) {
    let args: Vec<&str> = std::iter::once(subcommand).chain(QUICK).collect();
    let run = bench(ranks, &args);
    assert!(run.stdout.contains(&format!("# lbm-bench {subcommand}: {ranks} ranks, tcp")), "{}", run.stdout);
    for size in ["8 B", "64 KiB"] {
        assert_eq!(row(&run.stdout, size).len(), columns, "{subcommand} {size}:\n{}", run.stdout);
    }
    assert!(
        run.stderr.contains(&format!("lbm-bench {subcommand} [2/2] 64 KiB")),
        "no progress: {}",
        run.stderr
    );
}

#[test]
fn every_subcommand_runs_at_two_ranks_with_every_series_and_ratio() {
    for (subcommand, columns) in [
        ("latency", 6 + 5),
        ("bandwidth", 6 + 5),
        ("bcast", 4 + 4),
        ("scatter", 4 + 4),
        ("gather", 4 + 4),
        ("alltoall", 4 + 4),
    ] {
        quick(2, subcommand, columns);
    }
}

#[test]
fn pairs_and_the_halo_run_at_two_and_four_ranks() {
    for ranks in [2, 4] {
        quick(ranks, "multi-latency", 4 + 4);
        quick(ranks, "halo", 3 + 2);
    }
}

#[test]
fn typed_collectives_and_the_barrier_run_at_two_and_four_ranks() {
    for ranks in [2, 4] {
        for subcommand in ["allreduce", "reduce", "allgather"] {
            quick(ranks, subcommand, 3 + 2); // both meshes and MPI, each mesh over MPI
        }
        let run = bench(ranks, &["barrier", "--iterations", "3", "--warmup", "1"]);
        assert!(run.stdout.contains(&format!("# lbm-bench barrier: {ranks} ranks, tcp")), "{}", run.stdout);
        assert_eq!(row(&run.stdout, "0 B").len(), 3 + 2, "{}", run.stdout);
        assert!(!run.stdout.contains("8 B"), "the barrier measures one row:\n{}", run.stdout);
    }
}

#[test]
fn nonblocking_point_to_point_runs_beside_the_blocking_calls_and_mpi() {
    // lightbeam, lightbeam-nb and mpi, and each Lightbeam series over MPI.
    quick(2, "window-bw", 3 + 2);
    let args: Vec<&str> = std::iter::once("nb-latency").chain(QUICK).collect();
    for ranks in [2, 3] {
        let run = bench(ranks, &args);
        for size in ["8 B", "64 KiB"] {
            // Three series, two ratios and the start and wait's cost over the blocking calls (any sign).
            let figures = words(&run.stdout, size, "");
            assert_eq!(figures.len(), 3 + 2 + 1, "{}", run.stdout);
            assert!(positive(&figures[..5]) && figures[5].parse::<f64>().is_ok(), "{}", run.stdout);
        }
        assert!(run.stdout.contains("lightbeam-nb-minus-lightbeam"), "{}", run.stdout);
    }
}

#[test]
fn ibcast_and_iallreduce_report_overlap_beside_mpi() {
    for (ranks, subcommand) in [(4, "ibcast"), (2, "iallreduce"), (4, "iallreduce")] {
        let args: Vec<&str> = [subcommand, "--without-progress"].into_iter().chain(QUICK).collect();
        let run = bench(ranks, &args);
        assert!(
            run.stdout.contains(&format!("# lbm-bench {subcommand}: {ranks} ranks, tcp")),
            "{}",
            run.stdout
        );
        for size in ["8 B", "64 KiB"] {
            for series in [" lightbeam ", " lightbeam-nb ", " mpi "] {
                // The series, t_pure, t_cpu, t_total, overlap (maybe 0) and t_cpu_alone.
                let figures = words(&run.stdout, size, series);
                assert!(positive(&figures[1..4]) && positive(&figures[5..6]), "{series}: {}", run.stdout);
                let overlap: f64 = figures[4].parse().unwrap();
                assert!((0.0..=100.0).contains(&overlap), "{}", run.stdout);
            }
            assert!(words(&run.stdout, size, " lightbeam ").ends_with(&["(no", "progress)"]));
        }
        assert!(run.stderr.contains(&format!("lbm-bench {subcommand} [2/2] 64 KiB")), "{}", run.stderr);
    }
    // Without --without-progress, Lightbeam's non-blocking call and MPI's alone.
    let run = bench(2, &["ibcast", "--sizes", "8", "--iterations", "3"]);
    assert!(!run.stdout.contains("no progress") && run.stdout.contains(" lightbeam-nb "), "{}", run.stdout);
}

#[test]
fn all_at_four_ranks_writes_json_csv_and_a_plot_per_benchmark() {
    let dir = std::env::temp_dir().join(format!("lbm-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, csv, svg) = (dir.join("run.json"), dir.join("run.csv"), dir.join("run.svg"));
    let paths = [json.to_str().unwrap(), csv.to_str().unwrap(), svg.to_str().unwrap()];
    let args = [
        "all",
        "--sizes",
        "8,1M",
        "--iterations",
        "2",
        "--json",
        paths[0],
        "--csv",
        paths[1],
        "--plot",
        paths[2],
    ];
    let run = bench(4, &args);
    assert_eq!(run.stdout.matches("# lbm-bench ").count(), 17, "{}", run.stdout);
    assert!(run
        .stdout
        .contains("# lbm-bench latency: 4 ranks, tcp (ranks 0 and 1 measure, the others wait)"));

    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(document["ranks"], 4);
    let benchmarks = document["benchmarks"].as_array().unwrap();
    let names: Vec<&str> = benchmarks.iter().map(|b| b["benchmark"].as_str().unwrap()).collect();
    let expected = "latency bandwidth multi-latency halo bcast scatter gather alltoall bcast-shared \
                    allreduce reduce allgather barrier ibcast iallreduce window-bw nb-latency";
    assert_eq!(names.join(" "), expected);
    let mut records = 0;
    for benchmark in benchmarks {
        let list = benchmark["records"].as_array().unwrap();
        let series = match benchmark["benchmark"].as_str() {
            Some("bcast-shared") => 2, // lightbeam's shared broadcast and MPI_Bcast
            Some("halo" | "allreduce" | "reduce" | "allgather" | "barrier") => 3, // both meshes and MPI
            Some("ibcast" | "iallreduce") => 2, // lightbeam-nb and MPI
            Some("window-bw" | "nb-latency") => 3, // lightbeam, lightbeam-nb and MPI
            _ if list.iter().any(|r| r["series"] == "zmq-zerocopy") => 6,
            _ => 4,
        };
        let sizes = if benchmark["benchmark"] == "barrier" { 1 } else { 2 };
        assert_eq!(list.len(), sizes * series, "{benchmark}");
        assert!(list.iter().all(|r| r["median_us"].as_f64().unwrap() > 0.0 && r["iterations"] == 2));
        let overlaps = list.iter().filter(|r| r["overlap"]["percent"].as_f64().is_some()).count();
        let overlapped = matches!(benchmark["benchmark"].as_str(), Some("ibcast" | "iallreduce"));
        assert_eq!(overlaps, if overlapped { list.len() } else { 0 }, "{benchmark}");
        records += list.len();
    }
    let table = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(table.lines().count(), 1 + records);
    assert!(table.starts_with("benchmark,ranks,transport,series,size"));
    assert!(!dir.join("run-barrier.svg").exists(), "the barrier has no sizes to plot");
    for name in names.into_iter().filter(|&name| name != "barrier") {
        let plot = std::fs::read_to_string(dir.join(format!("run-{name}.svg"))).unwrap();
        assert!(plot.starts_with("<svg") && plot.contains("lightbeam") && plot.contains("mpi"), "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn all_at_an_odd_rank_count_leaves_out_multi_latency() {
    let run = bench(3, &["all", "--sizes", "8", "--iterations", "2", "--warmup", "1"]);
    assert!(run.stderr.contains("left out of all: multi-latency pairs the ranks"), "{}", run.stderr);
    assert_eq!(run.stdout.matches("# lbm-bench ").count(), 16, "{}", run.stdout);
    assert!(run.stdout.contains("# lbm-bench halo: 3 ranks") && !run.stdout.contains("multi-latency"));
}

#[test]
fn ipc_transport_and_chosen_series() {
    let run = bench(
        2,
        &[
            "bandwidth",
            "--transport",
            "ipc",
            "--series",
            "lightbeam-owned,zmq-zerocopy",
            "--sizes",
            "1M",
            "--iterations",
            "3",
        ],
    );
    assert!(
        run.stdout.contains("2 ranks, ipc") && run.stdout.contains("lightbeam-owned/zmq-zerocopy"),
        "{}",
        run.stdout
    );
    assert_eq!(row(&run.stdout, "1 MiB").len(), 3);
}

#[test]
fn bad_arguments_end_the_job_with_a_reason() {
    for (ranks, args, reason) in [
        (2, &["latency", "--sizes", "0"][..], "message sizes start at 1 byte"),
        (2, &["latency", "--sizes", "12Q"][..], "unknown unit"),
        (2, &["bcast", "--series", "nccl"][..], "unknown series \"nccl\""),
        (1, &["latency"][..], "need 2 ranks or more"),
        (1, &["window-bw"][..], "need 2 ranks or more"),
        (2, &["iallreduce", "--sizes", "8,12"][..], "every size a multiple of 8 bytes"),
        (2, &["ibcast", "--max-size", "4"][..], "no message sizes left"),
        (3, &["multi-latency"][..], "needs an even number of them"),
        (1, &["halo"][..], "halo needs 2 ranks or more"),
        (2, &["allreduce", "--sizes", "8,12"][..], "every size a multiple of 8 bytes"),
        (2, &["barrier", "--plot", "barrier.svg"][..], "nothing to plot"),
    ] {
        let run = mpirun(ranks, LIMIT, BENCH, args);
        assert!(!run.success, "{args:?} succeeded");
        assert!(run.stderr.contains(reason), "{args:?}: no {reason:?} in {}", run.stderr);
        assert!(!run.stderr.contains("killed after"), "{args:?} hung");
    }
}

#[test]
fn operations_back_to_back_are_timed_as_one_sample() {
    let args = ["multi-latency", "--sizes", "8", "--iterations", "3", "--back-to-back", "50"];
    let run = bench(2, &[&args[..], &["--series", "lightbeam,mpi"]].concat());
    // lightbeam, mpi and their ratio, each a positive figure (`row` checks).
    assert_eq!(row(&run.stdout, "8 B").len(), 3, "{}", run.stdout);
}
