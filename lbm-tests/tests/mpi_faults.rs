//! Dying ranks under real `mpirun`: a rank (2, a reader, or 0, a root) is killed with SIGKILL in the
//! middle of a collective, and every other rank must end with `Error::PeerLost` naming it, within a bound
//! (see `ALL_WITHIN`), and remove the files it left in `/dev/shm`.
//! The deadline (5 s) is far above what any step of these collectives takes with 4 ranks on 2 busy cores
//! (milliseconds), so a live rank is never taken for the lost one; with 1 s, the wrong rank was blamed in
//! 2 of 6 runs. These tests run one at a time, apart from the other MPI tests, so that load does not blur
//! the timings they check.
#![cfg(feature = "mpi")]

use std::sync::Mutex;
use std::time::Duration;

use lbm_tests::mpirun;

const PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-collectives");

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

/// `Error::code` of `Error::PeerLost`.
const PEER_LOST: i32 = 20;

/// One fault test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Kills rank `victim` with SIGKILL once every rank runs `kind` in a loop; returns what the job printed
/// and when the kill happened (milliseconds since the epoch).
fn kill_during(kind: &str, victim: usize) -> (mpirun::Run, u128) {
    let mut killed_at = 0;
    let mut running = Vec::new();
    let marker = format!("rank {victim}:");
    let run = mpirun::mpirun_raw(
        &["--enable-recovery", "-n", "4", PROGRAM, "endless", kind, &DEADLINE.as_millis().to_string()],
        Duration::from_secs(240),
        |line| {
            if line.contains(": running") {
                running.push(line.to_owned());
            }
            if running.len() == 4 && killed_at == 0 {
                let line = running.iter().find(|l| l.starts_with(&marker)).expect("the victim runs");
                let pid = line.rsplit(' ').next().unwrap();
                killed_at =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
                assert!(std::process::Command::new("kill").args(["-9", pid]).status().unwrap().success());
            }
        },
    );
    assert!(killed_at > 0, "the job never ran on every rank:\n{}\n{}", run.stdout, run.stderr);
    (run, killed_at)
}

/// Asserts every surviving rank reported the loss of rank 2 (`Error::PeerLost` naming it) within
/// [`ALL_WITHIN`] of the kill.
fn assert_survivors_name_rank_2(kind: &str) {
    assert_survivors_name_the_lost_rank(kind, 2);
}

/// Asserts every rank but `victim`, killed while running `kind`, reported the loss of `victim`
/// (`Error::PeerLost` naming it, never a bare timeout) within [`ALL_WITHIN`] of the kill, and that the
/// survivors removed its shared-memory files.
fn assert_survivors_name_the_lost_rank(kind: &str, victim: usize) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (run, killed_at) = kill_during(kind, victim);
    // mpirun --enable-recovery (which lets every rank show its own error instead of mpirun ending the job
    // at the first death) reports 0 even when ranks abort: the job ending, not hanging, is what counts.
    assert!(!run.stderr.contains("killed after"), "the job hung:\n{}", run.stderr);
    let survivors = (0..4).filter(|&rank| rank != victim);
    let reports: Vec<(Duration, &str)> =
        survivors.map(|rank| survivor_report(&run.stderr, rank, killed_at)).collect();
    let lost = format!("rank {victim} (");
    for (after, report) in &reports {
        println!("{kind}, rank {victim} killed: failed {after:?} after the kill: {report}");
        assert!(report.contains(&format!("(code {PEER_LOST})")), "not PeerLost: {report}");
        assert!(report.contains(&lost) && report.contains("is lost"), "did not name rank {victim}: {report}");
        assert!(*after <= ALL_WITHIN, "failed {after:?} after the kill, not within {ALL_WITHIN:?}: {report}");
    }
    assert_killed_ranks_files_removed(&run.stdout, victim);
}

/// No shared-memory file of the killed rank (its server's segment, `mesh-<job>-<rank>-<token>`, and its
/// offer word's, `mesh-<job>-<rank>-word-<token>`) outlives the job: the survivors removed them.
fn assert_killed_ranks_files_removed(stdout: &str, victim: usize) {
    let marker = format!("rank {victim}: running");
    let line = stdout.lines().find(|l| l.starts_with(&marker)).expect("the victim ran");
    let Some(name) = line.split_whitespace().find_map(|word| word.strip_prefix("shm://")) else {
        return; // ZeroMQ forced: no segment
    };
    let prefix = format!("lightbeam-{}-", name.rsplit_once('-').expect("a token after the rank").0);
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|file| file.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "the killed rank's files outlived the job: {left:?}");
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
fn a_reader_or_the_root_killed_mid_16_mib_broadcast_is_named_lost_by_every_other_rank() {
    assert_survivors_name_the_lost_rank("large-broadcast", 2); // a reader (reads from the root)
    assert_survivors_name_the_lost_rank("large-broadcast", 0); // the root
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

#[test]
fn a_rank_killed_with_requests_in_flight_fails_every_other_rank_naming_it() {
    assert_survivors_name_rank_2("requests");
}
