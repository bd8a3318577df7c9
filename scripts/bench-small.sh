#!/usr/bin/env bash
# The figures of issue 22's target table (small messages at MPI's speed), in one go, each beside MPI's
# default transports (shared memory on one node) in the same run: 8-byte one-way latency at 2 ranks,
# 8-byte multi-latency (every rank in pairs at once) and halo exchange at 4 ranks, the halo at 2 ranks,
# bandwidth at 64 KiB at 2 ranks, and broadcasts of 8 B and 64 KiB at 4 ranks. The 8-byte figures time
# lightbeam and mpi alone (a ZeroMQ iteration between two shared-memory ones slows the next, see
# docs/BENCHMARKS.md); the 64 KiB ones add lightbeam-zmq. Then prints each figure's lightbeam/mpi ratio
# in every run, so that the spread between runs shows.
# Usage: scripts/bench-small.sh [RUNS] [OUTDIR] (default 3, docs/bench). Run N writes OUTDIR/small-runN.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-setup.sh
bench() {
    local ranks=$1
    shift
    mpirun --oversubscribe --bind-to none -n "$ranks" target/release/lbm-bench "$@"
}
small=(--sizes 8 --series lightbeam,mpi)
large=(--sizes 64K --series lightbeam,lightbeam-zmq,mpi)
for run in $(seq "$runs"); do
    file="$out/small-run$run.txt"
    {
        bench 2 latency "${small[@]}" --iterations 10000
        bench 4 multi-latency "${small[@]}"
        bench 4 halo "${small[@]}"
        bench 2 halo "${small[@]}"
        bench 2 bandwidth "${large[@]}"
        bench 4 bcast "${small[@]}"
        bench 4 bcast "${large[@]}"
    } 2>/dev/null | tee "$file"
    echo "bench-small: run $run in $file" >&2
done
ratios small
