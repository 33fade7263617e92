#!/usr/bin/env bash
# The test/demo network: one L2 segment (a bridge in its own namespace) with
# a client, the load balancer and two real servers, each a network
# namespace with a real kernel stack. Addresses are in 198.18.0.0/24 (the
# benchmarking range) and exist only inside these namespaces.
#
#   usage: topology.sh up PREFIX [dr|nat] | down PREFIX
#
# dr (default): one L2 segment, LVS-DR style:
#   PREFIX-cl   client            198.18.0.10/24
#   PREFIX-lb   load balancer     eth0 without any address (RVS owns it)
#   PREFIX-rs1  real server 1     198.18.0.11/24, VIP 198.18.0.100/32 on lo
#   PREFIX-rs2  real server 2     198.18.0.12/24, VIP on lo
#   PREFIX-sw   the switch        bridge br0
#
# nat: two subnets, the load balancer between them (real servers route
# their replies through it):
#   PREFIX-cl   client            198.18.1.10/24 on eth0, wired to the LB's eth0
#   PREFIX-lb   load balancer     eth0 (client side), eth1 (server side), no addresses
#   PREFIX-rs1  real server 1     198.18.0.11/24, default route via 198.18.0.2 (the LB)
#   PREFIX-rs2  real server 2     198.18.0.12/24, same
#   PREFIX-sw   the server-side switch, bridge br0
#
# routed: as nat, but the real servers sit behind a gateway:
#   PREFIX-lb eth1 198.18.0.0/24 -- PREFIX-gw eth0 198.18.0.1 (forwards)
#   PREFIX-gw eth1 198.18.2.1/24 -- switch -- PREFIX-rs1 198.18.2.11, PREFIX-rs2 198.18.2.12
#   the servers' default route is the gateway; the gateway reaches the
#   clients' subnet 198.18.1.0/24 through the LB (198.18.0.2)
set -euo pipefail

VIP=198.18.0.100
cmd=${1:?usage: topology.sh up|down PREFIX [dr|nat]}
P=${2:?usage: topology.sh up|down PREFIX [dr|nat]}
KIND=${3:-dr}

offloads_off() { # ns dev: veth offloads make partial checksums and super-packets
    ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off rx off >/dev/null 2>&1 || true
}

on_switch() { # port...: the switch ends of veths, into the bridge
    for port in "$@"; do
        ip -n "$P-sw" link set "$port" master br0 up
        offloads_off "$P-sw" "$port"
    done
}

links_up() { # host:dev...
    for pair in "$@"; do
        ip -n "$P-${pair%%:*}" link set "${pair#*:}" up
        offloads_off "$P-${pair%%:*}" "${pair#*:}"
    done
}

# The LB's interfaces belong to RVS (net_af_packet), but the kernel sees
# their frames too, and it owns the LB's addresses (on rvsd's TAPs, the
# exception path): without this it would answer pings and ARP for them a
# second time, straight from the veth. Strict reverse-path filtering drops
# what reaches the kernel on the veth (its route back is the TAP), and
# arp_ignore=8 stops its ARP replies there.
lb_kernel_quiet() { # dev...
    for dev in "$@"; do
        ip netns exec "$P-lb" sysctl -qw "net.ipv4.conf.$dev.rp_filter=1" "net.ipv4.conf.$dev.arp_ignore=8"
    done
}

down() {
    for h in cl lb rs1 rs2 sw gw; do
        if ip netns pids "$P-$h" >/dev/null 2>&1; then
            for pid in $(ip netns pids "$P-$h" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        fi
        ip netns del "$P-$h" 2>/dev/null || true
    done
}

switch() { # the switch namespace: a plain L2 bridge
    ip netns add "$P-sw"
    ip -n "$P-sw" link add br0 type bridge
    ip -n "$P-sw" link set br0 up
    ip netns exec "$P-sw" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    # A plain L2 switch: with br_netfilter loaded (Docker hosts), bridged
    # frames would go through iptables, which drops malformed IPv4 and holds
    # fragments for reassembly before they ever reach the load balancer.
    for t in arptables iptables ip6tables; do
        ip netns exec "$P-sw" sysctl -qw "net.bridge.bridge-nf-call-$t=0" 2>/dev/null || true
    done
}

hosts() { # host namespaces, IPv6 off, loopback up
    for h in "$@"; do
        ip netns add "$P-$h"
        ip netns exec "$P-$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip -n "$P-$h" link set lo up
    done
}

up_nat() {
    down
    switch
    hosts cl lb rs1 rs2
    # Client <-> LB eth0, a direct wire.
    ip link add eth0 netns "$P-cl" type veth peer name eth0 netns "$P-lb"
    # LB eth1 and the servers on the server-side switch.
    ip link add eth1 netns "$P-lb" type veth peer name lb netns "$P-sw"
    for h in rs1 rs2; do
        ip link add eth0 netns "$P-$h" type veth peer name "$h" netns "$P-sw"
    done
    on_switch lb rs1 rs2
    links_up cl:eth0 lb:eth0 lb:eth1 rs1:eth0 rs2:eth0
    lb_kernel_quiet eth0 eth1
    ip -n "$P-cl" addr add 198.18.1.10/24 dev eth0
    for i in 1 2; do
        ip -n "$P-rs$i" addr add "198.18.0.1$i/24" dev eth0
        ip -n "$P-rs$i" route add default via 198.18.0.2
    done
}

up_routed() {
    down
    switch
    hosts cl lb gw rs1 rs2
    ip link add eth0 netns "$P-cl" type veth peer name eth0 netns "$P-lb"
    ip link add eth1 netns "$P-lb" type veth peer name eth0 netns "$P-gw"
    ip link add eth1 netns "$P-gw" type veth peer name gw netns "$P-sw"
    for h in rs1 rs2; do
        ip link add eth0 netns "$P-$h" type veth peer name "$h" netns "$P-sw"
    done
    on_switch gw rs1 rs2
    links_up cl:eth0 lb:eth0 lb:eth1 gw:eth0 gw:eth1 rs1:eth0 rs2:eth0
    lb_kernel_quiet eth0 eth1
    ip -n "$P-cl" addr add 198.18.1.10/24 dev eth0
    ip -n "$P-gw" addr add 198.18.0.1/24 dev eth0
    ip -n "$P-gw" addr add 198.18.2.1/24 dev eth1
    ip -n "$P-gw" route add 198.18.1.0/24 via 198.18.0.2
    ip netns exec "$P-gw" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0
    for i in 1 2; do
        ip -n "$P-rs$i" addr add "198.18.2.1$i/24" dev eth0
        ip -n "$P-rs$i" route add default via 198.18.2.1
    done
}

up() {
    [ "$KIND" = nat ] && { up_nat; return; }
    [ "$KIND" = routed ] && { up_routed; return; }
    down
    switch
    hosts cl lb rs1 rs2
    for h in cl lb rs1 rs2; do
        ip link add eth0 netns "$P-$h" type veth peer name "$h" netns "$P-sw"
    done
    on_switch cl lb rs1 rs2
    links_up cl:eth0 lb:eth0 rs1:eth0 rs2:eth0
    lb_kernel_quiet eth0
    ip -n "$P-cl" addr add 198.18.0.10/24 dev eth0
    for i in 1 2; do
        ns="$P-rs$i"
        ip -n "$ns" addr add "198.18.0.1$i/24" dev eth0
        # LVS-DR real server: the VIP is local (on lo) but never announced
        # or answered for by ARP, so only the load balancer attracts it.
        ip -n "$ns" addr add "$VIP/32" dev lo
        ip netns exec "$ns" sysctl -qw \
            net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2 \
            net.ipv4.conf.lo.arp_ignore=1 net.ipv4.conf.lo.arp_announce=2
    done
}

case "$cmd" in
    up) up ;;
    down) down ;;
    *) echo "usage: topology.sh up|down PREFIX" >&2; exit 2 ;;
esac
