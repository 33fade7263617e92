#!/usr/bin/env python3
"""Sends malformed and foreign frames to a MAC address from a raw socket:
truncated and inconsistent IPv4/TCP/UDP/ARP headers, IPv6, VLAN tags,
fragments, and random bytes. Deterministic (seeded).

usage: garbage.py IFACE DST_MAC SRC_IP VIP COUNT
"""
import random
import socket
import struct
import time
import sys

iface, dst, src_ip, vip, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rng = random.Random(42)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
dst_mac = bytes.fromhex(dst.replace(":", ""))
src_mac = s.getsockname()[4]


def ipv4(proto, payload, ihl=5, total=None, flags_frag=0x4000):
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, flags_frag, 64, proto, 0,
                    socket.inet_aton(src_ip), socket.inet_aton(vip))
    c = sum(struct.unpack("!10H", h))
    c = (c & 0xFFFF) + (c >> 16)
    c = (c & 0xFFFF) + (c >> 16)
    return h[:10] + struct.pack("!H", ~c & 0xFFFF) + h[12:] + payload


kinds = [
    lambda: (0x0800, ipv4(6, b"\x00" * rng.randint(0, 19))),                    # TCP truncated
    lambda: (0x0800, ipv4(6, struct.pack("!HHIIBB", 1234, 80, 0, 0, 0x20, 2) + b"\0" * 6)),  # bad data offset
    lambda: (0x0800, ipv4(17, b"\x00" * rng.randint(0, 7))),                   # UDP truncated
    lambda: (0x0800, ipv4(6, b"\x00" * 20, ihl=rng.randint(0, 4))),             # IHL < 5
    lambda: (0x0800, ipv4(6, b"\x00" * 20, total=rng.randint(41, 1500))),       # total length past the end
    lambda: (0x0800, ipv4(6, b"\x00" * 20, flags_frag=0x2000)),                 # fragment
    lambda: (0x0800, ipv4(1, b"\x08\x00" + b"\x00" * 30)),                      # ICMP to the VIP
    lambda: (0x0806, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))),  # ARP garbage
    lambda: (0x86DD, bytes(rng.getrandbits(8) for _ in range(60))),            # IPv6
    lambda: (0x8100, bytes(rng.getrandbits(8) for _ in range(60))),            # VLAN tag
    lambda: (rng.getrandbits(16), bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 100)))),
]
for i in range(count):
    ethertype, payload = kinds[i % len(kinds)]()
    s.send(dst_mac + src_mac + struct.pack("!H", ethertype) + payload)
    # Paced: sent in one rush, the frames outrun the receiving side's
    # backlog on a busy machine (netdev_max_backlog, 1000), and the kernel
    # drops some before rvsd could count them (seen once: 964 of 1000).
    if i % 50 == 49:
        time.sleep(0.005)
print(f"sent {count} frames")
