#!/usr/bin/env bash
# A short fuzz run of every target (default 30 s each): libFuzzer through cargo fuzz, on the stable
# toolchain told to accept nightly flags (RUSTC_BOOTSTRAP=1). New inputs go to a temporary folder; the
# seed corpus (valid frames) stays as committed. A crash fails the run and leaves its input in
# fuzz/artifacts/. Prints the executions run per target.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
for target in wire_header metadata collective_message short_message; do
    scratch=$(mktemp -d)
    cargo fuzz run "$target" "$scratch" "corpus/$target" -- -max_total_time="$seconds" 2>&1 |
        tee "$scratch.log" | grep -E "^Done|ERROR|panicked" || true
    runs=$(grep -oE "^Done [0-9]+ runs" "$scratch.log" | grep -oE "[0-9]+" || true)
    rm -rf "$scratch" "$scratch.log"
    [ -n "$runs" ] || { echo "fuzz: $target did not finish cleanly" >&2; exit 1; }
    echo "fuzz: $target: $runs executions in $seconds s, no crash"
done
