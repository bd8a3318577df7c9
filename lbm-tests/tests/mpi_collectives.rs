//! Collectives under real `mpirun` at 1 to 5 ranks (the typed ones at 16 too): see
//! `mpi_tests/collectives.rs` and `mpi_tests/typed.rs`.
#![cfg(feature = "mpi")]

use lbm_tests::mpirun::{self, expect_ok};

const PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-collectives");
const TYPED: &str = env!("CARGO_BIN_EXE_lbm-test-typed");

#[test]
fn each_collective_matches_mpi_at_1_to_5_ranks_roots_first_and_last_sizes_0_to_64_mib() {
    for ranks in 1..=5 {
        let run = expect_ok(ranks, PROGRAM, "each", &[]);
        assert!(
            run.stdout.contains(&format!("agrees with MPI at 67108864 B on {ranks} ranks")),
            "{}",
            run.stdout
        );
    }
}

/// Every typed collective (barrier, all-reduce into and in place by each operation and by a user's
/// function, reduce to roots 0 and n-1, reduce-scatter, all-gather and its varcount form, broadcast and
/// scatter into typed buffers) at 8 B, 24 KiB and 1 MiB per rank against MPI: integers exactly, f64 sums
/// bit for bit the documented fixed-order fold, the same bits on every rank, within rounding of MPI's
/// sum; then bad input. At 1 to 5 ranks and at 16 (oversubscribed).
#[test]
fn typed_collectives_match_mpi_at_1_to_5_ranks_and_16_sizes_8_b_to_1_mib() {
    for ranks in [1, 2, 3, 4, 5, 16] {
        let run = expect_ok(ranks, TYPED, "typed", &[]);
        assert!(
            run.stdout.contains(&format!("agrees with MPI at 1048584 B on {ranks} ranks")),
            "{}",
            run.stdout
        );
    }
}

/// The typed collectives with single copies off on every rank (as where the kernel refuses them): the
/// reducing calls and the all-gather take the queues at every size, and still agree with MPI.
#[test]
fn typed_collectives_match_mpi_without_single_copies() {
    let off = "LIGHTBEAM_SINGLE_COPY=0";
    let runs: [(usize, &[&str]); 2] =
        [(2, &["-n", "2", "-x", off, TYPED, "typed"]), (4, &["-n", "4", "-x", off, TYPED, "typed"])];
    expect_every_rank_ok(&runs, "typed");
}

/// Ranks that differ on single copies (rank 0 on, the others off, and the reverse), as the byte
/// collectives' test above runs them: every rank must choose the same path for the typed collectives
/// (the bootstrap tells each rank's setting), or they would fail at 16 KiB with `BadPeerMessage`.
#[test]
fn typed_collectives_agree_when_ranks_differ_on_single_copies() {
    let off = "LIGHTBEAM_SINGLE_COPY=0";
    let runs: [(usize, &[&str]); 2] = [
        (4, &["-n", "1", TYPED, "typed", ":", "-n", "3", "-x", off, TYPED, "typed"]),
        (3, &["-n", "1", "-x", off, TYPED, "typed", ":", "-n", "2", TYPED, "typed"]),
    ];
    expect_every_rank_ok(&runs, "typed");
}

/// Scatter and gather from every root with chunks of different sizes (some 0 bytes), counting the
/// messages each rank takes in (on one node: one per rank, directly; across nodes the multi-host
/// harness runs the same scenario by node), and receive buffers too small on some ranks.
#[test]
fn scatter_and_gather_from_every_root_count_their_messages() {
    for ranks in [1, 3, 4] {
        let run = expect_ok(ranks, PROGRAM, "by-node", &[]);
        assert!(
            run.stdout.contains(&format!("directly from every root on {ranks} ranks, 1 nodes")),
            "{}",
            run.stdout
        );
    }
}

/// With single copies off (as where the kernel refuses them): every byte goes through the same-node
/// transport's rings (all ranks off); a broadcast's readers ask the root for the bytes (rank 0 on, the
/// others off, so rank 0's broadcasts offer reads its readers refuse). Every collective still agrees
/// with MPI.
#[test]
fn every_collective_agrees_with_mpi_without_single_copies() {
    let off = "LIGHTBEAM_SINGLE_COPY=0";
    let runs: [(usize, &[&str]); 2] = [
        (2, &["-n", "2", "-x", off, PROGRAM, "each"]),
        (4, &["-n", "1", PROGRAM, "each", ":", "-n", "3", "-x", off, PROGRAM, "each"]),
    ];
    expect_every_rank_ok(&runs, "each");
}

/// Ranks that take different paths still agree: every rank offering reads, no rank offering (as where the
/// kernel refuses single copies), rank 0 offering while the others refuse (single copies off), and the
/// reverse; at 3 and 4 ranks.
#[test]
fn collectives_agree_when_ranks_take_different_paths() {
    let off = "LIGHTBEAM_SINGLE_COPY=0";
    let runs: [(usize, &[&str]); 5] = [
        (3, &["-n", "3", PROGRAM, "mixed-paths"]),
        (4, &["-n", "4", PROGRAM, "mixed-paths"]),
        (4, &["-n", "4", "-x", off, PROGRAM, "mixed-paths"]),
        (4, &["-n", "1", PROGRAM, "mixed-paths", ":", "-n", "3", "-x", off, PROGRAM, "mixed-paths"]),
        (3, &["-n", "1", "-x", off, PROGRAM, "mixed-paths", ":", "-n", "2", PROGRAM, "mixed-paths"]),
    ];
    expect_every_rank_ok(&runs, "mixed-paths");
}

/// Runs each of `runs` (its rank count, and mpirun's arguments, an MPMD line of one program) and
/// asserts that the job succeeded and every rank printed `<scenario> ok`.
#[track_caller]
fn expect_every_rank_ok(runs: &[(usize, &[&str])], scenario: &str) {
    for &(ranks, args) in runs {
        let run = mpirun::mpirun_raw(args, std::time::Duration::from_secs(300), |_| {});
        let oks = run.stdout.lines().filter(|l| l.ends_with(&format!(": {scenario} ok"))).count();
        assert!(run.success && oks == ranks, "{args:?}: {oks} ok\n{}\n{}", run.stdout, run.stderr);
    }
}

#[test]
fn a_hundred_back_to_back_collectives_never_mix_data() {
    for ranks in [2, 3, 4, 5] {
        expect_ok(ranks, PROGRAM, "mixed", &[]);
    }
}

#[test]
fn bad_input_fails_with_a_named_problem_and_no_rank_hangs() {
    for ranks in [1, 2, 4, 5] {
        expect_ok(ranks, PROGRAM, "bad-input", &[]);
    }
}

/// How each rank ended a `mismatch` run: (ending code, milliseconds), by rank. Codes: 0 right data,
/// 1 `Error::CollectiveMismatch`, 2 a deadline error (`PeerLost`, `Timeout`, `PeerFailed`), 3 another
/// error, 4 success with data of another call.
fn mismatch_endings(ranks: usize, kind: &str, deadline_ms: u64) -> Vec<(u64, u64)> {
    mismatch_run(ranks, kind, deadline_ms, &[])
}

/// As [`mismatch_endings`], with the program's extra arguments (`exit`).
fn mismatch_run(ranks: usize, kind: &str, deadline_ms: u64, extra: &[&str]) -> Vec<(u64, u64)> {
    let deadline = deadline_ms.to_string();
    let args: Vec<&str> = [kind, deadline.as_str()].into_iter().chain(extra.iter().copied()).collect();
    let run = expect_ok(ranks, PROGRAM, "mismatch", &args);
    let endings: Vec<(u64, u64)> = (0..ranks)
        .map(|rank| {
            let marker = format!("rank {rank} ended ");
            let line = run.stdout.lines().find_map(|l| l.strip_prefix(&marker));
            let words: Vec<&str> =
                line.unwrap_or_else(|| panic!("no ending of rank {rank}")).split(' ').collect();
            (words[0].parse().unwrap(), words[2].parse().unwrap())
        })
        .collect();
    println!("{kind} at {ranks} ranks: {endings:?}\n{}", run.stdout);
    endings
}

/// A mismatch every rank can see: no rank returns wrong data (the program itself fails on that), at
/// least one names the mismatch, and every rank that fails names it, within 10 s of a 30 s deadline.
#[track_caller]
fn assert_mismatch_caught(kind: &str) {
    for ranks in [3, 4] {
        let endings = mismatch_endings(ranks, kind, 30_000);
        assert!(endings.iter().any(|&(code, _)| code == 1), "{kind}: nobody named the mismatch: {endings:?}");
        for (rank, &(code, ms)) in endings.iter().enumerate() {
            assert!(code <= 1, "{kind} at {ranks} ranks: rank {rank} ended {code}: {endings:?}");
            assert!(code == 0 || ms < 10_000, "{kind}: rank {rank} failed after {ms} ms, not at once");
        }
    }
}

#[test]
fn ranks_that_disagree_on_a_broadcast_root_fail_at_once_naming_both_calls() {
    assert_mismatch_caught("broadcast-roots");
}

#[test]
fn a_broadcast_against_a_scatter_fails_at_once_instead_of_delivering_its_header() {
    assert_mismatch_caught("broadcast-scatter");
}

#[test]
fn a_shared_broadcast_against_a_broadcast_fails_at_once_on_either_side() {
    assert_mismatch_caught("shared-broadcast");
    assert_mismatch_caught("broadcast-shared");
}

#[test]
fn ranks_that_gather_to_different_roots_fail_at_once() {
    assert_mismatch_caught("gather-roots");
    assert_mismatch_caught("gather-read-roots");
}

/// A skipped gather followed by a broadcast cannot be told from a slow rank: every rank fails by its
/// deadline (4 s) plus the grace the module docs state (at most 0.2 s + 0.25 s per other rank), well
/// inside 4 s + 3 s here.
#[test]
fn a_skipped_collective_fails_every_rank_within_the_deadline_and_grace() {
    for ranks in [3, 4] {
        let endings = mismatch_endings(ranks, "skip", 4000);
        for (rank, &(code, ms)) in endings.iter().enumerate() {
            assert!(code == 1 || code == 2, "skip at {ranks} ranks: rank {rank} ended {code}: {endings:?}");
            assert!(ms < 7000, "skip at {ranks} ranks: rank {rank} failed after {ms} ms: {endings:?}");
        }
    }
}

/// Mismatches where some ranks only send (a scatter root, a gather non-root, a relay of a pipelined
/// broadcast, a step of an all-to-all) and the others exit right after they fail: a rank blocked in a
/// send looks for notices while it waits, so every rank fails with the mismatch itself, and within the
/// deadline (5 s) plus the grace the module docs state (0.2 s + 0.25 s per other rank: 5.95 s at 4
/// ranks). Asserted with a margin for a loaded machine, far below two deadlines (before, such ranks
/// failed after 10.5 to 20.7 s, with a send timeout or a live rank called lost).
#[test]
fn ranks_blocked_in_a_send_fail_with_the_mismatch_when_the_others_exit() {
    const DEADLINE_MS: u64 = 5000;
    for kind in ["scatter-gather", "pipelined-roots", "alltoall-gather", "alltoall-read-gather"] {
        for ranks in [3, 4] {
            let endings = mismatch_run(ranks, kind, DEADLINE_MS, &["exit"]);
            let bound = DEADLINE_MS + 200 + 250 * (ranks as u64 - 1) + 1500;
            for (rank, &(code, ms)) in endings.iter().enumerate() {
                assert!(code == 1, "{kind} at {ranks} ranks: rank {rank} ended {code}: {endings:?}");
                assert!(ms < bound, "{kind} at {ranks} ranks: rank {rank} failed after {ms} ms: {endings:?}");
            }
        }
    }
}
