#!/usr/bin/env bash
# Runs the MPI tests that are most sensitive to timing N times (default 30) with a CPU-burning process on
# every core: the collective mismatch tests, the mixed-path and 16 MiB all-to-all test, the fault tests
# (ranks killed mid-collective), the typed collectives and split meshes under mpirun, and every in-process
# collective test (ranks as threads), typed and split ones and the non-blocking requests included. Prints `N passed, M failed`, then each
# failed round's output.
#
#   ./scripts/stress-tests.sh 30
#
# A round passes when every one of those tests passes in it. Each round is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-30}
source scripts/setup.sh

collective_tests=(
    ranks_that_disagree_on_a_broadcast_root_fail_at_once_naming_both_calls
    a_broadcast_against_a_scatter_fails_at_once_instead_of_delivering_its_header
    a_shared_broadcast_against_a_broadcast_fails_at_once_on_either_side
    ranks_that_gather_to_different_roots_fail_at_once
    a_skipped_collective_fails_every_rank_within_the_deadline_and_grace
    ranks_blocked_in_a_send_fail_with_the_mismatch_when_the_others_exit
    collectives_agree_when_ranks_take_different_paths
    typed_collectives_match_mpi_at_1_to_5_ranks_and_16_sizes_8_b_to_1_mib
    typed_collectives_agree_when_ranks_differ_on_single_copies
)

echo "stress: building" >&2
cargo test --release -p lbm-tests --no-run --test mpi_collectives --test mpi_faults >&2
cargo test --release -p lightbeam --no-run --test in_process --test typed_collectives --test sub_meshes \
    --test requests >&2

burners=()
stop_burners() { ((${#burners[@]})) && kill "${burners[@]}" 2>/dev/null || true; }
trap stop_burners EXIT
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    burners+=($!)
done

logs=$(mktemp -d)
passed=0
failed=()
for round in $(seq "$rounds"); do
    log="$logs/round-$round.log"
    started=$SECONDS
    if timeout --kill-after=10 900 cargo test --release -p lbm-tests --test mpi_collectives -- --exact "${collective_tests[@]}" >"$log" 2>&1 &&
        timeout --kill-after=10 600 cargo test --release -p lbm-tests --test mpi_faults >>"$log" 2>&1 &&
        timeout --kill-after=10 300 cargo test --release -p lightbeam --test in_process --test typed_collectives \
            --test sub_meshes --test requests >>"$log" 2>&1; then
        passed=$((passed + 1))
        echo "stress: round $round passed in $((SECONDS - started)) s" >&2
    else
        failed+=("$round")
        echo "stress: round $round FAILED in $((SECONDS - started)) s (log: $log)" >&2
    fi
done
stop_burners

echo "$passed passed, ${#failed[@]} failed"
for round in "${failed[@]}"; do
    echo
    echo "==== round $round failed:"
    # The failing tests' own output, and cargo's summary lines.
    grep -v -E '^test .* \.\.\. ok$|^running [0-9]+ tests?$|^\s*$' "$logs/round-$round.log" | tail -n 80
done
[ ${#failed[@]} -eq 0 ]
