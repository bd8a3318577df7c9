#!/usr/bin/env bash
# Every test: formatting, lints, docs, a build without MPI, unit, integration, doc and MPI tests (real
# mpirun, including a short run of every lbm-bench subcommand), then every example, the MPI ones at 1 to 4 ranks, a short fuzz run of the decoders, the Slurm
# batch scripts on a local Slurm, and the multi-host tests across network-namespace hosts. Installs what is missing first. Each step has
# a time limit, so nothing hangs forever.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Slurm tests bring up a single-node Slurm from Debian's packages.
# The multi-host tests need iproute2 (network namespaces) and root.
export LIGHTBEAM_EXTRA_PACKAGES="slurmctld slurmd slurm-client munge python3 iproute2 procps ${LIGHTBEAM_EXTRA_PACKAGES:-}"
source scripts/setup.sh

step() {
    local limit=$1
    shift
    echo "==> $*" >&2
    timeout --kill-after=10 "$limit" "$@"
}

export RUSTDOCFLAGS="-D warnings"
step 60 cargo fmt --all -- --check
step 1200 cargo clippy --workspace --all-targets -- -D warnings
step 600 cargo doc --workspace --no-deps
step 900 cargo build --no-default-features
step 2400 cargo test --release --workspace
# Every mesh, collective and fault test again with ZeroMQ forced between ranks of one node (the default
# run above uses the same-node shared-memory transport).
step 1500 env LIGHTBEAM_SAME_NODE=zeromq cargo test --release -p lbm-tests --test mpi_mesh --test mpi_collectives --test mpi_faults
step 900 cargo build --release --workspace --examples --bins
for example in basic custom_metadata shared_memory shm_vs_zmq; do
    step 120 "target/release/examples/$example"
done
for ranks in 1 2 3 4; do
    for example in distributed scatter_gather all_to_all stencil stencil_overlap sum_pieces; do
        step 120 mpirun -n "$ranks" --oversubscribe --bind-to none "target/release/examples/$example"
    done
    step 300 mpirun -n "$ranks" --oversubscribe --bind-to none target/release/examples/broadcast --size 16MiB
done
step 300 ./scripts/demo.sh
step 1200 fuzz/run.sh
step 600 slurm/test-local.sh
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo --preserve-env=PATH)
step 900 "${as_root[@]}" lbm-tests/mpi_tests/cluster/test-cluster.sh
echo "all tests passed" >&2
