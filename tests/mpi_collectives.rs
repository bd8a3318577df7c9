//! Collectives under real `mpirun` at 1 to 5 ranks: see `mpi_tests/collectives.rs`.
#![cfg(feature = "mpi")]

#[path = "util/mpirun.rs"]
mod mpirun;

use mpirun::expect_ok;

const PROGRAM: &str = env!("CARGO_BIN_EXE_lbm-test-collectives");

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
