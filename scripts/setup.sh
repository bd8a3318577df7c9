#!/usr/bin/env bash
# Installs what Lightbeam needs and is missing; skips what is present. Sourced by demo.sh and test.sh.
# Extra Debian packages can be asked for in LIGHTBEAM_EXTRA_PACKAGES (space separated).
set -euo pipefail

lightbeam_packages=(libzmq3-dev openmpi-bin libopenmpi-dev clang libclang-dev pkg-config ${LIGHTBEAM_EXTRA_PACKAGES:-})

lightbeam_setup() {
    local missing=() pkg
    for pkg in "${lightbeam_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "setup: installing ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
        command -v cargo >/dev/null || {
            echo "setup: cargo not found; install Rust 1.88 or newer (https://rustup.rs) and run again" >&2
            exit 1
        }
    fi
    # OpenMPI refuses to run as root without these; more ranks than cores need oversubscription.
    if [ "$(id -u)" -eq 0 ]; then
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
    export OMPI_MCA_rmaps_base_oversubscribe=1
}

lightbeam_setup
