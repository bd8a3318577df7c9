#!/usr/bin/env bash
# Brings up a single-node Slurm, submits the batch scripts and a job whose rank fails, checks how each ended
# and what it printed, and tears Slurm down again (also when a check fails). Run from the repository root
# after `cargo build --release --workspace --examples --bins`; scripts/test.sh does both.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=$(mktemp -d /tmp/lightbeam-slurm.XXXXXX)
outputs=$(mktemp -d /tmp/lightbeam-jobs.XXXXXX)
trap 'slurm/local-cluster.sh down "$cluster"; rm -rf "$outputs"' EXIT
eval "$(slurm/local-cluster.sh up "$cluster")"

# Waits up to $2 seconds for job $1 to end; prints its final state.
wait_for() {
    local job=$1 limit=$2 state
    for _ in $(seq $((limit * 2))); do
        state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
        case "$state" in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;;
        esac
        sleep 0.5
    done
    echo "${state:-UNKNOWN}"
}

# Submits a job, waits, and checks its end state, exit code and output.
expect_job() {
    local name=$1 want_state=$2 want_output=$3 limit=$4
    shift 4
    local job state summary
    job=$(sbatch --parsable --output="$outputs/$name.out" "$@")
    state=$(wait_for "$job" "$limit")
    summary=$(scontrol show job "$job" | grep -oE '(ExitCode|RunTime)=[^ ]*' | tr '\n' ' ')
    echo "slurm: $name: job $job ended $state ($summary)"
    if [ "$state" != "$want_state" ] || ! grep -q "$want_output" "$outputs/$name.out"; then
        echo "slurm: $name: expected $want_state and output matching '$want_output'; its output:" >&2
        cat "$outputs/$name.out" >&2
        scontrol show job "$job" >&2 || true
        exit 1
    fi
    if [ "$want_state" = COMPLETED ] && ! scontrol show job "$job" | grep -q 'ExitCode=0:0'; then
        echo "slurm: $name: completed with a non-zero exit code" >&2
        exit 1
    fi
}

LIGHTBEAM_SIZE=64MiB expect_job broadcast COMPLETED "verified: all 4 ranks hold checksum" 300 \
    slurm/broadcast.sbatch
grep -E "^(lightbeam|MPI_Bcast):" "$outputs/broadcast.out"
LBM_BENCH_OUTPUT="$outputs/bench" expect_job benchmark COMPLETED "# lbm-bench alltoall: 4 ranks" 300 \
    slurm/benchmark.sbatch all --sizes 8,64K,1M --iterations 20
cat "$outputs/benchmark.out"
for file in bench.json bench.csv bench-bcast.svg; do
    [ -s "$outputs/$file" ] || { echo "slurm: benchmark: $file was not written" >&2; exit 1; }
done
# A rank that panics: the job must end FAILED at once, not at its 10-minute limit.
expect_job failing-rank FAILED "rank 1 fails on purpose" 120 --ntasks=3 --overcommit --time=00:10:00 \
    --wrap "srun --mpi=pmix --kill-on-bad-exit=1 target/release/lbm-test-mesh panic"
echo "slurm: all batch jobs ended as expected"
