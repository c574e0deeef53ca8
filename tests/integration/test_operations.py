"""Operations (DESIGN.md "Operations"): the admin endpoint's /health and /metrics, the drain on
SIGTERM, and the PROXY protocol (v1 and v2) on proxy_protocol listeners, sent as raw bytes."""
import signal
import socket
import struct
import time

import pytest

from lib.gateway import DOMAIN, admin_gateway, admin_request, gateway_health, gateway_metrics
from lib.http import HttpConnection
from lib.redis import RedisServer
from lib.util import free_port, wait_for

SANDBOX = "ops1"
# PROXY-protocol clients connect from this loopback address, so that the connection's own
# address (what a LOCAL header or a plain listener yields) differs from any address in a header.
CLIENT = "127.0.0.6"

METRIC_NAMES = [
    'sgw_requests_total{protocol="http/1.1",class="2xx"}', 'sgw_requests_total{protocol="http/1.1",class="4xx"}',
    'sgw_requests_total{protocol="http/1.1",class="5xx"}', 'sgw_request_duration_seconds_bucket{le="+Inf"}',
    "sgw_request_duration_seconds_sum", "sgw_request_duration_seconds_count",
    "sgw_client_connections", "sgw_upstream_connections", "sgw_tunnels",
    "sgw_route_cache_hits_total", "sgw_route_cache_misses_total", "sgw_redis_lookups_total",
    "sgw_redis_errors_total", "sgw_upstream_dial_errors_total", "sgw_tls_handshakes_total",
    "sgw_upstream_requests_total",
]


@pytest.fixture
def sandbox(redis):
    redis.put(SANDBOX)
    return SANDBOX


def delta(after, before, name):
    return after[name] - before[name]


def sigterm(gateway):
    gateway.process.send_signal(signal.SIGTERM)
    return time.monotonic()


def refuses(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def start_hold(gateway, backend, sandbox):
    """A request to the backend's /hold, in flight until backend.release()."""
    connection = gateway.connect(timeout=30)
    connection.send(f"GET /hold HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n\r\n".encode())
    wait_for(lambda: backend.holding >= 1, 10, 0.01, "the backend to hold the request")
    return connection


def open_tunnel(gateway, backend, sandbox):
    connection = gateway.connect(timeout=30)
    connection.send((f"GET /ws HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n"
                     "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    response = connection.read_response()
    assert response.status == 101, response
    connection.send(b"hello")
    assert connection.read_exactly(5) == b"HELLO"
    return connection


# =========================================================================== /health

def test_health_starting_until_redis_is_up_then_healthy(gateway_factory, backend, tmp_path):
    late = RedisServer(tmp_path / "late-redis")  # its port is chosen; it is not running yet
    try:
        gateway = admin_gateway(gateway_factory, None, redis_url=late.url)
        for _ in range(5):
            assert gateway_health(gateway) == (503, "starting\n")
            time.sleep(0.1)
        assert gateway.get(SANDBOX, backend.port).status == 503  # catalog unreachable, not cached

        late.start()
        late.put(SANDBOX)
        wait_for(lambda: gateway_health(gateway) == (200, "healthy\n"), 15, 0.05,
                 "/health 200 healthy once Redis is up")
        assert gateway.get(SANDBOX, backend.port).status == 200

        # A later outage does not turn it 503: cached routes still serve.
        errors = gateway_metrics(gateway)["sgw_redis_errors_total"]
        late.stop()
        wait_for(lambda: gateway_metrics(gateway)["sgw_redis_errors_total"] > errors, 10, 0.05,
                 "sgw_redis_errors_total to count the lost connection")
        assert gateway_health(gateway) == (200, "healthy\n")
        assert gateway.get(SANDBOX, backend.port).status == 200
    finally:
        late.stop()


def test_health_answers_http10_and_http11_without_host(gateway_factory, redis):
    gateway = admin_gateway(gateway_factory, redis)
    for version in ("HTTP/1.0", "HTTP/1.1"):
        response = admin_request(gateway.admin, "/health", version=version)
        assert (response.status, response.body) == (200, b"healthy\n"), (version, response)
        assert response.header("Content-Type").startswith("text/plain"), response
        response = admin_request(gateway.admin, "/health?from=lb", version=version,
                                 headers=[("Host", "10.0.0.11:9090"), ("User-Agent", "check")])
        assert (response.status, response.body) == (200, b"healthy\n"), (version, response)
    # HTTP/1.1 keeps the connection: a health checker may reuse it.
    with HttpConnection(gateway.admin[1], host=gateway.admin[0]) as connection:
        for _ in range(3):
            response = connection.request("GET", "/health")
            assert (response.status, response.body) == (200, b"healthy\n"), response
    metrics = admin_request(gateway.admin, "/metrics", version="HTTP/1.0")
    assert metrics.status == 200 and metrics.header("Content-Type").startswith("text/plain"), metrics
    assert b"sgw_requests_total" in metrics.body
    assert admin_request(gateway.admin, "/nothing").status == 404
    assert admin_request(gateway.admin, "/healthz").status == 404


def test_health_head_has_no_body(gateway_factory, redis):
    """HEAD /health: a status and headers only (RFC 9110 9.3.2), so the next response on the
    kept-alive connection parses."""
    gateway = admin_gateway(gateway_factory, redis)
    with HttpConnection(gateway.admin[1], host=gateway.admin[0]) as connection:
        head = connection.request("HEAD", "/health")
        assert head.status == 200, head
        extra = connection.unread(0.5)
        assert extra == b"", f"bytes after the HEAD response's head: {extra!r}"
        get = connection.request("GET", "/health")
        assert (get.version, get.status, get.body) == ("HTTP/1.1", 200, b"healthy\n"), get


def test_head_of_every_admin_path_has_no_body(gateway_factory, redis):
    """HEAD /metrics and HEAD of an unknown path too: the head alone, with the GET's length."""
    gateway = admin_gateway(gateway_factory, redis)
    with HttpConnection(gateway.admin[1], host=gateway.admin[0]) as connection:
        for path, status in [("/metrics", 200), ("/nothing", 404)]:
            head = connection.request("HEAD", path)
            assert head.status == status, head
            assert int(head.header("Content-Length")) > 0, head
            extra = connection.unread(0.5)
            assert extra == b"", f"bytes after HEAD {path}'s head: {extra[:200]!r}"
        get = connection.request("GET", "/health")
        assert get.status == 200, get


def test_sigterm_turns_health_503_at_once_while_listener_accepts(gateway_factory, redis, backend,
                                                                 sandbox):
    gateway = admin_gateway(gateway_factory, redis, drain_delay="3s", drain_timeout="10s")
    assert gateway_health(gateway) == (200, "healthy\n")
    signalled = sigterm(gateway)
    wait_for(lambda: gateway_health(gateway) == (503, "draining\n"), 2, 0.01, "/health 503 draining")
    took = time.monotonic() - signalled
    assert took < 1.0, f"/health turned 503 only {took:.2f}s after SIGTERM"
    assert gateway_health(gateway, version="HTTP/1.0") == (503, "draining\n")
    # drain_delay: the load balancer still sees the listener open; new connections are served.
    served = 0
    while time.monotonic() - signalled < 2.0:
        response = gateway.get(sandbox, backend.port, "/during-drain-delay")
        assert response.status == 200, response
        served += 1
        time.sleep(0.05)
    assert served >= 5
    assert gateway.process.poll() is None
    assert gateway_metrics(gateway)['sgw_requests_total{protocol="http/1.1",class="2xx"}'] >= served
    code = gateway.process.wait(15)
    exited = time.monotonic() - signalled
    assert code == 0
    assert 2.9 <= exited < 3.0 + 5, f"exited {exited:.2f}s after SIGTERM with drain_delay 3s"
    assert refuses(gateway.port)


# =========================================================================== /metrics

def test_metrics_counters_move(gateway_factory, redis, backend, sandbox):
    gateway = admin_gateway(gateway_factory, redis, route_cache_ttl="30s", upstream_connect_retry="100ms")
    before = gateway_metrics(gateway)
    for name in METRIC_NAMES:
        assert name in before, f"{name} missing from /metrics"

    with gateway.connect() as connection:  # three 2xx on one kept-alive connection
        for number in range(3):
            response = connection.request("GET", f"/m{number}", host=gateway.host(sandbox, backend.port))
            assert response.status == 200, response
    assert gateway.get(sandbox, backend.port, "/status/404").status == 404  # the sandbox's 4xx
    assert gateway.request(f"nodash.{DOMAIN}:{gateway.port}").status == 400  # the gateway's 4xx
    assert gateway.get("nosuchsandbox", backend.port).status == 502  # not in the catalog
    closed_port = free_port()
    assert gateway.get(sandbox, closed_port).status == 502  # dial refused

    expected = {'sgw_requests_total{protocol="http/1.1",class="2xx"}': 3, 'sgw_requests_total{protocol="http/1.1",class="4xx"}': 2,
                'sgw_requests_total{protocol="http/1.1",class="5xx"}': 2, "sgw_request_duration_seconds_count": 7,
                'sgw_request_duration_seconds_bucket{le="+Inf"}': 7,
                # ops1 (first request) and nosuchsandbox missed; the other 4 ops1 lookups hit
                "sgw_route_cache_misses_total": 2, "sgw_redis_lookups_total": 2,
                "sgw_route_cache_hits_total": 4, "sgw_upstream_dial_errors_total": 1,
                "sgw_redis_errors_total": 0,
                # three on one connection, and the 404: the sandbox saw four heads
                "sgw_upstream_requests_total": 4}
    after = wait_for(lambda: (lambda m: m if delta(m, before, "sgw_request_duration_seconds_count") >= 7
                              else None)(gateway_metrics(gateway)), 10, 0.05, "7 requests counted")
    moved = {name: delta(after, before, name) for name in expected}
    assert moved == expected
    assert after["sgw_request_duration_seconds_sum"] > before["sgw_request_duration_seconds_sum"]
    buckets = [(float(name.split('"')[1]), value) for name, value in after.items()
               if name.startswith("sgw_request_duration_seconds_bucket") and "+Inf" not in name]
    counts = [value for _, value in sorted(buckets)]
    assert counts == sorted(counts), f"buckets not cumulative: {sorted(buckets)}"
    assert counts[-1] <= after['sgw_request_duration_seconds_bucket{le="+Inf"}']
    assert after["sgw_upstream_connections"] >= 1  # the pooled connection to the backend

    # Open client connections: a gauge that follows them (the connections above are all closed
    # by now on our side; the gateway may take a moment to see the last one go).
    wait_for(lambda: gateway_metrics(gateway)["sgw_client_connections"] == 0, 10, 0.05,
             "sgw_client_connections 0")
    idle = [gateway.connect() for _ in range(3)]
    wait_for(lambda: gateway_metrics(gateway)["sgw_client_connections"] == 3, 10, 0.05,
             "sgw_client_connections 3")
    for connection in idle:
        connection.close()
    wait_for(lambda: gateway_metrics(gateway)["sgw_client_connections"] == 0, 10, 0.05,
             "sgw_client_connections back to 0")


def test_metrics_duration_histogram_places_a_slow_request(gateway_factory, redis, backend, sandbox):
    gateway = admin_gateway(gateway_factory, redis)
    assert gateway.get(sandbox, backend.port).status == 200
    # The response leaves before its request is counted: wait for the count, or a loaded
    # machine counts it after `before` and the delta below is 2.
    before = wait_for(lambda: (lambda m: m if m["sgw_request_duration_seconds_count"] >= 1 else None)(
        gateway_metrics(gateway)), 10, 0.05, "the first request counted")
    connection = start_hold(gateway, backend, sandbox)
    time.sleep(0.4)
    backend.release()
    assert connection.read_response().status == 200
    connection.close()
    after = wait_for(lambda: (lambda m: m if delta(m, before, "sgw_request_duration_seconds_count") == 1
                              else None)(gateway_metrics(gateway)), 10, 0.05, "the slow request counted")
    assert delta(after, before, 'sgw_request_duration_seconds_bucket{le="0.25"}') == 0
    assert delta(after, before, 'sgw_request_duration_seconds_bucket{le="+Inf"}') == 1
    assert delta(after, before, "sgw_request_duration_seconds_sum") >= 0.4


def test_metrics_tunnels_gauge_follows_a_websocket(gateway_factory, redis, backend, sandbox):
    gateway = admin_gateway(gateway_factory, redis)
    assert gateway_metrics(gateway)["sgw_tunnels"] == 0
    tunnel = open_tunnel(gateway, backend, sandbox)
    metrics = wait_for(lambda: (lambda m: m if m["sgw_tunnels"] == 1 else None)(gateway_metrics(gateway)),
                       10, 0.05, "sgw_tunnels 1")
    assert metrics["sgw_client_connections"] >= 1 and metrics["sgw_upstream_connections"] >= 1
    tunnel.close()
    wait_for(lambda: gateway_metrics(gateway)["sgw_tunnels"] == 0, 10, 0.05, "sgw_tunnels back to 0")


def test_metrics_are_summed_over_workers(gateway_factory, redis, backend, sandbox):
    gateway = admin_gateway(gateway_factory, redis, workers="2")
    before = gateway_metrics(gateway)
    for number in range(40):  # one connection each: SO_REUSEPORT spreads them over both workers
        assert gateway.get(sandbox, backend.port, f"/w{number}").status == 200
    after = wait_for(lambda: (lambda m: m if delta(m, before, 'sgw_requests_total{protocol="http/1.1",class="2xx"}') >= 40
                              else None)(gateway_metrics(gateway)), 10, 0.05, "40 requests counted")
    assert delta(after, before, 'sgw_requests_total{protocol="http/1.1",class="2xx"}') == 40
    assert delta(after, before, "sgw_request_duration_seconds_count") == 40
    assert delta(after, before, "sgw_route_cache_hits_total") + \
        delta(after, before, "sgw_route_cache_misses_total") == 40


# =========================================================================== drain

def test_drain_in_flight_request_finishes_with_connection_close(gateway_factory, redis, backend,
                                                                sandbox):
    drain_delay = 1.5
    gateway = admin_gateway(gateway_factory, redis, drain_delay="1500ms", drain_timeout="20s")
    idle = gateway.connect()
    first = idle.request("GET", "/before", host=gateway.host(sandbox, backend.port))
    assert first.status == 200 and first.keeps_alive, first
    slow = start_hold(gateway, backend, sandbox)

    signalled = sigterm(gateway)
    # During drain_delay the idle keep-alive connection stays (the balancer may still use it) ...
    assert not idle.is_closed(wait=0.7), "idle keep-alive connection closed before drain_delay"
    # ... and at drain_delay it is closed, with the listener.
    assert idle.is_closed(wait=10), "idle keep-alive connection not closed at drain"
    closed = time.monotonic() - signalled
    assert drain_delay - 0.1 <= closed < drain_delay + 3, f"idle connection closed after {closed:.2f}s"
    wait_for(lambda: refuses(gateway.port), 5, 0.05, "the listener to close")
    assert gateway.process.poll() is None, "exited with a request in flight"

    time.sleep(0.5)
    released = time.monotonic()
    backend.release()
    response = slow.read_response()
    assert response.status == 200, response
    assert (response.header("Connection") or "").lower() == "close", response
    assert slow.is_closed(wait=5)
    slow.close()  # as a client does on EOF (else the gateway lingers up to 2s for our close)
    code = gateway.process.wait(15)
    exited = time.monotonic()
    assert code == 0
    # drain_delay + the in-flight request's time (it ran until `released`), plus scheduling slack
    assert exited - released < 2.0, f"exited {exited - released:.2f}s after its last request ended"
    assert exited - signalled < (released - signalled) + 2.0
    idle.close()


def test_drain_gives_websocket_tunnels_drain_timeout(gateway_factory, redis, backend, sandbox):
    gateway = admin_gateway(gateway_factory, redis, drain_delay="500ms", drain_timeout="3s")
    tunnel = open_tunnel(gateway, backend, sandbox)
    signalled = sigterm(gateway)
    wait_for(lambda: refuses(gateway.port), 5, 0.05, "the listener to close")
    # Listeners are closed; the tunnel still carries bytes both ways.
    tunnel.send(b"still here")
    assert tunnel.read_exactly(10) == b"STILL HERE"
    assert gateway.process.poll() is None
    assert tunnel.is_closed(wait=15), "tunnel not closed at drain_timeout"
    closed = time.monotonic() - signalled
    assert 3.5 - 0.3 <= closed < 3.5 + 4, f"tunnel closed {closed:.2f}s after SIGTERM (0.5s + 3s)"
    assert gateway.process.wait(10) == 0
    tunnel.close()


def test_second_sigterm_exits_at_once(gateway_factory, redis, backend, sandbox):
    gateway = admin_gateway(gateway_factory, redis, drain_delay="20s", drain_timeout="20s")
    slow = start_hold(gateway, backend, sandbox)
    sigterm(gateway)
    wait_for(lambda: gateway_health(gateway) == (503, "draining\n"), 5, 0.02, "/health draining")
    second = sigterm(gateway)
    code = gateway.process.wait(10)
    took = time.monotonic() - second
    assert took < 3.0, f"exited {took:.2f}s after the second SIGTERM"
    assert code == 0
    assert slow.is_closed(wait=5)
    slow.close()


# =========================================================================== PROXY protocol

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(source, destination, source_port=56324, destination_port=443):
    family = "TCP6" if ":" in source else "TCP4"
    return f"PROXY {family} {source} {destination} {source_port} {destination_port}\r\n".encode()


def proxy_v2(source=None, destination=None, source_port=56324, destination_port=443, local=False,
             tlvs=b"", family=None):
    """A PROXY v2 header: PROXY over TCP4/TCP6 from source, or LOCAL (family UNSPEC, no addresses)."""
    if local:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in source:
        addresses = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, destination)
        family = 0x21 if family is None else family
    else:
        addresses = socket.inet_pton(socket.AF_INET, source) + socket.inet_pton(socket.AF_INET, destination)
        family = 0x11 if family is None else family
    body = addresses + struct.pack("!HH", source_port, destination_port) + tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def ssl_tlv(client_ssl=True):
    """PP2_TYPE_SSL as HAProxy's send-proxy-v2-ssl writes it: client flags, verify, sub-TLVs."""
    flags = 0x01 | 0x02 if client_ssl else 0x00  # PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN
    subtlvs = tlv(0x21, b"TLSv1.3") + tlv(0x23, b"TLS_AES_128_GCM_SHA256") if client_ssl else b""
    return tlv(0x20, bytes([flags]) + struct.pack("!I", 0) + subtlvs)


class ClientConnection(HttpConnection):
    """An HttpConnection from a chosen source address."""

    def __init__(self, port, source=CLIENT, timeout=15):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.buffer = b""


@pytest.fixture
def proxy_gateway(gateway_factory, redis, sandbox):
    """A gateway with its plain listener (gateway.port) and a proxy_protocol one (.proxy_port)."""
    port = free_port()
    gateway = gateway_factory(redis, extra=[f"listen 127.0.0.1:{port} proxy_protocol"])
    gateway.proxy_port = port
    return gateway


def proxied(gateway, backend, header, path, chunks=None, extra_headers=()):
    """Sends header (in chunks, if given, with pauses) then a request; returns (response, recorded)."""
    with ClientConnection(gateway.proxy_port) as connection:
        request = (f"GET {path} HTTP/1.1\r\nHost: {gateway.host(SANDBOX, backend.port)}\r\n"
                   + "".join(f"{name}: {value}\r\n" for name, value in extra_headers) + "\r\n").encode()
        if chunks:
            for piece in chunks(header):
                connection.send(piece)
                time.sleep(0.1)
            connection.send(request)
        else:
            connection.send(header + request)
        response = connection.read_response()
    assert response.status == 200, response
    seen = [record for record in backend.requests if record.path == path]
    assert len(seen) == 1, seen
    return response, seen[0]


def access_client(gateway, path):
    def entry():
        found = [line for line in gateway.access_entries() if line.get("path") == path]
        return found[0] if found else None
    return wait_for(entry, 10, 0.05, f"the access log line of {path}")["client"]


@pytest.mark.parametrize("source, destination", [("203.0.113.7", "192.0.2.1"),
                                                 ("10.0.99.250", "192.0.2.1"),
                                                 ("2001:db8::7", "2001:db8::1")],
                         ids=["tcp4", "tcp4-octets", "tcp6"])
def test_proxy_v1(proxy_gateway, backend, source, destination):
    path = f"/v1-{len(source)}"
    _, seen = proxied(proxy_gateway, backend, proxy_v1(source, destination), path,
                      extra_headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")])
    assert seen.header_all("X-Forwarded-For") == [source]
    assert seen.header_all("X-Forwarded-Proto") == ["http"]
    assert access_client(proxy_gateway, path) == source


@pytest.mark.parametrize("source, tlvs, proto", [
    ("198.51.100.23", b"", "http"),
    ("198.51.100.24", tlv(0x02, b"3000-ops1.sandbox.localhost") + ssl_tlv(True) + tlv(0x05, b"id-1"), "https"),
    ("198.51.100.25", ssl_tlv(False), "http"),
    ("2001:db8::25", ssl_tlv(True), "https"),
], ids=["tcp4", "tcp4-ssl-tlv", "tcp4-ssl-tlv-plain-client", "tcp6-ssl-tlv"])
def test_proxy_v2(proxy_gateway, backend, source, tlvs, proto):
    destination = "2001:db8::1" if ":" in source else "192.0.2.1"
    path = f"/v2-{source}"
    _, seen = proxied(proxy_gateway, backend, proxy_v2(source, destination, tlvs=tlvs), path)
    assert seen.header_all("X-Forwarded-For") == [source]
    assert seen.header_all("X-Forwarded-Proto") == [proto]
    assert access_client(proxy_gateway, path) == source


def test_proxy_header_keeps_for_every_request_on_the_connection(proxy_gateway, backend):
    with ClientConnection(proxy_gateway.proxy_port) as connection:
        connection.send(proxy_v2("198.51.100.40", "192.0.2.1", tlvs=ssl_tlv(True)))
        for number in range(3):
            response = connection.request("GET", f"/kept{number}",
                                          host=proxy_gateway.host(SANDBOX, backend.port))
            assert response.status == 200 and response.keeps_alive, response
    for number in range(3):
        seen = [record for record in backend.requests if record.path == f"/kept{number}"][0]
        assert seen.header("X-Forwarded-For") == "198.51.100.40"
        assert seen.header("X-Forwarded-Proto") == "https"


@pytest.mark.parametrize("header", [proxy_v2(local=True), proxy_v2(local=True, tlvs=tlv(0x05, b"chk")),
                                    b"PROXY UNKNOWN\r\n",
                                    b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"],
                         ids=["v2-local", "v2-local-tlv", "v1-unknown", "v1-unknown-addresses"])
def test_proxy_local_is_served_with_the_connection_address(proxy_gateway, backend, header):
    path = f"/local-{len(header)}"
    _, seen = proxied(proxy_gateway, backend, header, path)
    assert seen.header_all("X-Forwarded-For") == [CLIENT]
    assert seen.header_all("X-Forwarded-Proto") == ["http"]
    assert access_client(proxy_gateway, path) == CLIENT


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_header_split_across_packets(proxy_gateway, backend, version):
    header = proxy_v1("203.0.113.9", "192.0.2.1") if version == "v1" else \
        proxy_v2("203.0.113.9", "192.0.2.1", tlvs=ssl_tlv(True))
    # 5 bytes (not even the v2 signature or "PROXY "), the middle, then the rest
    _, seen = proxied(proxy_gateway, backend, header, f"/split-{version}",
                      chunks=lambda data: [data[:5], data[5:17], data[17:]])
    assert seen.header("X-Forwarded-For") == "203.0.113.9"


def read_all(connection, timeout=10):
    """Everything the peer sends until it closes (a reset counts as a close); fails on a timeout."""
    data = b""
    connection.sock.settimeout(timeout)
    try:
        while True:
            chunk = connection.sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        raise AssertionError(f"connection still open after {timeout}s; received {data!r}") from None


GARBAGE = {
    "http-request": b"GET / HTTP/1.1\r\nHost: 3000-ops1.sandbox.localhost\r\n\r\n",
    "lower-case": b"proxy TCP4 203.0.113.7 192.0.2.1 1234 443\r\n",
    "v1-bad-address": b"PROXY TCP4 203.0.113.300 192.0.2.1 1234 443\r\n",
    "v1-bad-family": b"PROXY TCP5 203.0.113.7 192.0.2.1 1234 443\r\n",
    "v1-v6-in-tcp4": b"PROXY TCP4 2001:db8::7 192.0.2.1 1234 443\r\n",
    "v1-port-range": b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",
    "v1-missing-port": b"PROXY TCP4 203.0.113.7 192.0.2.1 1234\r\n",
    "v1-no-cr": b"PROXY TCP4 203.0.113.7 192.0.2.1 1234 443\n",
    "v1-too-long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v2-version-3": proxy_v2("203.0.113.7", "192.0.2.1")[:12] + b"\x31" + proxy_v2("203.0.113.7", "192.0.2.1")[13:],
    "v2-command-2": proxy_v2("203.0.113.7", "192.0.2.1")[:12] + b"\x22" + proxy_v2("203.0.113.7", "192.0.2.1")[13:],
    "v2-udp": proxy_v2("203.0.113.7", "192.0.2.1", family=0x12),
    "v2-short-addresses": V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\xcb\x00\x71\x07",
    "v2-bad-tlv": proxy_v2("203.0.113.7", "192.0.2.1", tlvs=b"\x20\x00\x09\x01"),
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_no_valid_proxy_header_closes_without_response(proxy_gateway, backend, name):
    before = backend.count()
    with ClientConnection(proxy_gateway.proxy_port) as connection:
        payload = GARBAGE[name]
        if not payload.startswith(b"GET"):
            payload += f"GET /garbage HTTP/1.1\r\nHost: {proxy_gateway.host(SANDBOX, backend.port)}\r\n\r\n".encode()
        connection.send(payload)
        assert read_all(connection) == b"", "a response was sent to a connection without a valid PROXY header"
    assert backend.count() == before
    # The listener keeps serving valid connections.
    _, seen = proxied(proxy_gateway, backend, proxy_v1("203.0.113.8", "192.0.2.1"), f"/after-{name}")
    assert seen.header("X-Forwarded-For") == "203.0.113.8"


def test_plain_listener_beside_a_proxy_protocol_one(proxy_gateway, backend):
    # The plain listener: the connection's own address, no header expected.
    with ClientConnection(proxy_gateway.port) as connection:
        response = connection.request("GET", "/plain", host=proxy_gateway.host(SANDBOX, backend.port),
                                      headers=[("X-Forwarded-For", "6.6.6.6")])
    assert response.status == 200, response
    seen = [record for record in backend.requests if record.path == "/plain"][0]
    assert seen.header_all("X-Forwarded-For") == [CLIENT]
    assert access_client(proxy_gateway, "/plain") == CLIENT
    # A PROXY header sent to the plain listener is not one: it is a malformed request, and no
    # client can choose its X-Forwarded-For that way.
    before = backend.count()
    with ClientConnection(proxy_gateway.port) as connection:
        connection.send(proxy_v1("203.0.113.7", "192.0.2.1") +
                        f"GET /spoof HTTP/1.1\r\nHost: {proxy_gateway.host(SANDBOX, backend.port)}\r\n\r\n".encode())
        response = connection.read_response()
    assert response.status == 400, response
    assert backend.count() == before
    # And the proxy_protocol listener beside it takes the header.
    _, seen = proxied(proxy_gateway, backend, proxy_v1("203.0.113.7", "192.0.2.1"), "/beside")
    assert seen.header("X-Forwarded-For") == "203.0.113.7"


def test_drain_closes_a_connection_still_waiting_for_its_proxy_header(gateway_factory, redis, sandbox):
    """At drain, a proxy_protocol connection that sent nothing yet is idle, as one on a plain
    listener is: it is closed and does not hold the exit until drain_timeout. (Accept is deferred:
    a connection that sends nothing is accepted about a second after it opened, so drain_delay
    is longer than that here; the README asks for at least a second.)"""
    port = free_port()
    gateway = gateway_factory(redis, extra=[f"listen 127.0.0.1:{port} proxy_protocol"],
                              drain_delay="1500ms", drain_timeout="8s", client_header_timeout="30s")
    plain = ClientConnection(gateway.port)
    waiting = ClientConnection(port)
    time.sleep(0.2)
    signalled = sigterm(gateway)
    assert plain.is_closed(wait=5), "a plain connection that sent nothing was not closed at drain"
    assert waiting.is_closed(wait=5), "a proxy_protocol connection waiting for its header was not closed at drain"
    assert gateway.process.wait(15) == 0
    took = time.monotonic() - signalled
    assert took < 4.0, f"exited {took:.2f}s after SIGTERM (drain_delay 1500ms, drain_timeout 8s)"
    plain.close()
    waiting.close()


def test_from_sigterm_a_new_connection_is_accepted_at_once(gateway_factory, redis):
    """Listeners defer accept until a client's first bytes, except while draining: from SIGTERM
    on, a connection that sends nothing is accepted at once, so the drain can close it."""
    gateway = admin_gateway(gateway_factory, redis, drain_delay="3s", client_header_timeout="30s")
    before = ClientConnection(gateway.port)
    time.sleep(0.3)
    assert gateway_metrics(gateway)["sgw_client_connections"] == 0, "accept was not deferred"
    sigterm(gateway)
    wait_for(lambda: gateway_health(gateway)[0] == 503, 2, 0.01, "health 503 after SIGTERM")
    during = ClientConnection(gateway.port)
    time.sleep(0.3)  # the first is accepted a second after it opened, about 0.4 s from now
    assert gateway_metrics(gateway)["sgw_client_connections"] == 1, \
        "a connection opened after SIGTERM was not accepted at once"
    wait_for(lambda: gateway_metrics(gateway)["sgw_client_connections"] == 2, 3, 0.05,
             "the connection from before SIGTERM accepted too")
    assert before.is_closed(wait=5) and during.is_closed(wait=5), "not closed at drain"
    assert gateway.process.wait(15) == 0
    before.close()
    during.close()
