"""gRPC through the gateway (DESIGN "gRPC and HTTP/2 to sandboxes") with Debian's python3-grpcio as the
client: what the gateway refuses itself reaches a gRPC client as a status (HTTP 200, trailers-only,
grpc-status and grpc-message), never as a protocol error; gRPC over HTTP/1.1 is 505; gRPC-Web is
ordinary HTTP."""
import socket
import subprocess
import threading
import time

import grpc
import pytest

from lib.gateway import DOMAIN, admin_gateway, gateway_metrics
from lib.h2client import H2Client
from lib.util import accept_queue, free_port, take_every_descriptor, wait_for

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


# --------------------------------------------------------------------------- to a gRPC server

class EchoService:
    """A gRPC server on loopback with generic handlers (bytes in, bytes out)."""

    def __init__(self, options=()):
        from concurrent import futures
        self.cancelled = threading.Event()
        self.metadata = []
        self.sent = 0
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "Megabytes": grpc.unary_stream_rpc_method_handler(self.megabytes),
            "Pause": grpc.unary_unary_rpc_method_handler(self.pause),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=[
            ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
            *options])
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("sgw.test.Echo", handlers)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(0)

    def unary(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        self.time_remaining = context.time_remaining()
        context.set_trailing_metadata([("x-echo-trailer", "done")])
        return request

    def server_stream(self, request, context):
        for i in range(int(request)):
            yield b"part %d" % i

    def client_stream(self, requests, context):
        return b"|".join(requests)

    def bidi(self, requests, context):
        for request in requests:
            yield request.upper()

    def fail(self, request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")

    def megabytes(self, request, context):
        self.sent = 0
        for _ in range(int(request)):
            self.sent += 1
            yield b"m" * (1 << 20)

    def pause(self, request, context):
        time.sleep(0.5)
        return request

    def slow(self, request, context):
        if not context.add_callback(self.cancelled.set):
            self.cancelled.set()
        time.sleep(30)
        return b"late"


@pytest.fixture
def echo():
    service = EchoService()
    yield service
    service.stop()


def channel(gateway, sandbox, port):
    return grpc.insecure_channel(f"127.0.0.1:{gateway.port}", options=[
        ("grpc.default_authority", gateway.host(sandbox, port)),
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])


def test_unary_with_metadata_and_trailers(gateway, redis, echo):
    redis.put("rpc1")
    with channel(gateway, "rpc1", echo.port) as ch:
        reply, call = ch.unary_unary("/sgw.test.Echo/Unary").with_call(
            b"hello", timeout=10, metadata=[("x-request-meta", "m1")])
    assert reply == b"hello"
    assert ("x-echo-trailer", "done") in call.trailing_metadata()
    seen = echo.metadata[-1]
    assert seen["x-request-meta"] == "m1"
    assert 5 < echo.time_remaining < 11  # grpc-timeout passed (gRPC turns it into the deadline)
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_streaming_all_ways(gateway, redis, echo):
    redis.put("rpc2")
    with channel(gateway, "rpc2", echo.port) as ch:
        parts = list(ch.unary_stream("/sgw.test.Echo/ServerStream")(b"50", timeout=10))
        assert parts == [b"part %d" % i for i in range(50)]
        joined = ch.stream_unary("/sgw.test.Echo/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
        assert joined == b"a|b|c"
        echoed = list(ch.stream_stream("/sgw.test.Echo/Bidi")(iter([b"x", b"yz"] * 20), timeout=10))
        assert echoed == [b"X", b"YZ"] * 20


def test_sandbox_status_and_large_messages(gateway, redis, echo):
    redis.put("rpc3")
    with channel(gateway, "rpc3", echo.port) as ch:
        with pytest.raises(grpc.RpcError) as raised:
            ch.unary_unary("/sgw.test.Echo/Fail")(b"x", timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == "bad request"
        big = bytes(range(256)) * (16 << 12)  # 16 MiB
        assert ch.unary_unary("/sgw.test.Echo/Unary")(big, timeout=30) == big


def test_client_cancel_reaches_the_server(gateway, redis, echo):
    redis.put("rpc4")
    with channel(gateway, "rpc4", echo.port) as ch:
        future = ch.unary_unary("/sgw.test.Echo/Slow").future(b"x", timeout=20)
        time.sleep(0.5)
        future.cancel()
        assert echo.cancelled.wait(5)


def test_deadline_passes(gateway, redis, echo):
    redis.put("rpc5")
    with channel(gateway, "rpc5", echo.port) as ch:
        with pytest.raises(grpc.RpcError) as raised:
            ch.unary_unary("/sgw.test.Echo/Slow")(b"x", timeout=0.5)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert echo.cancelled.wait(5)


def test_many_concurrent_rpcs_on_one_connection(gateway, redis, echo):
    redis.put("rpc6")
    with channel(gateway, "rpc6", echo.port) as ch:
        unary = ch.unary_unary("/sgw.test.Echo/Unary")
        futures = [unary.future(b"n%d" % i, timeout=30) for i in range(1000)]
        assert [f.result() for f in futures] == [b"n%d" % i for i in range(1000)]


def test_a_port_without_http2_is_502(gateway, redis, backend):
    redis.put("rpc7")
    got, message, _ = call(gateway, "rpc7", backend.port)
    assert (got, message) == (grpc.StatusCode.UNAVAILABLE, "The sandbox port does not speak HTTP/2")


def test_over_tls_with_alpn_h2(gateway_factory, redis, echo, tmp_path):
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "2",
                    "-subj", f"/CN=*.{DOMAIN}", "-addext", f"subjectAltName=DNS:*.{DOMAIN}"],
                   check=True, capture_output=True, timeout=60)
    tls_port = free_port()
    gateway_factory(redis, extra=[f"listen 127.0.0.1:{tls_port} tls", f"tls_certificate {certificate}",
                    f"tls_certificate_key {key}"])
    redis.put("rpc8")
    name = f"{echo.port}-rpc8.{DOMAIN}"
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{tls_port}", credentials, options=[
            ("grpc.ssl_target_name_override", name), ("grpc.default_authority", f"{name}:{tls_port}")]) as ch:
        assert ch.unary_unary("/sgw.test.Echo/Unary")(b"secure", timeout=10) == b"secure"
        assert list(ch.stream_stream("/sgw.test.Echo/Bidi")(iter([b"a", b"b"]), timeout=10)) == [b"A", b"B"]
    assert echo.metadata[-1]["x-forwarded-proto"] == "https"


def test_h2c_ports_for_any_http2_request(gateway, redis, echo):
    """A port in h2c_ports speaks HTTP/2 for every HTTP/2 request, gRPC or not: a plain GET to the
    gRPC server is 502 over HTTP/1.1 (it refuses that), and its own answer over h2c."""
    redis.put("rpc9")
    with H2Client(gateway.port) as client:
        assert client.get(gateway.host("rpc9", echo.port), "/plain").status == 502  # sent as HTTP/1.1
    redis.put("rpc9", h2c_ports=str(echo.port))
    with H2Client(gateway.port) as client:
        response = client.get(gateway.host("rpc9", echo.port), "/plain")
    # The server's own trailers-only answer to a GET, passed on as one HEADERS frame.
    assert response.status == 200 and response.header("grpc-status") == "2", response.headers
    assert response.header("grpc-message") == "Bad method header" and response.data == b""


def test_idle_sessions_close_and_a_graceful_goaway_finishes_streams(gateway_factory, redis, echo):
    gateway = admin_gateway(gateway_factory, redis, upstream_idle_timeout="300ms")
    redis.put("rpc10")
    with channel(gateway, "rpc10", echo.port) as ch:
        assert ch.unary_unary("/sgw.test.Echo/Unary")(b"x", timeout=10) == b"x"
        assert gateway_metrics(gateway)["sgw_upstream_connections"] == 1
        wait_for(lambda: gateway_metrics(gateway)["sgw_upstream_connections"] == 0, 3,
                 message="the idle h2c session to close")
        # The sandbox stops gracefully (GOAWAY) while a stream is in flight: it still completes.
        slow = ch.unary_stream("/sgw.test.Echo/ServerStream").__call__(b"3000", timeout=20)
        first = next(slow)
        stopping = threading.Thread(target=echo.server.stop, args=(5,))
        stopping.start()
        rest = list(slow)
        stopping.join()
    assert first == b"part 0" and len(rest) == 2999


def test_out_of_descriptors_idle_h2c_sessions_make_room(gateway_factory, redis, echo):
    """Open files 64, every idle sandbox connection an h2c session (one per sandbox, no stream):
    with every descriptor taken, a new client would wait in the backlog until they time out
    (60 s). The sessions idle longest are closed for it, as idle HTTP/1.1 connections are."""
    gateway = gateway_factory(redis, start=False, upstream_idle_timeout="60s", log_level="info")
    gateway.open_files = 64
    gateway.start()
    with H2Client(gateway.port) as client:
        for number in range(10):
            redis.put(f"rpcidle{number}", h2c_ports=str(echo.port))
            assert client.get(gateway.host(f"rpcidle{number}", echo.port), "/plain").status == 200
    pid = gateway.process.pid
    sockets = []
    try:
        take_every_descriptor(gateway.port, pid, 64, sockets)
        last = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
        sockets.append(last)
        last.sendall(b"GET / HTTP/1.1\r\n")
        wait_for(lambda: accept_queue(gateway.port) == 0, 5, 0.02, "the last client to be accepted")
        assert "accept failed" not in gateway.stderr_text(), "no idle h2c session was closed for it"
    finally:
        for sock in sockets:
            sock.close()
    redis.put("rpcafter", h2c_ports=str(echo.port))
    with H2Client(gateway.port) as client:
        assert client.get(gateway.host("rpcafter", echo.port), "/plain").status == 200


def test_malformed_h2c_ports_is_an_invalid_record(gateway, redis, echo):
    redis.put("rpc11", h2c_ports="80,x")
    got, message, _ = call(gateway, "rpc11", echo.port)
    assert (got, message) == (grpc.StatusCode.UNAVAILABLE, "The sandbox record is invalid")


def serve_h2(stream, on_event):
    """Serves one connection as an HTTP/2 server (python3-h2): on_event(connection, event) for each
    event, what it queued sent after each read, until the peer closes."""
    import h2.config
    import h2.connection
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                      header_encoding="utf-8"))
    connection.initiate_connection()
    stream.sock.sendall(connection.data_to_send())
    while True:
        try:
            data = stream.sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        for event in connection.receive_data(data):
            on_event(connection, event)
        stream.sock.sendall(connection.data_to_send())


def resetting_h2_server(stream, server):
    """An HTTP/2 server that resets every stream it is sent, once its request ended."""
    import h2.events

    def on_event(connection, event):
        if isinstance(event, h2.events.StreamEnded):
            server.record(event.stream_id)
            connection.reset_stream(event.stream_id, error_code=8)  # CANCEL
    serve_h2(stream, on_event)


def test_a_reset_from_the_sandbox_resets_the_client_stream(gateway, redis, raw_server_factory):
    server = raw_server_factory(resetting_h2_server)
    redis.put("rpc12", h2c_ports="*")
    with H2Client(gateway.port) as client:
        response = client.get(gateway.host("rpc12", server.port), "/reset-me")
    assert response.reset is not None and response.status == 0, response
    assert server.count() == 1


def echoing_h2_server(stream, server):
    """A plain HTTP/2 server: answers each request with its body upper-cased, in two DATA frames, then
    the trailer x-sum; records (method, path, body, fields)."""
    import h2.events
    requests = {}

    def on_event(connection, event):
        if isinstance(event, h2.events.RequestReceived):
            requests[event.stream_id] = [dict(event.headers), b""]
        elif isinstance(event, h2.events.DataReceived):
            requests[event.stream_id][1] += event.data
            connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            fields, body = requests.pop(event.stream_id)
            server.record((fields[":method"], fields[":path"], body, fields))
            connection.send_headers(event.stream_id, [(":status", "200"), ("content-type", "text/plain")])
            reply = body.upper() or b"empty"
            connection.send_data(event.stream_id, reply[:2])
            connection.send_data(event.stream_id, reply[2:])
            connection.send_headers(event.stream_id, [("x-sum", str(len(body)))], end_stream=True)
    serve_h2(stream, on_event)


def test_http11_clients_of_an_h2c_port_are_translated(gateway, redis, raw_server_factory):
    server = raw_server_factory(echoing_h2_server)
    redis.put("h2c1", h2c_ports=str(server.port))
    host = gateway.host("h2c1", server.port)
    with gateway.connect() as connection:
        response = connection.request("POST", "/up?x=1", host=host, chunks=[b"hello ", b"h2c"])
        assert response.status == 200 and response.body == b"HELLO H2C", response
        assert response.header("Transfer-Encoding") == "chunked"
        again = connection.request("GET", "/again", host=host)  # the connection is kept
        assert again.status == 200 and again.body == b"empty"
    method, path, body, fields = server.requests[0]
    assert (method, path, body) == ("POST", "/up?x=1", b"hello h2c")
    assert fields[":authority"] == host and fields["x-forwarded-for"] == "127.0.0.1"
    assert "transfer-encoding" not in fields and "connection" not in fields
    # HTTP/2 clients too, trailers and all.
    with H2Client(gateway.port) as client:
        answer = client.get(host, "/h2", headers=[("te", "trailers")])
    assert answer.status == 200 and bytes(answer.data) == b"empty"
    assert ("x-sum", "0") in answer.trailers


def test_a_stream_refused_by_goaway_is_sent_again_on_a_new_session(gateway, redis, raw_server_factory):
    """The sandbox's first connection answers the request with GOAWAY(last stream 0): not processed,
    so the gateway sends it once more, on a new connection, which serves it."""
    connections = []

    def handler(stream, server):
        connections.append(stream)
        if len(connections) > 1:
            return echoing_h2_server(stream, server)
        import h2.events

        def on_event(connection, event):
            if isinstance(event, h2.events.RequestReceived):
                connection.close_connection(last_stream_id=0)
        serve_h2(stream, on_event)

    server = raw_server_factory(handler)
    redis.put("h2c2", h2c_ports="*")
    with H2Client(gateway.port) as client:
        answer = client.get(gateway.host("h2c2", server.port), "/twice")
    assert answer.status == 200 and bytes(answer.data) == b"empty"
    assert len(connections) == 2 and server.count() == 1


def read_to_the_end(client, stream, interval, timeout, what):
    """Reads stream of an H2Client without auto_ack until it ends, reopening both windows by what
    arrived (all of the stream's data counts as unacknowledged when called)."""
    received = 0
    deadline = time.monotonic() + timeout
    while not client.streams[stream].done:
        assert time.monotonic() < deadline, f"{what} stalled"
        data = len(client.streams[stream].data) - received
        if data:
            client.ack(stream, data)
            client.ack_connection(data)
            received += data
        client.read(interval)


def test_a_slow_client_holds_the_sandbox_back(gateway, redis, echo):
    """Flow control joined on both sides: a client that reads nothing gets no more than the windows
    allow, and the gateway buffers a bounded amount (the sandbox's stream waits); read on, all
    arrives."""
    redis.put("rpc13")
    message = b"64"
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    with H2Client(gateway.port, auto_ack=False) as client:
        stream = client.request(gateway.host("rpc13", echo.port), "/sgw.test.Echo/Megabytes", method="POST",
                                headers=[("content-type", "application/grpc"), ("te", "trailers")], body=body)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            client.read(0.1)
        held = len(client.streams[stream].data)
        assert client.streams[stream].status == 200 and 0 < held <= 1 << 20, held  # the client's windows: 64 KiB stream, 1 MiB at most
        assert echo.sent <= 8, echo.sent  # 64 MiB asked; the sandbox was held back
        read_to_the_end(client, stream, 0.2, 60, "the megabytes")
        total = len(client.streams[stream].data)
    assert total == 64 * ((1 << 20) + 5), total
    assert ("grpc-status", "0") in client.streams[stream].trailers


def large_h2_server(stream, server):
    """An HTTP/2 server that answers every request with LARGE_BODY bytes, as its windows allow, and
    records each stream it answered in full."""
    import h2.events
    left = {}

    def pump(connection):
        for stream_id in list(left):
            while left[stream_id] > 0:
                room = min(connection.local_flow_control_window(stream_id),
                           connection.max_outbound_frame_size, left[stream_id])
                if room <= 0:
                    break
                connection.send_data(stream_id, b"x" * room)
                left[stream_id] -= room
            if left[stream_id] == 0:
                connection.end_stream(stream_id)
                server.record(stream_id)  # answered in full
                del left[stream_id]

    def on_event(connection, event):
        if isinstance(event, h2.events.RequestReceived):
            connection.send_headers(event.stream_id, [(":status", "200"),
                                                      ("content-length", str(LARGE_BODY))])
            left[event.stream_id] = LARGE_BODY
        elif isinstance(event, h2.events.StreamReset):
            left.pop(event.stream_id, None)
        pump(connection)
    serve_h2(stream, on_event)


# Sized so that the sandbox's answer ends while the gateway still holds bytes the client did not
# read: about 120 KiB per answer count against the shared h2c connection's window (16 MiB) unless
# the stream's end gives them back, so without that the sandbox stalls after some 130 answers.
LARGE_BODY = 440 * 1024
ANSWERS = 160


def test_answers_that_end_unread_give_the_connection_window_back(gateway, redis, raw_server_factory):
    """Bytes the gateway took from the sandbox for a client that had not read them yet when the
    sandbox's answer ended count against the shared h2c connection's window until they are given
    back: the end of the stream gives them back, or enough such answers would shut the window for
    every stream of that connection (h2load -c8 through the gateway stalled so)."""
    server = raw_server_factory(large_h2_server)
    redis.put("h2c3", h2c_ports="*")
    host = gateway.host("h2c3", server.port)
    with H2Client(gateway.port, auto_ack=False) as client:
        for answered in range(1, ANSWERS + 1):
            stream = client.request(host, "/big")
            deadline = time.monotonic() + 0.03  # the client reads none while the sandbox answers
            while time.monotonic() < deadline:
                client.read(0.01)
            read_to_the_end(client, stream, 0.02, 10, f"answer {answered}")
            assert client.streams[stream].status == 200
            assert len(client.streams[stream].data) == LARGE_BODY
    assert server.count() == ANSWERS


def test_a_new_session_when_the_sandbox_allows_no_more_streams(gateway_factory, redis):
    """The sandbox's SETTINGS_MAX_CONCURRENT_STREAMS is 8: 24 calls at once do not fit one session, so
    another is dialled (until its own SETTINGS arrive it is assumed to take 100; nghttp2 holds streams
    over the limit until others end), and every call succeeds."""
    service = EchoService(options=[("grpc.max_concurrent_streams", 8)])
    try:
        gateway = admin_gateway(gateway_factory, redis)
        redis.put("rpc14")
        with channel(gateway, "rpc14", service.port) as ch:
            assert ch.unary_unary("/sgw.test.Echo/Unary")(b"warm", timeout=10) == b"warm"
            dials = gateway_metrics(gateway)["sgw_upstream_dials_total"]
            pause = ch.unary_unary("/sgw.test.Echo/Pause")
            futures = [pause.future(b"p%d" % i, timeout=20) for i in range(24)]
            assert [f.result() for f in futures] == [b"p%d" % i for i in range(24)]
        assert gateway_metrics(gateway)["sgw_upstream_dials_total"] - dials >= 1
    finally:
        service.stop()
