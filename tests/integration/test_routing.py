"""Routing by hostname: found, not found, the negative cache, every Host form of DESIGN.md."""
import random

import pytest

from lib.gateway import DOMAIN


def error_body(response, status, message, sandbox_id=None, port=None):
    """Asserts a gateway error: status, JSON content type and body {"sandboxId","message","code"[,"port"]}."""
    assert response.status == status, response
    assert (response.header("Content-Type") or "").startswith("application/json"), response
    body = response.json()
    assert body["message"] == message, body
    assert body["code"] == status, body
    if sandbox_id is not None:
        assert body["sandboxId"] == sandbox_id, body
    if port is not None and "port" in body:
        assert body["port"] == port, body
    return body


def test_found_reaches_backend(gateway, redis, backend):
    redis.put("abc123")
    response = gateway.get("abc123", backend.port, "/hello?x=1")
    assert response.status == 200, response
    answer = response.json()
    assert answer["backend"] == "main"
    assert answer["method"] == "GET"
    assert answer["path"] == "/hello?x=1"
    assert backend.count() == 1


def test_not_found_is_502(gateway, redis, backend):
    response = gateway.get("nosuchsandbox", backend.port)
    error_body(response, 502, "The sandbox was not found", "nosuchsandbox", backend.port)
    assert backend.count() == 0


def test_negative_cache_spares_redis(gateway, redis, backend):
    """A second miss within route_negative_ttl (2s) is answered without a Redis lookup."""
    with gateway.connect() as connection:  # one connection: one worker, one cache
        host = gateway.host("missing1", backend.port)
        first = connection.request("GET", "/", host=host)
        error_body(first, 502, "The sandbox was not found", "missing1")
        calls = redis.lookup_calls()
        for _ in range(5):
            again = connection.request("GET", "/", host=host)
            error_body(again, 502, "The sandbox was not found", "missing1")
        assert redis.lookup_calls() == calls, "a remembered miss went to Redis again"


def test_ignored_label_suffix(gateway, redis, backend):
    redis.put("abc123")
    response = gateway.request(gateway.host("abc123", backend.port, "-preview-7"))
    assert response.status == 200, response
    assert response.json()["backend"] == "main"


def test_uppercase_host(gateway, redis, backend):
    redis.put("abc123")
    host = f"{backend.port}-ABC123.SANDBOX.LocalHost:{gateway.port}"
    response = gateway.request(host)
    assert response.status == 200, response
    assert response.json()["backend"] == "main"


@pytest.mark.parametrize("form", ["with-port", "without-port"])
def test_trailing_dot(gateway, redis, backend, form):
    redis.put("abc123")
    host = f"{backend.port}-abc123.{DOMAIN}."
    if form == "with-port":
        host += f":{gateway.port}"
    response = gateway.request(host)
    assert response.status == 200, response
    assert response.json()["backend"] == "main"


def test_absolute_form_target_wins_over_host(gateway, redis, backend_factory):
    right = backend_factory("right")
    wrong = backend_factory("wrong")
    redis.put("right1")
    redis.put("wrong1")
    target = f"http://{right.port}-right1.{DOMAIN}:{gateway.port}/abs?q=1"
    response = gateway.request(gateway.host("wrong1", wrong.port), target=target)
    assert response.status == 200, response
    assert response.json()["backend"] == "right"
    assert right.last.path.endswith("/abs?q=1"), right.last.path
    assert wrong.count() == 0


def test_foreign_domain_is_421(gateway, redis):
    for host in ["example.com", f"3000-abc.example.com:{gateway.port}", "3000-abc.sandbox.localhost.evil.com",
                 "3000-abcsandbox.localhost"]:
        response = gateway.request(host)
        assert response.status == 421, (host, response)
        assert response.json()["message"] == "Misdirected request", (host, response)
        assert response.json()["code"] == 421


@pytest.mark.parametrize("label", ["abc-x1", "0-x1", "65536-x1", "123456-x1", "-x1", "+80-x1",
                                   "80a-x1"])
def test_invalid_port_is_400(gateway, redis, label):
    response = gateway.request(f"{label}.{DOMAIN}:{gateway.port}")
    error_body(response, 400, "Invalid sandbox port")


def test_port_with_leading_zero(gateway, redis, backend_factory):
    """"03000" is port 3000: needs a backend on a port of at most 4 digits."""
    for port in random.sample(range(2000, 10000), 200):
        try:
            low = backend_factory("low", port=port)
            break
        except OSError:
            continue
    else:
        pytest.fail("no free port below 10000")
    redis.put("abc123")
    response = gateway.request(f"0{low.port}-abc123.{DOMAIN}:{gateway.port}")
    assert response.status == 200, response
    assert response.json()["backend"] == "low"


@pytest.mark.parametrize("sandbox_id", ["", "ab_c", "a" * 64, "abc%41", "ab~c"],
                         ids=["empty", "underscore", "64-chars", "percent", "tilde"])
def test_invalid_sandbox_id_is_400(gateway, redis, sandbox_id):
    response = gateway.request(f"3000-{sandbox_id}.{DOMAIN}:{gateway.port}")
    error_body(response, 400, "Invalid sandbox ID")


@pytest.mark.parametrize("host", ["abc123.{domain}", "3000-abc.x.{domain}", "{domain}", "{domain}:{port}"])
def test_invalid_host_is_400(gateway, redis, host):
    response = gateway.request(host.format(domain=DOMAIN, port=gateway.port))
    error_body(response, 400, "Invalid host")


def test_longest_sandbox_id_routes(gateway, redis, backend):
    sandbox_id = "z" * 63
    redis.put(sandbox_id)
    response = gateway.get(sandbox_id, backend.port)
    assert response.status == 200, response


def test_missing_host_is_400(gateway, redis):
    with gateway.connect() as connection:
        response = connection.request("GET", "/", host=None)
    assert response.status == 400, response


def test_two_sandboxes_on_one_connection(gateway, redis, backend_factory):
    first = backend_factory("first")
    second = backend_factory("second")
    redis.put("sandboxa")
    redis.put("sandboxb")
    with gateway.connect() as connection:
        seen = []
        for sandbox_id, backend in [("sandboxa", first), ("sandboxb", second), ("sandboxa", first),
                                    ("sandboxb", second)]:
            response = connection.request("GET", f"/{sandbox_id}", host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
            assert response.keeps_alive, response
            seen.append(response.json()["backend"])
    assert seen == ["first", "second", "first", "second"]
    assert [r.path for r in first.requests] == ["/sandboxa", "/sandboxa"]
    assert [r.path for r in second.requests] == ["/sandboxb", "/sandboxb"]
    # Never one upstream connection for two sandboxes: each backend saw only its own requests.
    assert first.count() == 2 and second.count() == 2
