"""The access log: one JSON line per request with the fields of gateway/access_log.h."""
import re
import socket
import struct
import time

from lib.gateway import admin_gateway, gateway_metrics
from lib.util import wait_for

FIELDS = {"time", "client", "sandbox", "port", "method", "path", "status", "bytes_in", "bytes_out",
          "duration_ms", "protocol"}


def test_access_log_lines(gateway, redis, backend):
    redis.put("logged1")
    before = len(gateway.access_entries())  # the start-up probe is logged too
    ok = gateway.request(gateway.host("logged1", backend.port), "POST", "/logged?a=1", body=b"12345")
    assert ok.status == 200, ok
    missing = gateway.get("nolog1", backend.port, "/missing")
    assert missing.status == 502, missing

    def new_entries():
        entries = gateway.access_entries()[before:]
        return entries if len(entries) >= 2 else None
    entries = wait_for(new_entries, 10, 0.05, "two access log lines")
    first, second = entries[0], entries[1]
    for entry in (first, second):
        assert FIELDS <= set(entry), entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", entry["time"]), entry
        assert entry["client"] == "127.0.0.1"
        assert isinstance(entry["duration_ms"], (int, float)) and entry["duration_ms"] >= 0
        assert entry["bytes_in"] > 0 and entry["bytes_out"] > 0, entry
    assert (first["sandbox"], first["port"], first["method"], first["path"], first["status"]) == \
        ("logged1", backend.port, "POST", "/logged?a=1", 200)
    assert first["bytes_in"] >= len(b"12345")
    assert first["bytes_out"] >= len(ok.body)
    assert (second["sandbox"], second["method"], second["path"], second["status"]) == \
        ("nolog1", "GET", "/missing", 502)


def test_access_log_off(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, access_log="off")
    redis.put("quiet1")
    assert gateway.get("quiet1", backend.port).status == 200
    assert not gateway.access_log.exists()


def test_abandoned_requests_are_logged_499_and_counted_none(gateway_factory, redis, backend):
    """A request the client gives up on before any answer (a slow app, an upload cut off, a head
    never finished) is logged as nginx logs it, 499, and counted as class "none"."""
    gateway = admin_gateway(gateway_factory, redis)
    redis.put("gone1")
    host = gateway.host("gone1", backend.port)
    before_lines = len(gateway.access_entries())
    before = gateway_metrics(gateway)
    with gateway.connect() as connection:  # gives up on a slow app: a reset
        connection.send(f"GET /hold HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        wait_for(lambda: backend.holding == 1, 10, 0.02, "the request held at the backend")
        # (A FIN alone could be a half-close: the client may still read the answer, RFC 9112
        # §9.6, so the gateway waits for the sandbox then.)
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with gateway.connect() as connection:  # an upload cut off
        connection.send(f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n"
                        "partial".encode())
        time.sleep(0.3)
    with gateway.connect() as connection:  # a head never finished
        connection.send(f"GET /half HTTP/1.1\r\nHost: {host}\r\n".encode())
        time.sleep(0.3)

    def abandoned():
        entries = gateway.access_entries()[before_lines:]
        return entries if len(entries) >= 3 else None
    entries = wait_for(abandoned, 10, 0.05, "three access log lines")
    assert [entry["status"] for entry in entries] == [499] * 3, entries
    # The unfinished head has no path and no method yet.
    assert {(entry["method"], entry["path"]) for entry in entries} == \
        {("GET", "/hold"), ("POST", "/upload"), ("-", None)}, entries
    upload = next(entry for entry in entries if entry["path"] == "/upload")
    assert upload["bytes_out"] == 0 and upload["bytes_in"] > len("partial"), upload
    after = gateway_metrics(gateway)
    assert after['sgw_requests_total{protocol="http/1.1",class="none"}'] - before['sgw_requests_total{protocol="http/1.1",class="none"}'] == 3
    backend.release()
