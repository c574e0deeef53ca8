"""WebSocket pieces of the benchmark, standard library only.

    /usr/bin/python3 bench/ws.py serve PORT   a backend that answers every upgrade with 101 and
                                               then idles (reads and drops), until killed

bench.py imports open_idle() from here: it opens many upgraded connections through a proxy
at once with non-blocking sockets and hands them back open.
"""
import base64
import errno
import hashlib
import selectors
import socket
import sys
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_value(key):
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def serve(port):
    """One thread, one selector: 101 to every upgrade request, 200 to anything else, then idle."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    heads = {}  # socket -> bytes received before the end of the request head; absent once upgraded
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is listener:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # EMFILE and the like: drop this round, try again later
                        if exc.errno in (errno.EMFILE, errno.ENFILE):
                            time.sleep(0.01)
                            break
                        raise
                    conn.setblocking(False)
                    heads[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, None)
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                heads.pop(sock, None)
                sock.close()
                continue
            if sock not in heads:
                continue  # an upgraded connection: frames are read and dropped
            head = heads[sock] + data
            if b"\r\n\r\n" not in head:
                heads[sock] = head
                continue
            del heads[sock]
            lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            try:
                if fields.get(b"upgrade", b"").lower() == b"websocket" and b"sec-websocket-key" in fields:
                    sock.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                              + accept_value(fields[b"sec-websocket-key"]) + b"\r\n\r\n")
                else:
                    sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
                              b"ws backend\n")
                    sel.unregister(sock)
                    sock.close()
            except OSError:
                sel.unregister(sock)
                sock.close()


class OpenResult:
    def __init__(self):
        self.sockets = []     # upgraded, open
        self.failures = {}    # reason -> count
        self.seconds = 0.0

    def fail(self, reason):
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def close(self):
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
        self.sockets = []


def open_idle(port, host, path, count, in_flight=256, timeout=60.0):
    """Opens `count` WebSocket connections to 127.0.0.1:port (Host: host) and waits for each 101.

    At most `in_flight` handshakes are under way at once, so no listen backlog overflows. Returns
    an OpenResult whose sockets stay open until its close()."""
    result = OpenResult()
    sel = selectors.DefaultSelector()
    key_b64 = base64.b64encode(b"bench-websocket!").decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key_b64}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    started = time.monotonic()
    deadline = started + timeout
    opened = 0
    pending = {}  # socket -> ["connecting"|"reading", bytes]

    def drop(sock, reason):
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        pending.pop(sock, None)
        sock.close()
        result.fail(reason)

    while (opened < count or pending) and time.monotonic() < deadline:
        while opened < count and len(pending) < in_flight:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            opened += 1
            rc = sock.connect_ex(("127.0.0.1", port))
            if rc not in (0, errno.EINPROGRESS):
                sock.close()
                result.fail(f"connect: {errno.errorcode.get(rc, rc)}")
                continue
            pending[sock] = ["connecting", b""]
            sel.register(sock, selectors.EVENT_WRITE)
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            state = pending.get(sock)
            if state is None:
                continue
            if state[0] == "connecting":
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    drop(sock, f"connect: {errno.errorcode.get(err, err)}")
                    continue
                try:
                    sock.send(request)
                except OSError as exc:
                    drop(sock, f"send: {exc.strerror}")
                    continue
                state[0] = "reading"
                sel.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                drop(sock, f"recv: {exc.strerror}")
                continue
            if not data:
                drop(sock, "closed before 101")
                continue
            state[1] += data
            if b"\r\n\r\n" not in state[1]:
                continue
            status_line = state[1].split(b"\r\n", 1)[0]
            parts = status_line.split()
            if len(parts) >= 2 and parts[1] == b"101":
                sel.unregister(sock)
                del pending[sock]
                result.sockets.append(sock)
            else:
                drop(sock, f"status {parts[1].decode(errors='replace') if len(parts) > 1 else '?'}")
    for sock in list(pending):
        drop(sock, "timed out")
    result.seconds = time.monotonic() - started
    sel.close()
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        try:
            serve(int(sys.argv[2]))
        except KeyboardInterrupt:
            pass
    else:
        sys.exit("usage: ws.py serve PORT")
