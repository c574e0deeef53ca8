"""Backends the gateway proxies to: the recording HTTP backend (Backend), and RawServer, a scripted
backend that controls every byte and every close (for test_streaming, test_websocket, test_hostile
and test_upstream), which the recording backend cannot."""
import contextlib
import functools
import hashlib
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from lib.http import RawStream


@dataclass
class Recorded:
    method: str
    path: str
    version: str
    headers: list
    body: bytes
    client: tuple
    trailers: list = None  # (name, value) of a chunked body's trailer section

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        return [value for key, value in self.headers if key.lower() == name.lower()]


def _read_chunked(rfile, trailers):
    body = b""
    while True:
        line = rfile.readline(65537)
        if not line:
            raise ConnectionError("eof in chunked body")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers
                trailer = rfile.readline(65537)
                if trailer in (b"\r\n", b"\n", b""):
                    return body
                name, _, value = trailer.decode("latin-1").partition(":")
                trailers.append((name.strip(), value.strip()))
        body += rfile.read(size)
        rfile.readline()


class _BackendServer(ThreadingHTTPServer):
    # Hundreds of requests released at once (a resumed sandbox) dial together; the default
    # backlog of 5 would drop their SYNs and stall them for seconds.
    request_queue_size = 1024


class _BackendHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-backend/1"

    def log_message(self, format, *args):
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def finish(self):
        super().finish()
        self.server.backend.connection_closed(self.client_address)

    def _body(self):
        self.trailers = []
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return _read_chunked(self.rfile, self.trailers)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        backend = self.server.backend
        body = self._body()
        record = Recorded(self.command, self.path, self.request_version, list(self.headers.items()),
                          body, self.client_address, self.trailers)
        backend.record(record)
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        route = url.path
        if route == "/hold":
            return self._hold(backend, record)
        if route == "/big":
            return self._big(int(query.get("bytes", "1048576")))
        if route == "/sse":
            return self._events(backend)
        if route == "/trailers":
            return self._trailers()
        if route == "/ws" and (self.headers.get("Upgrade") or "").lower() == "websocket":
            return self._tunnel()
        if route == "/close":  # answer as if keeping alive, then close (an app's keep-alive timeout)
            self._send(200, json.dumps(backend.describe(record)).encode(), "application/json")
            self.close_connection = True
            return
        if route.startswith("/status/"):
            return self._send(int(route.split("/")[2]), b"status\n", "text/plain")
        self._send(200, json.dumps(backend.describe(record)).encode(), "application/json")

    def _send(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _hold(self, backend, record):
        with backend.lock:
            backend.holding += 1
        try:
            backend.released.wait(30)
        finally:
            with backend.lock:
                backend.holding -= 1
        self._send(200, json.dumps(backend.describe(record)).encode(), "application/json")

    def _big(self, size):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        data = pattern_bytes(size)
        for offset in range(0, size, 65536):
            self.wfile.write(data[offset:offset + 65536])

    def _events(self, backend):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for number in (1, 2):
            event = b"data: event %d\n\n" % number
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            if number == 1:
                backend.released.wait(30)  # the client must see event 1 before this is released
        self.wfile.write(b"0\r\n\r\n")

    def _trailers(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Checksum")
        self.end_headers()
        self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\nGrpc-Status: 0\r\n\r\n")

    def _tunnel(self):
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        connection = self.connection
        connection.settimeout(30)
        try:
            while True:  # echo raw bytes upper-cased until the peer closes
                data = connection.recv(65536)
                if not data:
                    break
                connection.sendall(data.upper())
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _dispatch


@functools.lru_cache(maxsize=4)
def pattern_bytes(size):
    """Deterministic bytes that never repeat a block (so corruption and reordering show)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


class Backend:
    """A threaded HTTP/1.1 server that records each request and answers JSON of what it received.

    GET /hold waits until release(); /close answers and then closes the connection without saying so; /big?bytes=N sends N bytes; /trailers sends "hello world" chunked
    with the trailers X-Checksum and Grpc-Status; /sse sends one event, waits for
    release(), sends another; /ws with Upgrade: websocket answers 101 and echoes bytes upper-cased;
    /status/N answers status N; anything else answers the JSON of describe().
    """

    def __init__(self, name, host="127.0.0.1", port=0):
        self.name = name
        self.host = host
        self.requests = []
        self.lock = threading.Lock()
        self.holding = 0
        self.released = threading.Event()
        self.closed = []  # client addresses of connections that ended
        self.server = _BackendServer((host, port), _BackendHandler)
        self.server.daemon_threads = True
        self.server.backend = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def record(self, recorded):
        with self.lock:
            self.requests.append(recorded)

    def connection_closed(self, client):
        with self.lock:
            self.closed.append(client)

    def describe(self, record):
        return {
            "backend": self.name,
            "method": record.method,
            "path": record.path,
            "version": record.version,
            "headers": [[name, value] for name, value in record.headers],
            "body_length": len(record.body),
            "body_sha256": hashlib.sha256(record.body).hexdigest(),
            "body": record.body.decode("latin-1") if len(record.body) <= 65536 else None,
        }

    @property
    def last(self) -> Optional[Recorded]:
        with self.lock:
            return self.requests[-1] if self.requests else None

    def count(self):
        with self.lock:
            return len(self.requests)

    def release(self):
        self.released.set()

    def stop(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class RawServer:
    """A listening socket whose every accepted connection runs handler(stream, server) in a thread.

    Counts accepted connections; an exception other than a socket error in a handler is kept in
    `errors` (assert it is empty); `released` is an event handlers may wait on (set by stop())."""

    def __init__(self, handler, host="127.0.0.1", port=0, backlog=128):
        self.handler = handler
        self.host = host
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(backlog)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.peers = []
        self.requests = []  # whatever handlers choose to record
        self.errors = []
        self.live = set()
        self.threads = []
        self.released = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def record(self, item):
        with self.lock:
            self.requests.append(item)

    def count(self):
        with self.lock:
            return len(self.requests)

    def _serve(self):
        while not self.stopping.is_set():
            try:
                connection, address = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            connection.settimeout(30)
            with self.lock:
                self.accepted += 1
                self.peers.append(address)
                self.live.add(connection)
            thread = threading.Thread(target=self._handle, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _handle(self, connection):
        try:
            self.handler(RawStream(connection), self)
        except (OSError, ConnectionError):
            pass  # peers closing or resetting is part of these tests
        except Exception as error:  # noqa: BLE001 - reported by the test through errors
            with self.lock:
                self.errors.append(repr(error))
        finally:
            with self.lock:
                self.live.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def stop(self):
        self.stopping.set()
        self.released.set()
        self.thread.join(5)
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            live = list(self.live)
        for connection in live:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(5)
