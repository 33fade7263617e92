#!/usr/bin/env python3
"""Client for the demo and tests: N requests to the VIP, each on a new TCP
connection (HTTP) or from a new UDP source port, one result line per request:
"ok <server's answer>" or "fail <error>".

usage: client.py http|udp VIP N
"""
import http.client
import socket
import sys

kind, vip, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# After this many failures in a row the rest are reported failed without
# trying: a broken load balancer fails the run in seconds, not minutes.
GIVE_UP_AFTER = 5
streak = 0
for i in range(n):
    if streak >= GIVE_UP_AFTER:
        print("fail skipped after", streak, "consecutive failures", flush=True)
        continue
    try:
        if kind == "http":
            c = http.client.HTTPConnection(vip, 80, timeout=3)
            c.request("GET", "/")
            r = c.getresponse()
            body = r.read().decode().strip()
            c.close()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # A distinct source port per request: each is a new flow (random
            # ephemeral ports can repeat, and a repeat rightly sticks to the
            # server the earlier flow went to).
            s.bind(("0.0.0.0", 20000 + i))
            s.settimeout(2)
            s.sendto(f"req{i}".encode(), (vip, 53))
            body = s.recv(2048).decode().strip()
            s.close()
            if f"echo=req{i}" not in body:
                raise RuntimeError(f"wrong answer {body!r}")
        print("ok", body, flush=True)
        streak = 0
    except Exception as e:  # every failure is reported
        print("fail", type(e).__name__, e, flush=True)
        streak += 1
