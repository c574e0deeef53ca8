"""The upstream side: retry of a request lost on a reused pooled connection, pool reuse counted
at the backend, late and closed ports, connect and response timeouts, broken and dying
backends, and max_connections counted over two workers."""
import select
import socket
import threading
import time

import pytest

from lib.util import free_port, require, wait_for


@pytest.fixture
def sandbox(redis):
    redis.put("up1")
    return "up1"


class DroppingBackend:
    """Keep-alive backend that answers the first request of each connection and, on the second
    request of a connection, reads it whole and closes without a byte of response (the app's
    keep-alive timer fired just as the request crossed it). drop_fresh: drop first requests too.

    Records (connection number, method, target, body, "answered" | "dropped")."""

    def __init__(self):
        self.connections = 0
        self.drop_fresh = False
        self.lock = threading.Lock()

    def __call__(self, stream, server):
        with self.lock:
            self.connections += 1
            number = self.connections
        served = 0
        while True:
            request = stream.read_request()
            if served >= 1 or self.drop_fresh:
                server.record((number, request.method, request.target, request.body, "dropped"))
                return  # closes: the request gets no response byte
            server.record((number, request.method, request.target, request.body, "answered"))
            body = f"{number}:{request.target}".encode()
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            served += 1


@pytest.mark.parametrize("method,body,retried", [
    ("GET", None, True),
    ("DELETE", None, True),
    ("PUT", b"put body", False),      # idempotent, but its body was sent
    ("POST", b"post body", False),    # neither
    ("POST", None, False),            # not idempotent, even without a body
])
def test_request_lost_on_reused_connection(raw_server_factory, gateway_factory, redis, sandbox,
                                           method, body, retried):
    dropping = DroppingBackend()
    server = raw_server_factory(dropping)
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    host = gateway.host(sandbox, server.port)
    first = gateway.request(host, method, "/first", body=body)
    assert first.status == 200 and first.body == b"1:/first", first
    second = gateway.request(host, method, "/second", body=body)
    attempts = [(r[0], r[2], r[4]) for r in server.requests if r[2] == "/second"]
    if retried:
        assert second.status == 200, second
        assert second.body == b"2:/second", second
        assert attempts == [(1, "/second", "dropped"), (2, "/second", "answered")], attempts
    else:
        assert second.status == 502, second
        assert second.json()["message"] == "The sandbox closed the connection without a response"
        assert attempts == [(1, "/second", "dropped")], f"retried a {method}: {attempts}"
    assert not server.errors, server.errors


def test_retry_on_fresh_connection_happens_once(raw_server_factory, gateway_factory, redis, sandbox):
    dropping = DroppingBackend()
    server = raw_server_factory(dropping)
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    host = gateway.host(sandbox, server.port)
    assert gateway.request(host, "GET", "/first").status == 200
    dropping.drop_fresh = True  # the fresh connection fails too: no second retry
    response = gateway.request(host, "GET", "/second")
    assert response.status == 502, response
    attempts = [(r[0], r[4]) for r in server.requests if r[2] == "/second"]
    assert attempts == [(1, "dropped"), (2, "dropped")], attempts


def test_fresh_connection_closed_without_response_is_502(raw_server_factory, gateway_factory, redis,
                                                         sandbox):
    def handler(stream, server):
        request = stream.read_request()
        server.record(request.target)  # and close without answering

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    with gateway.connect() as connection:
        response = connection.request("GET", "/vanish", host=gateway.host(sandbox, server.port))
        assert response.status == 502, response
        assert response.json()["message"] == "The sandbox closed the connection without a response"
    assert server.requests == ["/vanish"], "a request on a fresh connection must not be retried"


class CountingBackend:
    """Keep-alive backend: answers "<connection number>:<target>" and counts connections."""

    def __init__(self):
        self.connections = 0
        self.lock = threading.Lock()

    def __call__(self, stream, server):
        with self.lock:
            self.connections += 1
            number = self.connections
        while True:
            request = stream.read_request()
            server.record((number, request.target))
            body = f"{number}:{request.target}".encode()
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_pool_reuse_counted_at_backend(raw_server_factory, gateway_factory, redis):
    counting = CountingBackend()
    server = raw_server_factory(counting)
    # route_cache_ttl 0: each request reads the record, so a new execution_id counts at once.
    gateway = gateway_factory(redis, route_cache_ttl="0", upstream_idle_timeout="30s")
    redis.put("reuse1", execution_id="life-1")
    for number in range(10):  # ten client connections, one after another
        response = gateway.get("reuse1", server.port, f"/a{number}")
        assert response.status == 200 and response.body == f"1:/a{number}".encode(), response
    assert counting.connections == 1, "sequential requests were not carried by one pooled connection"
    redis.hset("reuse1", execution_id="life-2")  # the sandbox was restarted: a new lifetime
    for number in range(5):
        response = gateway.get("reuse1", server.port, f"/b{number}")
        assert response.status == 200 and response.body == f"2:/b{number}".encode(), response
    assert counting.connections == 2
    redis.put("reuse2", execution_id="life-1")  # another sandbox at the same address and port
    response = gateway.get("reuse2", server.port, "/c")
    assert response.body == b"3:/c", "two sandboxes shared an upstream connection"


def test_port_opening_300ms_late_works(raw_server_factory, gateway_factory, redis, sandbox):
    gateway = gateway_factory(redis, upstream_connect_retry="1s")  # the documented default
    port = free_port()
    counting = CountingBackend()
    opened = {}

    def open_late():
        raw_server_factory(counting, port=port)
        opened["at"] = time.monotonic()
    timer = threading.Timer(0.3, open_late)
    started = time.monotonic()
    timer.start()
    try:
        response = gateway.get(sandbox, port, "/late", timeout=20)
    finally:
        timer.join()
    assert response.status == 200, response
    assert response.body == b"1:/late"
    assert opened["at"] - started >= 0.3


def test_closed_port_502_after_retry_window(gateway_factory, redis, sandbox):
    gateway = gateway_factory(redis, upstream_connect_retry="1s")
    port = free_port()
    started = time.monotonic()
    response = gateway.get(sandbox, port)
    elapsed = time.monotonic() - started
    assert response.status == 502, response
    assert response.json()["message"] == "The sandbox is running but port is not open"
    assert 0.9 <= elapsed < 4, f"answered after {elapsed:.2f}s with upstream_connect_retry 1s"


@pytest.fixture
def unanswered_port():
    """A port whose SYNs are dropped: a listener with a full accept queue (backlog 0, never
    accepted), so a dial stays in SYN_SENT until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        connected = True
    except socket.timeout:
        connected = False
    except OSError as error:
        connected = error
    finally:
        probe.close()
    try:
        require(connected is False, f"cannot make a loopback dial hang here (probe: {connected!r})")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_upstream_connect_timeout_is_504(gateway_factory, redis, sandbox, unanswered_port):
    gateway = gateway_factory(redis, upstream_connect_timeout="500ms", upstream_connect_retry="5s")
    started = time.monotonic()
    response = gateway.get(sandbox, unanswered_port, timeout=20)
    elapsed = time.monotonic() - started
    assert response.status == 504, response
    assert response.json()["message"] == "The sandbox did not respond in time"
    assert 0.4 <= elapsed < 4, f"answered after {elapsed:.2f}s with upstream_connect_timeout 500ms"


def test_response_timeout_covers_only_the_first_byte(raw_server_factory, gateway_factory, redis,
                                                     sandbox):
    """A slow body is not a timeout: upstream_response_timeout ends at the first response byte."""
    def handler(stream, server):
        stream.read_request()
        stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
        for piece in range(4):
            time.sleep(0.4)
            stream.sock.sendall(b"piece %d..." % piece)
        stream.wait_eof(10)

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis, upstream_response_timeout="300ms")
    started = time.monotonic()
    response = gateway.get(sandbox, server.port, "/slow-body")
    assert response.status == 200, response
    assert response.body == b"piece 0...piece 1...piece 2...piece 3..."
    assert time.monotonic() - started >= 1.5


@pytest.mark.parametrize("answer", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\nok",
    # Removing a framing field that Connection names would leave the client without the
    # response's end (it hung): a bad response.
    b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n5\r\nhello\r\n0\r\n\r\n",
    # 101 to a request that was not forwarded as an upgrade (DESIGN "What the sandbox receives").
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw",
], ids=["garbage", "two-lengths", "cl-and-te", "space-in-name", "connection-names-length",
        "connection-names-transfer-encoding", "101-without-upgrade"])
def test_malformed_response_is_502(raw_server_factory, gateway_factory, redis, sandbox, answer):
    def handler(stream, server):
        stream.read_request()
        stream.sock.sendall(answer)
        stream.wait_eof(10)

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    with gateway.connect(timeout=10) as connection:
        response = connection.request("GET", "/broken", host=gateway.host(sandbox, server.port))
        assert response.status == 502, response
        assert response.json()["code"] == 502


def test_max_connections_counted_across_two_workers(gateway_factory, redis, backend):
    """Twelve concurrent requests over two workers (SO_REUSEPORT spreads them; all twelve on one
    worker has odds of 1 in 2048): exactly the limit of 4 are let through, the rest get 429."""
    gateway = gateway_factory(redis, workers="2")
    redis.put("limited2", max_connections=4)
    host = gateway.host("limited2", backend.port)
    clients = [gateway.connect(timeout=30) for _ in range(12)]
    try:
        for connection in clients:
            connection.send(f"GET /hold HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        wait_for(lambda: backend.holding == 4, 10, 0.02, "four requests held at the backend")
        refused, pending = [], list(clients)
        deadline = time.monotonic() + 15
        while len(refused) < 8 and time.monotonic() < deadline:
            readable, _, _ = select.select([c.sock for c in pending], [], [], 0.2)
            for connection in [c for c in pending if c.sock in readable]:
                refused.append((connection, connection.read_response()))
                pending.remove(connection)
        statuses = [response.status for connection, response in refused]
        assert statuses == [429] * 8, statuses
        assert refused[0][1].json()["message"] == (
            "The sandbox has too many concurrent incoming connections (limit: 4)")
        readable, _, _ = select.select([c.sock for c in pending], [], [], 0.3)
        assert not readable, "more than the limit got an answer"
        assert backend.holding == 4
        backend.release()
        assert len(pending) == 4
        for connection in pending:
            assert connection.read_response().status == 200
    finally:
        for connection in clients:
            connection.close()
    # The slots are free again: four at once get through.
    results = []

    def one():
        results.append(gateway.get("limited2", backend.port, "/again").status)
    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [200] * 4, results
