#!/usr/bin/env bash
# The demo: RVS load-balancing real HTTP requests across two real servers
# in DR mode, on network namespaces; then rs1's HTTP server is killed and
# the health check takes it out of the pool (and back in after a restart);
# then everything is torn down.
#
#   usage: scripts/demo.sh [REQUESTS]      (as root; default 30 requests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${1:-30}
P=rvsdemo
VIP=198.18.0.100

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }

echo "== 1/7 dependencies (apt, idempotent)"
scripts/deps.sh

echo "== 2/7 build (cargo build --release)"
cargo build --release -q -p control --bin rvsd
RVSD=$ROOT/target/release/rvsd

WORK=$(mktemp -d /tmp/rvs-demo.XXXXXX)
RVSD_PID=""
SERVER_PIDS=()
RS1_PID=""
cleanup() {
    set +e
    for pid in "${SERVER_PIDS[@]}" $RS1_PID; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    if [ -n "$RVSD_PID" ] && kill -0 "$RVSD_PID" 2>/dev/null; then
        kill -TERM "$RVSD_PID"; wait "$RVSD_PID" 2>/dev/null
    fi
    scripts/topology.sh down "$P"
    rm -rf "$WORK" "/var/run/dpdk/rvs-demo-$$"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== 3/7 topology: client, load balancer, rs1, rs2 on one L2 segment (namespaces $P-*)"
scripts/topology.sh up "$P"
ip netns exec "$P-rs1" python3 scripts/realserver.py rs1 >"$WORK/rs1.log" 2>&1 &
RS1_PID=$!
ip netns exec "$P-rs2" python3 scripts/realserver.py rs2 >"$WORK/rs2.log" 2>&1 &
SERVER_PIDS+=($!)

sed -e "s|@FILE_PREFIX@|rvs-demo-$$|" configs/demo.toml >"$WORK/rvs.toml"
"$RVSD" --check-config "$WORK/rvs.toml"
echo "== 4/7 start rvsd in $P-lb (DR, wrr, weights rs1=1 rs2=2)"
ip netns exec "$P-lb" "$RVSD" --config "$WORK/rvs.toml" 2>"$WORK/rvsd.log" &
RVSD_PID=$!
for _ in $(seq 100); do
    grep -q "running:" "$WORK/rvsd.log" 2>/dev/null && break
    kill -0 "$RVSD_PID" 2>/dev/null || { cat "$WORK/rvsd.log"; echo "demo: rvsd exited" >&2; exit 1; }
    sleep 0.1
done
grep -E "interface|running|service" "$WORK/rvsd.log" | sed 's/^/   rvsd: /'

# Wait until the servers answer through the VIP (ARP resolution, HTTP up).
for _ in $(seq 50); do
    ip netns exec "$P-cl" curl -s --max-time 1 "http://$VIP/" >/dev/null && break
    sleep 0.2
done

# N requests, each on a new connection; sets ok, failed and the answers file.
requests() {
    ok=0; failed=0
    : >"$WORK/answers"
    for _ in $(seq "$1"); do
        if body=$(ip netns exec "$P-cl" curl -s --fail --max-time 3 "http://$VIP/"); then
            echo "$body" >>"$WORK/answers"; ok=$((ok + 1))
        else
            failed=$((failed + 1))
        fi
    done
    echo "   answered by rs1: $(grep -c 'server=rs1' "$WORK/answers" || true)"
    echo "   answered by rs2: $(grep -c 'server=rs2' "$WORK/answers" || true)"
    echo "   failed:          $failed"
}

echo "== 5/7 $REQUESTS HTTP requests from the client to http://$VIP/ (a new TCP connection each)"
requests "$REQUESTS"
echo "   client address seen by the servers: $(sed -n 's/.*client=\([^ ]*\).*/\1/p' "$WORK/answers" | sort -u | tr '\n' ' ')"
all_ok=$(( failed == 0 && ok == REQUESTS ))
echo "   the load balancer's own address is the kernel's (exception path): $(ip netns exec "$P-cl" ping -c 1 -W 2 198.18.0.2 | grep -o '1 received' || echo 'NO ANSWER')"

echo "== 6/7 kill rs1's HTTP server: the health check (GET / every 1 s, fall 2) takes it out"
kill "$RS1_PID"; wait "$RS1_PID" 2>/dev/null || true; RS1_PID=""
for _ in $(seq 100); do grep -q "198.18.0.11:80 is DOWN" "$WORK/rvsd.log" && break; sleep 0.1; done
grep "health:" "$WORK/rvsd.log" | sed 's/^/   rvsd: /'
requests 10
[ "$failed" = 0 ] && [ "$ok" = 10 ] || all_ok=0

echo "== 7/7 restart rs1: back in the pool after 2 good checks"
ip netns exec "$P-rs1" python3 scripts/realserver.py rs1 >>"$WORK/rs1.log" 2>&1 &
RS1_PID=$!
for _ in $(seq 100); do grep -q "198.18.0.11:80 is UP" "$WORK/rvsd.log" && break; sleep 0.1; done
grep "is UP" "$WORK/rvsd.log" | sed 's/^/   rvsd: /'
requests 9
[ "$failed" = 0 ] && [ "$ok" = 9 ] || all_ok=0
echo
kill -TERM "$RVSD_PID"; wait "$RVSD_PID" || true; RVSD_PID=""
echo "   rvsd counters at exit:"
grep "stats" "$WORK/rvsd.log" | sed 's/^[0-9.]* rvsd info: stats /     /'
[ "$all_ok" = 1 ]
