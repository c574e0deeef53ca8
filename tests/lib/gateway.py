"""The gateway process under test (its generated configuration, start, requests, clean exit), and
its admin endpoint (admin_listen): /health and the Prometheus /metrics."""
import hashlib
import json
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from lib.http import HttpConnection, Response
from lib.redis import RedisServer
from lib.util import free_port, sanitizer_findings, wait_for

DOMAIN = "sandbox.localhost"
TOKEN_HEADER = "e2b-traffic-access-token"
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Gateway:
    def __init__(self, build, workdir: Path, redis: Optional[RedisServer], directives, extra):
        self.build = build
        self.workdir = workdir
        self.redis = redis
        self.port = free_port()
        self.config = workdir / "gateway.conf"
        self.access_log = workdir / "access.log"
        self.stdout_path = workdir / "gateway.stdout"
        self.stderr_path = workdir / "gateway.stderr"
        settings = {
            "domain": DOMAIN,
            "listen": f"127.0.0.1:{self.port}",
            "workers": "1",
            "redis_url": redis.url if redis else f"redis://127.0.0.1:{free_port()}/0",
            "route_cache_ttl": "1s",
            "route_negative_ttl": "2s",
            "upstream_connect_retry": "200ms",
            "drain_delay": "0s",
            "drain_timeout": "5s",
            "log_level": "debug",
            "access_log": str(self.access_log),
        }
        settings.update(directives)
        lines = ["# written by tests/lib/gateway.py"]
        for name, value in settings.items():
            if value is None:
                continue
            for item in value if isinstance(value, (list, tuple)) else [value]:
                lines.append(f"{name} {item}")
        lines += list(extra)
        self.config.write_text("\n".join(lines) + "\n")
        self.process = None
        self.checked = False
        self.open_files = None   # RLIMIT_NOFILE for the process, when set before start()

    def start(self, wait_routable=True, timeout=15):
        self.stdout = open(self.stdout_path, "wb")
        self.stderr = open(self.stderr_path, "wb")
        limit = self.open_files

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        self.process = subprocess.Popen([str(self.build.binary), "-c", str(self.config)],
                                        stdin=subprocess.DEVNULL, stdout=self.stdout,
                                        stderr=self.stderr, env=self.build.env(), cwd=self.workdir,
                                        preexec_fn=limits if limit is not None else None)
        deadline = time.monotonic() + timeout

        def accepting():
            if self.process.poll() is not None:
                raise AssertionError(f"sandbox-gateway exited with {self.process.returncode} at "
                                     f"start-up:\n{self.stderr_text()[-4000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(accepting, timeout, 0.02, f"the gateway to accept on 127.0.0.1:{self.port}")
        if wait_routable and self.redis is not None:
            # The Redis connection is up once an unknown sandbox gets "not found" (502), not 503.
            last = []

            def routable():
                try:
                    response = self.get("readyprobe", 1)
                except OSError as error:
                    last[:] = [repr(error)]
                    return False
                last[:] = [response]
                return response.status == 502
            try:
                wait_for(routable, max(1.0, deadline - time.monotonic()), 0.05,
                         "the gateway to answer 502 for an unknown sandbox")
            except AssertionError as error:
                raise AssertionError(f"{error}; last answer: {last}") from None
        return self

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def host(self, sandbox_id, port, suffix=""):
        """The Host of a sandbox port as a client sends it: "<port>-<id>.sandbox.localhost:<gw port>"."""
        return f"{port}-{sandbox_id}{suffix}.{DOMAIN}:{self.port}"

    def connect(self, timeout=15):
        return HttpConnection(self.port, timeout=timeout)

    def request(self, host, method="GET", target="/", headers=(), body=None, chunks=None, timeout=15):
        with self.connect(timeout) as connection:
            return connection.request(method, target, host=host, headers=headers, body=body,
                                      chunks=chunks)

    def get(self, sandbox_id, port, target="/", headers=(), **kwargs):
        return self.request(self.host(sandbox_id, port), "GET", target, headers, **kwargs)

    def curl(self, sandbox_id, port, target="/", *args, timeout=30):
        """Runs curl against the sandbox URL (resolved to the gateway); returns (status, headers, body)."""
        hostname = f"{port}-{sandbox_id}.{DOMAIN}"
        command = ["curl", "-sS", "--max-time", str(timeout - 2), "-D", "-",
                   "--resolve", f"{hostname}:{self.port}:127.0.0.1",
                   f"http://{hostname}:{self.port}{target}", *args]
        result = subprocess.run(command, capture_output=True, timeout=timeout)
        assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr!r}"
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 100"):
            head, _, body = body.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
        return Response("HTTP/1.1", status, "", headers, body)

    def access_entries(self):
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit code (killing and failing after timeout)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self._close_files()
                raise AssertionError(f"sandbox-gateway did not exit within {timeout}s of SIGTERM")
        self._close_files()
        return self.process.returncode

    def _close_files(self):
        for handle in (getattr(self, "stdout", None), getattr(self, "stderr", None)):
            if handle and not handle.closed:
                handle.close()

    def check_exit(self, timeout=10):
        """Stops the gateway and asserts a clean exit: status 0 and no sanitizer report."""
        if self.checked:
            return
        self.checked = True
        code = self.stop(timeout)
        stderr = self.stderr_text()
        findings = sanitizer_findings(stderr)
        assert not findings, f"sanitizer report in the gateway's stderr:\n{stderr[-8000:]}"
        assert code == 0, f"sandbox-gateway exited with {code} after SIGTERM:\n{stderr[-4000:]}"


def admin_request(address, path="/health", method="GET", version="HTTP/1.1", headers=(), timeout=10):
    """One request to an admin endpoint at address (host, port), on its own connection; no Host
    unless given in headers. Returns a Response."""
    host, port = address
    with HttpConnection(port, host=host, timeout=timeout) as connection:
        lines = [f"{method} {path} {version}"] + [f"{name}: {value}" for name, value in headers]
        connection.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return connection.read_response(method)


def parse_metrics(text):
    """Prometheus text exposition -> {'name' or 'name{labels}': float}; every sample line must parse."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)', line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[match.group(1)] = float(match.group(2))
    return samples


def admin_gateway(gateway_factory, redis, admin_host="127.0.0.1", **kwargs):
    """gateway_factory(...) with admin_listen on a free port of admin_host; the gateway's .admin is
    (host, port). kwargs go to gateway_factory (directives, extra, start, wait_routable)."""
    port = free_port(admin_host)
    gateway = gateway_factory(redis, admin_listen=f"{admin_host}:{port}", **kwargs)
    gateway.admin = (admin_host, port)
    return gateway


def gateway_health(gateway, **kwargs):
    """(status, body text) of GET /health on a gateway made by admin_gateway."""
    response = admin_request(gateway.admin, "/health", **kwargs)
    return response.status, response.text()


def gateway_metrics(gateway):
    """The parsed GET /metrics of a gateway made by admin_gateway."""
    response = admin_request(gateway.admin, "/metrics")
    assert response.status == 200, response
    return parse_metrics(response.text())
