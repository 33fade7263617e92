#!/usr/bin/env python3
"""Client for the demo and tests: N requests to the VIP, each on a new TCP
connection (HTTP) or from a new UDP source port, one result line per request:
"ok <server's answer>" or "fail <error>".

"download" fetches /blob/SIZE N times, CONCURRENCY at a time, each on its
own connection, and checks every byte against the deterministic content:
"ok server=NAME client=ADDR bytes=SIZE" or "fail ...".

"bigudp" sends N UDP datagrams of 1472 bytes (IP length 1500) with DF set
to port 53, the size a tunnel cannot carry, and reports what happened.

"upload" posts SIZE bytes of deterministic content N times, CONCURRENCY at
a time, and checks the server's length and SHA-256 of what it received.

"sameport" makes N HTTP requests one after the other, all from client
port PORT: each a new TCP connection on the same 4-tuple. It reads until
the server closes first, so the client keeps no TIME_WAIT that would
block the port; the server's TIME_WAIT accepts the newer SYN.

"udpclosed" sends N datagrams from connected UDP sockets to port 9999,
where no server listens: "refused" when the ICMP port unreachable reached
the socket (it must quote exactly what the socket sent), else "no error".

usage: client.py http|udp|udpclosed VIP N
       client.py sameport VIP N PORT
       client.py download|upload VIP N SIZE CONCURRENCY
       client.py bigudp VIP N
"""
import hashlib
import http.client
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

kind, vip, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def run_concurrently(one, concurrency):
    """Runs one(i) for i < n on `concurrency` threads, prints each result line, exits."""
    with ThreadPoolExecutor(concurrency) as pool:
        for line in pool.map(one, range(n)):
            print(line, flush=True)
    sys.exit(0)


if kind == "upload":
    size, concurrency = int(sys.argv[4]), int(sys.argv[5])
    blob = hashlib.shake_256(f"rvs-upload-{size}".encode()).digest(size)
    digest = hashlib.sha256(blob).hexdigest()

    def post(_):
        try:
            c = http.client.HTTPConnection(vip, 80, timeout=30)
            c.request("POST", "/upload", body=blob, headers={"Content-Length": str(size)})
            r = c.getresponse()
            answer = r.read().decode().strip()
            c.close()
            if r.status != 200:
                return f"fail HTTP {r.status}"
            if f"bytes={size} sha256={digest}" not in answer:
                return f"fail corrupted upload: {answer}"
            return "ok " + answer
        except Exception as e:  # every failure is reported
            return f"fail {type(e).__name__} {e}"

    run_concurrently(post, concurrency)

if kind == "download":
    size, concurrency = int(sys.argv[4]), int(sys.argv[5])
    want = hashlib.shake_256(f"rvs-blob-{size}".encode()).digest(size)

    def fetch(_):
        try:
            c = http.client.HTTPConnection(vip, 80, timeout=20)
            c.request("GET", f"/blob/{size}")
            r = c.getresponse()
            body = r.read()
            server, client = r.getheader("X-Server"), r.getheader("X-Client")
            c.close()
            if r.status != 200:
                return f"fail HTTP {r.status}"
            if body != want:
                return f"fail corrupted: {len(body)} bytes, differs from the expected content"
            return f"ok server={server} client={client} bytes={len(body)}"
        except Exception as e:  # every failure is reported
            return f"fail {type(e).__name__} {e}"

    run_concurrently(fetch, concurrency)

if kind == "sameport":
    import time
    sport = int(sys.argv[4])
    for i in range(n):
        try:
            for attempt in range(50):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.settimeout(3)
                s.bind(("0.0.0.0", sport))
                try:
                    s.connect((vip, 80))
                    break
                except OSError as e:  # EADDRNOTAVAIL: the last one is not fully closed yet
                    s.close()
                    if e.errno != 99:
                        raise
                    time.sleep(0.02)
            s.sendall(f"GET / HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode())
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            s.close()
            body = answer.split(b"\r\n\r\n", 1)[-1].decode().strip()
            print("ok", body, flush=True)
        except Exception as e:  # every failure is reported
            print("fail", type(e).__name__, e, flush=True)
    sys.exit(0)

if kind == "udpclosed":
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((vip, 9999))
        try:
            s.send(b"anyone?")
            s.recv(100)
            print("no error: answered", flush=True)
        except ConnectionRefusedError:
            print("refused", flush=True)
        except socket.timeout:
            print("no error: timeout", flush=True)
        s.close()
    sys.exit(0)

if kind == "bigudp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    for i in range(n):
        try:
            s.sendto(b"x" * 1472, (vip, 53))
            print("sent 1472", flush=True)
        except OSError as e:  # EMSGSIZE once the kernel learned the path MTU
            print("refused", e.errno, flush=True)
    sys.exit(0)

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
