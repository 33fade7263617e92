#!/usr/bin/env bash
# The whole test suite: lints, unit and property tests, DPDK in-process
# tests (net_ring), and the end-to-end tests on network namespaces.
#
#   usage: scripts/test.sh        (as root, on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "test: run as root (DPDK and network namespaces need it)" >&2; exit 1; }

echo "== dependencies (apt, idempotent)"
scripts/deps.sh

echo "== shell and python syntax"
for f in scripts/*.sh bench/*.sh .ci/run; do bash -n "$f"; done
python3 -m py_compile scripts/*.py bench/*.py && rm -rf scripts/__pycache__ bench/__pycache__
echo "== python doctests (bench/ab.py, bench/verdict.py, bench/throughput.py: how they read and sum what the benchmarks print)"
python3 -m doctest bench/ab.py bench/verdict.py bench/throughput.py && rm -rf bench/__pycache__

if cargo clippy --version >/dev/null 2>&1; then
    echo "== clippy (warnings are errors)"
    cargo clippy --workspace --all-targets --quiet -- -D warnings
else
    echo "== clippy is not installed with this toolchain: lints not run"
fi

if cargo fmt --version >/dev/null 2>&1; then
    echo "== formatting (rustfmt.toml)"
    cargo fmt --check
else
    echo "== rustfmt is not installed with this toolchain: formatting not checked"
fi

echo "== configs/ pass --check-config"
cargo build --quiet -p control --bin rvsd
for c in configs/*.toml; do
    sed -e "s|@FILE_PREFIX@|check|" "$c" >/tmp/rvs-check.toml
    target/debug/rvsd --check-config /tmp/rvs-check.toml >/dev/null || { echo "$c fails --check-config" >&2; exit 1; }
done

if command -v systemd-analyze >/dev/null; then
    echo "== configs/rvsd.service passes systemd-analyze verify"
    sed "s#/usr/local/sbin/rvsd#$PWD/target/debug/rvsd#g" configs/rvsd.service >/tmp/rvsd.service
    systemd-analyze verify /tmp/rvsd.service
fi

echo "== cargo test (unit, property, DPDK net_ring, end-to-end on namespaces)"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/rvs-test.log
grep -q "test result: FAILED" /tmp/rvs-test.log && exit 1
passed=$(grep -o '[0-9]* passed' /tmp/rvs-test.log | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' /tmp/rvs-test.log | awk '{s += $1} END {print s + 0}')

# Each fuzz target for a bounded time; a panic makes cargo fuzz exit
# non-zero and leaves the input in fuzz/artifacts/. FUZZ_SECONDS overrides.
secs=${FUZZ_SECONDS:-20}
echo "== fuzz: every parser, every rewrite, the pipeline, every mode's data path, the config file ($secs s each)"
(cd fuzz && cargo fuzz build -s none 2>&1 | tail -1)
# The config target starts from the shipped configurations and a file
# with every key, with the file's keys and edge values as a dictionary.
mkdir -p fuzz/corpus/config && cp configs/*.toml fuzz/seeds/config/*.toml fuzz/corpus/config/
for t in parsers rewrites pipeline modes config; do
    extra=()
    [ "$t" = config ] && extra=(-dict=config.dict)
    if (cd fuzz && cargo fuzz run -s none "$t" -- -max_total_time="$secs" "${extra[@]}" >"/tmp/rvs-fuzz-$t.log" 2>&1); then
        echo "fuzz $t: ok, $(grep -o 'Done [0-9]* runs' "/tmp/rvs-fuzz-$t.log")"
        passed=$((passed + 1))
    else
        tail -40 "/tmp/rvs-fuzz-$t.log"
        echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)"
        failed=$((failed + 1))
    fi
done
echo
echo "rvs: $passed passed, $failed failed"
[ "$failed" = 0 ]
