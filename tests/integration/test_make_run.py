"""`make run` (scripts/run.sh) as the README tells it: the demo sandbox answers through the gateway,
and once paused with its app stopped, the next request wakes it through demo/resumer.py (the
reference control plane: a consumer group on sandbox:resume that starts the app and writes
state running). Runs once, with build/ (the script builds and runs the Release binary)."""
import os
import signal
import subprocess
import time

from lib.http import HttpConnection
from lib.redis import RedisServer
from lib.util import REPO, free_port, wait_for

DOMAIN = "sandbox.localhost"


def get(port, host, target="/"):
    try:
        with HttpConnection(port, timeout=15) as connection:
            return connection.request("GET", target, host=host)
    except OSError:
        return None


def test_make_run_wakes_the_paused_demo_sandbox(tmp_path):
    gateway_port, redis_port, demo_port, tls_port = (free_port() for _ in range(4))
    config = tmp_path / "gateway.conf"
    config.write_text(f"domain {DOMAIN}\nlisten 127.0.0.1:{gateway_port}\nworkers 1\n"
                      f"redis_url redis://127.0.0.1:{redis_port}/0\nresume_timeout 20s\n")
    env = dict(os.environ, SGW_CONFIG=str(config), DEMO_PORT=str(demo_port), TLS_PORT=str(tls_port))
    output = tmp_path / "run.log"
    with open(output, "wb") as log:
        process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    host = f"{demo_port}-demo.{DOMAIN}:{gateway_port}"
    try:
        def served():
            assert process.poll() is None, output.read_text(errors="replace")[-3000:]
            response = get(gateway_port, host)
            return response is not None and response.status == 200
        wait_for(served, 300, 0.2, "make run to serve the demo sandbox")
        text = output.read_text(errors="replace")
        assert "HSET sandbox:catalog:demo state paused" in text, text

        redis = RedisServer(tmp_path / "redis-client", port=redis_port)
        redis.command("HSET", "sandbox:catalog:demo", "state", "paused")
        app_pid = int((REPO / ".run" / "demo-app.pid").read_text())
        os.kill(app_pid, signal.SIGTERM)
        wait_for(lambda: get(demo_port, "x") is None, 10, message="the demo app to stop")

        started = time.monotonic()
        response = get(gateway_port, host, "/?woken=1")
        assert response is not None and response.status == 200, response
        assert b"Hello from the demo sandbox" in response.body and b"/?woken=1" in response.body
        assert redis.command("HGET", "sandbox:catalog:demo", "state") == "running"
        assert redis.command("XLEN", "sandbox:resume") == 1
        assert time.monotonic() - started < 15
        assert int((REPO / ".run" / "demo-app.pid").read_text()) != app_pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = output.read_text(errors="replace")
    assert "resumer: resumed demo" in text, text[-3000:]
