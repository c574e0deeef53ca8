"""Fixtures for the test suite: the builds, a private redis-server, recording backends, the gateway, HTTP clients.

Everything listens on 127.0.0.1 (backends also on 127.0.0.2) on ports found by binding port 0.
Every test that uses `build` runs once against build/ and once against build-asan/.
"""
import contextlib
import functools
import hashlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
# The builds every test runs against; SGW_BUILDS="build-mine,/abs/dir" tests other build directories.
BUILD_DIRS = [name for name in os.environ.get("SGW_BUILDS", "build,build-asan").split(",") if name]
DOMAIN = "sandbox.localhost"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "LSAN_OPTIONS": "report_objects=0",
}
TOKEN_HEADER = "e2b-traffic-access-token"
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")


_PORTS_HANDED_OUT = set()


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on right now (bound to port 0, then released), and never one
    this run handed out before: two calls in a row can get the same released port from the
    kernel, and a configuration with both (a plain and a TLS listener) then fails to start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port


def wait_for(predicate, timeout, interval=0.02, message="condition"):
    """Polls predicate until it returns a true value (which is returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def sanitizer_findings(text):
    return [line for line in text.splitlines() if any(marker in line for marker in SANITIZER_MARKERS)]


# --------------------------------------------------------------------------- builds

@dataclass
class Build:
    name: str
    path: Path

    @property
    def binary(self):
        return self.path / "sandbox-gateway"

    @property
    def sanitized(self):
        return "asan" in Path(self.name).name

    def env(self):
        env = dict(os.environ)
        env.update(SANITIZER_ENV)
        return env

    def run(self, *args, timeout=30, check_sanitizers=True):
        """Runs the binary to completion (for -t, --version, --help)."""
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                                timeout=timeout, env=self.env(), stdin=subprocess.DEVNULL)
        if check_sanitizers:
            findings = sanitizer_findings(result.stderr)
            assert not findings, f"sanitizer report from {self.binary} {args}:\n{result.stderr}"
        return result


def require_builds():
    return os.environ.get("SGW_REQUIRE_BUILDS") == "1"


@pytest.fixture(scope="session", params=BUILD_DIRS)
def build(request):
    built = Build(request.param, REPO / request.param)  # an absolute param stays absolute
    if not built.binary.is_file():
        reason = (f"{request.param}/sandbox-gateway does not exist "
                  f"(build it with `make {'asan' if built.sanitized else 'build'}`)")
        if require_builds():
            pytest.fail(reason + "; SGW_REQUIRE_BUILDS=1 requires it", pytrace=False)
        pytest.skip(reason)
    return built


# --------------------------------------------------------------------------- redis

class RedisError(Exception):
    pass


class RedisServer:
    """A private redis-server on a fixed loopback port that can be stopped and started again."""

    def __init__(self, workdir: Path, notify="Kgh", port=None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.notify = notify
        self.port = port or free_port()
        self.process = None
        self.log = self.workdir / "redis.log"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=10):
        assert self.process is None, "redis-server already running"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--notify-keyspace-events", self.notify, "--daemonize", "no",
             "--dir", str(self.workdir), "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def up():
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited ({self.process.returncode}): "
                                     f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
        wait_for(up, timeout, 0.02, f"redis-server on port {self.port}")

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    # A minimal RESP client: one connection per command, so it survives restarts.
    def command(self, *args, timeout=5):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as connection:
            payload = b"*%d\r\n" % len(args)
            for argument in args:
                data = argument if isinstance(argument, bytes) else str(argument).encode()
                payload += b"$%d\r\n%s\r\n" % (len(data), data)
            connection.sendall(payload)
            reader = connection.makefile("rb")
            return self._read_reply(reader)

    def _read_reply(self, reader):
        line = reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = reader.read(length + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read_reply(reader) for _ in range(count)]
        raise RedisError(f"unexpected reply {line!r}")

    def key(self, sandbox_id, prefix="sandbox:catalog:"):
        return prefix + sandbox_id

    def put(self, sandbox_id, addr="127.0.0.1", prefix="sandbox:catalog:", **fields):
        """Replaces the record of sandbox_id in one transaction (fields whose value is None are left out)."""
        fields = {"addr": addr, "execution_id": f"{sandbox_id}-1", **fields}
        values = []
        for name, value in fields.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            values += [name, str(value)]
        # MULTI needs one connection: the whole transaction is sent in one go.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            commands = [("MULTI",), ("DEL", self.key(sandbox_id, prefix)),
                        ("HSET", self.key(sandbox_id, prefix), *values), ("EXEC",)]
            payload = b""
            for command in commands:
                payload += b"*%d\r\n" % len(command)
                for argument in command:
                    data = str(argument).encode()
                    payload += b"$%d\r\n%s\r\n" % (len(data), data)
            connection.sendall(payload)
            reader = connection.makefile("rb")
            replies = [self._read_reply(reader) for _ in commands]
        assert replies[-1] is not None, f"transaction failed: {replies}"

    def hset(self, sandbox_id, prefix="sandbox:catalog:", **fields):
        values = []
        for name, value in fields.items():
            values += [name, str(value).lower() if isinstance(value, bool) else str(value)]
        return self.command("HSET", self.key(sandbox_id, prefix), *values)

    def delete(self, sandbox_id, prefix="sandbox:catalog:"):
        return self.command("DEL", self.key(sandbox_id, prefix))

    def command_calls(self, name):
        """How many times `name` ran, from INFO commandstats (cmdstat_<name>:calls=N)."""
        info = self.command("INFO", "commandstats")
        match = re.search(rf"^cmdstat_{name.lower()}:calls=(\d+)", info, re.MULTILINE)
        return int(match.group(1)) if match else 0

    def lookup_calls(self):
        """Catalog lookups the gateway sent (it reads a record's fields with HMGET)."""
        return self.command_calls("hmget")

    def subscribed_clients(self):
        """Clients with at least one channel or pattern subscription."""
        count = 0
        for line in self.command("CLIENT", "LIST").splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if int(fields.get("sub", 0)) > 0 or int(fields.get("psub", 0)) > 0:
                count += 1
        return count


@pytest.fixture
def redis_factory(tmp_path):
    servers = []

    def make(notify="Kgh"):
        server = RedisServer(tmp_path / f"redis{len(servers)}", notify=notify)
        servers.append(server)
        server.start()
        return server
    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def redis(redis_factory):
    return redis_factory()


# --------------------------------------------------------------------------- backends

@dataclass
class Recorded:
    method: str
    path: str
    version: str
    headers: list
    body: bytes
    client: tuple

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        return [value for key, value in self.headers if key.lower() == name.lower()]


def _read_chunked(rfile):
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
        body += rfile.read(size)
        rfile.readline()


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
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return _read_chunked(self.rfile)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        backend = self.server.backend
        body = self._body()
        record = Recorded(self.command, self.path, self.request_version, list(self.headers.items()),
                          body, self.client_address)
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

    GET /hold waits until release(); /close answers and then closes the connection without saying so; /big?bytes=N sends N bytes; /sse sends one event, waits for
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
        self.server = ThreadingHTTPServer((host, port), _BackendHandler)
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


@pytest.fixture
def backend_factory():
    backends = []

    def make(name=None, host="127.0.0.1", port=0):
        backend = Backend(name or f"backend{len(backends)}", host, port)
        backends.append(backend)
        return backend
    yield make
    for backend in backends:
        backend.stop()


@pytest.fixture
def backend(backend_factory):
    return backend_factory("main")


@pytest.fixture
def backend_pair(backend_factory):
    """Two backends on one port number: 127.0.0.1:P ("one") and 127.0.0.2:P ("two")."""
    for _ in range(20):
        first = backend_factory("one", "127.0.0.1")
        try:
            second = backend_factory("two", "127.0.0.2", first.port)
        except OSError:
            continue
        return first, second
    pytest.fail("could not bind 127.0.0.1 and 127.0.0.2 on one port")


# --------------------------------------------------------------------------- HTTP client

class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name):
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise AssertionError(f"not JSON ({error}): {self}") from None

    def text(self):
        return self.body.decode("utf-8", errors="replace")

    @property
    def keeps_alive(self):
        connection = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} headers={self.headers} "
                f"body={self.body[:600]!r}>")


class HttpConnection:
    """A raw HTTP/1.1 client connection: sends bytes as given and reads whole responses."""

    def __init__(self, port, host="127.0.0.1", timeout=15):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the gateway")
        self.buffer += data

    def _line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_until(self, marker: bytes, timeout=10):
        """Reads until marker is in the buffer (leaving it there); fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not received within {timeout}s; got {self.buffer[-300:]!r}")
            self.sock.settimeout(left)
            try:
                self._fill()
            except socket.timeout:
                continue
            finally:
                self.sock.settimeout(self.timeout)
        return self.buffer

    def read_head(self):
        status_line = self._line().decode("latin-1")
        version, status, reason = (status_line.split(" ", 2) + [""])[:3]
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        return version, int(status), reason, headers

    def read_response(self, method="GET"):
        while True:
            version, status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101:
                continue
            break
        response = Response(version, status, reason, headers, b"")
        length = response.header("Content-Length")
        encoding = (response.header("Transfer-Encoding") or "").lower()
        if method == "HEAD" or status in (101, 204, 304):
            return response
        if "chunked" in encoding:
            body = b""
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self.read_exactly(size)
                self._line()
            response.body = body
        elif length is not None:
            response.body = self.read_exactly(int(length))
        else:
            body = self.buffer
            self.buffer = b""
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                body += data
            response.body = body
        return response

    def request(self, method="GET", target="/", host=None, headers=(), body=None, chunks=None,
                version="HTTP/1.1"):
        """Sends one request (Host first when given, then headers as a list of pairs or a dict) and
        returns its response. body sets Content-Length; chunks (a list of bytes) sends chunked."""
        lines = [f"{method} {target} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        items = headers.items() if isinstance(headers, dict) else headers
        lines += [f"{name}: {value}" for name, value in items]
        payload = b""
        if chunks is not None:
            lines.append("Transfer-Encoding: chunked")
            for chunk in chunks:
                payload += b"%x\r\n%s\r\n" % (len(chunk), chunk)
            payload += b"0\r\n\r\n"
        elif body is not None:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        return self.read_response(method)

    def is_closed(self, wait=2.0):
        """True when the peer has closed the connection (reads EOF) within wait seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
            if data:
                self.buffer += data
                return False
            return True
        except socket.timeout:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)


# --------------------------------------------------------------------------- gateway

def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Gateway:
    def __init__(self, build, workdir: Path, redis: Optional[RedisServer], directives, extra):
        self.build = build
        self.workdir = workdir
        self.redis = redis
        self.port = free_port()
        self.config = workdir / "gateway.conf"
        self.access_log = workdir / "access.log"
        self.stdout_path = workdir / "gateway.stdout"
        self.stderr_path = workdir / "gateway.stderr"
        settings = {
            "domain": DOMAIN,
            "listen": f"127.0.0.1:{self.port}",
            "workers": "1",
            "redis_url": redis.url if redis else f"redis://127.0.0.1:{free_port()}/0",
            "route_cache_ttl": "1s",
            "route_negative_ttl": "2s",
            "upstream_connect_retry": "200ms",
            "drain_delay": "0s",
            "drain_timeout": "5s",
            "log_level": "debug",
            "access_log": str(self.access_log),
        }
        settings.update(directives)
        lines = ["# written by tests/conftest.py"]
        for name, value in settings.items():
            if value is None:
                continue
            for item in value if isinstance(value, (list, tuple)) else [value]:
                lines.append(f"{name} {item}")
        lines += list(extra)
        self.config.write_text("\n".join(lines) + "\n")
        self.process = None
        self.checked = False
        self.open_files = None   # RLIMIT_NOFILE for the process, when set before start()

    def start(self, wait_routable=True, timeout=15):
        self.stdout = open(self.stdout_path, "wb")
        self.stderr = open(self.stderr_path, "wb")
        limit = self.open_files

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        self.process = subprocess.Popen([str(self.build.binary), "-c", str(self.config)],
                                        stdin=subprocess.DEVNULL, stdout=self.stdout,
                                        stderr=self.stderr, env=self.build.env(), cwd=self.workdir,
                                        preexec_fn=limits if limit is not None else None)
        deadline = time.monotonic() + timeout

        def accepting():
            if self.process.poll() is not None:
                raise AssertionError(f"sandbox-gateway exited with {self.process.returncode} at "
                                     f"start-up:\n{self.stderr_text()[-4000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(accepting, timeout, 0.02, f"the gateway to accept on 127.0.0.1:{self.port}")
        if wait_routable and self.redis is not None:
            # The Redis connection is up once an unknown sandbox gets "not found" (502), not 503.
            last = []

            def routable():
                try:
                    response = self.get("readyprobe", 1)
                except OSError as error:
                    last[:] = [repr(error)]
                    return False
                last[:] = [response]
                return response.status == 502
            try:
                wait_for(routable, max(1.0, deadline - time.monotonic()), 0.05,
                         "the gateway to answer 502 for an unknown sandbox")
            except AssertionError as error:
                raise AssertionError(f"{error}; last answer: {last}") from None
        return self

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def host(self, sandbox_id, port, suffix=""):
        """The Host of a sandbox port as a client sends it: "<port>-<id>.sandbox.localhost:<gw port>"."""
        return f"{port}-{sandbox_id}{suffix}.{DOMAIN}:{self.port}"

    def connect(self, timeout=15):
        return HttpConnection(self.port, timeout=timeout)

    def request(self, host, method="GET", target="/", headers=(), body=None, chunks=None, timeout=15):
        with self.connect(timeout) as connection:
            return connection.request(method, target, host=host, headers=headers, body=body,
                                      chunks=chunks)

    def get(self, sandbox_id, port, target="/", headers=(), **kwargs):
        return self.request(self.host(sandbox_id, port), "GET", target, headers, **kwargs)

    def curl(self, sandbox_id, port, target="/", *args, timeout=30):
        """Runs curl against the sandbox URL (resolved to the gateway); returns (status, headers, body)."""
        hostname = f"{port}-{sandbox_id}.{DOMAIN}"
        command = ["curl", "-sS", "--max-time", str(timeout - 2), "-D", "-",
                   "--resolve", f"{hostname}:{self.port}:127.0.0.1",
                   f"http://{hostname}:{self.port}{target}", *args]
        result = subprocess.run(command, capture_output=True, timeout=timeout)
        assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr!r}"
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 100"):
            head, _, body = body.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
        return Response("HTTP/1.1", status, "", headers, body)

    def access_entries(self):
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit code (killing and failing after timeout)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self._close_files()
                raise AssertionError(f"sandbox-gateway did not exit within {timeout}s of SIGTERM")
        self._close_files()
        return self.process.returncode

    def _close_files(self):
        for handle in (getattr(self, "stdout", None), getattr(self, "stderr", None)):
            if handle and not handle.closed:
                handle.close()

    def check_exit(self, timeout=10):
        """Stops the gateway and asserts a clean exit: status 0 and no sanitizer report."""
        if self.checked:
            return
        self.checked = True
        code = self.stop(timeout)
        stderr = self.stderr_text()
        findings = sanitizer_findings(stderr)
        assert not findings, f"sanitizer report in the gateway's stderr:\n{stderr[-8000:]}"
        assert code == 0, f"sandbox-gateway exited with {code} after SIGTERM:\n{stderr[-4000:]}"


@pytest.fixture
def gateway_factory(build, tmp_path, request, redis_factory, backend_factory):
    """gateway_factory(redis, **directives, extra=[lines], start=True): a running gateway.

    It depends on the Redis and backend factories so that gateways stop before them."""
    gateways = []
    request.node.sgw_gateways = gateways

    def make(redis=None, extra=(), start=True, wait_routable=True, **directives):
        workdir = tmp_path / f"gateway{len(gateways)}"
        workdir.mkdir()
        gateway = Gateway(build, workdir, redis, directives, extra)
        gateways.append(gateway)
        if start:
            gateway.start(wait_routable=wait_routable)
        return gateway
    yield make
    problems = []
    for gateway in gateways:
        try:
            gateway.check_exit()
        except AssertionError as error:
            problems.append(str(error))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(gateway_factory, redis):
    """A running gateway (one worker) on the test's redis."""
    return gateway_factory(redis)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for index, gateway in enumerate(getattr(item, "sgw_gateways", [])):
            text = gateway.stderr_text()
            if text:
                report.sections.append((f"gateway {index} stderr (last 6000 chars)", text[-6000:]))


# --------------------------------------------------------------------------- raw backends
# (added for test_streaming, test_websocket, test_hostile and test_upstream: scripted backends that
# control every byte and every close, which the recording HTTP backend above cannot)

@dataclass
class RawRequest:
    method: str
    target: str
    version: str
    headers: list
    body: bytes
    trailers: list

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class RawStream:
    """A buffered socket for scripted peers: exact reads, HTTP heads, chunked bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()

    def fill(self, size=262144):
        data = self.sock.recv(size)
        if not data:
            raise ConnectionError("peer closed")
        self.buffer += data

    def read_until(self, marker: bytes):
        """Returns everything up to and including marker."""
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            self.fill()

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_head(self):
        """(first line, [(name, value)]) of an HTTP message head."""
        lines = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return lines[0], headers

    def read_chunked(self):
        """(body, trailers) of a chunked body."""
        body = bytearray()
        while True:
            size = int(self.read_until(b"\r\n").split(b";")[0].strip(), 16)
            if size == 0:
                trailers = []
                while True:
                    line = self.read_until(b"\r\n")[:-2]
                    if not line:
                        return bytes(body), trailers
                    name, _, value = line.decode("latin-1").partition(":")
                    trailers.append((name.strip(), value.strip()))
            body += self.read_exactly(size)
            assert self.read_exactly(2) == b"\r\n", "chunk data not followed by CRLF"

    def read_request(self):
        line, headers = self.read_head()
        method, target, version = line.split(" ", 2)
        request = RawRequest(method, target, version, headers, b"", [])
        if "chunked" in (request.header("Transfer-Encoding") or "").lower():
            request.body, request.trailers = self.read_chunked()
        elif request.header("Content-Length"):
            request.body = self.read_exactly(int(request.header("Content-Length")))
        return request

    def wait_eof(self, timeout):
        """True if the peer closed (after any bytes, which are kept) within timeout seconds."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    return False
                if not data:
                    return True
                self.buffer += data
        except OSError:
            return True


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


@pytest.fixture
def raw_server_factory():
    """raw_server_factory(handler, host=, port=, backlog=): a RawServer stopped at teardown.

    Request it before gateway_factory so that gateways stop first."""
    servers = []

    def make(handler, host="127.0.0.1", port=0, backlog=128):
        server = RawServer(handler, host, port, backlog)
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- operations
# (added for test_operations and test_fleet: the admin endpoint (admin_listen), its /health and
# Prometheus /metrics)

def admin_request(address, path="/health", method="GET", version="HTTP/1.1", headers=(), timeout=10):
    """One request to an admin endpoint at address (host, port), on its own connection; no Host
    unless given in headers. Returns a Response."""
    host, port = address
    with HttpConnection(port, host=host, timeout=timeout) as connection:
        lines = [f"{method} {path} {version}"] + [f"{name}: {value}" for name, value in headers]
        connection.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return connection.read_response(method)


def parse_metrics(text):
    """Prometheus text exposition -> {'name' or 'name{labels}': float}; every sample line must parse."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)', line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[match.group(1)] = float(match.group(2))
    return samples


def admin_gateway(gateway_factory, redis, admin_host="127.0.0.1", **kwargs):
    """gateway_factory(...) with admin_listen on a free port of admin_host; the gateway's .admin is
    (host, port). kwargs go to gateway_factory (directives, extra, start, wait_routable)."""
    port = free_port(admin_host)
    gateway = gateway_factory(redis, admin_listen=f"{admin_host}:{port}", **kwargs)
    gateway.admin = (admin_host, port)
    return gateway


def gateway_health(gateway, **kwargs):
    """(status, body text) of GET /health on a gateway made by admin_gateway."""
    response = admin_request(gateway.admin, "/health", **kwargs)
    return response.status, response.text()


def gateway_metrics(gateway):
    """The parsed GET /metrics of a gateway made by admin_gateway."""
    response = admin_request(gateway.admin, "/metrics")
    assert response.status == 200, response
    return parse_metrics(response.text())
