"""Proxying itself: bodies, keep-alive, streaming, upgrades, dial failures, timeouts, limits."""
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from lib.backends import pattern_bytes
from lib.gateway import admin_gateway, gateway_metrics
from lib.util import free_port, wait_for


@pytest.fixture
def sandbox(redis):
    redis.put("abc123")
    return "abc123"


def test_post_with_content_length(gateway, backend, sandbox):
    body = b"hello \x00\xff world\r\n" * 1000
    response = gateway.request(gateway.host(sandbox, backend.port), "POST", "/upload", body=body,
                               headers=[("Content-Type", "application/octet-stream")])
    assert response.status == 200, response
    assert backend.last.method == "POST"
    assert backend.last.body == body


def test_post_chunked(gateway, backend, sandbox):
    chunks = [b"first,", b"x" * 70000, b"\r\nlast"]
    response = gateway.request(gateway.host(sandbox, backend.port), "POST", "/chunked", chunks=chunks)
    assert response.status == 200, response
    assert backend.last.body == b"".join(chunks)
    answer = response.json()
    assert answer["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_large_post_with_curl(gateway, backend, sandbox, tmp_path):
    data = pattern_bytes(8 * 1024 * 1024)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    response = gateway.curl(sandbox, backend.port, "/curl-upload", "--data-binary", f"@{path}",
                            "-H", "Content-Type: application/octet-stream")
    assert response.status == 200, response
    answer = response.json()
    assert answer["body_length"] == len(data)
    assert answer["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_chunked_post_with_curl(gateway, backend, sandbox, tmp_path):
    data = pattern_bytes(300000)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    response = gateway.curl(sandbox, backend.port, "/curl-chunked", "--data-binary", f"@{path}",
                            "-H", "Transfer-Encoding: chunked")
    assert response.status == 200, response
    assert response.json()["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_large_response_intact(gateway, backend, sandbox):
    size = 16 * 1024 * 1024 + 7
    response = gateway.get(sandbox, backend.port, f"/big?bytes={size}", timeout=60)
    assert response.status == 200, response
    assert len(response.body) == size
    assert response.body == pattern_bytes(size)


def test_keep_alive_three_requests(gateway, backend, sandbox):
    host = gateway.host(sandbox, backend.port)
    with gateway.connect() as connection:
        for number in range(3):
            response = connection.request("GET", f"/n{number}", host=host)
            assert response.status == 200, response
            assert response.json()["path"] == f"/n{number}"
            assert response.keeps_alive, response
    assert [r.path for r in backend.requests] == ["/n0", "/n1", "/n2"]


def test_pipelined_requests_answer_in_order(gateway, backend, sandbox):
    host = gateway.host(sandbox, backend.port)
    with gateway.connect() as connection:
        connection.send(b"".join(f"GET /p{n} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for n in range(3)))
        paths = [connection.read_response().json()["path"] for _ in range(3)]
    assert paths == ["/p0", "/p1", "/p2"]


def test_connection_close_honoured(gateway, backend, sandbox):
    with gateway.connect() as connection:
        response = connection.request("GET", "/", host=gateway.host(sandbox, backend.port),
                                      headers=[("Connection", "close")])
        assert response.status == 200, response
        assert connection.is_closed(5), "the gateway kept a Connection: close connection open"


def segments_received(sock):
    """tcpi_segs_in of a socket's TCP_INFO: the segments it has taken in, the SYN-ACK included."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 140)[0]


@pytest.mark.parametrize("case", ["proxied", "own 400"])
def test_the_last_response_carries_the_fin(gateway_factory, redis, raw_server_factory, sandbox, case):
    """When the gateway closes after a response, its FIN goes in the response's last segment. The
    client takes the SYN-ACK, the ACK of its request and the response with the FIN: three segments,
    where a FIN of its own would make four. The sandbox answers in one send, so the proxied response
    is one segment too."""
    def handler(stream, server):
        while True:
            stream.read_request()
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    assert gateway.request(host, "GET", "/warm").status == 200  # route cached, pool warm
    last = "Connection: close" if case == "proxied" else "Content-Length: x"
    with gateway.connect() as connection:
        connection.send(f"GET /last HTTP/1.1\r\nHost: {host}\r\n{last}\r\n\r\n".encode())
        response = connection.read_response()
        assert response.status == (200 if case == "proxied" else 400), response
        assert connection.is_closed(5)
        assert segments_received(connection.sock) <= 3, \
            f"the client took {segments_received(connection.sock)} segments"
    assert not server.errors, server.errors


def test_a_connection_is_accepted_when_its_first_bytes_arrive(gateway_factory, redis, backend, sandbox):
    """Deferred accept: a connection that has sent nothing waits in the kernel, not in a worker; its
    request is served as soon as it comes."""
    gateway = admin_gateway(gateway_factory, redis)
    with gateway.connect() as connection:
        time.sleep(0.3)
        assert gateway_metrics(gateway)["sgw_client_connections"] == 0
        connection.send(f"GET /late HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n\r\n".encode())
        response = connection.read_response()
        assert response.status == 200, response
        assert gateway_metrics(gateway)["sgw_client_connections"] == 1


def test_http10_request(gateway, backend, sandbox):
    with gateway.connect() as connection:
        response = connection.request("GET", "/old", host=gateway.host(sandbox, backend.port),
                                      version="HTTP/1.0")
        assert response.status == 200, response
        assert backend.last.path == "/old"
        assert connection.is_closed(5)


def test_server_sent_events_are_flushed(gateway, backend, sandbox):
    with gateway.connect() as connection:
        connection.send(f"GET /sse HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n"
                        f"Accept: text/event-stream\r\n\r\n".encode())
        version, status, reason, headers = connection.read_head()
        assert status == 200
        # The backend holds the stream open after event 1: it must arrive before release().
        connection.read_until(b"data: event 1\n\n", 10)
        assert b"event 2" not in connection.buffer
        backend.release()
        connection.read_until(b"data: event 2\n\n", 10)


def test_websocket_upgrade_tunnel(gateway, backend, sandbox):
    with gateway.connect() as connection:
        connection.send((f"GET /ws HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n"
                         "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        response = connection.read_response()
        assert response.status == 101, response
        assert backend.last.header("Upgrade") == "websocket"
        for message in [b"hello tunnel", os.urandom(100000).hex().encode()]:
            connection.send(message)
            assert connection.read_exactly(len(message)) == message.upper()


def test_closed_port_is_502(gateway_factory, redis, sandbox):
    gateway = gateway_factory(redis, upstream_connect_retry="200ms")
    port = free_port()
    started = time.monotonic()
    response = gateway.get(sandbox, port)
    elapsed = time.monotonic() - started
    assert response.status == 502, response
    body = response.json()
    assert body["message"] == "The sandbox is running but port is not open", body
    assert body["sandboxId"] == sandbox and body["code"] == 502, body
    assert body.get("port") == port, body
    assert 0.15 <= elapsed < 5, f"answered after {elapsed:.2f}s with upstream_connect_retry 200ms"


def test_port_opening_late_is_retried(gateway_factory, redis, backend_factory, sandbox):
    gateway = gateway_factory(redis, upstream_connect_retry="5s")
    port = free_port()
    opener = threading.Timer(0.6, lambda: backend_factory("late", port=port))
    opener.start()
    try:
        response = gateway.get(sandbox, port, "/late", timeout=20)
    finally:
        opener.join()
    assert response.status == 200, response
    assert response.json()["backend"] == "late"


def test_upstream_response_timeout_is_504(gateway_factory, redis, backend, sandbox):
    gateway = gateway_factory(redis, upstream_response_timeout="500ms")
    started = time.monotonic()
    response = gateway.get(sandbox, backend.port, "/hold", timeout=20)
    elapsed = time.monotonic() - started
    backend.release()
    assert response.status == 504, response
    body = response.json()
    assert body["message"] == "The sandbox did not respond in time", body
    assert 0.4 <= elapsed < 5, elapsed


def test_max_connections_429(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, workers="2")
    redis.put("limited1", max_connections=2)
    host = gateway.host("limited1", backend.port)
    holders = [gateway.connect(timeout=30) for _ in range(2)]
    try:
        for connection in holders:
            connection.send(f"GET /hold HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        wait_for(lambda: backend.holding == 2, 10, 0.02, "two requests held at the backend")
        for _ in range(3):  # new connections may land on either worker: the count is process-wide
            refused = gateway.get("limited1", backend.port)
            assert refused.status == 429, refused
            body = refused.json()
            assert body["message"] == ("The sandbox has too many concurrent incoming connections "
                                       "(limit: 2)"), body
            assert body["code"] == 429 and body["sandboxId"] == "limited1", body
        backend.release()
        for connection in holders:
            assert connection.read_response().status == 200
    finally:
        for connection in holders:
            connection.close()
    wait_for(lambda: gateway.get("limited1", backend.port).status == 200, 5, 0.05,
             "the limit to free up after the held requests finished")


def test_request_head_too_large_is_431(gateway, backend, sandbox):
    with gateway.connect() as connection:
        try:
            response = connection.request("GET", "/", host=gateway.host(sandbox, backend.port),
                                          headers=[("X-Big", "a" * 40000)])
        except (ConnectionError, BrokenPipeError):
            pytest.fail("the gateway closed without answering 431")
        assert response.status == 431, response
        assert connection.is_closed(5)
    assert backend.count() == 0


@pytest.mark.parametrize("raw", [
    b"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"GET / HTTP/1.1\r\nHost: {host}\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: {host}\r\nX-Name : x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: {host}\r\nHost: other.example\r\n\r\n",
], ids=["cl-and-te", "bad-chunk", "two-lengths", "space-in-name", "space-before-colon",
        "two-hosts"])
def test_malformed_requests_are_400_then_close(gateway, backend, sandbox, raw):
    with gateway.connect() as connection:
        connection.send(raw.replace(b"{host}", gateway.host(sandbox, backend.port).encode()))
        response = connection.read_response()
        assert response.status == 400, response
        assert connection.is_closed(5)


def test_client_header_timeout_is_408(gateway_factory, redis, sandbox, backend):
    gateway = gateway_factory(redis, client_header_timeout="500ms")
    with gateway.connect() as connection:
        connection.send(b"GET / HTTP/1.1\r\nHost: ")
        started = time.monotonic()
        try:
            response = connection.read_response()
            assert response.status == 408, response
        except ConnectionError:
            pass  # closing without a 408 is acceptable too; the point is not waiting forever
        assert time.monotonic() - started < 5
        assert connection.is_closed(5)


def test_expect_100_continue(gateway, backend, sandbox):
    """The client waits for 100 Continue before sending its body (as curl does for large bodies)."""
    body = b"after the interim response"
    with gateway.connect() as connection:
        connection.send((f"POST /expect HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n"
                         f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        version, status, reason, headers = connection.read_head()
        assert status == 100, (status, reason, headers)
        connection.send(body)
        response = connection.read_response("POST")
        assert response.status == 200, response
        assert response.json()["body"] == body.decode()
        # The connection stays usable after the interim response.
        again = connection.request("GET", "/after", host=gateway.host(sandbox, backend.port))
        assert again.json()["path"] == "/after"
