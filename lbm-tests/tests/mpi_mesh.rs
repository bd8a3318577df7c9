//! The mesh under real `mpirun` at 1 to 4 ranks and at 16 (oversubscribed): see `mpi_tests/mesh.rs`.
#![cfg(feature = "mpi")]

use std::time::{Duration, Instant};

use lbm_tests::mpirun::{self, expect_failure, expect_ok};

const PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-mesh");

#[test]
fn every_pair_exchanges_checksummed_data_on_separate_tags_at_1_to_4_ranks() {
    for ranks in 1..=4 {
        expect_ok(ranks, PROGRAM, "pairs", &[]);
    }
}

#[test]
fn sixteen_ranks_form_a_mesh_and_exchange_all_pairs() {
    expect_ok(16, PROGRAM, "pairs", &[]);
}

/// More ranks on one node than a shared-memory server's default 32 channels: each rank's server is sized
/// for the ranks of its node.
#[test]
fn forty_ranks_on_one_node_exchange_all_pairs() {
    expect_ok(40, PROGRAM, "pairs", &[]);
}

#[test]
fn a_taken_port_fails_bootstrap_on_every_rank_naming_rank_and_port() {
    let run = expect_ok(3, PROGRAM, "port-taken", &[]);
    assert!(run.stdout.contains("address already in use"), "{}", run.stdout);
}

#[test]
fn a_peer_that_exits_without_sending_gives_a_timeout_naming_it() {
    let run = expect_ok(2, PROGRAM, "peer-exits", &[]);
    assert!(run.stdout.contains("waiting for rank 1"), "{}", run.stdout);
}

#[test]
fn messages_from_outside_the_mesh_are_dropped_and_counted() {
    let run = expect_ok(2, PROGRAM, "stray", &[]);
    assert!(run.stderr.contains("dropped a message from outside the mesh"), "{}", run.stderr);
}

#[test]
fn dropping_the_mesh_right_after_sending_loses_nothing() {
    expect_ok(4, PROGRAM, "drop-after-send", &[]);
}

/// The panic scenario's ranks wait 120 s in a receive; the whole job must end within this of the panic.
const AFTER_PANIC: Duration = Duration::from_secs(15);

#[test]
fn a_panic_on_a_thread_of_one_rank_aborts_the_whole_job_at_once() {
    // Killed at 60 s, half the ranks' 120 s deadline: without the hook the job hangs and is killed.
    let mut panicked = None;
    let run = mpirun::mpirun_raw(&["-n", "3", PROGRAM, "panic"], Duration::from_secs(60), |line| {
        if line.contains("a thread panics now") {
            panicked.get_or_insert_with(Instant::now);
        }
    });
    let ended = Instant::now();
    assert!(!run.stderr.contains("killed after"), "the job outlived the panic:\n{}", run.stderr);
    assert!(!run.success, "the job succeeded");
    assert!(run.stderr.contains("rank 1 fails on purpose"), "no panic message:\n{}", run.stderr);
    let panicked = panicked.unwrap_or_else(|| panic!("rank 1 never panicked:\n{}", run.stdout));
    let after = ended - panicked;
    println!("the job ended {after:?} after the panic");
    assert!(after < AFTER_PANIC, "the job ended {after:?} after the panic, not within {AFTER_PANIC:?}");
}

#[test]
fn without_the_hook_a_panic_on_a_thread_leaves_every_rank_running() {
    // The control of the test above: with `abort_on_panic: false`, every rank still runs 5 s later.
    let run = expect_ok(3, PROGRAM, "panic-unhooked", &[]);
    assert!(run.stderr.contains("rank 1 fails on purpose"), "no panic message:\n{}", run.stderr);
    assert_eq!(run.stdout.matches("after the panic").count(), 3, "{}", run.stdout);
}

#[test]
fn a_rank_that_never_joins_bootstrap_ends_the_job_at_the_deadline() {
    expect_failure(3, Duration::from_secs(50), PROGRAM, "missing-rank", "mesh bootstrap timed out");
}

#[test]
fn ranks_on_distinct_loopback_addresses_form_a_mesh() {
    // Stand-ins for separate nodes: each rank binds and announces its own address.
    let mut args = Vec::new();
    let hosts: Vec<String> = (2..=5).map(|i| format!("LIGHTBEAM_HOST=127.0.0.{i}")).collect();
    for (i, host) in hosts.iter().enumerate() {
        if i > 0 {
            args.push(":");
        }
        args.extend(["-n", "1", "-x", host.as_str(), PROGRAM, "pairs"]);
    }
    let run = mpirun::mpirun_raw(&args, Duration::from_secs(120), |_| {});
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.matches(": pairs ok").count(), 4, "{}", run.stdout);
    for i in 2..=5 {
        assert!(
            run.stdout.contains(&format!("at tcp://127.0.0.{i}:")),
            "no rank on 127.0.0.{i}: {}",
            run.stdout
        );
    }
}

#[test]
fn two_jobs_on_one_node_never_exchange_data() {
    let file = std::env::temp_dir().join(format!("lbm-two-jobs-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let path = file.display().to_string();
    let victim_path = path.clone();
    let victim = std::thread::spawn(move || expect_ok(2, PROGRAM, "victim", &[&victim_path]));
    let intruder = expect_ok(1, PROGRAM, "intruder", &[&path]);
    let victim = victim.join().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(victim.stdout.contains("rejected"), "{}", victim.stdout);
    assert!(intruder.stdout.contains("job B's token"), "{}", intruder.stdout);
}
