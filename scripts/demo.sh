#!/usr/bin/env bash
# The main demo. Installs what is missing, builds, and runs the demo; extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --example basic
exec target/release/examples/basic "$@"
