"""Upgrades through the gateway: a real RFC 6455 echo server behind it, half-closes in both
directions, tunnel_idle_timeout, backpressure inside a tunnel, non-WebSocket upgrades."""
import base64
import hashlib
import os
import socket
import threading
import time

import pytest

from lib.backends import pattern_bytes
from lib.http import RawStream
from lib.util import wait_for

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
MiB = 1024 * 1024


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def xor_mask(payload, key):
    if not payload:
        return b""
    length = len(payload)
    stream = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(length, "big")


def encode_frame(opcode, payload, masked):
    """One final frame; clients mask (RFC 6455 §5.3), servers do not."""
    header = bytes([0x80 | opcode])
    bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        header += bytes([bit | length])
    elif length < 65536:
        header += bytes([bit | 126]) + length.to_bytes(2, "big")
    else:
        header += bytes([bit | 127]) + length.to_bytes(8, "big")
    if masked:
        key = os.urandom(4)
        return header + key + xor_mask(payload, key)
    return header + payload


def read_frame(stream):
    """(fin, opcode, masked, payload) of the next frame."""
    first, second = stream.read_exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(stream.read_exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(stream.read_exactly(8), "big")
    key = stream.read_exactly(4) if second & 0x80 else None
    payload = stream.read_exactly(length)
    if key is not None:
        payload = xor_mask(payload, key)
    return bool(first & 0x80), first & 0x0F, key is not None, payload


class EchoServer:
    """An RFC 6455 server: checks the handshake, answers Sec-WebSocket-Accept, requires masked
    client frames, echoes data frames, answers pings, echoes a close and then closes.

    on_eof: bytes to send as a last text frame (then a close frame) when the client half-closes.
    half_close_with: bytes to send as a frame right after the handshake, then shut down writing
    and keep reading."""

    def __init__(self, on_eof=None, half_close_with=None):
        self.on_eof = on_eof
        self.half_close_with = half_close_with
        self.handshakes = []
        self.received = []  # payloads of data frames, in order
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, stream, server):
        line, headers = stream.read_head()
        fields = {name.lower(): value for name, value in headers}
        self.handshakes.append((line, headers))
        key = fields.get("sec-websocket-key", "")
        if not (line.startswith("GET ") and fields.get("upgrade", "").lower() == "websocket"
                and "upgrade" in fields.get("connection", "").lower()
                and fields.get("sec-websocket-version") == "13"
                and len(base64.b64decode(key)) == 16):
            stream.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            raise AssertionError(f"bad handshake reached the server: {line} {headers}")
        stream.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_for(key)}\r\n"
                             "\r\n").encode())
        if self.half_close_with is not None:
            stream.sock.sendall(encode_frame(OP_TEXT, self.half_close_with, masked=False))
            stream.sock.shutdown(socket.SHUT_WR)
            self.events.append("shut")
        while True:
            try:
                fin, opcode, masked, payload = read_frame(stream)
            except ConnectionError:
                self.events.append("eof")
                if self.on_eof is not None:
                    time.sleep(0.3)  # the last words come well after the client's half-close
                    stream.sock.sendall(encode_frame(OP_TEXT, self.on_eof, masked=False) +
                                        encode_frame(OP_CLOSE, b"\x03\xe8", masked=False))
                return
            if not masked:
                raise AssertionError("a client frame arrived unmasked")
            assert fin, "this server does not expect fragments"
            if opcode == OP_CLOSE:
                self.events.append("close")
                stream.sock.sendall(encode_frame(OP_CLOSE, payload, masked=False))
                stream.sock.shutdown(socket.SHUT_WR)
                stream.wait_eof(10)
                return
            if opcode == OP_PING:
                stream.sock.sendall(encode_frame(OP_PONG, payload, masked=False))
                continue
            with self.lock:
                self.received.append(payload)
            if self.half_close_with is None:
                stream.sock.sendall(encode_frame(opcode, payload, masked=False))


def ws_connect(gateway, host, target="/chat", timeout=20):
    """Opens a WebSocket through the gateway; returns (socket, stream) after checking the 101."""
    client = socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    client.sendall((f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\nOrigin: http://example.test\r\n\r\n").encode())
    stream = RawStream(client)
    line, headers = stream.read_head()
    fields = {name.lower(): value for name, value in headers}
    assert line.startswith("HTTP/1.1 101 "), (line, headers)
    assert fields.get("upgrade", "").lower() == "websocket", headers
    assert "upgrade" in fields.get("connection", "").lower(), headers
    assert fields.get("sec-websocket-accept") == accept_for(key), headers
    return client, stream


@pytest.fixture
def sandbox(redis):
    redis.put("ws1")
    return "ws1"


def test_websocket_echo_1000_messages_and_1mib_frame(raw_server_factory, gateway_factory, redis,
                                                     sandbox):
    echo = EchoServer()
    server = raw_server_factory(echo)
    gateway = gateway_factory(redis)
    client, stream = ws_connect(gateway, gateway.host(sandbox, server.port))
    with client:
        messages = []
        for number in range(1000):
            size = [0, 5, 125, 126, 300, 65535, 65536][number % 7] if number % 50 == 0 else number % 200
            messages.append(f"message {number} ".encode() + bytes([65 + number % 26]) * size)
        for start in range(0, 1000, 50):
            batch = messages[start:start + 50]
            client.sendall(b"".join(encode_frame(OP_TEXT, message, masked=True) for message in batch))
            for message in batch:
                fin, opcode, masked, payload = read_frame(stream)
                assert (fin, opcode, masked) == (True, OP_TEXT, False)
                assert payload == message
        client.sendall(encode_frame(OP_PING, b"are you there", masked=True))
        assert read_frame(stream) == (True, OP_PONG, False, b"are you there")
        big = os.urandom(MiB)
        client.sendall(encode_frame(OP_BINARY, big, masked=True))
        fin, opcode, masked, payload = read_frame(stream)
        assert opcode == OP_BINARY and len(payload) == MiB
        assert hashlib.sha256(payload).digest() == hashlib.sha256(big).digest()
        client.sendall(encode_frame(OP_CLOSE, b"\x03\xe8bye", masked=True))
        assert read_frame(stream) == (True, OP_CLOSE, False, b"\x03\xe8bye")
        assert stream.wait_eof(10), "the tunnel stayed open after both sides closed"
    assert len(echo.received) == 1001 and echo.received[-1] == big
    assert not server.errors, server.errors
    line, headers = echo.handshakes[0]
    forwarded = {name.lower(): value for name, value in headers}
    assert line == "GET /chat HTTP/1.1"
    assert forwarded["upgrade"] == "websocket" and forwarded["sec-websocket-version"] == "13"
    assert forwarded["origin"] == "http://example.test"


def test_client_half_close_still_receives_final_bytes(raw_server_factory, gateway_factory, redis,
                                                       sandbox):
    echo = EchoServer(on_eof=b"final words")
    server = raw_server_factory(echo)
    gateway = gateway_factory(redis)
    client, stream = ws_connect(gateway, gateway.host(sandbox, server.port))
    with client:
        client.sendall(encode_frame(OP_TEXT, b"last message", masked=True))
        client.shutdown(socket.SHUT_WR)
        assert read_frame(stream) == (True, OP_TEXT, False, b"last message")
        # Sent by the server 300 ms after it saw the client's end of stream.
        assert read_frame(stream) == (True, OP_TEXT, False, b"final words")
        assert read_frame(stream) == (True, OP_CLOSE, False, b"\x03\xe8")
        assert stream.wait_eof(10)
    assert echo.events == ["eof"]
    assert not server.errors, server.errors


def test_server_half_close_still_receives_client_bytes(raw_server_factory, gateway_factory, redis,
                                                        sandbox):
    echo = EchoServer(half_close_with=b"server done")
    server = raw_server_factory(echo)
    gateway = gateway_factory(redis)
    client, stream = ws_connect(gateway, gateway.host(sandbox, server.port))
    with client:
        assert read_frame(stream) == (True, OP_TEXT, False, b"server done")
        assert stream.wait_eof(10), "the server's end of stream was not passed on"
        assert stream.buffer == b""
        for number in range(3):
            client.sendall(encode_frame(OP_TEXT, b"after %d" % number, masked=True))
        wait_for(lambda: len(echo.received) == 3, 10, message="the client's frames at the server")
    assert echo.received == [b"after 0", b"after 1", b"after 2"]
    wait_for(lambda: "eof" in echo.events, 10, message="the client's close at the server")
    assert not server.errors, server.errors


def test_tunnel_idle_timeout(raw_server_factory, gateway_factory, redis, sandbox):
    echo = EchoServer()
    server = raw_server_factory(echo)
    gateway = gateway_factory(redis, tunnel_idle_timeout="1s")
    client, stream = ws_connect(gateway, gateway.host(sandbox, server.port))
    with client:
        # Traffic every 300 ms keeps the tunnel open well past 1 s: the timeout is for idleness.
        started = time.monotonic()
        number = 0
        while time.monotonic() - started < 2.2:
            time.sleep(0.3)
            client.sendall(encode_frame(OP_TEXT, b"tick %d" % number, masked=True))
            assert read_frame(stream)[3] == b"tick %d" % number
            number += 1
        last_activity = time.monotonic()
        assert stream.wait_eof(6), "an idle tunnel was not closed by tunnel_idle_timeout 1s"
        idle = time.monotonic() - last_activity
    assert 0.8 <= idle < 6, f"closed after {idle:.2f}s idle"
    wait_for(lambda: "eof" in echo.events, 5, message="the sandbox side of the tunnel to close")
    assert not server.errors, server.errors


def test_tunnel_backpressure_and_integrity(raw_server_factory, gateway_factory, redis, sandbox):
    """A non-WebSocket Upgrade: the server floods 64 MiB while the client reads nothing, then the
    client sends 16 MiB back; both arrive intact and the flood stalls while unread."""
    down, up = 64 * MiB, 16 * MiB
    data_down, data_up = pattern_bytes(down), pattern_bytes(up)[::-1]
    progress = {"sent": 0}

    def handler(stream, server):
        line, headers = stream.read_head()
        server.record((line, headers))
        stream.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-bulk/1\r\n"
                            b"Connection: Upgrade\r\n\r\n")
        view = memoryview(data_down)
        for offset in range(0, down, MiB):
            stream.sock.sendall(view[offset:offset + MiB])
            progress["sent"] = offset + MiB
        received = stream.read_exactly(up)
        progress["up_sha"] = hashlib.sha256(received).hexdigest()
        stream.sock.sendall(b"done")
        stream.wait_eof(10)

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as client:
        client.sendall(f"GET /bulk HTTP/1.1\r\nHost: {host}\r\nUpgrade: x-bulk/1\r\n"
                       "Connection: Upgrade\r\n\r\n".encode())
        stream = RawStream(client)
        line, headers = stream.read_head()
        assert line.startswith("HTTP/1.1 101"), line
        assert ("Upgrade", "x-bulk/1") in headers, headers
        started, last, last_change = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - started < 2.0 or time.monotonic() - last_change < 0.5:
            if progress["sent"] != last:
                last, last_change = progress["sent"], time.monotonic()
            assert time.monotonic() - started < 20, "the flood never stalled"
            time.sleep(0.1)
        assert last < down, "the server wrote all 64 MiB while the client read nothing"
        received = stream.read_exactly(down)
        assert hashlib.sha256(received).digest() == hashlib.sha256(data_down).digest()
        client.sendall(data_up)
        assert stream.read_exactly(4) == b"done"
    assert progress["up_sha"] == hashlib.sha256(data_up).hexdigest()
    forwarded = dict((k.lower(), v) for k, v in server.requests[0][1])
    assert forwarded["upgrade"] == "x-bulk/1" and forwarded["connection"].lower() == "upgrade"
    assert not server.errors, server.errors


def test_declined_upgrade_is_an_ordinary_response(raw_server_factory, gateway_factory, redis,
                                                  sandbox):
    def handler(stream, server):
        while True:
            line, headers = stream.read_head()
            server.record(line)
            stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nno upgrade!")

    server = raw_server_factory(handler)
    gateway = gateway_factory(redis)
    host = gateway.host(sandbox, server.port)
    with gateway.connect(timeout=10) as connection:
        connection.send((f"GET /maybe HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = connection.read_response()
        assert response.status == 200, response
        assert response.body == b"no upgrade!"
        # The connection did not become a tunnel: it ends (as announced) or serves HTTP again.
        if response.keeps_alive:
            again = connection.request("GET", "/again", host=host)
            assert again.status == 200, again
        else:
            assert connection.is_closed(5)
    assert server.requests[0] == "GET /maybe HTTP/1.1"
