#!/usr/bin/env bash
# The figures of the non-blocking calls' targets, in one go, each beside MPI's (default transports: shared
# memory on one node) in the same run: the overlap with computation of a non-blocking broadcast and
# all-reduce at 4 ranks (osu_ibcast, osu_iallreduce: 8 B, 64 KiB, 1 MiB, 16 MiB, with Lightbeam's
# no-progress row), the bandwidth of windows of 64 non-blocking sends at 2 ranks (8 B to 4 MiB), and the
# one-way latency of start+wait beside the blocking calls at 2 ranks (8 B, 64 KiB, 1 MiB). Then prints, for
# every run, the targets: overlap at 16 MiB (Lightbeam's non-blocking calls and MPI's), the 64 KiB windowed
# bandwidth lightbeam-nb/mpi, and what start+wait adds to the blocking calls at 8 B.
# Usage: scripts/bench-nonblocking.sh [RUNS] [OUTDIR] (default 3, docs/bench). Run N writes
# OUTDIR/nonblocking-runN.txt, and the first also plots the overlaps (OUTDIR/nonblocking-<benchmark>.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-setup.sh
bench() {
    local ranks=$1
    shift
    timeout 1800 mpirun --oversubscribe --bind-to none -n "$ranks" target/release/lbm-bench "$@"
}
for run in $(seq "$runs"); do
    file="$out/nonblocking-run$run.txt"
    {
        for call in ibcast iallreduce; do
            plot=()
            [ "$run" -ne 1 ] || plot=(--plot "$out/nonblocking-$call.svg")
            bench 4 "$call" --without-progress "${plot[@]}"
        done
        bench 2 window-bw
        bench 2 nb-latency --sizes 8,64K,1M --iterations 5000
    } 2>/dev/null | tee "$file"
    echo "bench-nonblocking: run $run in $file" >&2
done

# Each table names its benchmark in its title; an overlap row is "SIZE UNIT SERIES t_pure t_cpu t_total
# overlap ..."; the other tables name their columns in the line that starts with "size".
python3 - "$out" "$runs" <<'EOF'
import re, sys

out, runs = sys.argv[1], int(sys.argv[2])
columns = [
    ("ibcast 16M nb %", "ibcast", "16 MiB", "lightbeam-nb"),
    ("ibcast 16M mpi %", "ibcast", "16 MiB", "mpi"),
    ("iallred 16M nb %", "iallreduce", "16 MiB", "lightbeam-nb"),
    ("iallred 16M mpi %", "iallreduce", "16 MiB", "mpi"),
    ("wbw 64K nb/mpi", "window-bw", "64 KiB", "lightbeam-nb/mpi"),
    ("8B nb-blk (us)", "nb-latency", "8 B", "lightbeam-nb-minus-lightbeam"),
]
print("\nnon-blocking targets in each run: overlap % at 16 MiB (4 ranks; higher is better), windowed")
print("bandwidth lightbeam-nb/mpi at 64 KiB (2 ranks; above 1 is Lightbeam faster), start+wait minus")
print("blocking one-way latency at 8 B (2 ranks, us)")
print(f"{'run':>4}" + "".join(f"{c[0]:>19}" for c in columns))
for run in range(1, runs + 1):
    figures, benchmark, header = {}, None, []
    for line in open(f"{out}/nonblocking-run{run}.txt"):
        words = line.split()
        if m := re.match(r"# lbm-bench (\S+):", line):
            benchmark, header = m[1], []
        elif words[:1] == ["size"]:
            header = words
        elif benchmark and len(words) > 2 and not line.startswith("#"):
            size = f"{words[0]} {words[1]}"
            if benchmark in ("ibcast", "iallreduce") and len(words) > 6:
                figures[(benchmark, size, words[2])] = words[6]
            else:
                for name, value in zip(header[1:], words[2:]):
                    figures[(benchmark, size, name)] = value
    print(f"{run:>4}" + "".join(f"{figures.get(c[1:], '-'):>19}" for c in columns))
EOF
