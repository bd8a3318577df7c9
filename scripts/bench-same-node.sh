#!/usr/bin/env bash
# The figures of issue 14's target table, in one go: 8-byte latency and bandwidth at 64 KiB, 1 MiB and
# 16 MiB between 2 ranks, 8-byte latency at 4 ranks (ranks 0 and 1 measure), each with the default mesh
# (shared memory on one node), ZeroMQ forced and MPI's default transports in the same run; then ZeroMQ
# forced against MPI over TCP. Usage: scripts/bench-same-node.sh [RUNS] [OUTDIR] (default 3, docs/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-setup.sh
mpirun=(mpirun --oversubscribe --bind-to none)
bench=target/release/lbm-bench
for run in $(seq "$runs"); do
    file="$out/same-node-run$run.txt"
    {
        "${mpirun[@]}" -n 2 "$bench" latency --sizes 8 --iterations 10000 --series lightbeam,lightbeam-zmq,mpi
        "${mpirun[@]}" -n 2 "$bench" bandwidth --sizes 64K,1M,16M --series lightbeam,lightbeam-zmq,mpi
        "${mpirun[@]}" -n 4 "$bench" latency --sizes 8 --iterations 10000 --series lightbeam,lightbeam-zmq,mpi
        "${mpirun[@]}" --mca btl tcp,self --mca btl_tcp_if_include lo -n 2 "$bench" latency --sizes 8 \
            --series lightbeam-zmq,zmq-copy,mpi
        "${mpirun[@]}" --mca btl tcp,self --mca btl_tcp_if_include lo -n 2 "$bench" bandwidth \
            --sizes 64K,1M,16M --series lightbeam-zmq,zmq-copy,mpi
    } 2>/dev/null | tee "$file"
    echo "bench-same-node: run $run in $file" >&2
done
