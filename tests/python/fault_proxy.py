"""A fault-injecting HTTP proxy on loopback, between the engine and the S3 server: it answers
some requests with a server error (503 SlowDown, 500) and resets the connection of others,
before they reach the server, so the tests see how the engine behaves when the store fails
mid-run. Deterministic for a seed."""

import contextlib
import http.client
import random
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class Faults:
    """What the proxy does to requests: fractions of server errors and resets, and counts."""

    def __init__(self, error_rate=0.0, reset_rate=0.0, seed=0):
        self.error_rate = error_rate
        self.reset_rate = reset_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.forwarded = 0
        self.errors = 0
        self.resets = 0

    def draw(self):
        with self.lock:
            x = self.random.random()
            if x < self.error_rate:
                self.errors += 1
                return "error"
            if x < self.error_rate + self.reset_rate:
                self.resets += 1
                return "reset"
            self.forwarded += 1
            return "forward"


def _handler(upstream, faults):
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _relay(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            what = faults.draw()
            if what == "reset":
                # SO_LINGER 0: close() sends a TCP reset instead of a clean shutdown.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if what == "error":
                status = faults.random.choice([503, 500])
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for k, v in response.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

    return Handler


@contextlib.contextmanager
def proxy(upstream, faults):
    """Runs the proxy in a thread; yields its URL (http://127.0.0.1:PORT)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, faults))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
