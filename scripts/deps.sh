#!/usr/bin/env bash
# Installs what building and running RVS needs on Debian 12, idempotently:
# nothing is fetched when everything is already there.
set -euo pipefail

PKGS=(libdpdk-dev dpdk dpdk-dev librte-net-af-xdp23 clang libclang-dev pkg-config ethtool curl iproute2 iputils-ping bird2 python3 procps tcpdump)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "deps: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# The metrics tests check the exposition format with an independent parser.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
    echo "deps: installing prometheus-client (PyPI)"
    python3 -m pip install --quiet prometheus-client
fi
# The fuzz targets run in the test suite (libFuzzer, no sanitizer: stable Rust).
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "deps: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
