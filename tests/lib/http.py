"""The raw HTTP/1.1 client the tests talk to the gateway with, its Response, and RawStream, the
buffered socket of scripted peers (RawServer handlers, clients that send malformed bytes)."""
import contextlib
import json
import socket
import time
from dataclasses import dataclass


def wait_eof(stream, timeout):
    """True if stream's peer closed within timeout seconds; bytes before the close are added to
    stream.buffer."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            stream.sock.settimeout(left)
            try:
                data = stream.sock.recv(65536)
            except socket.timeout:
                return False
            if not data:
                return True
            stream.buffer += data
    except OSError:
        return True


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name):
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise AssertionError(f"not JSON ({error}): {self}") from None

    def text(self):
        return self.body.decode("utf-8", errors="replace")

    @property
    def keeps_alive(self):
        connection = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} headers={self.headers} "
                f"body={self.body[:600]!r}>")


class HttpConnection:
    """A raw HTTP/1.1 client connection: sends bytes as given and reads whole responses."""

    def __init__(self, port, host="127.0.0.1", timeout=15):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the gateway")
        self.buffer += data

    def _line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_until(self, marker: bytes, timeout=10):
        """Reads until marker is in the buffer (leaving it there); fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not received within {timeout}s; got {self.buffer[-300:]!r}")
            self.sock.settimeout(left)
            try:
                self._fill()
            except socket.timeout:
                continue
            finally:
                self.sock.settimeout(self.timeout)
        return self.buffer

    def read_head(self):
        status_line = self._line().decode("latin-1")
        version, status, reason = (status_line.split(" ", 2) + [""])[:3]
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        return version, int(status), reason, headers

    def read_response(self, method="GET"):
        while True:
            version, status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101:
                continue
            break
        response = Response(version, status, reason, headers, b"")
        length = response.header("Content-Length")
        encoding = (response.header("Transfer-Encoding") or "").lower()
        if method == "HEAD" or status in (101, 204, 304):
            return response
        if "chunked" in encoding:
            body = b""
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self.read_exactly(size)
                self._line()
            response.body = body
        elif length is not None:
            response.body = self.read_exactly(int(length))
        else:
            body = self.buffer
            self.buffer = b""
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                body += data
            response.body = body
        return response

    def request(self, method="GET", target="/", host=None, headers=(), body=None, chunks=None,
                version="HTTP/1.1"):
        """Sends one request (Host first when given, then headers as a list of pairs or a dict) and
        returns its response. body sets Content-Length; chunks (a list of bytes) sends chunked."""
        lines = [f"{method} {target} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        items = headers.items() if isinstance(headers, dict) else headers
        lines += [f"{name}: {value}" for name, value in items]
        payload = b""
        if chunks is not None:
            lines.append("Transfer-Encoding: chunked")
            for chunk in chunks:
                payload += b"%x\r\n%s\r\n" % (len(chunk), chunk)
            payload += b"0\r\n\r\n"
        elif body is not None:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        return self.read_response(method)

    def wait_eof(self, timeout):
        """True if the gateway closed (after any bytes, which are kept) within timeout seconds."""
        return wait_eof(self, timeout)

    def unread(self, wait):
        """What the peer sent beyond the responses read so far: the buffer, after one read of whatever
        arrives within wait seconds (kept, so a later response still parses)."""
        self.sock.settimeout(wait)
        try:
            self.buffer += self.sock.recv(65536)
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(self.timeout)
        return self.buffer

    def is_closed(self, wait=2.0):
        """True when the peer has closed the connection (reads EOF) within wait seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
            if data:
                self.buffer += data
                return False
            return True
        except socket.timeout:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)


@dataclass
class RawRequest:
    method: str
    target: str
    version: str
    headers: list
    body: bytes
    trailers: list

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class RawStream:
    """A buffered socket for scripted peers: exact reads, HTTP heads, chunked bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()

    def fill(self, size=262144):
        data = self.sock.recv(size)
        if not data:
            raise ConnectionError("peer closed")
        self.buffer += data

    def read_until(self, marker: bytes):
        """Returns everything up to and including marker."""
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            self.fill()

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_head(self):
        """(first line, [(name, value)]) of an HTTP message head."""
        lines = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return lines[0], headers

    def read_chunked(self):
        """(body, trailers) of a chunked body."""
        body = bytearray()
        while True:
            size = int(self.read_until(b"\r\n").split(b";")[0].strip(), 16)
            if size == 0:
                trailers = []
                while True:
                    line = self.read_until(b"\r\n")[:-2]
                    if not line:
                        return bytes(body), trailers
                    name, _, value = line.decode("latin-1").partition(":")
                    trailers.append((name.strip(), value.strip()))
            body += self.read_exactly(size)
            assert self.read_exactly(2) == b"\r\n", "chunk data not followed by CRLF"

    def read_request(self):
        line, headers = self.read_head()
        method, target, version = line.split(" ", 2)
        request = RawRequest(method, target, version, headers, b"", [])
        if "chunked" in (request.header("Transfer-Encoding") or "").lower():
            request.body, request.trailers = self.read_chunked()
        elif request.header("Content-Length"):
            request.body = self.read_exactly(int(request.header("Content-Length")))
        return request

    def wait_eof(self, timeout):
        """True if the peer closed (after any bytes, which are kept) within timeout seconds."""
        return wait_eof(self, timeout)
