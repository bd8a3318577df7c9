#!/usr/bin/env bash
# Every test: formatting, lints, docs, a build without MPI, unit, integration, doc and MPI tests, examples.
# Installs what is missing first. Each step has a time limit, so nothing hangs forever.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

step() {
    local limit=$1
    shift
    echo "==> $*" >&2
    timeout --kill-after=10 "$limit" "$@"
}

export RUSTDOCFLAGS="-D warnings"
step 60 cargo fmt --all -- --check
step 900 cargo clippy --all-targets -- -D warnings
step 600 cargo doc --no-deps
step 600 cargo build --no-default-features
step 1800 cargo test --release
for example in basic custom_metadata; do
    step 120 cargo run --release --quiet --example "$example"
done
echo "all tests passed" >&2
