"""HTTP/2 to clients (DESIGN "HTTP/2 (clients)"): prior-knowledge h2c on the plain listener, each
stream routed and proxied on its own over HTTP/1.1, RFC 9113 §8 translation, flow control both ways,
the floods that end a connection with ENHANCE_YOUR_CALM, drain, and the metrics and log fields.
TLS and ALPN are in test_tls.py. Clients: curl --http2-prior-knowledge, nghttp2's h2load, and the
raw client of lib/h2client.py (python3-h2) for frame-level cases."""
import json
import signal
import subprocess
import threading
import time

import pytest

from lib.gateway import DOMAIN, TOKEN_HEADER, admin_gateway, gateway_metrics
from lib.h2client import (ENHANCE_YOUR_CALM, HEADERS, PROTOCOL_ERROR, REFUSED_STREAM, RST_STREAM, H2Client,
                          RawH2, continuation, goaways, headers_block)
from lib.util import wait_for

MiB = 1024 * 1024


def authority(sandbox, port):
    return f"{port}-{sandbox}.{DOMAIN}"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_curl_prior_knowledge(gateway, redis, backend):
    redis.put("h2a")
    host = authority("h2a", backend.port)
    result = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20",
                             "-w", "\n%{http_version} %{http_code}", "--resolve",
                             f"{host}:{gateway.port}:127.0.0.1", f"http://{host}:{gateway.port}/p?q=1"],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.rpartition(b"\n")
    assert tail == b"2 200", result.stdout
    received = backend.last
    assert received.version == "HTTP/1.1"
    assert received.path == "/p?q=1"
    assert received.header("Host") == f"{host}:{gateway.port}"
    assert received.header("X-Forwarded-Proto") == "http"
    assert received.header("X-Forwarded-For") == "127.0.0.1"
    assert json.loads(body)["backend"] == "main"


def test_upgrade_h2c_is_served_as_http11(gateway, redis, backend):
    """curl --http2 on a plain URL asks for Upgrade: h2c: ignored, the answer is HTTP/1.1 and kept alive."""
    redis.put("h2up")
    host = authority("h2up", backend.port)
    url = f"http://{host}:{gateway.port}/up"
    result = subprocess.run(["curl", "-sS", "--http2", "--max-time", "20", "-D", "-", "-o", "/dev/null",
                             "-w", "%{http_version}", "--resolve", f"{host}:{gateway.port}:127.0.0.1",
                             url, url], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    output = result.stdout.decode()
    assert output.count("HTTP/1.1 200") == 2, output
    assert "connection: close" not in output.lower(), output
    assert "Upgrade" not in output, output
    received = backend.last
    assert received.header("Upgrade") is None, received.headers
    assert received.header("HTTP2-Settings") is None, received.headers
    assert received.header("Connection") is None, received.headers
    assert len(backend.closed) == 0 or backend.count() == 2


def test_many_streams_to_two_sandboxes_on_one_connection(gateway, redis, backend, backend_factory):
    other = backend_factory(name="other")
    redis.put("h2one")
    redis.put("h2two")
    with H2Client(gateway.port) as client:
        streams = []
        for number in range(60):
            sandbox, target = ("h2one", backend) if number % 2 == 0 else ("h2two", other)
            streams.append((client.request(authority(sandbox, target.port), f"/n{number}"), target.name))
        for stream_id, name in streams:
            stream = client.response(stream_id)
            assert stream.status == 200, stream
            assert json.loads(stream.data)["backend"] == name
        assert client.goaway == []
    assert backend.count() == 30 and other.count() == 30


def test_request_translation(gateway, redis, backend):
    """RFC 9113 §8.3: Host from :authority, Cookie fields joined, TE and the routing headers never pass."""
    redis.put("h2t")
    with H2Client(gateway.port) as client:
        stream = client.get(authority("h2t", backend.port), "/t",
                            headers=[("cookie", "a=1"), ("x-one", "1"), ("cookie", "b=2"), ("te", "trailers"),
                                     ("host", "ignored.example"), ("e2b-sandbox-id", "other")])
    assert stream.status == 200, stream
    received = backend.last
    assert received.header("Host") == authority("h2t", backend.port)
    assert received.header_all("Cookie") == ["a=1; b=2"]
    assert received.header("X-One") == "1"
    assert received.header("TE") is None
    assert received.header("E2b-Sandbox-Id") is None


@pytest.mark.parametrize("name, value", [("connection", "keep-alive"), ("keep-alive", "5"),
                                         ("transfer-encoding", "chunked"), ("upgrade", "websocket"),
                                         ("te", "gzip"), ("proxy-connection", "x")])
def test_connection_specific_header_resets_the_stream(gateway, redis, backend, name, value):
    redis.put("h2c1")
    with H2Client(gateway.port) as client:
        bad = client.request(authority("h2c1", backend.port), "/bad", headers=[(name, value)])
        stream = client.response(bad)
        assert stream.reset == PROTOCOL_ERROR, stream
        good = client.get(authority("h2c1", backend.port), "/good")
        assert good.status == 200
    assert backend.last.path == "/good"


@pytest.mark.parametrize("method, path", [("H-AD", "/"), ("FOO", "/"), ("CONNECT", "/"), ("GET", "/caf\u00e9"),
                                          ("GET", "/a b"), ("GET", "noslash")])
def test_requests_an_http11_client_could_not_send_are_400(gateway, redis, backend, method, path):
    """A sandbox's HTTP/1.1 parser may refuse a method it does not know, or a byte of the path that
    is not visible ASCII (both found by fuzz_request)."""
    redis.put("h2meth")
    with H2Client(gateway.port) as client:
        stream = client.get(authority("h2meth", backend.port), path, method=method)
        assert stream.status == 400 or stream.reset is not None, stream
        assert client.get(authority("h2meth", backend.port), method="PATCH").status == 200
    assert backend.count() == 1 and backend.last.method == "PATCH"


def test_request_bodies(gateway, redis, backend):
    """A body of unknown length goes chunked; with content-length it goes as sized."""
    redis.put("h2b")
    body = bytes(range(256)) * 4096  # 1 MiB
    with H2Client(gateway.port) as client:
        unknown = client.response(client.request(authority("h2b", backend.port), "/up", "POST", body=body))
        assert unknown.status == 200, unknown
        received = json.loads(unknown.data)
        assert received["body_length"] == len(body)
        fields = [(name.lower(), value) for name, value in received["headers"]]
        assert ("transfer-encoding", "chunked") in fields
        sized = client.response(client.request(authority("h2b", backend.port), "/up2", "POST",
                                               headers=[("content-length", str(len(body)))], body=body))
        received = json.loads(sized.data)
        assert received["body_length"] == len(body)
        fields = [(name.lower(), value) for name, value in received["headers"]]
        assert ("content-length", str(len(body))) in fields
        assert all(name != "transfer-encoding" for name, _ in fields)


def test_request_trailers_are_filtered_like_headers(gateway, redis, backend):
    redis.put("h2rt")
    with H2Client(gateway.port) as client:
        stream_id = client.request(authority("h2rt", backend.port), "/rt", "POST",
                                   headers=[("x-head", "1")], end_stream=False)
        client.send_body(stream_id, b"abc", end_stream=False)
        client.conn.send_headers(stream_id, [("x-sum", "9"), (TOKEN_HEADER, "t"), ("x-forwarded-for", "1.2.3.4"),
                                             ("e2b-sandbox-id", "x")], end_stream=True)
        client.flush()
        assert client.response(stream_id).status == 200
        plain = client.response(client.request(authority("h2rt", backend.port), "/plain", "POST", body=b"xyz"))
        assert plain.status == 200
    first, second = backend.requests[-2], backend.requests[-1]
    assert first.body == b"abc" and first.trailers == [("x-sum", "9")], first.trailers
    assert second.body == b"xyz" and second.trailers == [], second.trailers


def test_response_trailers_pass_when_asked(gateway, redis, backend):
    redis.put("h2tr")
    with H2Client(gateway.port) as client:
        asked = client.get(authority("h2tr", backend.port), "/trailers", headers=[("te", "trailers")])
        assert asked.status == 200
        assert bytes(asked.data) == b"hello world"
        assert ("x-checksum", "abc123") in asked.trailers, asked.trailers
        assert ("grpc-status", "0") in asked.trailers
        assert asked.header("transfer-encoding") is None
        plain = client.get(authority("h2tr", backend.port), "/trailers")
        assert bytes(plain.data) == b"hello world" and plain.trailers == []


def test_errors_are_the_same_over_h2(gateway, redis, backend):
    redis.put("h2priv", allow_public_traffic=False, traffic_access_token="t0k")
    browser = ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0")
    with H2Client(gateway.port) as client:
        missing = client.get(authority("nosuchh2", backend.port))
        assert missing.status == 502
        assert missing.header("content-type") == "application/json"
        assert json.loads(missing.data) == {"sandboxId": "nosuchh2", "message": "The sandbox was not found",
                                            "port": backend.port, "code": 502}
        forbidden = client.get(authority("h2priv", backend.port))
        assert forbidden.status == 403 and json.loads(forbidden.data)["code"] == 403
        page = client.get(authority("nosuchh2", backend.port), headers=[browser, ("accept", "text/html")])
        assert page.header("content-type").startswith("text/html")
        assert b"The sandbox was not found" in page.data
        foreign = client.get("example.com")
        assert foreign.status == 421
        allowed = client.get(authority("h2priv", backend.port), headers=[(TOKEN_HEADER, "t0k")])
        assert allowed.status == 200
    assert backend.last.header(TOKEN_HEADER) is None


def test_shared_host_over_h2(gateway, redis, backend):
    redis.put("h2shared")
    with H2Client(gateway.port) as client:
        routed = client.get(f"sandbox.{DOMAIN}", "/s", headers=[("e2b-sandbox-id", "h2shared"),
                                                                ("e2b-sandbox-port", str(backend.port))])
        assert routed.status == 200, routed
        missing = client.get(f"sandbox.{DOMAIN}", "/s", headers=[("e2b-sandbox-id", "h2shared")])
        assert missing.status == 400
        assert json.loads(missing.data)["message"] == "Missing header E2b-Sandbox-Port"
    assert backend.last.header("E2b-Sandbox-Id") is None


def test_header_list_over_the_limit_is_431_for_that_stream(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, max_header_size="4k")
    redis.put("h2big")
    with H2Client(gateway.port) as client:
        large = client.get(authority("h2big", backend.port), headers=[("x-large", "v" * 6000)])
        assert large.status == 431, large
        small = client.get(authority("h2big", backend.port))
        assert small.status == 200
    assert backend.count() == 1


def test_streams_above_the_limit_are_refused(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, http2_max_concurrent_streams="2")
    redis.put("h2lim")
    with RawH2(gateway.port) as client:
        settings = [frame for frame in client.frames(0.5) if frame[0] == 0x4 and not frame[1] & 1]
        payload = settings[0][3]
        values = {int.from_bytes(payload[i:i + 2], "big"): int.from_bytes(payload[i + 2:i + 6], "big")
                  for i in range(0, len(payload), 6)}
        assert values[3] == 2, values
        fields = [(":method", "GET"), (":scheme", "http"), (":authority", authority("h2lim", backend.port)),
                  (":path", "/hold")]
        client.send(headers_block(fields, 1) + headers_block(fields, 3))
        wait_for(lambda: backend.holding == 2, 10)
        client.send(headers_block(fields, 5))  # a client that ignores the limit
        frames = client.frames(2.0)
        # RFC 9113 §5.1.2 allows a stream or a connection error; nghttp2 resets the stream while
        # the limit is not acknowledged yet and ends the connection after (PROTOCOL_ERROR).
        resets = [(stream_id, int.from_bytes(payload, "big")) for kind, _, stream_id, payload in frames
                  if kind == RST_STREAM]
        assert resets == [(5, REFUSED_STREAM)] or goaways(frames)[0][0] == PROTOCOL_ERROR, frames
        backend.release()
    time.sleep(0.5)
    with H2Client(gateway.port) as other:
        assert other.get(authority("h2lim", backend.port), "/other").status == 200
    assert backend.count() == 3  # the two held and the other connection's: never the refused one


def test_slow_reader_holds_its_stream_alone_and_memory_stays_bounded(gateway, redis, backend):
    """The client never opens the big stream's window again: that sandbox is read no further (RSS
    bounded), and other streams on the connection still complete."""
    redis.put("h2slow")
    with H2Client(gateway.port, auto_ack=False) as client:
        big = client.request(authority("h2slow", backend.port), f"/big?bytes={256 * MiB}")
        client.wait(lambda: len(client.streams[big].data) >= 60000)
        client.ack_connection(len(client.streams[big].data))
        time.sleep(1.0)
        before = rss_kib(gateway.process.pid)
        for number in range(5):
            small = client.request(authority("h2slow", backend.port), f"/small{number}")
            stream = client.response(small)
            assert stream.status == 200
            client.ack(small, len(stream.data))
        time.sleep(1.0)
        after = rss_kib(gateway.process.pid)
        assert len(client.streams[big].data) < 2 * MiB
        assert not client.streams[big].done
        assert after - before < 32 * 1024, (before, after)


def test_streams_reset_with_bytes_buffered_leave_none_to_later_streams(gateway, redis, backend):
    """A worker keeps ended streams for its next ones: a stream reset with response bytes the
    client's window held back, and one reset halfway through its upload, pass nothing on. Later
    streams on the connection (which take the kept ones) each get their own answer, whole, and
    their sandbox requests carry their own bodies."""
    redis.put("h2kept")
    host = authority("h2kept", backend.port)
    with H2Client(gateway.port, auto_ack=False) as client:
        for round_number in range(3):
            big = client.request(host, f"/big?bytes={4 * MiB}")
            client.wait(lambda: len(client.streams[big].data) >= 60000)
            upload = client.request(host, "/upload", "POST", body=b"u" * 30000, end_stream=False)
            client.conn.reset_stream(big)
            client.conn.reset_stream(upload)
            client.flush()
            client.ack_connection(len(client.streams[big].data))
            for number in range(4):
                body = f"round {round_number} stream {number}".encode()
                stream_id = client.request(host, f"/after{number}", "POST", body=body)
                stream = client.response(stream_id)
                client.ack(stream_id, len(stream.data))
                client.ack_connection(len(stream.data))
                assert stream.status == 200, stream
                received = json.loads(stream.data)
                assert received["path"] == f"/after{number}"
                assert received["body"] == body.decode(), received


def test_upload_window_reopens_only_as_the_sandbox_takes_it(raw_server_factory, gateway, redis):
    """A sandbox that does not read: the client's window for that stream stays closed."""
    accepted = threading.Event()

    def handler(stream, server):
        accepted.set()
        server.released.wait(20)

    server = raw_server_factory(handler)
    redis.put("h2upl")
    with H2Client(gateway.port) as client:
        stream_id = client.request(authority("h2upl", server.port), "/upload", "POST", end_stream=False)
        sent = 0
        deadline = time.monotonic() + 10
        chunk = b"x" * 16384
        while time.monotonic() < deadline:
            window = client.conn.local_flow_control_window(stream_id)
            if window <= 0:
                client.read(0.3)
                if client.conn.local_flow_control_window(stream_id) <= 0:
                    break
                continue
            piece = chunk[:min(window, len(chunk))]
            client.conn.send_data(stream_id, piece)
            client.flush()
            sent += len(piece)
        assert accepted.is_set()
        # The stream window (256 KiB) plus what the sandbox's socket and the gateway's upstream
        # buffer hold: bounded, far below what the client would send.
        assert sent < 16 * MiB, sent
        assert client.conn.local_flow_control_window(stream_id) <= 0


def goaway_after(gateway, frames, settle=True):
    """Sends frames after the preface; returns (error code of the GOAWAY, whether it closed)."""
    with H2Client(gateway.port) as client:
        if settle:
            client.read(0.3)
        try:
            client.send_raw(frames)
        except OSError:
            pass
        closed = client.read_until_closed(10)
        return (client.goaway[-1][0] if client.goaway else None), closed


def test_rapid_reset_ends_the_connection(gateway, redis, backend):
    import h2.connection  # noqa: F401  (python3-h2 serializes the frames)
    from hyperframe.frame import RstStreamFrame
    redis.put("h2rr")
    frames = b""
    for number in range(500):
        stream_id = 1 + 2 * number
        frames += headers_block([(":method", "GET"), (":scheme", "http"),
                                 (":authority", authority("h2rr", backend.port)), (":path", "/hold")],
                                stream_id)
        reset = RstStreamFrame(stream_id)
        reset.error_code = 8
        frames += reset.serialize()
    code, closed = goaway_after(gateway, frames)
    assert code == ENHANCE_YOUR_CALM and closed
    backend.release()
    # The gateway itself is fine, and another connection is served.
    with H2Client(gateway.port) as client:
        assert client.get(authority("h2rr", backend.port)).status == 200


@pytest.mark.parametrize("kind", ["settings", "ping", "empty-data", "continuation"])
def test_floods_end_the_connection_with_enhance_your_calm(gateway, redis, backend, kind):
    from hyperframe.frame import DataFrame, PingFrame, SettingsFrame
    redis.put("h2fl")
    if kind == "settings":
        frames = b"".join(SettingsFrame(0, settings={4: 65535}).serialize() for _ in range(2000))
    elif kind == "ping":
        frames = b"".join(PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(2000))
    elif kind == "empty-data":
        frames = headers_block([(":method", "POST"), (":scheme", "http"),
                                (":authority", authority("h2fl", backend.port)), (":path", "/post")],
                               1, end_stream=False)
        frames += b"".join(DataFrame(1).serialize() for _ in range(2000))
    else:
        frames = headers_block([(":method", "GET"), (":scheme", "http"),
                                (":authority", authority("h2fl", backend.port)), (":path", "/")],
                               1, end_headers=False)
        frames += b"".join(continuation(1, b"") for _ in range(100))
    code, closed = goaway_after(gateway, frames)
    assert code == ENHANCE_YOUR_CALM and closed, (kind, code, closed)
    with H2Client(gateway.port) as client:
        assert client.get(authority("h2fl", backend.port)).status == 200


def test_hpack_bomb_is_bounded(gateway_factory, redis, backend):
    """One large field in the dynamic table, referenced over and over: decoded far past
    max_header_size from a small block. The stream is refused; memory does not grow."""
    import hpack
    gateway = gateway_factory(redis, max_header_size="4k")
    redis.put("h2bomb")
    encoder = hpack.Encoder()
    first = encoder.encode([(":method", "GET"), (":scheme", "http"),
                            (":authority", authority("h2bomb", backend.port)), (":path", "/"),
                            ("x-bomb", "b" * 3000)])
    with H2Client(gateway.port) as client:
        client.read(0.3)
        before = rss_kib(gateway.process.pid)
        from hyperframe.frame import HeadersFrame
        frame = HeadersFrame(1)
        frame.data = first + bytes([0x80 | 62]) * 4000  # the x-bomb entry, 4,000 times
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        client.send_raw(frame.serialize())
        client.read(1.0)
        after = rss_kib(gateway.process.pid)
    assert after - before < 16 * 1024
    assert backend.count() == 0
    with H2Client(gateway.port) as client:
        assert client.get(authority("h2bomb", backend.port)).status == 200


def test_idle_connection_gets_goaway(gateway_factory, redis):
    gateway = gateway_factory(redis, client_idle_timeout="1s")
    with H2Client(gateway.port) as client:
        started = time.monotonic()
        assert client.read_until_closed(10)
        assert client.goaway and client.goaway[-1][0] == 0
        assert 0.8 < time.monotonic() - started < 5


def test_drain_sends_goaway_twice_and_finishes_streams(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, drain_delay="0s", drain_timeout="10s")
    redis.put("h2drain")
    fields = [(":method", "GET"), (":scheme", "http"), (":authority", authority("h2drain", backend.port)),
              (":path", "/hold")]
    with RawH2(gateway.port) as client:
        client.send(headers_block(fields, 1))
        wait_for(lambda: backend.holding == 1, 10)
        gateway.process.send_signal(signal.SIGTERM)
        frames = client.frames(2.5)
        assert goaways(frames) == [(0, 2 ** 31 - 1), (0, 1)], frames
        assert not client.closed
        backend.release()
        frames = client.frames(5.0)
        assert any(kind == HEADERS and stream_id == 1 for kind, _, stream_id, _ in frames), frames
        wait_for(lambda: client.frames(0.2) is not None and client.closed, 10)
    assert gateway.process.wait(15) == 0


def test_metrics_and_access_log_name_the_protocol(gateway_factory, redis, backend):
    gateway = admin_gateway(gateway_factory, redis)
    redis.put("h2m")
    with H2Client(gateway.port) as client:
        for _ in range(3):
            assert client.get(authority("h2m", backend.port)).status == 200
        held = client.request(authority("h2m", backend.port), "/hold")
        wait_for(lambda: backend.holding == 1, 10)
        metrics = gateway_metrics(gateway)
        assert metrics["sgw_h2_connections"] == 1
        assert metrics["sgw_h2_streams"] == 1
        assert metrics['sgw_requests_total{protocol="h2",class="2xx"}'] == 3
        backend.release()
        client.response(held)
    assert gateway.request(f"{backend.port}-h2m.{DOMAIN}:{gateway.port}").status == 200
    wait_for(lambda: len(gateway.access_entries()) >= 5, 10)
    protocols = [entry["protocol"] for entry in gateway.access_entries()]
    assert protocols.count("h2") == 4 and protocols.count("http/1.1") >= 1, protocols
    metrics = gateway_metrics(gateway)
    assert metrics["sgw_h2_streams"] == 0
    assert metrics['sgw_requests_total{protocol="http/1.1",class="2xx"}'] >= 1


def test_h2load(gateway, redis, backend):
    redis.put("h2load")
    result = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                             "-H", f":authority: {authority('h2load', backend.port)}",
                             f"http://127.0.0.1:{gateway.port}/load"], capture_output=True, timeout=120)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "2000 succeeded, 0 failed, 0 errored" in output, output
    assert "status codes: 2000 2xx" in output, output


def test_http2_off_speaks_http11_only(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, http2="off")
    redis.put("h2off")
    host = authority("h2off", backend.port)
    result = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "10", "-o", "/dev/null",
                             "-w", "%{http_code}", "--resolve", f"{host}:{gateway.port}:127.0.0.1",
                             f"http://{host}:{gateway.port}/"], capture_output=True, timeout=20)
    # The preface is no HTTP/1.1 request: 400 (or curl reports the broken HTTP/2 exchange).
    assert result.stdout != b"200", result
    assert backend.count() == 0
