#!/usr/bin/env bash
# The figures of issue 15's target table, in one go: at 4 ranks on one node, Lightbeam's collectives
# beside MPI's over its default transports (shared memory) in the same run: broadcast from 8 B to 64 MiB,
# scatter, gather and all-to-all at 1 MiB and 16 MiB, and the shared broadcast up to 256 MiB.
# Usage: scripts/bench-collectives.sh [RUNS] [OUTDIR] (default 3, docs/bench). Each run writes
# OUTDIR/collectives-runN.txt, and the first also plots (OUTDIR/collectives-<benchmark>.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-setup.sh
bench() {
    local plot=()
    [ "$run" -ne 1 ] || plot=(--plot "$out/collectives-$1.svg")
    mpirun --oversubscribe --bind-to none -n 4 target/release/lbm-bench "$@" --series lightbeam,mpi "${plot[@]}"
}
for run in $(seq "$runs"); do
    file="$out/collectives-run$run.txt"
    {
        bench bcast --sizes 8,64K,1M,16M,64M
        for collective in scatter gather alltoall; do bench "$collective" --sizes 1M,16M; done
        bench bcast-shared --sizes 1M,16M,256M
    } 2>/dev/null | tee "$file"
    echo "bench-collectives: run $run in $file" >&2
done
