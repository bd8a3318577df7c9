#!/usr/bin/env bash
# The main demo: an MPI broadcast of bulk data across 4 ranks over Lightbeam, checked on every rank.
# Installs what is missing, builds, runs. Extra arguments go to the demo (try --size 1GiB or --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --example broadcast
exec mpirun -n "${RANKS:-4}" --oversubscribe --bind-to none target/release/examples/broadcast "$@"
