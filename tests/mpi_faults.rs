//! Dying ranks under real `mpirun`: rank 2 is killed with SIGKILL in the middle of a broadcast and of an
//! all-to-all, and every other rank must end with an error naming it, within its deadline. These tests run
//! one at a time, apart from the other MPI tests, so that load does not blur the timings they report.
#![cfg(feature = "mpi")]

#[path = "util/mpirun.rs"]
mod mpirun;

use std::sync::Mutex;

const PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-collectives");

/// One fault test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Kills rank 2 with SIGKILL once every rank runs `kind` in a loop; returns what the job printed and when
/// the kill happened (milliseconds since the epoch).
fn kill_rank_2_during(kind: &str) -> (mpirun::Run, u128) {
    let mut killed_at = 0;
    let mut running = Vec::new();
    let run = mpirun::mpirun_raw(
        &["--enable-recovery", "-n", "4", PROGRAM, "endless", kind, "1000"],
        std::time::Duration::from_secs(120),
        |line| {
            if line.contains(": running") {
                running.push(line.to_owned());
            }
            if running.len() == 4 && killed_at == 0 {
                let rank_2 = running.iter().find(|l| l.starts_with("rank 2:")).expect("rank 2 runs");
                let pid = rank_2.rsplit(' ').next().unwrap();
                killed_at =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
                assert!(std::process::Command::new("kill").args(["-9", pid]).status().unwrap().success());
            }
        },
    );
    assert!(killed_at > 0, "the job never ran on every rank:\n{}\n{}", run.stdout, run.stderr);
    (run, killed_at)
}

/// Asserts every surviving rank reported an error naming rank 2, and prints how long each took.
fn assert_survivors_name_rank_2(kind: &str) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (run, killed_at) = kill_rank_2_during(kind);
    // mpirun --enable-recovery (which lets every rank show its own error instead of mpirun ending the job
    // at the first death) reports 0 even when ranks abort: the job ending, not hanging, is what counts.
    assert!(!run.stderr.contains("killed after"), "the job hung:\n{}", run.stderr);
    for rank in [0, 1, 3] {
        // Lines of several processes may interleave: find the report, then read the time after "at".
        let marker = format!("rank {rank}: lightbeam error at ");
        let report = run
            .stderr
            .lines()
            .find_map(|l| l.find(&marker).map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("rank {rank} reported no error:\n{}", run.stderr));
        assert!(report.contains("rank 2"), "rank {rank} did not name rank 2: {report}");
        let at: u128 = report[marker.len()..].split_whitespace().next().unwrap().parse().unwrap();
        println!("{kind}: rank {rank} failed {} ms after rank 2 was killed: {report}", at - killed_at);
    }
}

#[test]
fn a_rank_killed_mid_broadcast_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("broadcast");
}

#[test]
fn a_rank_killed_mid_all_to_all_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("all-to-all");
}
