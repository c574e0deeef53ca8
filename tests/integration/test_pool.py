"""Upstream connections: pooled per sandbox lifetime, never shared across sandboxes or lifetimes."""
import contextlib
import os
import random
import socket
import struct
import time
from pathlib import Path

from lib.gateway import admin_gateway, gateway_metrics
from lib.util import accept_queue, open_descriptors, settled_descriptors, take_every_descriptor, wait_for


def source(backend, index):
    """The (address, port) the gateway connected from for the backend's index-th request."""
    return backend.requests[index].client


def test_pool_reuses_within_a_lifetime_only(gateway_factory, redis, backend):
    # route_cache_ttl 0: every request reads the record, so a new execution_id is seen at once.
    gateway = gateway_factory(redis, route_cache_ttl="0", upstream_idle_timeout="30s")
    redis.put("pooled1", execution_id="life-1")
    for number in range(3):
        assert gateway.get("pooled1", backend.port, f"/r{number}").status == 200
    assert source(backend, 0) == source(backend, 1) == source(backend, 2), \
        "sequential requests of one sandbox lifetime should reuse one pooled upstream connection"
    redis.hset("pooled1", execution_id="life-2")
    assert gateway.get("pooled1", backend.port, "/new-life").status == 200
    assert source(backend, 3) != source(backend, 2), "a pooled connection was reused across lifetimes"


def test_long_execution_id_keeps_ports_and_lifetimes_apart(gateway_factory, redis,
                                                           backend_factory):
    """Every field of the pool key counts whole: with an execution_id of 300 bytes (a fixed
    160-byte key once cut off the address and the port), a request for port B never rides a
    pooled connection to port A, and a new lifetime never reuses the old one's."""
    gateway = gateway_factory(redis, route_cache_ttl="0", upstream_idle_timeout="30s")
    first, second = backend_factory("a"), backend_factory("b")
    long_id = "e" * 300
    redis.put("longexec", execution_id=long_id + "-1")
    assert gateway.get("longexec", first.port, "/a1").status == 200
    response = gateway.get("longexec", second.port, "/b1")
    assert response.status == 200, response
    assert response.json()["backend"] == "b", response.json()
    assert [r.path for r in first.requests] == ["/a1"]
    assert [r.path for r in second.requests] == ["/b1"]
    assert gateway.get("longexec", first.port, "/a2").status == 200
    assert source(first, 1) == source(first, 0), "the same lifetime and port should reuse"
    redis.hset("longexec", execution_id=long_id + "-2")
    assert gateway.get("longexec", first.port, "/a3").status == 200
    assert source(first, 2) != source(first, 1), "a pooled connection was reused across lifetimes"


def test_a_cached_route_finds_its_pool_slot_and_never_another(gateway_factory, redis, backend_factory):
    """A cached record remembers its pool slot (for one port): alternating ports replace what it
    remembers and each port still reuses its own connection; once the slot's connections expire
    and another sandbox takes the freed slot, the record's next request dials its own
    sandbox again rather than riding the other's connection."""
    gateway = gateway_factory(redis, upstream_idle_timeout="400ms")
    first, second = backend_factory("a"), backend_factory("b")
    redis.put("hinta")
    redis.put("hintb")
    with gateway.connect() as connection:
        def get(sandbox_id, backend, path):
            response = connection.request("GET", path, host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
            assert response.json()["backend"] == backend.name and response.json()["path"] == path
        for number in range(3):
            get("hinta", first, f"/a{number}")
            get("hinta", second, f"/b{number}")
        get("hinta", first, "/a3")  # port A's slot is the one remembered
        assert len({source(first, i) for i in range(4)}) == 1, "port A should reuse one connection"
        assert len({source(second, i) for i in range(3)}) == 1, "port B should reuse one connection"
        before = {record.client for record in first.requests + second.requests}
        wait_for(lambda: before <= set(first.closed) | set(second.closed), 5, 0.02,
                 "the idle pooled connections to be closed")
        get("hintb", first, "/other")  # a new slot: the one port A had, freed last
        get("hinta", first, "/a-again")
        get("hintb", first, "/other-again")
    assert source(first, 5) not in before and source(first, 5) != source(first, 4), \
        "hinta's request rode a connection it did not dial"
    assert source(first, 6) == source(first, 4), "hintb should reuse its own connection"
    assert [r.path for r in first.requests] == ["/a0", "/a1", "/a2", "/a3", "/other", "/a-again",
                                                "/other-again"]


def test_sandboxes_never_share_upstream_connections(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    redis.put("sharea")
    redis.put("shareb")
    with gateway.connect() as connection:
        for sandbox_id in ["sharea", "shareb", "sharea", "shareb"]:
            response = connection.request("GET", f"/{sandbox_id}", host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
    by_sandbox = {}
    for record in backend.requests:
        by_sandbox.setdefault(record.path, set()).add(record.client)
    assert not (by_sandbox["/sharea"] & by_sandbox["/shareb"]), by_sandbox


def test_idle_upstream_connection_closed_by_timer(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, upstream_idle_timeout="300ms")
    redis.put("idle1")
    assert gateway.get("idle1", backend.port).status == 200
    upstream = source(backend, 0)
    answered = time.monotonic()
    wait_for(lambda: upstream in backend.closed, 5, 0.02, "the idle pooled connection to be closed")
    assert time.monotonic() - answered >= 0.2


def test_app_closing_a_pooled_connection_is_not_an_error(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    redis.put("closer1")
    for number in range(5):
        # /close answers without "Connection: close" and then closes, like an app whose keep-alive
        # timeout just ran out; the next request must not fail because of it.
        response = gateway.get("closer1", backend.port, f"/close?n={number}")
        assert response.status == 200, response
        assert response.json()["path"] == f"/close?n={number}"


def test_many_idle_connections_expire_together(gateway_factory, redis, backend):
    """More pooled connections than one sweep closes at a time (64) expire at once: the sweep
    comes back for the rest, and every one is closed."""
    gateway = gateway_factory(redis, upstream_idle_timeout="500ms")
    sandboxes = [f"many{number:03d}" for number in range(200)]
    for sandbox_id in sandboxes:
        redis.put(sandbox_id)
    with gateway.connect() as connection:
        for sandbox_id in sandboxes:
            response = connection.request("GET", f"/{sandbox_id}", host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
    upstreams = {record.client for record in backend.requests}
    assert len(upstreams) == len(sandboxes)
    wait_for(lambda: upstreams <= set(backend.closed), 10, 0.05, "every idle pooled connection to be closed")


def test_a_full_pool_closes_the_connection_idle_longest(gateway_factory, redis, backend):
    """With the pool full, a connection coming back from a busy sandbox stays and the one idle
    longest (another sandbox's) is closed for it. Open files 128: the pool keeps 96."""
    gateway = gateway_factory(redis, start=False, upstream_idle_timeout="60s")
    gateway.open_files = 128
    gateway.start()
    quiet = [f"quiet{number:02d}" for number in range(96)]
    for sandbox_id in quiet + ["busy"]:
        redis.put(sandbox_id)
    with gateway.connect() as connection:
        def get(sandbox_id):
            response = connection.request("GET", f"/{sandbox_id}", host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
            return backend.requests[-1].client
        quiet_sources = [get(sandbox_id) for sandbox_id in quiet]   # 96 idle: the pool is full
        busy_sources = [get("busy") for _ in range(5)]
        assert len(set(busy_sources)) == 1, "the busy sandbox lost its pooled connection"
        wait_for(lambda: quiet_sources[0] in backend.closed, 5, 0.02,
                 "the connection idle longest to be closed")
        assert not set(quiet_sources[1:]) & set(backend.closed)
        # The quiet sandbox whose connection went dials again; the rest still reuse theirs.
        assert get(quiet[0]) not in quiet_sources
        assert get(quiet[5]) == quiet_sources[5]


def fill_pool(gateway, redis, backend, count):
    """count sandboxes answered once each over one connection, which then closes: count idle
    upstream connections in the pool. Returns the backend-side sources of them, in order."""
    sources = []
    with gateway.connect() as connection:
        for number in range(count):
            sandbox_id = f"idle{number:03d}"
            redis.put(sandbox_id)
            response = connection.request("GET", "/", host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
            sources.append(backend.requests[-1].client)
    return sources


def gateway_cpu_seconds(gateway):
    fields = Path(f"/proc/{gateway.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_idle_connections_make_room(gateway_factory, redis, backend):
    """Open files 128, the pool full of 96 idle connections: 40 new clients, each on its own
    connection to a sandbox of its own, need 80 descriptors more than there are. Idle connections,
    the longest idle first, are closed for the accepts and the dials, and every client is answered."""
    gateway = admin_gateway(gateway_factory, redis, start=False, upstream_idle_timeout="60s",
                            log_level="info")
    gateway.open_files = 128
    gateway.start()
    idle = fill_pool(gateway, redis, backend, 96)
    before = gateway_metrics(gateway)["sgw_upstream_evictions_total"]
    for number in range(40):
        redis.put(f"new{number:02d}")
    connections = [gateway.connect() for _ in range(40)]
    try:
        for number, connection in enumerate(connections):
            connection.send(f"GET /new{number} HTTP/1.1\r\nHost: {gateway.host(f'new{number:02d}', backend.port)}"
                            "\r\n\r\n".encode())
        for number, connection in enumerate(connections):
            response = connection.read_response("GET")
            assert response.status == 200, (number, response)
            assert response.json()["path"] == f"/new{number}"
    finally:
        for connection in connections:
            connection.close()
    evicted = gateway_metrics(gateway)["sgw_upstream_evictions_total"] - before
    assert evicted >= 40, f"{evicted} idle connections closed for 40 clients and their dials"
    wait_for(lambda: idle[0] in backend.closed, 5, 0.02, "the connection idle longest to be closed")
    assert idle[-1] not in backend.closed, "the most recently used idle connection went first"
    assert "accept failed" not in gateway.stderr_text(), "an accept failed with idle connections to close"


def test_out_of_descriptors_with_nothing_idle_clients_wait(gateway_factory, redis, backend):
    """Open files 64 and no idle connection to close: the clients beyond the descriptors wait in
    the backlog. The worker pauses its listeners (one log line each 100 ms), not spinning on a
    listener that stays readable, and accepts them once descriptors are free again; a dial without
    a descriptor is tried again within upstream_connect_retry."""
    gateway = gateway_factory(redis, start=False, log_level="info", upstream_connect_retry="3s")
    gateway.open_files = 64
    gateway.start()
    redis.put("waiter")
    host = gateway.host("waiter", backend.port)
    # Heads begun (accepted: the listener defers accept until bytes arrive) and never finished.
    sockets = []
    try:
        for _ in range(64):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\n")
            sockets.append(sock)
        wait_for(lambda: "accept failed" in gateway.stderr_text(), 5, 0.02,
                 "an accept to fail for want of descriptors")
        start_cpu, start = gateway_cpu_seconds(gateway), time.monotonic()
        time.sleep(1.0)
        cpu = gateway_cpu_seconds(gateway) - start_cpu
        elapsed = time.monotonic() - start
        assert cpu < 0.3 * elapsed, f"the gateway spent {cpu:.2f} s of CPU in {elapsed:.2f} s waiting"
        failures = gateway.stderr_text().count("accept failed")
        assert failures <= 40, f"{failures} accept failures logged in about 1.5 s"
        # Half of them go: the rest, accepted or waiting, finish their heads and are answered.
        for sock in sockets[:32]:
            sock.close()
        for sock in sockets[32:]:
            sock.sendall(f"Host: {host}\r\nConnection: close\r\n\r\n".encode())
        for number, sock in enumerate(sockets[32:]):
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), (number, answer[:200])
    finally:
        for sock in sockets:
            sock.close()


def connect_from(port, source_port, timeout=10):
    """A connection from 127.0.0.1:source_port, closed with a reset (no TIME_WAIT to keep the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.settimeout(timeout)
    sock.bind(("127.0.0.1", source_port))
    sock.connect(("127.0.0.1", port))
    return sock


def test_out_of_descriptors_another_workers_idle_connections_make_room(gateway_factory, redis, backend):
    """Two workers, open files 160: the idle connections one worker may keep (60: 3/4 of the
    descriptors, over two) are all that worker's, the other has none. With every descriptor
    taken, a client of the other worker would wait in its backlog until they time out (60 s), and
    its dial would fail until upstream_connect_retry ends: the worker asks the first to close some
    for each, and the client is accepted and answered."""
    gateway = gateway_factory(redis, start=False, upstream_idle_timeout="60s", log_level="info",
                              workers="2", upstream_connect_retry="3s")
    gateway.open_files = 160
    gateway.start()
    sources = fill_pool(gateway, redis, backend, 60)
    filled = settled_descriptors(gateway.process.pid)  # the filling client's close seen
    # Which worker a connection lands on follows from its addresses (SO_REUSEPORT's hash): a
    # source port whose request did not ride the first worker's idle connection is the other's.
    # /close makes the sandbox close the connection after answering, so no pool keeps it.
    other_port, probed = None, 0
    for source_port in random.sample(range(20000, 30000), 40):
        try:
            sock = connect_from(gateway.port, source_port)
        except OSError:
            continue  # the port is taken here
        with contextlib.closing(sock):
            sock.sendall(f"GET /close HTTP/1.1\r\nHost: {gateway.host(f'idle{probed:03d}', backend.port)}"
                         "\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        if backend.requests[-1].client != sources[probed]:
            other_port = source_port
            break
        probed += 1  # that idle connection is closed now
        if probed == 20:
            break
    assert other_port is not None, "20 source ports all landed on the worker of the idle connections"
    wait_for(lambda: open_descriptors(gateway.process.pid) == filled - probed, 5, 0.02,
             "the probes' connections to close")
    sockets = []
    try:
        take_every_descriptor(gateway.port, gateway.process.pid, 160, sockets)
        assert "accept failed" not in gateway.stderr_text()
        # The other worker's client: nothing idle of its own to close for it.
        last = connect_from(gateway.port, other_port)
        sockets.append(last)
        last.sendall(b"GET /last HTTP/1.1\r\n")
        wait_for(lambda: accept_queue(gateway.port) == 0, 5, 0.02, "the other worker's client to be accepted")
        assert "accept failed" in gateway.stderr_text(), "the other worker found descriptors free"
        # And its dial to the sandbox, with every descriptor taken again.
        take_every_descriptor(gateway.port, gateway.process.pid, 160, sockets)
        last.sendall(f"Host: {gateway.host('idle059', backend.port)}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := last.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    finally:
        for sock in sockets:
            sock.close()


def test_connection_told_to_close_is_not_pooled(raw_server_factory, gateway_factory, redis):
    """An HTTP/1.0 request goes to the sandbox with Connection: close, so the sandbox may close
    after answering whatever its own response head says, and must not read another request
    there (RFC 9112 §9.6): that connection is never pooled, or the next request (a POST, which
    is never retried) is lost on it. Found by fuzz_request."""
    def handler(stream, server):
        told_to_close = False
        while True:
            try:
                request = stream.read_request()
            except ConnectionError:
                return
            if told_to_close:
                server.record(("after close", request.method, request.target))
                stream.wait_eof(1)  # a server that closes late: the request is lost
                return
            server.record((stream.sock.getpeername(), request.method, request.target))
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            told_to_close = (request.header("Connection") or "").lower() == "close"

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    redis.put("closes1")
    host = gateway.host("closes1", server.port)
    with gateway.connect() as connection:
        connection.send(f"GET /old HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
                        f"POST /after HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\n\r\n"
                        f"data".encode())
        assert connection.read_response().status == 200
        response = connection.read_response("POST")
        assert response.status == 200, response
    (first, _, _), (second, method, target) = server.requests
    assert (method, target) == ("POST", "/after") and first != second, server.requests


def test_bytes_from_the_sandbox_on_an_idle_connection_end_it(raw_server_factory, gateway_factory, redis):
    """RFC 9112 §9.8: any byte a sandbox sends on a connection while it idles in the pool (here a
    second, unrequested answer, 100 ms after the first) makes it unusable: it is closed at once,
    and the next request goes over a new connection and gets its own answer, never the stray
    one."""
    def handler(stream, server):
        while True:
            try:
                request = stream.read_request()
            except ConnectionError:
                return
            peer = stream.sock.getpeername()
            server.record((peer, request.target))
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if request.target == "/first":
                time.sleep(0.1)
                stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
                if stream.wait_eof(2):
                    server.record(("closed", peer))
                return

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    redis.put("stray1")
    with gateway.connect() as connection:
        host = gateway.host("stray1", server.port)
        first = connection.request("GET", "/first", host=host)
        assert first.status == 200 and first.body == b"ok", first
        wait_for(lambda: any(record[0] == "closed" for record in server.requests), 5, 0.02,
                 "the gateway to close the connection the stray bytes came on")
        second = connection.request("GET", "/second", host=host)
        assert second.status == 200 and second.body == b"ok", second
    (first_peer, _), (_, closed_peer), (second_peer, target) = server.requests
    assert first_peer == closed_peer and second_peer != first_peer and target == "/second", \
        server.requests


def test_an_answer_written_in_pieces_is_not_held_for_a_delayed_ack(gateway_factory, redis, backend):
    """The test backend (Python's http.server) writes each answer's head and body apart without
    TCP_NODELAY, so the body waits until the head is acknowledged. On a pooled connection the
    kernel would delay that acknowledgement some 40 ms, every answer: the gateway acknowledges
    an unfinished answer at once."""
    gateway = gateway_factory(redis, upstream_idle_timeout="30s")
    redis.put("pieces")
    took = []
    with gateway.connect() as connection:
        for _ in range(30):
            started = time.monotonic()
            connection.send(f"GET / HTTP/1.1\r\nHost: {gateway.host('pieces', backend.port)}\r\n\r\n".encode())
            assert connection.read_response().status == 200
            took.append(time.monotonic() - started)
    assert len({request.client for request in backend.requests}) == 1  # one pooled connection
    took.sort()
    assert took[len(took) // 2] < 0.02, took  # 40 ms each without the acknowledgement
