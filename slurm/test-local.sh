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

# Checks that the last job submitted ran (from its start to its end) for at most $1 seconds.
expect_run_time_at_most() {
    local limit=$1 run_time seconds
    run_time=$(scontrol show job "$last_job" | grep -oE 'RunTime=[0-9:-]+' | cut -d= -f2)
    # RunTime is HH:MM:SS, with a day count and a dash in front from one day on.
    seconds=$(echo "$run_time" | awk -F: '/-/ { print 86400; next } { print ($1 * 60 + $2) * 60 + $3 }')
    if [ "$seconds" -gt "$limit" ]; then
        echo "slurm: job $last_job ran $run_time, more than $limit s" >&2
        exit 1
    fi
}

# Submits a job, waits, and checks its end state, exit code and output.
expect_job() {
    local name=$1 want_state=$2 want_output=$3 limit=$4
    shift 4
    local job state summary
    job=$(sbatch --parsable --output="$outputs/$name.out" "$@")
    last_job=$job
    state=$(wait_for "$job" "$limit")
    summary=$(scontrol show job "$job" | grep -oE '(ExitCode|RunTime)=[^ ]*' | tr '\n' ' ')
    echo "slurm: $name: job $job ended $state ($summary)"
    if [ "$state" != "$want_state" ] || ! grep -q "$want_output" "$outputs/$name.out"; then
        echo "slurm: $name: expected $want_state and output matching '$want_output'; its output:" >&2
        cat "$outputs/$name.out" >&2
        scontrol show job "$job" >&2 || true
        scancel "$job" 2>/dev/null || true
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
# A thread of rank 1 panics while every rank waits 120 s in a receive. Rank 1's process lives on, so
# --kill-on-bad-exit alone would not end the job before that deadline: the mesh's panic hook must, and the
# job must end FAILED within 30 s of starting.
panic_job=(--ntasks=3 --overcommit --time=00:10:00)
panic_step="srun --mpi=pmix --kill-on-bad-exit=1 target/release/lbm-test-mesh"
expect_job failing-rank FAILED "rank 1 fails on purpose" 60 "${panic_job[@]}" --wrap "$panic_step panic"
expect_run_time_at_most 30
# The control: with abort_on_panic off, every rank still runs 5 s after the panic, and the job completes.
expect_job unhooked-panic COMPLETED "rank 2: still running" 60 "${panic_job[@]}" \
    --wrap "$panic_step panic-unhooked"
echo "slurm: all batch jobs ended as expected"
