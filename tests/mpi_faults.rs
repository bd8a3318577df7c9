//! Dying ranks under real `mpirun`: rank 2 is killed with SIGKILL in the middle of a broadcast and of an
//! all-to-all, and every other rank must end with an error naming it, within a bound (see `ALL_WITHIN`).
//! The deadline (5 s) is far above what any step of these collectives takes with 4 ranks on 2 busy cores
//! (milliseconds), so a live rank is never taken for the lost one; with 1 s, the wrong rank was blamed in
//! 2 of 6 runs. These tests run one at a time, apart from the other MPI tests, so that load does not blur
//! the timings they check.
#![cfg(feature = "mpi")]

#[path = "util/mpirun.rs"]
mod mpirun;

use std::sync::Mutex;
use std::time::Duration;

const PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-collectives");
const MESH_PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-mesh");

/// Every rank's deadline: how long a receive in a collective waits before the rank waited for is lost.
const DEADLINE: Duration = Duration::from_secs(5);

/// Time for telling and hearing from the other ranks after a deadline: a few hundred milliseconds, made
/// generous for a loaded machine.
const GRACE: Duration = Duration::from_secs(2);

/// Every survivor must fail within this of the kill: one deadline plus the grace (the first survivor to
/// wait past its deadline tells the others, which fail at once). A survivor that hangs, or waits out a
/// second deadline (as when failure notices were sent with a full-timeout send, the lost rank included,
/// which made every survivor's error a deadline late), fails the test.
const ALL_WITHIN: Duration = DEADLINE.saturating_add(GRACE);

/// One fault test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Kills rank 2 with SIGKILL once every rank runs `kind` in a loop; returns what the job printed and when
/// the kill happened (milliseconds since the epoch).
fn kill_rank_2_during(kind: &str) -> (mpirun::Run, u128) {
    let mut killed_at = 0;
    let mut running = Vec::new();
    let run = mpirun::mpirun_raw(
        &["--enable-recovery", "-n", "4", PROGRAM, "endless", kind, &DEADLINE.as_millis().to_string()],
        Duration::from_secs(120),
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

/// Asserts every surviving rank reported an error naming rank 2 within [`ALL_WITHIN`] of the kill.
fn assert_survivors_name_rank_2(kind: &str) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (run, killed_at) = kill_rank_2_during(kind);
    // mpirun --enable-recovery (which lets every rank show its own error instead of mpirun ending the job
    // at the first death) reports 0 even when ranks abort: the job ending, not hanging, is what counts.
    assert!(!run.stderr.contains("killed after"), "the job hung:\n{}", run.stderr);
    let reports: Vec<(Duration, &str)> =
        [0, 1, 3].into_iter().map(|rank| survivor_report(&run.stderr, rank, killed_at)).collect();
    for (after, report) in &reports {
        println!("{kind}: failed {after:?} after rank 2 was killed: {report}");
        assert!(report.contains("rank 2"), "did not name rank 2: {report}");
        assert!(*after <= ALL_WITHIN, "failed {after:?} after the kill, not within {ALL_WITHIN:?}: {report}");
    }
    assert_killed_ranks_segment_reclaimed(&run.stdout);
}

/// The shared-memory segment of the killed rank (when it had one) outlives it, and the next mesh
/// bootstrapped on the node removes it.
fn assert_killed_ranks_segment_reclaimed(stdout: &str) {
    let line = stdout.lines().find(|l| l.starts_with("rank 2: running")).expect("rank 2 ran");
    let Some(name) = line.split_whitespace().find_map(|word| word.strip_prefix("shm://")) else {
        return; // ZeroMQ forced: no segment
    };
    let file = std::path::Path::new("/dev/shm").join(format!("lightbeam-{name}"));
    assert!(file.exists(), "the killed rank's segment {} is already gone", file.display());
    let next = mpirun::mpirun(1, Duration::from_secs(60), MESH_PROGRAM, &["pairs"]);
    assert!(next.success, "{}\n{}", next.stdout, next.stderr);
    assert!(!file.exists(), "the next mesh left the dead rank's segment {}", file.display());
}

/// The error line of surviving rank `rank` and how long after the kill it came.
fn survivor_report(stderr: &str, rank: usize, killed_at: u128) -> (Duration, &str) {
    // Lines of several processes may interleave: find the report, then read the time after "at".
    let marker = format!("rank {rank}: lightbeam error at ");
    let report = stderr
        .lines()
        .find_map(|l| l.find(&marker).map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("rank {rank} reported no error:\n{stderr}"));
    let at: u128 = report[marker.len()..].split_whitespace().next().unwrap().parse().unwrap();
    (Duration::from_millis(u64::try_from(at.saturating_sub(killed_at)).unwrap()), report)
}

#[test]
fn a_rank_killed_mid_broadcast_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("broadcast");
    assert_survivors_name_rank_2("small-broadcast"); // 1000 B: the root fans out
}

#[test]
fn a_rank_killed_mid_shared_broadcast_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("shared-broadcast");
}

#[test]
fn a_rank_killed_mid_scatter_or_gather_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("scatter");
    assert_survivors_name_rank_2("gather");
}

#[test]
fn a_rank_killed_mid_all_to_all_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("all-to-all");
}
