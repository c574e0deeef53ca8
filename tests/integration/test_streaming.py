"""Streaming through the gateway: bounded memory under backpressure for 1 GiB each way, SSE and
long-poll arrival times, bodies without a body (HEAD, 204, 304), 1xx, trailers, pipelining.

The big transfers use raw-socket peers that stream a deterministic pattern (its SHA-256 computed
once) and hash what they receive as it arrives, so Python is not the bottleneck; the gateway's RSS
is sampled from /proc/<pid>/status every 100 ms.
"""
import functools
import hashlib
import json
import socket
import threading
import time

import pytest

from lib.backends import pattern_bytes
from lib.builds import Build
from lib.http import RawStream
from lib.util import wait_for

MiB = 1024 * 1024
GiB = 1024 * MiB
BLOCK = MiB
RSS_GROWTH_LIMIT = 64 * MiB


def transfer_size(build):
    # 1 GiB through build/; 256 MiB through build-asan/: on a loaded 2-core machine the ASan
    # build took 20-23 s per direction for 1 GiB (over the ~20 s budget), 2-4 s for 256 MiB.
    return 256 * MiB if build.sanitized else GiB


@functools.lru_cache(maxsize=4)
def expected_digest(size):
    """SHA-256 of the deterministic stream of `size` bytes (computed once per size)."""
    digest = hashlib.sha256()
    for data in pattern_stream(size):
        digest.update(data)
    return digest.hexdigest()


class SmallQuarantine(Build):
    """ASan keeps up to 256 MiB of freed memory in quarantine by default (quarantine_size_mb), so a
    long transfer through the ASan build grows RSS by that much whatever the gateway does. The
    memory tests bound it to 8 MiB so that what they measure is the gateway's own buffering."""

    def env(self):
        env = super().env()
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=8"
        return env


def start_gateway(gateway_factory, redis, build, **directives):
    gateway = gateway_factory(redis, start=False, **directives)
    if build.sanitized:
        gateway.build = SmallQuarantine(build.name, build.path)
    return gateway.start()


def block(index, length):
    """Block `index` of the stream: a 1 MiB pattern that starts with its own index (so a block
    lost, repeated or reordered changes the digest)."""
    data = index.to_bytes(8, "big") + pattern_bytes(BLOCK)[8:]
    return data[:length]


def pattern_stream(size):
    """The blocks of the deterministic stream of `size` bytes."""
    index = sent = 0
    while sent < size:
        data = block(index, min(BLOCK, size - sent))
        yield data
        sent += len(data)
        index += 1


class RssSampler:
    """Samples VmRSS of a process every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.1):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def read(self):
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.samples.append(self.read())
            except (OSError, AssertionError):
                return
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)

    @property
    def peak(self):
        return max(self.samples)


def baseline_rss(sampler):
    """The gateway's RSS at rest: the largest of a few samples."""
    values = []
    for _ in range(3):
        values.append(sampler.read())
        time.sleep(0.05)
    return max(values)


class BigBackend:
    """GET /download?bytes=N streams the pattern; POST /upload reads nothing until `go` is set,
    then hashes the body; anything else answers "ok". Keeps connections alive."""

    def __init__(self):
        self.sent = 0            # download bytes written to the socket so far
        self.sent_digest = None
        self.received = 0        # upload bytes read so far
        self.go = threading.Event()
        self.reading_started = None

    def __call__(self, stream, server):
        while True:
            line, headers = stream.read_head()
            method, target, _ = line.split(" ", 2)
            fields = {name.lower(): value for name, value in headers}
            path, _, query = target.partition("?")
            if path == "/download":
                size = int(query.split("=")[1])
                stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                    b"Content-Length: %d\r\n\r\n" % size)
                for data in pattern_stream(size):
                    stream.sock.sendall(data)
                    self.sent += len(data)
                self.sent_digest = expected_digest(size)
            elif path == "/upload":
                length = int(fields["content-length"])
                if not self.go.wait(60):
                    raise AssertionError("upload never released")
                self.reading_started = time.monotonic()
                digest = hashlib.sha256()
                digest.update(stream.buffer)
                self.received = len(stream.buffer)
                stream.buffer.clear()
                view = memoryview(bytearray(BLOCK))
                while self.received < length:
                    count = stream.sock.recv_into(view, min(BLOCK, length - self.received))
                    if count == 0:
                        raise ConnectionError("upload cut short")
                    digest.update(view[:count])
                    self.received += count
                body = json.dumps({"length": self.received, "sha256": digest.hexdigest()}).encode()
                stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def wait_stalled(counter, minimum_seconds, quiet_seconds=0.5, timeout=20):
    """Waits at least minimum_seconds and until counter() stopped growing for quiet_seconds;
    returns its value then."""
    started = time.monotonic()
    last_value, last_change = counter(), time.monotonic()
    while True:
        time.sleep(0.1)
        value, now = counter(), time.monotonic()
        if value != last_value:
            last_value, last_change = value, now
        if now - started >= minimum_seconds and now - last_change >= quiet_seconds:
            return value
        if now - started > timeout:
            raise AssertionError(f"the transfer never stalled (at {value} bytes after {timeout}s)")


@pytest.fixture
def sandbox(redis):
    redis.put("stream1")
    return "stream1"


def test_download_1gib_slow_reader_keeps_rss_flat(raw_server_factory, gateway_factory, redis,
                                                   sandbox, build):
    backend = BigBackend()
    server = raw_server_factory(backend)
    gateway = start_gateway(gateway_factory, redis, build)
    size = transfer_size(build)
    expected_digest(size)  # computed before the clock starts
    host = gateway.host(sandbox, server.port)
    assert gateway.request(host, target="/warm").status == 200
    with RssSampler(gateway.process.pid) as sampler:
        baseline = baseline_rss(sampler)
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as client:
            client.sendall(f"GET /download?bytes={size} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            # The client reads nothing for 2 s: the backend must be stopped by backpressure.
            in_flight = wait_stalled(lambda: backend.sent, 2.0)
            assert in_flight < 96 * MiB, \
                f"the backend wrote {in_flight} bytes while the client read nothing"
            stream = RawStream(client)
            line, headers = stream.read_head()
            assert line.startswith("HTTP/1.1 200"), line
            assert dict((k.lower(), v) for k, v in headers)["content-length"] == str(size)
            digest = hashlib.sha256()
            digest.update(stream.buffer)
            received = len(stream.buffer)
            view = memoryview(bytearray(BLOCK))
            started = time.monotonic()
            while received < size:
                count = client.recv_into(view)
                if count == 0:
                    break
                digest.update(view[:count])
                received += count
            elapsed = time.monotonic() - started
    peak = sampler.peak
    print(f"download {build.name}: {size} bytes in {elapsed:.1f}s, in flight at stall "
          f"{in_flight / MiB:.1f} MiB, RSS baseline {baseline / MiB:.1f} MiB, "
          f"peak {peak / MiB:.1f} MiB")
    assert received == size
    wait_for(lambda: backend.sent_digest, 10, message="the backend to finish")
    assert digest.hexdigest() == backend.sent_digest
    assert len(sampler.samples) >= 10
    assert peak - baseline < RSS_GROWTH_LIMIT, \
        f"RSS grew from {baseline / MiB:.1f} MiB to {peak / MiB:.1f} MiB"
    assert not server.errors, server.errors


def test_sized_downloads_back_to_back_on_one_connection(raw_server_factory, gateway_factory,
                                                        redis, sandbox):
    """Sized bodies around and far above the size from which the gateway splices them
    (gateway/io.c) arrive whole, one after another on one keep-alive connection, and the
    connection then serves an ordinary request."""
    backend = BigBackend()
    server = raw_server_factory(backend)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    sizes = [65535, 65536, 65537, 3 * MiB + 7, 1, 8 * MiB]
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as client:
        stream = RawStream(client)
        for size in sizes:
            client.sendall(f"GET /download?bytes={size} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            line, headers = stream.read_head()
            assert line.startswith("HTTP/1.1 200"), line
            assert dict((k.lower(), v) for k, v in headers)["content-length"] == str(size)
            body = stream.read_exactly(size)
            assert hashlib.sha256(body).hexdigest() == expected_digest(size), size
        client.sendall(f"GET /other HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        line, headers = stream.read_head()
        assert line.startswith("HTTP/1.1 200"), line
        assert stream.read_exactly(2) == b"ok"
        client.settimeout(0.2)
        try:
            assert client.recv(1) == b"", "bytes after the last response"
        except socket.timeout:
            pass  # nothing more, and the connection stays open: as it should
    assert not server.errors, server.errors


def test_upload_1gib_to_slow_backend_keeps_rss_flat(raw_server_factory, gateway_factory, redis,
                                                    sandbox, build):
    backend = BigBackend()
    server = raw_server_factory(backend)
    gateway = start_gateway(gateway_factory, redis, build)
    size = transfer_size(build)
    expected_digest(size)  # computed before the clock starts
    host = gateway.host(sandbox, server.port)
    assert gateway.request(host, target="/warm").status == 200
    sent = [0]
    failure = []

    def send_all(client):
        try:
            client.sendall(f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n"
                           "Content-Type: application/octet-stream\r\n\r\n".encode())
            for data in pattern_stream(size):
                client.sendall(data)
                sent[0] += len(data)
        except OSError as error:
            failure.append(error)

    with RssSampler(gateway.process.pid) as sampler:
        baseline = baseline_rss(sampler)
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as client:
            sender = threading.Thread(target=send_all, args=(client,), daemon=True)
            sender.start()
            try:
                # The backend reads nothing for 2 s: the client's sending must stall.
                in_flight = wait_stalled(lambda: sent[0], 2.0)
                assert in_flight < 96 * MiB, \
                    f"the client wrote {in_flight} bytes while the backend read nothing"
            finally:
                backend.go.set()
            started = time.monotonic()
            sender.join(120)
            assert not sender.is_alive(), "the upload did not finish"
            stream = RawStream(client)
            line, headers = stream.read_head()
            length = int(dict((k.lower(), v) for k, v in headers)["content-length"])
            answer = json.loads(stream.read_exactly(length))
            elapsed = time.monotonic() - started
    peak = sampler.peak
    print(f"upload {build.name}: {size} bytes in {elapsed:.1f}s, in flight at stall "
          f"{in_flight / MiB:.1f} MiB, RSS baseline {baseline / MiB:.1f} MiB, "
          f"peak {peak / MiB:.1f} MiB")
    assert not failure, failure
    assert line.startswith("HTTP/1.1 200"), line
    assert answer == {"length": size, "sha256": expected_digest(size)}
    assert peak - baseline < RSS_GROWTH_LIMIT, \
        f"RSS grew from {baseline / MiB:.1f} MiB to {peak / MiB:.1f} MiB"
    assert not server.errors, server.errors


# --------------------------------------------------------------------------- arrival times

def sse_backend(framing, interval, count):
    """/events sends `count` events `interval` s apart, recording when each was written."""
    def handler(stream, server):
        stream.read_head()
        if framing == "chunked":
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:  # no length at all: the body ends when the connection does
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
        for number in range(count):
            time.sleep(interval)
            event = b"id: %d\ndata: event %d\n\n" % (number, number)
            server.record(time.monotonic())
            if framing == "chunked":
                stream.sock.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            else:
                stream.sock.sendall(event)
        if framing == "chunked":
            stream.sock.sendall(b"0\r\n\r\n")
        stream.sock.shutdown(socket.SHUT_WR)
        stream.wait_eof(10)
    return handler


@pytest.mark.parametrize("framing", ["chunked", "close-delimited"])
def test_sse_events_arrive_as_sent(raw_server_factory, gateway_factory, redis, sandbox, framing):
    count, interval = 6, 0.3
    server = raw_server_factory(sse_backend(framing, interval, count))
    gateway = gateway_factory(redis)
    arrivals = []
    with gateway.connect(timeout=20) as connection:
        connection.send(f"GET /events HTTP/1.1\r\nHost: {gateway.host(sandbox, server.port)}\r\n"
                        "Accept: text/event-stream\r\n\r\n".encode())
        version, status, reason, headers = connection.read_head()
        assert status == 200
        for number in range(count):
            connection.read_until(b"data: event %d\n\n" % number, 10)
            arrivals.append(time.monotonic())
        if framing == "chunked":
            connection.read_until(b"0\r\n\r\n", 10)
        else:
            assert connection.is_closed(10), "a close-delimited response must end with a close"
    sent = list(server.requests)
    assert len(sent) == count
    delays = [arrival - written for arrival, written in zip(arrivals, sent)]
    assert all(delay < 0.2 for delay in delays), f"event delays {delays}"
    # Not batched: each event was seen before the next one was even written.
    assert all(arrivals[i] < sent[i + 1] for i in range(count - 1)), (arrivals, sent)


def test_long_poll_pieces_arrive_as_sent(raw_server_factory, gateway_factory, redis, sandbox):
    """A sized response whose head and first half come at once and whose rest comes later."""
    written = {}

    def handler(stream, server):
        stream.read_head()
        written["head"] = time.monotonic()
        stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nfirst-half")
        server.released.wait(15)
        written["rest"] = time.monotonic()
        stream.sock.sendall(b"secondhalf")
        stream.wait_eof(10)

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    with gateway.connect(timeout=20) as connection:
        connection.send(f"GET /poll HTTP/1.1\r\nHost: {gateway.host(sandbox, server.port)}\r\n\r\n"
                        .encode())
        connection.read_until(b"first-half", 5)
        first_seen = time.monotonic()
        assert first_seen - written["head"] < 0.2
        server.released.set()
        connection.read_until(b"secondhalf", 5)
        assert time.monotonic() - written["rest"] < 0.2


# --------------------------------------------------------------------------- bodiless responses

class ScriptedBackend:
    """Keep-alive backend: answers each request with script[(method, path)] (bytes), else with a
    200 whose body is the path. Records (connection number, method, target, body)."""

    def __init__(self, script=None, delay=None):
        self.script = script or {}
        self.delay = delay or {}
        self.connections = 0
        self.lock = threading.Lock()

    def __call__(self, stream, server):
        with self.lock:
            self.connections += 1
            number = self.connections
        while True:
            try:
                request = stream.read_request()
            except ConnectionError:
                return
            server.record((number, request.method, request.target, request.body, request.trailers))
            time.sleep(self.delay.get(request.target, 0))
            answer = self.script.get((request.method, request.target))
            if answer is None:
                body = f"{request.target}:".encode() + request.body
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            stream.sock.sendall(answer)


BODILESS = {
    "head-sized": ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"),
    "head-chunked": ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "204": ("GET", b"HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n"),
    "304": ("GET", b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"),
    # A 304 may carry the representation's Content-Length (RFC 9110 §8.6), and a 204 that carries
    # one anyway still has no body: RFC 9112 §6.3 rule 1, "regardless of the header fields".
    "304-with-length": ("GET", b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n"
                               b"Content-Length: 1234\r\n\r\n"),
    "204-with-length": ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
}


@pytest.mark.parametrize("case", list(BODILESS))
def test_bodiless_response_then_next_request(raw_server_factory, gateway_factory, redis, sandbox,
                                             case):
    method, answer = BODILESS[case]
    backend = ScriptedBackend({(method, "/first"): answer})
    server = raw_server_factory(backend)
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    host = gateway.host(sandbox, server.port)
    with gateway.connect(timeout=5) as connection:
        first = connection.request(method, "/first", host=host)
        expected_status = int(answer.split(b" ")[1])
        assert first.status == expected_status, first
        assert first.body == b""
        assert first.keeps_alive, first
        if case == "head-sized":
            assert first.header("Content-Length") == "1000", first
        second = connection.request("GET", "/second", host=host)
        assert second.status == 200, second
        assert second.body == b"/second:", second
        assert connection.buffer == b"", f"stray bytes after the responses: {connection.buffer!r}"
    assert [(r[1], r[2]) for r in server.requests] == [(method, "/first"), ("GET", "/second")]
    # The gateway framed the bodiless response right on the upstream side too: it reused it.
    assert backend.connections == 1, "the upstream connection was not kept after a bodiless response"


def test_early_hints_then_final_response(raw_server_factory, gateway_factory, redis, sandbox):
    answer = (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
              b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    server = raw_server_factory(ScriptedBackend({("GET", "/hints"): answer}))
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    with gateway.connect(timeout=10) as connection:
        connection.send(f"GET /hints HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        heads = []
        for _ in range(3):
            version, status, reason, headers = connection.read_head()
            heads.append((status, [v for k, v in headers if k.lower() == "link"]))
            if status == 200:
                break
        assert heads == [(103, ["</a.css>; rel=preload"]), (103, ["</b.js>; rel=preload"]),
                         (200, [])], heads
        assert connection.read_exactly(5) == b"final"
        second = connection.request("GET", "/again", host=host)
        assert second.status == 200 and second.body == b"/again:", second


def test_chunked_response_with_trailers(raw_server_factory, gateway_factory, redis, sandbox):
    data = pattern_bytes(8 * MiB + 13)
    sizes, chunks, offset = [1, 7, 4096, 65536, 1000000, 3], [], 0
    while offset < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[offset:offset + size])
        offset += size
    digest = hashlib.sha256(data).hexdigest()
    body = b"".join(b"%x;piece=%d\r\n%s\r\n" % (len(c), n, c) for n, c in enumerate(chunks))
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\r\n" + body +
              b"0\r\nX-Digest: " + digest.encode() + b"\r\n\r\n")
    backend = ScriptedBackend({("GET", "/chunked"): answer})
    server = raw_server_factory(backend)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as client:
        stream = RawStream(client)
        client.sendall(f"GET /chunked HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        line, headers = stream.read_head()
        assert line.startswith("HTTP/1.1 200"), line
        assert ("Trailer", "X-Digest") in headers, headers
        received, trailers = stream.read_chunked()
        assert hashlib.sha256(received).hexdigest() == digest
        assert trailers == [("X-Digest", digest)], trailers
        client.sendall(f"GET /next HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        line, headers = stream.read_head()
        assert line.startswith("HTTP/1.1 200"), line
        assert stream.read_exactly(6) == b"/next:"


def test_chunked_request_with_trailers(raw_server_factory, gateway_factory, redis, sandbox):
    data = pattern_bytes(4 * MiB + 5)
    pieces = [data[i:i + 300007] for i in range(0, len(data), 300007)]
    backend = ScriptedBackend()
    server = raw_server_factory(backend)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    digest = hashlib.sha256(data).hexdigest()
    with gateway.connect(timeout=30) as connection:
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        connection.send(f"POST /up HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                        f"Trailer: X-Digest\r\n\r\n".encode() + payload +
                        f"0\r\nX-Digest: {digest}\r\n\r\n".encode())
        response = connection.read_response("POST")
        assert response.status == 200
        assert response.body == b"/up:" + data
    number, method, target, body, trailers = server.requests[0]
    assert body == data
    assert trailers == [("X-Digest", digest)]


def test_request_trailers_are_filtered_like_headers(raw_server_factory, gateway_factory, redis,
                                                    sandbox):
    """A trailer passes only as it would pass as a header: the token, routing headers, client
    Forwarded / X-Forwarded-*, Host, hop-by-hop and framing fields never reach the sandbox, even
    split over many packets; the rest pass in order, and the next request on the connection is
    unaffected."""
    backend = ScriptedBackend()
    server = raw_server_factory(backend)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    trailer_section = (b"0\r\nX-First: 1\r\ne2b-traffic-access-token: t0ken\r\n"
                       b"X-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\n"
                       b"Host: other.example\r\nE2b-Sandbox-Id: other\r\nKeep-Alive: 5\r\n"
                       b"Connection: x-second\r\nContent-Length: 99\r\n"
                       b"X-Second: named by Connection\r\n"
                       b"X-Last: 2\r\n\r\n")
    with gateway.connect(timeout=30) as connection:
        connection.send(f"POST /up HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                        f"\r\n5\r\nhello\r\n".encode())
        for offset in range(0, len(trailer_section), 7):
            connection.send(trailer_section[offset:offset + 7])
            time.sleep(0.002)
        response = connection.read_response("POST")
        assert response.status == 200, response
        assert response.body == b"/up:hello"
        connection.send(f"GET /next HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert connection.read_response().status == 200
    number, method, target, body, trailers = server.requests[0]
    assert body == b"hello"
    assert trailers == [("X-First", "1"), ("X-Last", "2")], trailers
    assert [request[2] for request in server.requests] == ["/up", "/next"]


def test_expect_100_answered_with_final_status(raw_server_factory, gateway_factory, redis, sandbox):
    """The sandbox refuses the body (417) instead of 100: the client gets the 417 without ever
    sending its body, and the connection (whose body was never sent) is closed after it."""
    seen = {}

    def handler(stream, server):
        line, headers = stream.read_head()
        seen["head"] = line
        stream.sock.sendall(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\nnope")
        stream.wait_eof(10)
        seen["extra"] = bytes(stream.buffer)

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    with gateway.connect(timeout=10) as connection:
        connection.send(f"POST /refuse HTTP/1.1\r\nHost: {gateway.host(sandbox, server.port)}\r\n"
                        "Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n".encode())
        response = connection.read_response("POST")
        assert response.status == 417, response
        assert response.body == b"nope"
        assert connection.is_closed(5), "the rest of a refused body cannot be told from a request"
    wait_for(lambda: "extra" in seen, 10, message="the upstream connection to close")
    assert seen["head"].startswith("POST /refuse")
    assert seen["extra"] == b""


def test_pipelined_mixed_methods_answer_in_order(raw_server_factory, gateway_factory, redis, sandbox):
    backend = ScriptedBackend(
        {("HEAD", "/p2"): b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"},
        delay={"/p1": 0.3})  # the first answer is the slowest: order must still hold
    server = raw_server_factory(backend)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    with gateway.connect(timeout=10) as connection:
        connection.send(
            f"POST /p1 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n0123456789".encode() +
            f"HEAD /p2 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() +
            f"GET /p3 HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"3\r\nabc\r\n0\r\n\r\n".encode() +
            f"GET /p4 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        first = connection.read_response("POST")
        second = connection.read_response("HEAD")
        third = connection.read_response()
        fourth = connection.read_response()
    assert (first.status, first.body) == (200, b"/p1:0123456789"), first
    assert (second.status, second.body, second.header("Content-Length")) == (200, b"", "999"), second
    assert (third.status, third.body) == (200, b"/p3:abc"), third
    assert (fourth.status, fourth.body) == (200, b"/p4:"), fourth
    assert [(r[1], r[2], r[3]) for r in server.requests] == [
        ("POST", "/p1", b"0123456789"), ("HEAD", "/p2", b""), ("GET", "/p3", b"abc"),
        ("GET", "/p4", b"")]
