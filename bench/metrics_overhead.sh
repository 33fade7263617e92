#!/usr/bin/env bash
# Does scraping /metrics cost forwarding? Real TCP through rvsd (NAT, both
# directions through the load balancer, release build) on the namespace
# topology: rounds of 40 x 1 MiB downloads, 4 at a time, alternating
# "no scraper" and "a scraper every 100 ms", interleaved so both see the
# same machine noise. Prints each round's MB/s and the medians.
#
#   usage: bench/metrics_overhead.sh [ROUNDS]    (as root; default 8 of each)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-8}
P=rvsbm
scripts/deps.sh >/dev/null
cargo build --release -q -p control --bin rvsd
WORK=$(mktemp -d /tmp/rvs-bench.XXXXXX)
RVSD_PID=""; SERVERS=()
cleanup() {
    set +e
    [ -n "$RVSD_PID" ] && kill "$RVSD_PID" 2>/dev/null && wait "$RVSD_PID" 2>/dev/null
    for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    scripts/topology.sh down "$P"; rm -rf "$WORK"
}
trap cleanup EXIT
scripts/topology.sh up "$P" nat
for i in 1 2; do
    ip netns exec "$P-rs$i" python3 scripts/realserver.py "rs$i" 8080 >/dev/null 2>&1 & SERVERS+=($!)
done
sed "s|@FILE_PREFIX@|rvsbm-$$|" configs/nat.toml >"$WORK/rvs.toml"
printf '\n[admin]\nsocket = "%s/rvsd.sock"\n' "$WORK" >>"$WORK/rvs.toml"
ip netns exec "$P-lb" target/release/rvsd --config "$WORK/rvs.toml" 2>"$WORK/rvsd.log" & RVSD_PID=$!
for _ in $(seq 100); do grep -q "running:" "$WORK/rvsd.log" && break; sleep 0.1; done
for _ in $(seq 50); do ip netns exec "$P-cl" curl -sf --max-time 1 http://198.18.1.100/ >/dev/null && break; sleep 0.2; done

round() { # label -> MB/s of 40 x 1 MiB
    local t0 t1 fails
    t0=$(date +%s.%N)
    fails=$(ip netns exec "$P-cl" python3 scripts/client.py download 198.18.1.100 40 1048576 4 | grep -vc '^ok ' || true)
    t1=$(date +%s.%N)
    [ "$fails" = 0 ] || { echo "round failed: $fails downloads" >&2; exit 1; }
    python3 -c "print(f'{40 / ($t1 - $t0):.1f}')"
}
scraper() { while true; do ip netns exec "$P-lb" curl -sf -o /dev/null http://127.0.0.1:9100/metrics; sleep 0.1; done; }

off=(); on=(); scrapes=0
for r in $(seq "$ROUNDS"); do
    off+=("$(round)")
    scraper & S=$!
    on+=("$(round)")
    kill "$S"; wait "$S" 2>/dev/null || true
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "no scraper (MB/s):       ${off[*]}"
echo "scraper every 100 ms:    ${on[*]}"
echo "medians: $(median "${off[@]}") vs $(median "${on[@]}") MB/s"
