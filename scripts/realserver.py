#!/usr/bin/env python3
"""A real server for the demo and tests: HTTP on TCP port 80 and a UDP
request/response service on port 53, both answering with this server's
name and the client address it saw, e.g. "server=rs1 client=198.18.0.10".

POST /upload: the server reads the body and answers with its length and
SHA-256 (plus the usual server and client names), so the client can check
that every byte arrived.

Also GET /blob/N: N bytes (up to 64 MiB) of deterministic content,
shake_256("rvs-blob-N"), for downloads the client verifies; the headers
X-Server and X-Client carry the server's name and the client it saw.

usage: realserver.py NAME [HTTP_PORT]
"""
import hashlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
HTTP_PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 80


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/blob/"):
            try:
                n = min(int(self.path[6:]), 64 << 20)
            except ValueError:
                self.send_error(400)
                return
            body = hashlib.shake_256(f"rvs-blob-{n}".encode()).digest(n)
        else:
            body = f"server={NAME} client={self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Server", NAME)
        self.send_header("X-Client", self.client_address[0])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                break
            data += chunk
        body = f"server={NAME} client={self.client_address[0]} bytes={len(data)} sha256={hashlib.sha256(data).hexdigest()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def udp_service():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 53))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(f"server={NAME} client={peer[0]} echo={data.decode(errors='replace')}\n".encode(), peer)


threading.Thread(target=udp_service, daemon=True).start()
ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Handler).serve_forever()
