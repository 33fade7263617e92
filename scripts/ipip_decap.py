#!/usr/bin/env python3
"""The real server's end of an IPIP tunnel, in user space (this kernel has
no ipip module): IPIP packets arrive on a raw socket for protocol 4, their
outer header is stripped, and the inner packet is written to a TUN device,
so the kernel receives the client's packet as if it had arrived directly.
The VIP lives on lo (with arp_ignore), as in DR; replies go straight to
the client.

usage: ipip_decap.py        (inside the real server's network namespace)
"""
import fcntl
import os
import socket
import struct
import subprocess

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
subprocess.run(["ip", "link", "set", "tun0", "up"], check=True)
# The client's packets arrive on tun0 but their source is reached via
# eth0: strict reverse-path filtering would drop them.
for conf in ("all", "default", "tun0", "eth0", "lo"):
    try:
        with open(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter", "w") as f:
            f.write("0")
    except OSError:
        pass

raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)  # IPPROTO_IPIP
print("decapsulating", flush=True)
while True:
    outer = raw.recv(65535)
    ihl = (outer[0] & 0x0F) * 4
    if len(outer) > ihl:
        os.write(tun, outer[ihl:])
