"""Private sandboxes: the e2b-traffic-access-token check, and that the header never reaches a sandbox."""
import pytest

from lib.gateway import TOKEN_HEADER, sha256_hex

MISSING = ("Sandbox is secured with traffic access token. "
           "Token header 'e2b-traffic-access-token' is missing")
INVALID = ("Sandbox is secured with traffic access token. "
           "Provided token in header 'e2b-traffic-access-token' is invalid")
TOKEN = "tok_9f8e7d6c5b4a3210"


def assert_forbidden(response, message, sandbox_id):
    assert response.status == 403, response
    assert (response.header("Content-Type") or "").startswith("application/json"), response
    body = response.json()
    assert body["code"] == 403, body
    assert body["sandboxId"] == sandbox_id, body
    if message is not None:
        assert body["message"] == message, body


@pytest.fixture(params=["plain", "sha256"])
def private_sandbox(request, redis):
    """A private sandbox whose record holds the token either plain or as its SHA-256."""
    if request.param == "plain":
        redis.put("secret1", allow_public_traffic=False, traffic_access_token=TOKEN)
    else:
        redis.put("secret1", allow_public_traffic=False, traffic_access_token_sha256=sha256_hex(TOKEN))
    return "secret1"


def test_private_without_token_is_403(gateway, backend, private_sandbox):
    response = gateway.get(private_sandbox, backend.port)
    assert_forbidden(response, MISSING, private_sandbox)
    assert backend.count() == 0


@pytest.mark.parametrize("wrong", [TOKEN + "x", TOKEN[:-1], "", "x", TOKEN.upper(), sha256_hex(TOKEN)])
def test_private_with_wrong_token_is_403(gateway, backend, private_sandbox, wrong):
    response = gateway.get(private_sandbox, backend.port, headers=[(TOKEN_HEADER, wrong)])
    assert response.status == 403, response
    # An empty header value may count as missing or as invalid; any other is invalid.
    expected = (MISSING, INVALID) if wrong == "" else (INVALID,)
    assert response.json()["message"] in expected, response
    assert response.json()["code"] == 403
    assert backend.count() == 0


def test_private_with_right_token_passes_and_header_is_removed(gateway, backend, private_sandbox):
    response = gateway.get(private_sandbox, backend.port, "/private",
                           headers=[("E2B-Traffic-Access-Token", TOKEN), ("X-Kept", "yes")])
    assert response.status == 200, response
    received = backend.last
    assert received.path == "/private"
    assert received.header(TOKEN_HEADER) is None, received.headers
    assert received.header("X-Kept") == "yes"


def test_sha256_field_is_preferred(gateway, redis, backend):
    """With both fields stored, the digest decides."""
    redis.put("both1", allow_public_traffic=False, traffic_access_token="plain-token",
              traffic_access_token_sha256=sha256_hex("digest-token"))
    ok = gateway.get("both1", backend.port, headers=[(TOKEN_HEADER, "digest-token")])
    assert ok.status == 200, ok
    refused = gateway.get("both1", backend.port, headers=[(TOKEN_HEADER, "plain-token")])
    assert_forbidden(refused, INVALID, "both1")


def test_private_without_stored_token_fails_closed(gateway, redis, backend):
    redis.put("locked1", allow_public_traffic=False)
    for headers in ([], [(TOKEN_HEADER, "anything")], [(TOKEN_HEADER, "")]):
        response = gateway.get("locked1", backend.port, headers=headers)
        assert_forbidden(response, None, "locked1")
    assert backend.count() == 0


def test_public_sandbox_ignores_and_strips_token(gateway, redis, backend):
    redis.put("open1", traffic_access_token=TOKEN)  # allow_public_traffic defaults to true
    for headers in ([], [(TOKEN_HEADER, "whatever")], [(TOKEN_HEADER, TOKEN)]):
        response = gateway.get("open1", backend.port, headers=headers)
        assert response.status == 200, response
        assert backend.last.header(TOKEN_HEADER) is None, backend.last.headers
    assert backend.count() == 3


@pytest.mark.parametrize("public", [True, False])
@pytest.mark.parametrize("tokens", [[TOKEN, "wrong"], ["wrong", TOKEN], [TOKEN, TOKEN]])
def test_two_token_fields_are_400_then_close(gateway, redis, backend, public, tokens):
    """Which of two tokens counts would be the sender's choice (right+wrong passed, wrong+right
    failed): two fields are a malformed request, public sandbox or private."""
    redis.put("twotokens", allow_public_traffic=public, traffic_access_token=TOKEN)
    host = gateway.host("twotokens", backend.port)
    with gateway.connect() as connection:
        response = connection.request("GET", "/", host=host,
                                      headers=[(TOKEN_HEADER, token) for token in tokens])
        assert response.status == 400, response
        assert response.json()["message"] == "Bad request"
        assert connection.is_closed(5)
    assert backend.count() == 0


def test_explicit_public_true(gateway, redis, backend):
    redis.put("open2", allow_public_traffic=True)
    response = gateway.get("open2", backend.port)
    assert response.status == 200, response


def test_token_checked_on_every_request_of_a_connection(gateway, backend, private_sandbox):
    host = gateway.host(private_sandbox, backend.port)
    with gateway.connect() as connection:
        ok = connection.request("GET", "/1", host=host, headers=[(TOKEN_HEADER, TOKEN)])
        assert ok.status == 200, ok
        refused = connection.request("GET", "/2", host=host)
        assert_forbidden(refused, MISSING, private_sandbox)
    assert [r.path for r in backend.requests] == ["/1"]
