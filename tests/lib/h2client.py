"""A raw HTTP/2 client for frame-level tests (Debian's python3-h2): streams, flow control the test
drives by hand, resets and GOAWAY seen as they arrive, and frames written byte by byte (hyperframe)
for the floods no well-behaved library sends."""
import socket
import time
from dataclasses import dataclass, field
from typing import Optional

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import ContinuationFrame, HeadersFrame


@dataclass
class Stream:
    id: int
    headers: list = field(default_factory=list)   # the final response head (informational ones skipped)
    informational: list = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: list = field(default_factory=list)
    ended: bool = False
    reset: Optional[int] = None  # RST_STREAM error code

    @property
    def status(self):
        return int(self.header(":status") or 0)

    def header(self, name):
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def done(self):
        return self.ended or self.reset is not None


class H2Client:
    """One prior-knowledge (or, with a TLS context, ALPN h2) connection to the gateway.

    auto_ack: received DATA reopens the windows at once; without it the test acknowledges
    (ack(stream, n), ack_connection(n)), which is how a slow reader is made."""

    def __init__(self, port, host="127.0.0.1", context=None, server_hostname=None, timeout=20,
                 auto_ack=True, settings=None):
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            raw = context.wrap_socket(raw, server_hostname=server_hostname)
        self.sock = raw
        self.sock.settimeout(timeout)
        self.auto_ack = auto_ack
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.streams = {}
        self.goaway = []  # (error_code, last_stream_id) in order of arrival
        self.closed = False
        self.remote_settings = {}
        self.flush()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, authority, path="/", method="GET", headers=(), body=None, end_stream=True,
                scheme="http"):
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
        fields += list(headers)
        self.conn.send_headers(stream_id, fields, end_stream=end_stream and body is None)
        self.streams[stream_id] = Stream(stream_id)
        if body is not None:
            self.send_body(stream_id, body, end_stream=end_stream)
        self.flush()
        return stream_id

    def send_body(self, stream_id, body, end_stream=True):
        """Sends body as the windows allow (reading meanwhile); ends the stream if asked."""
        offset = 0
        while offset < len(body):
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.read(1.0)
                continue
            chunk = body[offset:offset + window]
            self.conn.send_data(stream_id, chunk)
            offset += len(chunk)
            self.flush()
        if end_stream:
            self.conn.end_stream(stream_id)
        self.flush()

    def ack(self, stream_id, length):
        self.conn.acknowledge_received_data(length, stream_id)
        self.flush()

    def ack_connection(self, length):
        self.conn.increment_flow_control_window(length)
        self.flush()

    def read(self, timeout=1.0):
        """Reads what arrives within timeout; returns False once the gateway closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            return True
        except (ConnectionResetError, OSError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for event in events:
            self._event(event)
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def _event(self, event):
        stream = self.streams.get(getattr(event, "stream_id", None) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            stream.headers = list(event.headers)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            stream.informational.append(list(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            stream.data += event.data
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway.append((int(event.error_code), event.last_stream_id))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for key, value in event.changed_settings.items():
                self.remote_settings[int(key)] = value.new_value

    def wait(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("HTTP/2 condition not met in time")
            if not self.read(0.2) and not predicate():
                raise AssertionError("the gateway closed the connection")
        return True

    def response(self, stream_id, timeout=15):
        self.wait(lambda: self.streams[stream_id].done, timeout)
        return self.streams[stream_id]

    def get(self, authority, path="/", headers=(), timeout=15, **kwargs):
        return self.response(self.request(authority, path, headers=headers, **kwargs), timeout)

    def read_until_closed(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.read(0.2):
                return True
        return False


class RawH2:
    """Frames written and read as bytes: for what python3-h2's state machine refuses to do or to
    read (a stream above the peer's limit, frames after a GOAWAY)."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, port, host="127.0.0.1", timeout=20):
        from hyperframe.frame import SettingsFrame
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.closed = False
        self.sock.sendall(self.PREFACE + SettingsFrame(0).serialize())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def frames(self, timeout=1.0):
        """The frames that arrive within timeout: (type, flags, stream_id, payload) each. A SETTINGS
        from the gateway is acknowledged."""
        from hyperframe.frame import SettingsFrame
        deadline = time.monotonic() + timeout
        out = []
        while time.monotonic() < deadline and not self.closed:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 16)
            except (socket.timeout, TimeoutError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.buffer += data
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                kind, flags = self.buffer[3], self.buffer[4]
                stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                payload = self.buffer[9:9 + length]
                self.buffer = self.buffer[9 + length:]
                out.append((kind, flags, stream_id, payload))
                if kind == 0x4 and not flags & 0x1:
                    ack = SettingsFrame(0)
                    ack.flags.add("ACK")
                    self.sock.sendall(ack.serialize())
        return out


GOAWAY, RST_STREAM, HEADERS = 0x7, 0x3, 0x1


def goaways(frames):
    """(error code, last stream ID) of each GOAWAY among frames."""
    return [(int.from_bytes(payload[4:8], "big"), int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
            for kind, _, _, payload in frames if kind == GOAWAY]


def headers_block(fields, stream_id, end_headers=True, end_stream=True):
    """One HEADERS frame of fields (HPACK, no dynamic table use by the caller's encoder)."""
    import hpack
    frame = HeadersFrame(stream_id)
    frame.data = hpack.Encoder().encode(fields)
    frame.flags.add("END_STREAM") if end_stream else None
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def continuation(stream_id, data=b"", end_headers=False):
    frame = ContinuationFrame(stream_id)
    frame.data = data
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7
NO_ERROR = 0x0
