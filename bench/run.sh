#!/usr/bin/env bash
# Every benchmark of issue 8 in one run, each printed as it finishes:
#   1. the pipeline in-process: instructions per packet (callgrind) and ns
#      per packet for every mode, connection lookups at 1 thousand to 10
#      million connections, bytes per connection;
#   2. port throughput: RVS in every mode against testpmd io-forward on
#      the same memif/net_null devices, fed by bench/src/bin/loadgen.rs,
#      beside the lean forwarder (bench/src/bin/leanfwd.rs, the yardstick);
#      and what it is made of: the whole worker's instructions per packet,
#      ports included (callgrind), and the forwarding core's time per
#      packet by component at full load (perf cpu-clock samples);
#   3. real TCP through namespaces: RVS DR, NAT, FullNAT against nftables
#      DNAT and haproxy, and the rig without any balancer, same topology.
# Then the scheduler cost and the reload time, and last issue 8's targets
# against what this run measured (bench/verdict.py: met, or missed by how
# much). About 20 minutes on the project's 2-vCPU VM.
#
#   usage: bench/run.sh            (as root, from anywhere)
#          ROUNDS=5 bench/run.sh   (more rounds for parts 2 and 3; default 3)
#          LOG=FILE bench/run.sh   (where the output is kept as well;
#                                   default /tmp/rvs-bench-DATE-TIME.log)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root (hugepages, DPDK, network namespaces)" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
LOG=${LOG:-/tmp/rvs-bench-$(date -u +%Y%m%d-%H%M%S).log}
scripts/deps.sh >/dev/null
cargo build --release -q -p bench -p control

section() { printf '\n## %s (%s)\n\n' "$1" "$(date -u '+%Y-%m-%d %H:%M UTC')"; }

parts() {
    set -e  # each part must succeed (this runs in the pipeline's subshell)
    echo "# RVS benchmarks, $(hostname), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    section "1. Pipeline instructions per packet (bench/pipeline.sh)"
    bench/pipeline.sh
    section "1. Pipeline time per packet (pipeline_bench time)"
    target/release/pipeline_bench time
    section "1. Connection lookups and bytes per connection (pipeline_bench lookup)"
    target/release/pipeline_bench lookup
    section "2. Port throughput against testpmd io-forward (bench/throughput.py $ROUNDS 8)"
    python3 bench/throughput.py "$ROUNDS" 8
    section "2. The worker's instructions per packet, ports included (bench/worker_profile.py 15)"
    python3 bench/worker_profile.py 15
    section "2. The forwarding core's time per packet at full load (bench/time_profile.py 5)"
    python3 bench/time_profile.py 5
    section "3. Real TCP: RVS vs nftables vs haproxy vs no balancer (bench/realtcp.sh $ROUNDS 5)"
    bench/realtcp.sh "$ROUNDS" 5
    section "Scheduler cost (sched_bench)"
    target/release/sched_bench
    section "Reload of 10,000 services (reload_bench)"
    target/release/reload_bench
}

# Everything goes to the log as well; the verdict is read from it, also
# when a part failed (what it did not measure says so).
set +e
parts 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
if ! verdict=$(python3 bench/verdict.py "$LOG"); then
    verdict="bench/verdict.py could not read $LOG"
    [ "$status" != 0 ] || status=1
fi
{ section "Issue 8's targets in this run (bench/verdict.py $LOG)"; echo "$verdict"; } | tee -a "$LOG"
[ "$status" = 0 ] || echo "bench: a part or the verdict failed (exit $status): see $LOG" >&2
exit "$status"
