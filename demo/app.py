#!/usr/bin/python3
"""Demo sandbox app for `make run`: shows what a sandbox receives through the gateway.

GET /      a page listing Host, X-Forwarded-* and every other request header
GET /sse   server-sent events: a few events, one a second (try curl -N)
GET /ws    a WebSocket that echoes each text message (the page opens one)
POST any   echoes the request body back
Usage: app.py [--host 127.0.0.1] [--port 3000]
"""
import argparse
import base64
import hashlib
import html
import json
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-demo/1"

    def log_message(self, format, *args):
        sys.stderr.write("demo app: %s %s\n" % (self.address_string(), format % args))

    def send_body(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path.split("?")[0] == "/sse":
            return self.serve_events()
        if self.path.split("?")[0] == "/ws" and "websocket" in self.headers.get("Upgrade", "").lower():
            return self.serve_websocket()
        if "json" in self.headers.get("Accept", ""):
            body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}, indent=2)
            return self.send_body(200, "application/json", body.encode() + b"\n")
        forwarded = [(name, value) for name, value in self.headers.items()
                     if name.lower() == "host" or name.lower().startswith("x-forwarded-")]
        others = [(name, value) for name, value in self.headers.items() if (name, value) not in forwarded]
        rows = lambda pairs: "".join(
            "<tr><th>%s</th><td>%s</td></tr>" % (html.escape(n), html.escape(v)) for n, v in pairs)
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sandbox-gateway demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:50em}}th{{text-align:left;padding-right:1em}}
code{{background:#eee;padding:0 .3em}}</style></head><body>
<h1>Hello from the demo sandbox</h1>
<p>This page is served by <code>demo/app.py</code> on {html.escape(self.server.label)} and reached
through sandbox-gateway. Request: <code>{html.escape(self.command)} {html.escape(self.path)}</code></p>
<h2>What the gateway set</h2><table>{rows(forwarded)}</table>
<h2>Other headers</h2><table>{rows(others)}</table>
<p>Your browser loaded this page over <code id="protocol">(unknown: scripts are off)</code>
(the gateway speaks HTTP/2 to browsers over TLS; to the sandbox, HTTP/1.1).</p>
<p>A WebSocket to <code>/ws</code> through the gateway: <code id="websocket">(not opened: scripts are off)</code></p>
<p>Also try <code>/sse</code> (server-sent events) and a POST (echoed back).</p>
<script>
const entry = performance.getEntriesByType("navigation")[0];
document.getElementById("protocol").textContent = (entry && entry.nextHopProtocol) || "(not reported)";
const shown = document.getElementById("websocket");
const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
shown.textContent = "opening";
socket.onopen = () => socket.send("hello");
socket.onmessage = (event) => {{ shown.textContent = "echo: " + event.data; socket.close(); }};
socket.onerror = () => {{ shown.textContent = "failed"; }};
</script>
</body></html>
"""
        self.send_body(200, "text/html; charset=utf-8", page.encode())

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        body = self.read_body()
        self.send_body(200, self.headers.get("Content-Type") or "application/octet-stream", body)

    do_PUT = do_POST

    def serve_websocket(self):
        """RFC 6455 with the standard library: the handshake, then each text message echoed."""
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            while True:
                first, second = self.rfile.read(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self.rfile.read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if second & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
                if first & 0x0F == 0x8:  # close
                    self.wfile.write(b"\x88\x00")
                    return
                if first & 0x0F == 0x1 and length < 126:
                    self.wfile.write(struct.pack("!BB", 0x81, length) + payload)
                    self.wfile.flush()
        except (ValueError, ConnectionError, OSError):
            return

    def serve_events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for number in range(1, 6):
                event = f"id: {number}\ndata: tick {number} at {time.strftime('%H:%M:%S')}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(1)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    options = parser.parse_args()
    server = ThreadingHTTPServer((options.host, options.port), DemoHandler)
    server.daemon_threads = True
    server.label = f"{options.host}:{options.port}"
    print(f"demo app: listening on http://{server.label}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
