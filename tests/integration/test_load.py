"""Load with wrk: many connections and requests, every answer a success, the gateway survives."""
import re
import subprocess
from pathlib import Path

import pytest

IO_URING_SYSCTL = Path("/proc/sys/kernel/io_uring_disabled")


def wrk(url, host, seconds=3, connections=32, threads=2, extra=()):
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
               "-H", f"Host: {host}", *extra, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    assert result.returncode == 0, result
    output = result.stdout
    total = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return total, int(non_2xx.group(1)) if non_2xx else 0, errors, output


def test_wrk_keep_alive_load(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, workers="2")
    redis.put("loaded1")
    total, failures, errors, output = wrk(f"http://127.0.0.1:{gateway.port}/load",
                                          gateway.host("loaded1", backend.port))
    assert total >= 100, output
    assert failures == 0, output
    assert errors is None or errors.group(1) == "0", output
    assert backend.count() >= total  # every counted answer came from the backend
    # Still healthy afterwards.
    assert gateway.get("loaded1", backend.port).status == 200


def test_wrk_error_path_load(gateway_factory, redis, backend):
    """Gateway-made answers (not found, then negatively cached) under load."""
    gateway = gateway_factory(redis, workers="2")
    total, failures, errors, output = wrk(f"http://127.0.0.1:{gateway.port}/",
                                          gateway.host("absent1", backend.port), seconds=2)
    assert total >= 100, output
    assert failures == total, output  # every one a 502
    assert errors is None or errors.group(1) == "0", output
    assert backend.count() == 0


def test_without_io_uring_each_read_and_send_is_a_call_of_its_own(gateway_factory, redis, backend):
    """Where io_uring is refused, each worker says so and proxies as before, one call a read or send."""
    try:
        allowed = IO_URING_SYSCTL.read_text().strip()
        IO_URING_SYSCTL.write_text("2")
    except OSError as error:
        pytest.skip(f"io_uring cannot be turned off here: {error}")
    try:
        gateway = gateway_factory(redis, workers="2")  # the workers start with it refused
    finally:
        IO_URING_SYSCTL.write_text(allowed)
    assert gateway.stderr_text().count("no io_uring") == 2
    redis.put("unbatched1")
    total, failures, errors, output = wrk(f"http://127.0.0.1:{gateway.port}/load",
                                          gateway.host("unbatched1", backend.port), seconds=2)
    assert total >= 100, output
    assert failures == 0, output
    assert errors is None or errors.group(1) == "0", output
    body = bytes(range(256)) * 800
    response = gateway.request(gateway.host("unbatched1", backend.port), "POST", "/upload", body=body)
    assert response.status == 200, response
    # Not backend.last: a request wrk left in flight may be recorded after the upload.
    uploads = [recorded for recorded in backend.requests if recorded.path == "/upload"]
    assert len(uploads) == 1 and uploads[0].body == body
    size = 1024 * 1024 + 7  # spliced
    response = gateway.get("unbatched1", backend.port, f"/big?bytes={size}", timeout=60)
    assert response.status == 200, response
    assert len(response.body) == size
