#!/usr/bin/env bash
# Compares two builds of lbm-bench (before and after a change) in one session: RUNS rounds (default 5),
# each running both builds in turn, every benchmark at 4 ranks (2 for latency and bandwidth) beside MPI.
# Prints, per benchmark and size, each run's Lightbeam/MPI ratio for both builds and the change of the
# median ratio (after/before): a ratio to MPI measured in the same run moves less with the machine's
# state than a time does.
#
#   cp target/release/lbm-bench /tmp/lbm-bench-before   # on the old commit
#   cargo build --release -p lbm-bench                  # on the new one
#   scripts/bench-compare.sh /tmp/lbm-bench-before target/release/lbm-bench 5
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1
after=$2
runs=${3:-5}
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
m() { timeout 600 mpirun --oversubscribe --bind-to none -n "$@" 2>/dev/null; }
for run in $(seq "$runs"); do
    for build in before after; do
        bench=${!build}
        {
            m 4 "$bench" bcast --sizes 8,1K,64K,1M,16M --series lightbeam,mpi
            for c in scatter gather alltoall; do m 4 "$bench" "$c" --sizes 8,64K,1M,16M --series lightbeam,mpi; done
            m 4 "$bench" bcast-shared --sizes 1M,16M --series lightbeam,mpi
            m 2 "$bench" latency --sizes 8,1K,64K,1M --series lightbeam,mpi
            m 2 "$bench" bandwidth --sizes 64K,1M --series lightbeam,mpi
        } >"$out/$build-$run.txt"
        echo "bench-compare: run $run of $runs, $build" >&2
    done
done
python3 - "$out" <<'EOF'
import glob, re, statistics, sys

def ratios(path):
    found, bench = {}, None
    for line in open(path):
        name = re.match(r"# lbm-bench (\S+):", line)
        row = re.match(r"\s+([\d.]+ [KMG]?i?B)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s*$", line)
        if name:
            bench = name.group(1)
        elif row and bench:
            found[(bench, row.group(1))] = float(row.group(2))
    return found

runs = {b: [ratios(p) for p in sorted(glob.glob(f"{sys.argv[1]}/{b}-*.txt"))] for b in ("before", "after")}
print(f"{'benchmark':<13}{'size':>8}  {'lightbeam/mpi before':<36}{'after':<36}after/before")
for key in runs["before"][0]:
    b = [r[key] for r in runs["before"] if key in r]
    a = [r[key] for r in runs["after"] if key in r]
    show = lambda xs: " ".join(f"{x:.3g}" for x in xs)
    change = statistics.median(a) / statistics.median(b)
    print(f"{key[0]:<13}{key[1]:>8}  {show(b):<36}{show(a):<36}{change:.2f}")
EOF
rm -rf "$out"
