"""What the sandbox receives: Host and its mask, X-Forwarded-*, hop-by-hop headers removed."""
import pytest


def test_without_mask_backend_sees_client_host_exactly(gateway, redis, backend):
    redis.put("abc123")
    host = gateway.host("abc123", backend.port)
    response = gateway.request(host)
    assert response.status == 200, response
    assert backend.last.header_all("Host") == [host]


def test_mask_request_host(gateway, redis, backend):
    redis.put("masked1", mask_request_host="localhost:${PORT}")
    host = gateway.host("masked1", backend.port)
    response = gateway.request(host)
    assert response.status == 200, response
    received = backend.last
    assert received.header_all("Host") == [f"localhost:{backend.port}"]
    assert received.header_all("X-Forwarded-Host") == [host]


@pytest.mark.parametrize("origin, expected", [
    ("http://{host}", "http://localhost:{port}"),
    ("https://{host}", "https://localhost:{port}"),
    ("HTTP://{host}", "http://localhost:{port}"),
    ("http://{host}.evil", "http://{host}.evil"),
    ("http://other.example", "http://other.example"),
    ("null", "null"),
])
def test_mask_rewrites_the_requests_own_origin(gateway, redis, backend, origin, expected):
    """Jupyter and CSRF checks compare Origin with Host: the request's own origin follows the mask."""
    redis.put("masko", mask_request_host="localhost:${PORT}")
    host = gateway.host("masko", backend.port)
    response = gateway.get("masko", backend.port, headers=[("Origin", origin.format(host=host))])
    assert response.status == 200
    assert backend.last.header_all("Origin") == [expected.format(host=host, port=backend.port)]


def test_origin_passes_unchanged_without_a_mask(gateway, redis, backend):
    redis.put("nomask")
    host = gateway.host("nomask", backend.port)
    assert gateway.get("nomask", backend.port, headers=[("Origin", f"http://{host}")]).status == 200
    assert backend.last.header_all("Origin") == [f"http://{host}"]


def test_mask_without_port_template(gateway, redis, backend):
    redis.put("masked2", mask_request_host="internal.example")
    host = gateway.host("masked2", backend.port)
    response = gateway.request(host, headers=[("X-Forwarded-Host", "evil.example")])
    assert response.status == 200, response
    assert backend.last.header_all("Host") == ["internal.example"]
    assert backend.last.header_all("X-Forwarded-Host") == [host]


@pytest.mark.parametrize("mask", ["local host:${PORT}", "a\rb", "a\nb"])
def test_malformed_mask_is_502(gateway, redis, backend, mask):
    redis.put("badmask", mask_request_host=mask)
    response = gateway.get("badmask", backend.port)
    assert response.status == 502, response
    assert response.json()["code"] == 502
    assert backend.count() == 0


def test_forwarded_headers_replace_client_ones(gateway, redis, backend):
    redis.put("abc123")
    host = gateway.host("abc123", backend.port)
    response = gateway.request(host, headers=[
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "1"),
        ("Forwarded", "for=203.0.113.9;proto=https"),
        ("X-Real-Client", "kept"),
    ])
    assert response.status == 200, response
    received = backend.last
    assert received.header_all("X-Forwarded-For") == ["127.0.0.1"]
    assert received.header_all("X-Forwarded-Proto") == ["http"]
    assert received.header_all("Forwarded") == []
    assert all(value == host for value in received.header_all("X-Forwarded-Host")), received.headers
    assert "1" not in received.header_all("X-Forwarded-Port"), received.headers
    assert received.header_all("X-Real-Client") == ["kept"]


def test_forwarded_headers_set_without_client_ones(gateway, redis, backend):
    redis.put("abc123")
    response = gateway.get("abc123", backend.port)
    assert response.status == 200, response
    assert backend.last.header_all("X-Forwarded-For") == ["127.0.0.1"]
    assert backend.last.header_all("X-Forwarded-Proto") == ["http"]


def test_hop_by_hop_headers_removed(gateway, redis, backend):
    redis.put("abc123")
    response = gateway.get("abc123", backend.port, headers=[
        ("Connection", "keep-alive, X-Hop-One"),
        ("Connection", "x-hop-two"),
        ("X-Hop-One", "1"),
        ("X-Hop-Two", "2"),
        ("Keep-Alive", "timeout=5, max=100"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("X-End-To-End", "kept"),
        ("Accept", "text/plain"),
    ])
    assert response.status == 200, response
    received = backend.last
    for name in ["X-Hop-One", "X-Hop-Two", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade"]:
        assert received.header_all(name) == [], (name, received.headers)
    for value in received.header_all("Connection"):
        assert "hop" not in value.lower() and "upgrade" not in value.lower(), received.headers
    assert received.header_all("X-End-To-End") == ["kept"]
    assert received.header_all("Accept") == ["text/plain"]


def test_request_line_and_other_headers_pass_unchanged(gateway, redis, backend):
    redis.put("abc123")
    target = "/a/b%20c/..;x?y=1&z=%2F"
    response = gateway.get("abc123", backend.port, target, headers=[
        ("Cookie", "a=1; b=2"), ("X-Dup", "one"), ("X-Dup", "two"), ("User-Agent", "probe/1.0")])
    assert response.status == 200, response
    received = backend.last
    assert received.method == "GET"
    assert received.path == target
    assert received.header_all("Cookie") == ["a=1; b=2"]
    assert received.header_all("X-Dup") == ["one", "two"]
    assert received.header_all("User-Agent") == ["probe/1.0"]


def test_response_headers_and_status_pass_through(gateway, redis, backend):
    redis.put("abc123")
    response = gateway.get("abc123", backend.port, "/status/418")
    assert response.status == 418, response
    assert response.body == b"status\n"
    assert response.header("Content-Type") == "text/plain"


def test_hop_by_hop_response_headers_removed(raw_server_factory, gateway, redis):
    """The sandbox's Connection options are for its hop only: fields it names are dropped from the
    response, and so are Keep-Alive and the Connection fields themselves; a Connection that names
    only keep-alive drops nothing else."""
    responses = [
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: X-Resp-Hop, x-other-hop\r\n"
        b"X-Resp-Hop: 1\r\nX-Other-Hop: 2\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n"
        b"Content-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive , \r\nKeep-Alive: timeout=5\r\nX-Plain: 1\r\n"
        b"X-Resp-Hop: 3\r\nContent-Length: 2\r\n\r\nok",
    ]

    def handler(stream, server):
        for response in responses:
            stream.read_head()
            stream.sock.sendall(response)

    backend = raw_server_factory(handler)
    redis.put("hop1")
    with gateway.connect() as connection:
        host = gateway.host("hop1", backend.port)
        first = connection.request("GET", "/one", host=host)
        second = connection.request("GET", "/two", host=host)
    assert first.status == 200 and first.body == b"ok", first
    for name in ["X-Resp-Hop", "X-Other-Hop", "Keep-Alive"]:
        assert first.header_all(name) == [], (name, first.headers)
    assert first.header_all("X-Kept") == ["yes"]
    assert second.status == 200 and second.body == b"ok", second
    assert second.header_all("Keep-Alive") == []
    assert second.header_all("X-Plain") == ["1"]
    assert second.header_all("X-Resp-Hop") == ["3"], second.headers   # not named this time
