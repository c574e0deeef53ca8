"""Shared by every helper and test: the repository, free ports, polling, sanitizer reports, and
require(): a skip, or under SGW_REQUIRE_BUILDS=1 (which `make test` sets) a failure."""
import os
import socket
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "LSAN_OPTIONS": "report_objects=0",
}

_PORTS_HANDED_OUT = set()


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on right now (bound to port 0, then released), and never one
    this run handed out before: two calls in a row can get the same released port from the
    kernel, and a configuration with both (a plain and a TLS listener) then fails to start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port


def wait_for(predicate, timeout, interval=0.02, message="condition"):
    """Polls predicate until it returns a true value (which is returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def sanitizer_findings(text):
    return [line for line in text.splitlines() if any(marker in line for marker in SANITIZER_MARKERS)]


def require_builds():
    """True under SGW_REQUIRE_BUILDS=1, where require() fails instead of skipping."""
    return os.environ.get("SGW_REQUIRE_BUILDS") == "1"


def require(condition, reason):
    """Returns when condition holds. Otherwise skips the running test (or fixture) with reason, or,
    under SGW_REQUIRE_BUILDS=1, fails it: there, nothing a test needs (a build, a tool, root) may
    be missing, so that a run cannot pass by skipping."""
    __tracebackhide__ = True  # a skip's location in the summary is the caller's line
    if condition:
        return
    if require_builds():
        pytest.fail(f"{reason}; SGW_REQUIRE_BUILDS=1 requires it", pytrace=False)
    pytest.skip(reason)


def require_module(condition, reason):
    """require() for a whole test module, called at its top (pytestmark = require_module(...)).

    When condition does not hold, skips the module (one skip in the summary), or, under
    SGW_REQUIRE_BUILDS=1, returns a mark with which tests/conftest.py fails each of its tests with
    reason (a failure at import would stop the whole run). Returns no marks when it holds."""
    __tracebackhide__ = True
    if condition:
        return []
    if not require_builds():
        pytest.skip(reason, allow_module_level=True)
    return [pytest.mark.sgw_required(reason)]


def accept_queue(port):
    """Connections the kernel holds for the listeners on port (every worker's), not yet accepted."""
    queued = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                queued += int(fields[4].split(":")[1], 16)
    return queued


def open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_descriptors(pid, timeout=5):
    """The process's open descriptors once the count held for 0.3 s (closes it had yet to see done)."""
    counts = [open_descriptors(pid)]

    def held():
        time.sleep(0.1)
        counts.append(open_descriptors(pid))
        return len(counts) >= 4 and len(set(counts[-4:])) == 1
    wait_for(held, timeout, 0, "the open descriptors to settle")
    return counts[-1]


def take_every_descriptor(port, pid, limit, sockets):
    """Connections to port with a head begun (a listener that defers accept takes them), added to
    sockets, until the process pid has limit descriptors open, and still has once the closes it
    had yet to see are done."""
    while settled_descriptors(pid) < limit:
        for _ in range(limit - open_descriptors(pid)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\n")
            sockets.append(sock)
        wait_for(lambda: accept_queue(port) == 0, 5, 0.02, "the heads to be accepted")
