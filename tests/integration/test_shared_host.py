"""The shared host (DESIGN "Shared host"): sandbox.<domain>, localhost and IP literals routed by
E2b-Sandbox-Id / E2b-Sandbox-Port, and the catalog's public_ports."""
import pytest

from lib.gateway import DOMAIN, TOKEN_HEADER

TOKEN = "tok_shared_0123456789"


def shared_hosts(gateway):
    return [f"sandbox.{DOMAIN}:{gateway.port}", f"SANDBOX.{DOMAIN.upper()}", "localhost",
            f"localhost:{gateway.port}", f"127.0.0.1:{gateway.port}", "[::1]:8080", "10.9.8.7"]


def test_shared_host_routes_by_headers_and_removes_them(gateway, backend):
    for host in shared_hosts(gateway):
        response = gateway.request(host, target="/api/x?y=1",
                                   headers=[("E2b-Sandbox-Id", "shared1"),
                                            ("e2b-sandbox-port", str(backend.port))])
        # No record yet: routed by the headers to the catalog, which does not know it.
        assert response.status == 502, (host, response)
        assert response.json()["sandboxId"] == "shared1", (host, response)
        assert response.json()["port"] == backend.port, (host, response)


def test_shared_host_proxies_with_everything_after_routing_unchanged(gateway, redis, backend):
    redis.put("shared2", mask_request_host="localhost:${PORT}")
    host = f"sandbox.{DOMAIN}:{gateway.port}"
    response = gateway.request(host, target="/files?path=/x",
                               headers=[("E2B-SANDBOX-ID", "Shared2"), ("E2b-Sandbox-Port", str(backend.port)),
                                        ("X-Kept", "1")])
    assert response.status == 200, response
    received = backend.last
    assert received.path == "/files?path=/x"
    assert received.header("E2b-Sandbox-Id") is None, received.headers
    assert received.header("E2b-Sandbox-Port") is None, received.headers
    assert received.header("X-Kept") == "1"
    assert received.header("Host") == f"localhost:{backend.port}"
    assert received.header("X-Forwarded-Host") == host


@pytest.mark.parametrize("headers, message", [
    ([], "Missing header E2b-Sandbox-Id"),
    ([("E2b-Sandbox-Port", "3000")], "Missing header E2b-Sandbox-Id"),
    ([("E2b-Sandbox-Id", "abc")], "Missing header E2b-Sandbox-Port"),
    ([("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Port", "3000")], "Invalid sandbox ID"),
    ([("E2b-Sandbox-Id", "ab_c"), ("E2b-Sandbox-Port", "3000")], "Invalid sandbox ID"),
    ([("E2b-Sandbox-Id", "a" * 64), ("E2b-Sandbox-Port", "3000")], "Invalid sandbox ID"),
    ([("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Port", "0")], "Invalid sandbox port"),
    ([("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Port", "65536")], "Invalid sandbox port"),
    ([("E2b-Sandbox-Id", "abc"), ("E2b-Sandbox-Port", "80"), ("E2b-Sandbox-Port", "80")], "Invalid sandbox port"),
])
def test_shared_host_without_good_headers_is_400(gateway, backend, headers, message):
    for host in (f"sandbox.{DOMAIN}", "127.0.0.1"):
        response = gateway.request(host, headers=headers)
        assert response.status == 400, (host, response)
        assert response.json()["message"] == message, (host, response)
        assert response.json()["code"] == 400
    assert backend.count() == 0


def test_headers_are_ignored_on_a_port_host(gateway, redis, backend, backend_factory):
    other = backend_factory(name="other")
    redis.put("named1")
    response = gateway.get("named1", backend.port, "/p",
                           headers=[("E2b-Sandbox-Id", "elsewhere"), ("E2b-Sandbox-Port", str(other.port))])
    assert response.status == 200, response
    assert backend.last.header("E2b-Sandbox-Id") is None
    assert other.count() == 0


def test_public_ports_skip_the_token_on_those_ports_only(gateway, redis, backend, backend_factory):
    daemon = backend_factory(name="daemon")
    redis.put("priv1", allow_public_traffic=False, traffic_access_token=TOKEN,
              public_ports=f"{daemon.port}, 1")
    open_port = gateway.request(f"sandbox.{DOMAIN}", target="/health",
                                headers=[("E2b-Sandbox-Id", "priv1"), ("E2b-Sandbox-Port", str(daemon.port)),
                                         (TOKEN_HEADER, "wrong")])
    assert open_port.status == 200, open_port
    assert daemon.last.header(TOKEN_HEADER) is None, daemon.last.headers
    closed_port = gateway.get("priv1", backend.port)
    assert closed_port.status == 403, closed_port
    with_token = gateway.get("priv1", backend.port, headers=[(TOKEN_HEADER, TOKEN)])
    assert with_token.status == 200, with_token


def test_bad_public_ports_is_a_malformed_record(gateway, redis, backend):
    redis.put("badports1", public_ports="80,x")
    response = gateway.get("badports1", backend.port)
    assert response.status == 502, response
    assert response.json()["message"] == "The sandbox record is invalid"
