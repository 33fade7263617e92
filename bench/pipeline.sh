#!/usr/bin/env bash
# Instructions per packet of the worker pipeline, in-process, counted by
# valgrind's callgrind (repeatable whatever else the machine does). Each
# mode runs at two lengths; the difference divided by the extra packets
# cancels the set-up (building frames, the pipeline, ARP).
#
#   usage: bench/pipeline.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
cargo build --release -q -p bench --bin pipeline_bench
BIN=target/release/pipeline_bench
# Only instructions inside the pipeline's entry point (Pipeline::classify,
# never inlined) and, in the -big modes, the worker's two prefetch stages
# (the harness's prefetch_burst, never inlined) count: the harness's loop
# and frame copies do not.
count() { # mode packets -> total instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*Pipeline::classify*' --toggle-collect='*prefetch_burst*' "$BIN" count "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| mode | instructions per packet |"
echo "|---|---|"
for mode in established established-dr established-nat established-fullnat established-tun established-nat-reply established-fullnat-reply established-dr-tcp established-nat-tcp established-fullnat-tcp established-tun-tcp established-dr-big established-tun-big established-dr-checked established-tun-checked new; do
    a=$(count "$mode" 100000)
    b=$(count "$mode" 200000)
    echo "| $mode | $(( (b - a) / 100000 )) |"
done
