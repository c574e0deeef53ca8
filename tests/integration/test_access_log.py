"""The access log: one JSON line per request with the fields of gateway/access_log.h."""
import re

from conftest import wait_for

FIELDS = {"time", "client", "sandbox", "port", "method", "path", "status", "bytes_in", "bytes_out",
          "duration_ms"}


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
