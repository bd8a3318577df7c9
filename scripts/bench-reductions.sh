#!/usr/bin/env bash
# The typed collectives beside MPI's own calls, in one go: at 4 ranks on one node, Lightbeam's all-reduce,
# reduce (to rank 0) and all-gather of f64 summed, at 8 B, 64 KiB, 1 MiB and 16 MiB per rank, and its
# barrier, each beside MPI's over its default transports (shared memory) in the same run. Then prints each
# figure's lightbeam/mpi median ratio in every run, so that the spread between runs shows.
# Usage: scripts/bench-reductions.sh [RUNS] [OUTDIR] (default 3, docs/bench). Run N writes
# OUTDIR/reductions-runN.txt, and the first also plots (OUTDIR/reductions-<benchmark>.svg; not the barrier,
# which has no sizes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-setup.sh
bench() {
    local plot=()
    [ "$run" -ne 1 ] || [ "$1" = barrier ] || plot=(--plot "$out/reductions-$1.svg")
    mpirun --oversubscribe --bind-to none -n 4 target/release/lbm-bench "$@" --series lightbeam,mpi "${plot[@]}"
}
for run in $(seq "$runs"); do
    file="$out/reductions-run$run.txt"
    {
        for collective in allreduce reduce allgather; do bench "$collective" --sizes 8,64K,1M,16M; done
        bench barrier
    } 2>/dev/null | tee "$file"
    echo "bench-reductions: run $run in $file" >&2
done
ratios reductions
