"""gRPC through the gateway (DESIGN "gRPC and HTTP/2 to sandboxes") with Debian's python3-grpcio as the
client: what the gateway refuses itself reaches a gRPC client as a status (HTTP 200, trailers-only,
grpc-status and grpc-message), never as a protocol error; gRPC over HTTP/1.1 is 505; gRPC-Web is
ordinary HTTP."""
import grpc
import pytest

from lib.h2client import H2Client

METHOD = "/sgw.test.Echo/Unary"


def call(gateway, sandbox, port, body=b"ping", timeout=10, metadata=()):
    """One unary call through the gateway (h2c, prior knowledge); returns (code, details, reply)."""
    authority = gateway.host(sandbox, port)
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}",
                               options=[("grpc.default_authority", authority)]) as channel:
        unary = channel.unary_unary(METHOD)
        try:
            return grpc.StatusCode.OK, "", unary(body, timeout=timeout, metadata=metadata)
        except grpc.RpcError as error:
            return error.code(), error.details(), None


@pytest.mark.parametrize("record, code, details", [
    (None, grpc.StatusCode.NOT_FOUND, "The sandbox was not found"),
    ({"allow_public_traffic": "false", "traffic_access_token": "t"}, grpc.StatusCode.PERMISSION_DENIED,
     "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing"),
    ({"state": "paused", "auto_resume": "false"}, grpc.StatusCode.FAILED_PRECONDITION, "The sandbox is paused"),
    ({"addr": "not-an-address"}, grpc.StatusCode.UNAVAILABLE, "The sandbox record is invalid"),
    ({"addr": "169.254.169.254"}, grpc.StatusCode.UNAVAILABLE, "The sandbox address is not allowed"),
])
def test_refusals_are_grpc_statuses(gateway, redis, backend, record, code, details):
    if record is not None:
        redis.put("grpc1", **record)
    got, message, _ = call(gateway, "grpc1", backend.port)
    assert (got, message) == (code, details)


def test_a_closed_port_is_unavailable(gateway, redis):
    redis.put("grpc2")
    got, message, _ = call(gateway, "grpc2", 1)
    assert (got, message) == (grpc.StatusCode.UNAVAILABLE, "The sandbox is running but port is not open")


def test_resume_timeout_is_deadline_exceeded(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, resume_timeout="300ms")
    redis.put("grpc3", addr="127.0.0.2", state="paused")
    got, message, _ = call(gateway, "grpc3", backend.port)
    assert (got, message) == (grpc.StatusCode.DEADLINE_EXCEEDED, "The sandbox did not resume in time")


def test_limit_is_resource_exhausted(gateway, redis, backend):
    redis.put("grpc4", max_connections="1")
    with H2Client(gateway.port) as client:
        authority = gateway.host("grpc4", backend.port)
        hold = client.request(authority, "/hold")  # an ordinary request that stays in flight
        client.read(0.3)
        got, message, _ = call(gateway, "grpc4", backend.port)
        backend.release()
        assert client.response(hold).status == 200
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message == "The sandbox has too many concurrent incoming connections (limit: 1)"


def test_trailers_only_response_on_the_wire(gateway, redis):
    """A single HEADERS frame that ends the stream: :status 200, content-type, grpc-status, grpc-message
    (percent-encoded where the message needs it)."""
    with H2Client(gateway.port) as client:
        stream = client.request(gateway.host("nosuch", 8080), METHOD, method="POST",
                                headers=[("content-type", "application/grpc+proto"), ("te", "trailers")],
                                body=b"\x00\x00\x00\x00\x00")
        response = client.response(stream)
    assert response.status == 200
    assert response.header("content-type") == "application/grpc"
    assert response.header("grpc-status") == "5"
    assert response.header("grpc-message") == "The sandbox was not found"
    assert response.data == b""


def test_foreign_domain_stays_http_421(gateway):
    with H2Client(gateway.port) as client:
        stream = client.request("3000-abc.elsewhere.test", METHOD, method="POST",
                                headers=[("content-type", "application/grpc")], body=b"")
        assert client.response(stream).status == 421


def test_grpc_over_http11_is_505_and_grpc_web_is_http(gateway, redis, backend):
    redis.put("grpc5")
    response = gateway.request(gateway.host("grpc5", backend.port), "POST", METHOD,
                               headers=[("Content-Type", "application/grpc")], body=b"\x00\x00\x00\x00\x00")
    assert response.status == 505, response
    assert response.json()["message"] == "gRPC needs HTTP/2"
    assert backend.count() == 0
    response = gateway.request(gateway.host("grpc5", backend.port), "POST", METHOD,
                               headers=[("Content-Type", "application/grpc-web+proto")], body=b"x")
    assert response.status == 200
    assert backend.last.header("Content-Type") == "application/grpc-web+proto"
