"""Load with wrk: many connections and requests, every answer a success, the gateway survives."""
import re
import subprocess


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
