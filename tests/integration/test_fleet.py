"""A fleet on loopback, as deploy/ describes it: a Redis primary and a replica (deploy/redis-replica.conf),
gateways reading the replica, and HAProxy (deploy/haproxy.cfg, run as is) in front sending PROXY v2
and checking /health. A client loop runs through HAProxy while one gateway drains and comes back.

Addresses: HAProxy's frontends and the clients on 127.0.0.1 (clients bind 127.0.0.5, so the
X-Forwarded-For the sandbox sees is theirs, not HAProxy's); gateway N on 127.0.0.(N+1), each with
the same proxy_protocol port and admin port, as gateways on separate machines would have."""
import csv
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lib.gateway import DOMAIN, gateway_health, gateway_metrics
from lib.http import HttpConnection
from lib.redis import RedisError, RedisServer
from lib.util import REPO, free_port, require, wait_for

DEPLOY = REPO / "deploy"
CLIENT = "127.0.0.5"
GATEWAY_ADDRESSES = {1: "127.0.0.2", 2: "127.0.0.3"}
DRAIN_DELAY = 2.0  # > HAProxy's detection: inter 200ms x fall 2 + a check
SANDBOX = "fleet1"



@pytest.fixture
def haproxy_installed():
    require(shutil.which("haproxy") is not None,
            "haproxy is not installed (scripts/deps.sh test installs it)")


# --------------------------------------------------------------------------- Redis replica

class RedisReplica(RedisServer):
    """A replica of primary run from deploy/redis-replica.conf (the command line sets the port, the
    directory and the primary, and overrides the file's lines for them)."""

    def __init__(self, workdir: Path, primary: RedisServer):
        super().__init__(workdir)
        self.primary = primary

    def arguments(self):
        return ["redis-server", str(DEPLOY / "redis-replica.conf"), "--port", str(self.port),
                "--bind", "127.0.0.1", "--replicaof", "127.0.0.1", str(self.primary.port),
                "--dir", str(self.workdir), "--logfile", str(self.log), "--daemonize", "no"]

    def answers(self):
        self.command("INFO", "replication")  # answered even while not in sync
        return True

    def start(self, timeout=15, wait_sync=True):
        super().start(timeout)
        if wait_sync:
            wait_for(self.in_sync, timeout, 0.05, f"redis replica {self.port} in sync")

    def in_sync(self):
        return "master_link_status:up" in self.command("INFO", "replication")


@pytest.fixture
def replica_factory(tmp_path):
    """replica_factory(primary): a synced replica, stopped at teardown (request it before
    gateway_factory so that gateways stop first)."""
    replicas = []

    def make(primary):
        # Redis 7 waits repl-diskless-sync-delay (5s) before each full sync: not needed here.
        primary.command("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        replica = RedisReplica(tmp_path / f"replica{len(replicas)}", primary)
        replicas.append(replica)
        replica.start()
        return replica
    yield make
    for replica in replicas:
        replica.stop()


def replicated(replica, sandbox_id):
    wait_for(lambda: replica.command("EXISTS", replica.key(sandbox_id)) == 1, 10, 0.02,
             f"{sandbox_id} on the replica")


# --------------------------------------------------------------------------- HAProxy

class HAProxy:
    """haproxy -db -f deploy/haproxy.cfg, parameterised by its environment variables."""

    def __init__(self, workdir: Path, env):
        self.workdir = workdir
        self.socket_path = workdir / "haproxy.sock"
        self.log = workdir / "haproxy.log"
        self.env = dict(os.environ)
        self.env.update(env)
        self.env["SGW_LB_STATS_SOCKET"] = str(self.socket_path)
        self.process = None

    def start(self, timeout=15):
        check = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], env=self.env,
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
        self.output = open(self.log, "wb")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(DEPLOY / "haproxy.cfg")], env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=self.output,
                                        stderr=subprocess.STDOUT)

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited ({self.process.returncode}): {self.log_text()[-3000:]}")
            try:
                return bool(self.stats())
            except OSError:
                return False
        wait_for(ready, timeout, 0.05, "haproxy's stats socket")

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stats(self):
        """{(proxy, server): row} from `show stat`."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        text = data.decode().lstrip("# ")
        return {(row["pxname"], row["svname"]): row for row in csv.DictReader(io.StringIO(text))}

    def status(self, server, backend="gateways_http"):
        return self.stats()[(backend, server)]["status"]

    def wait_status(self, server, wanted, timeout=15, backend="gateways_http"):
        wait_for(lambda: self.status(server, backend) == wanted, timeout, 0.02,
                 f"haproxy to see {backend}/{server} {wanted}")

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output.close()
        self.process = None


def make_certificate(directory: Path):
    """A self-signed *.sandbox.localhost certificate and key in one PEM, as HAProxy's `crt` wants."""
    key, cert = directory / "tls.key", directory / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", f"/CN=*.{DOMAIN}", "-addext", f"subjectAltName=DNS:*.{DOMAIN}"],
                   check=True, capture_output=True, timeout=30)
    pem = directory / "tls.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    return pem, cert, key


def port_free_on_all(addresses):
    """A port that can be bound on every address in addresses."""
    for _ in range(50):
        port = free_port(addresses[0])
        try:
            for address in addresses[1:]:
                with socket.socket() as probe:
                    probe.bind((address, port))
            return port
        except OSError:
            continue
    raise AssertionError(f"no port free on all of {addresses}")


# --------------------------------------------------------------------------- the fleet

class Fleet:
    def __init__(self, gateway_factory, primary, replica, backend, tmp_path):
        self.gateway_factory = gateway_factory
        self.primary = primary
        self.replica = replica
        self.backend = backend
        addresses = list(GATEWAY_ADDRESSES.values())
        self.proxy_port = port_free_on_all(addresses)
        self.admin_port = port_free_on_all(addresses)
        self.http_port = free_port()
        self.https_port = free_port()
        self.gateways = {}
        self.haproxy = HAProxy(tmp_path, {
            "SGW_LB_HTTP_BIND": f"127.0.0.1:{self.http_port}",
            "SGW_LB_HTTPS_BIND": f"127.0.0.1:{self.https_port}",
            "SGW_LB_TLS_CERT": str(make_certificate(tmp_path)[0]),
            "SGW_LB_MAXCONN": "4096",
            "SGW_GW1": GATEWAY_ADDRESSES[1],
            "SGW_GW2": GATEWAY_ADDRESSES[2],
            "SGW_GATEWAY_HTTP_PORT": str(self.proxy_port),
            "SGW_GATEWAY_HTTPS_PORT": str(free_port()),  # unused: HAProxy terminates TLS here
            "SGW_ADMIN_PORT": str(self.admin_port),
            "SGW_CHECK_INTER": "200ms",
            "SGW_CHECK_FALL": "2",
            "SGW_CHECK_RISE": "2",
            "SGW_CHECK_TIMEOUT": "2s",
        })

    def start_gateway(self, number):
        """Gateway `number` (1 or 2): a plain listener on 127.0.0.1 for the test's own probes, the
        proxy_protocol listener HAProxy sends to, and the admin listener it checks."""
        address = GATEWAY_ADDRESSES[number]
        gateway = self.gateway_factory(
            self.replica, workers="2", drain_delay=f"{int(DRAIN_DELAY * 1000)}ms", drain_timeout="10s",
            route_cache_ttl="30s", route_negative_ttl="30s",
            extra=[f"listen {address}:{self.proxy_port} proxy_protocol",
                   f"admin_listen {address}:{self.admin_port}"])
        gateway.admin = (address, self.admin_port)
        gateway.number = number
        self.gateways[number] = gateway
        return gateway

    def stop_all(self):
        """SIGTERM to every running gateway at once (each drains for DRAIN_DELAY), then wait."""
        self.haproxy.stop()
        running = [gateway for gateway in self.gateways.values() if gateway.process.poll() is None]
        for gateway in running:
            gateway.process.send_signal(signal.SIGTERM)
        for gateway in running:
            gateway.process.wait(30)

    def host(self, sandbox_id=SANDBOX):
        return f"{self.backend.port}-{sandbox_id}.{DOMAIN}"


@pytest.fixture
def fleet(haproxy_installed, replica_factory, gateway_factory, redis, backend_factory, tmp_path):
    backend = backend_factory("fleet")
    replica = replica_factory(redis)
    redis.put(SANDBOX)
    replicated(replica, SANDBOX)
    fleet = Fleet(gateway_factory, redis, replica, backend, tmp_path)
    for number in GATEWAY_ADDRESSES:
        fleet.start_gateway(number)
    fleet.haproxy.start()
    try:
        for server in ("gw1", "gw2"):
            fleet.haproxy.wait_status(server, "UP")
        yield fleet
    finally:
        fleet.stop_all()


def loop_entries(gateway):
    """Access-log lines of the client loop's requests (from CLIENT through HAProxy)."""
    return [entry for entry in gateway.access_entries()
            if entry.get("client") == CLIENT and entry.get("path", "").startswith("/loop/")]


def request_via(port, host, path, source=CLIENT, timeout=15):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        connection = HttpConnection.__new__(HttpConnection)
        connection.timeout, connection.sock, connection.buffer = timeout, sock, b""
        return connection.request("GET", path, host=host, headers=[("Connection", "close")])


class ClientLoop:
    """Client threads sending GETs through HAProxy until stopped: `fresh` threads open a connection
    per request; one `keep-alive` thread reuses its connection and, as HTTP clients do (RFC 9112
    9.3.1), retries a request once on a new connection when a reused one closes before any
    response byte. Anything else that is not a 200 from the backend with X-Forwarded-For CLIENT
    is a failure."""

    def __init__(self, port, host, fresh_threads=3):
        self.port = port
        self.host = host
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.succeeded = 0
        self.retried = 0
        self.failures = []
        self.threads = [threading.Thread(target=self._fresh, args=(number,), daemon=True)
                        for number in range(fresh_threads)]
        self.threads.append(threading.Thread(target=self._keep_alive, daemon=True))

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _check(self, response, path):
        if response.status != 200:
            return f"{path}: status {response.status} {response.body[:200]!r}"
        body = json.loads(response.body)
        forwarded = [value for name, value in body["headers"] if name.lower() == "x-forwarded-for"]
        if forwarded != [CLIENT] or body["path"] != path:
            return f"{path}: backend saw {body['path']} with X-Forwarded-For {forwarded}"
        return None

    def _record(self, problem):
        with self.lock:
            self.sent += 1
            if problem:
                self.failures.append(problem)
            else:
                self.succeeded += 1

    def _connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=15, source_address=(CLIENT, 0))
        connection = HttpConnection.__new__(HttpConnection)
        connection.timeout, connection.sock, connection.buffer = 15, sock, b""
        return connection

    def _fresh(self, number):
        count = 0
        while not self.stopping.is_set():
            count += 1
            path = f"/loop/f{number}/{count}"
            try:
                connection = self._connect()
                try:
                    response = connection.request("GET", path, host=self.host, headers=[("Connection", "close")])
                finally:
                    connection.close()
                self._record(self._check(response, path))
            except (OSError, ValueError) as error:
                self._record(f"{path}: {error!r}")
            time.sleep(0.005)

    def _keep_alive(self):
        connection = None
        count = 0
        while not self.stopping.is_set():
            count += 1
            path = f"/loop/k/{count}"
            reused = connection is not None
            try:
                if connection is None:
                    connection = self._connect()
                try:
                    response = connection.request("GET", path, host=self.host)
                except (ConnectionError, OSError):
                    if not reused or connection.buffer:
                        raise
                    # The reused connection was closed before any response byte: retry once.
                    connection.close()
                    with self.lock:
                        self.retried += 1
                    connection = self._connect()
                    response = connection.request("GET", path, host=self.host)
                self._record(self._check(response, path))
                if not response.keeps_alive:
                    connection.close()
                    connection = None
            except (OSError, ValueError) as error:
                self._record(f"{path}: {error!r}")
                if connection is not None:
                    connection.close()
                connection = None
            time.sleep(0.005)
        if connection is not None:
            connection.close()


def refused(address, port):
    try:
        socket.create_connection((address, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # accepted by the kernel as the listener closed: asked again


def https_get(port, server_name, path, cafile=None):
    """GET over TLS from CLIENT, verifying the certificate against cafile when given; (head, body)."""
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(CLIENT, 0)) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


# --------------------------------------------------------------------------- tests

def test_fleet_drain_and_restart_under_load(fleet):
    gateway1, gateway2 = fleet.gateways[1], fleet.gateways[2]
    loop = ClientLoop(fleet.http_port, fleet.host()).start()
    try:
        for gateway in (gateway1, gateway2):  # HAProxy balances over both
            wait_for(lambda: len(loop_entries(gateway)) >= 10, 20, 0.05,
                     f"gateway {gateway.number} to serve the client loop")

        # An in-flight slow request on gateway 1 (on its plain listener) when the drain starts.
        slow = gateway1.connect(timeout=30)
        slow.send(f"GET /hold HTTP/1.1\r\nHost: {gateway1.host(SANDBOX, fleet.backend.port)}\r\n\r\n".encode())
        wait_for(lambda: fleet.backend.holding == 1, 10, 0.01, "the slow request to reach the backend")

        signalled = time.monotonic()
        gateway1.process.send_signal(signal.SIGTERM)
        wait_for(lambda: gateway_health(gateway1) == (503, "draining\n"), 2, 0.01, "gateway 1 health 503")
        fleet.haproxy.wait_status("gw1", "DOWN", timeout=10)
        marked_down = time.monotonic() - signalled
        assert marked_down < DRAIN_DELAY, \
            f"HAProxy marked gw1 down {marked_down:.2f}s after SIGTERM, after drain_delay {DRAIN_DELAY}s"

        # After drain_delay the listeners are closed; the in-flight request still runs.
        wait_for(lambda: refused(GATEWAY_ADDRESSES[1], fleet.proxy_port), 10, 0.02, "gateway 1's listener to close")
        listeners_closed = time.monotonic() - signalled
        assert listeners_closed >= DRAIN_DELAY - 0.05
        assert gateway1.process.poll() is None
        time.sleep(0.5)
        released = time.monotonic()
        fleet.backend.release()
        response = slow.read_response()
        assert response.status == 200 and (response.header("Connection") or "").lower() == "close", response
        slow.close()
        code = gateway1.process.wait(20)
        exited = time.monotonic() - signalled
        in_flight = released - signalled
        assert code == 0
        assert exited < in_flight + 2.0, \
            f"gateway 1 exited {exited:.2f}s after SIGTERM; its last request ended at {in_flight:.2f}s"
        before_restart = len(loop_entries(gateway2))
        wait_for(lambda: len(loop_entries(gateway2)) >= before_restart + 20, 20, 0.05,
                 "gateway 2 to carry the loop alone")

        # Restarted, gateway 1 takes traffic again once HAProxy sees it healthy.
        restarted = fleet.start_gateway(1)
        fleet.haproxy.wait_status("gw1", "UP", timeout=15)
        wait_for(lambda: len(loop_entries(restarted)) >= 10, 20, 0.05, "restarted gateway 1 to serve the loop")
    finally:
        loop.stop()

    print(f"\nfleet: {loop.sent} requests through HAProxy, {len(loop.failures)} failed, "
          f"{loop.retried} keep-alive retries; gw1 marked down {marked_down:.2f}s, listeners closed "
          f"{listeners_closed:.2f}s, exited {exited:.2f}s after SIGTERM (in-flight request ended at "
          f"{in_flight:.2f}s, drain_delay {DRAIN_DELAY}s)")
    assert loop.failures == [], f"{len(loop.failures)} of {loop.sent} requests failed: {loop.failures[:10]}"
    assert loop.sent >= 100 and loop.succeeded == loop.sent
    assert loop.retried <= 2, f"{loop.retried} keep-alive retries"

    # Metrics moved with the requests: each gateway counted exactly the 2xx its access log shows.
    for gateway in (fleet.gateways[1], gateway2):
        def counted():
            logged = sum(1 for entry in gateway.access_entries() if entry["status"] == 200)
            return gateway_metrics(gateway)['sgw_requests_total{protocol="http/1.1",class="2xx"}'] == logged
        wait_for(counted, 10, 0.1, f"gateway {gateway.number}'s 2xx counter to match its access log")


def test_fleet_routes_tls_and_metrics(fleet):
    gateways = list(fleet.gateways.values())

    # Plain HTTP through HAProxy: PROXY v2 carries the client's address; X-Forwarded-Proto http.
    response = request_via(fleet.http_port, fleet.host(), "/plain")
    assert response.status == 200, response
    body = response.json()
    assert [v for n, v in body["headers"] if n == "X-Forwarded-For"] == [CLIENT]
    assert [v for n, v in body["headers"] if n == "X-Forwarded-Proto"] == ["http"]

    # TLS terminated by HAProxy: send-proxy-v2-ssl's SSL TLV makes it X-Forwarded-Proto https.
    head, payload = https_get(fleet.https_port, fleet.host(), "/tls")
    assert head.startswith("HTTP/1.1 200"), head
    body = json.loads(payload)
    assert body["path"] == "/tls"
    assert [v for n, v in body["headers"] if n == "X-Forwarded-For"] == [CLIENT]
    assert [v for n, v in body["headers"] if n == "X-Forwarded-Proto"] == ["https"]

    # A route written to the primary is served through both gateways, which read the replica:
    # first "not found", remembered for route_negative_ttl (30s) by each worker that looked it up,
    # then dropped by the keyspace notification the replica publishes when it applies the write.
    def answers(gateway, sandbox_id, status, times=6):  # on new connections: both workers
        return all(gateway.get(sandbox_id, fleet.backend.port).status == status for _ in range(times))
    for gateway in gateways:
        assert answers(gateway, "fresh1", 502)
    written = time.monotonic()
    fleet.primary.put("fresh1")
    for gateway in gateways:
        wait_for(lambda: answers(gateway, "fresh1", 200), 5, 0.05,
                 f"gateway {gateway.number} to serve fresh1 written to the primary")
    assert time.monotonic() - written < 5
    assert request_via(fleet.http_port, fleet.host("fresh1"), "/fresh").status == 200

    # A route deleted on the primary (cached for route_cache_ttl 30s) is dropped on both gateways.
    for gateway in gateways:
        assert answers(gateway, "fresh1", 200)
    fleet.primary.delete("fresh1")
    for gateway in gateways:
        wait_for(lambda: answers(gateway, "fresh1", 502), 5, 0.05,
                 f"gateway {gateway.number} to drop fresh1 deleted on the primary")
    for gateway in gateways:
        assert gateway_metrics(gateway)["sgw_route_invalidations_total"] >= 2

    # Metrics move as requests pass through HAProxy: the fleet's 2xx grow by exactly the count.
    before = sum(gateway_metrics(gateway)['sgw_requests_total{protocol="http/1.1",class="2xx"}'] for gateway in gateways)
    for number in range(30):
        assert request_via(fleet.http_port, fleet.host(), f"/counted{number}").status == 200
    wait_for(lambda: sum(gateway_metrics(gateway)['sgw_requests_total{protocol="http/1.1",class="2xx"}']
                         for gateway in gateways) == before + 30, 10, 0.05, "30 more 2xx in the fleet")
    for gateway in gateways:
        assert gateway_health(gateway) == (200, "healthy\n")


def test_replica_restart_is_survived_as_an_outage(replica_factory, gateway_factory, redis, backend):
    """The replica restarts empty (a new machine, or its data lost) and copies the primary again.
    With replica-serve-stale-data no (deploy/redis-replica.conf) it refuses reads until it is in
    sync, which the gateway treats as an outage: the cached route serves throughout, a miss gets
    503 (never a false 502 "not found"), /health stays 200; afterwards lookups and keyspace
    invalidation work again."""
    replica = replica_factory(redis)
    admin_port = free_port()
    gateway = gateway_factory(replica, admin_listen=f"127.0.0.1:{admin_port}", route_cache_ttl="300ms",
                              route_negative_ttl="300ms", route_stale_ttl="60s")
    gateway.admin = ("127.0.0.1", admin_port)
    redis.put("kept1")
    replicated(replica, "kept1")
    assert gateway.get("kept1", backend.port).status == 200

    statuses = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                statuses.append(gateway.get("kept1", backend.port, timeout=10).status)
            except OSError as error:
                statuses.append(repr(error))
            time.sleep(0.03)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        # The restarted replica must stay out of sync a while: make the primary wait 2s to copy.
        redis.command("CONFIG", "SET", "repl-diskless-sync-delay", "2")
        replica.stop()
        # Without the RDB it kept from its last sync it comes back empty and needs a full copy
        # (with it, it would load that and catch up at once by partial resync).
        (replica.workdir / "dump.rdb").unlink(missing_ok=True)
        redis.put("during1")  # written while the replica is down
        time.sleep(0.8)
        assert gateway.get("during1", backend.port).status == 503  # a miss while Redis is out
        assert gateway_health(gateway) == (200, "healthy\n")

        replica.start(wait_sync=False)
        with pytest.raises(RedisError, match="MASTERDOWN|LOADING"):
            replica.command("HGETALL", replica.key("kept1"))  # empty and refusing: not in sync
        restarted = time.monotonic()
        while not replica.in_sync():
            assert time.monotonic() - restarted < 20, "replica never synced"
            status = gateway.get("during1", backend.port).status
            assert status == 503, f"during1 answered {status} while the replica was not in sync"
            assert gateway_health(gateway) == (200, "healthy\n")
            time.sleep(0.1)
        unsynced = time.monotonic() - restarted
        assert unsynced >= 1.0, f"the replica synced after {unsynced:.2f}s: no out-of-sync window tested"

        # Back: the record written meanwhile is found (the gateway reconnects within 1s backoff).
        wait_for(lambda: gateway.get("during1", backend.port).status == 200, 10, 0.1,
                 "during1 served after the replica is back")
        # And the keyspace subscription is back: a write on the primary invalidates at once.
        invalidations = gateway_metrics(gateway)["sgw_route_invalidations_total"]

        def invalidated():
            redis.hset("kept1", touched=str(time.monotonic()))
            time.sleep(0.1)
            return gateway_metrics(gateway)["sgw_route_invalidations_total"] > invalidations
        wait_for(invalidated, 10, 0.2, "a keyspace invalidation through the restarted replica")
    finally:
        stop.set()
        poller.join(30)
    problems = [status for status in statuses if status != 200]
    print(f"\nreplica restart: kept1 requested {len(statuses)} times, {len(problems)} not 200; "
          f"replica out of sync {unsynced:.2f}s after its restart")
    assert len(statuses) >= 20
    assert problems == [], f"kept1 answered {problems} during the replica's restart"


def test_haproxy_tls_passthrough_to_the_gateway(haproxy_installed, gateway_factory, redis, backend,
                                                tmp_path):
    """deploy/haproxy.cfg's default HTTPS: TLS passed through with PROXY v2 to the gateway's
    `listen ... tls proxy_protocol`, which holds the certificate and terminates TLS."""
    _, cert, key = make_certificate(tmp_path)
    address = GATEWAY_ADDRESSES[1]
    tls_port, admin_port = free_port(address), free_port(address)
    gateway = gateway_factory(redis, extra=[f"listen {address}:{tls_port} tls proxy_protocol",
                                            f"tls_certificate {cert}", f"tls_certificate_key {key}",
                                            f"admin_listen {address}:{admin_port}"])
    redis.put(SANDBOX)
    https_port = free_port()
    haproxy = HAProxy(tmp_path, {
        "SGW_LB_HTTP_BIND": f"127.0.0.1:{free_port()}",
        "SGW_LB_HTTPS_BIND": f"127.0.0.1:{https_port}",
        "SGW_LB_MAXCONN": "1024",
        "SGW_GW1": address,
        "SGW_GW2": GATEWAY_ADDRESSES[2],  # nothing there: HAProxy marks it down
        "SGW_GATEWAY_HTTP_PORT": str(free_port(address)),
        "SGW_GATEWAY_HTTPS_PORT": str(tls_port),
        "SGW_ADMIN_PORT": str(admin_port),
        "SGW_CHECK_INTER": "200ms",
    })
    haproxy.start()
    try:
        haproxy.wait_status("gw1", "UP", backend="gateways_https")
        name = f"{backend.port}-{SANDBOX}.{DOMAIN}"
        head, body = https_get(https_port, name, "/passthrough", cafile=str(cert))
        assert head.startswith("HTTP/1.1 200"), head
        seen = json.loads(body)
        assert seen["path"] == "/passthrough"
        assert [v for n, v in seen["headers"] if n == "X-Forwarded-For"] == [CLIENT]
        assert [v for n, v in seen["headers"] if n == "X-Forwarded-Proto"] == ["https"]
        entries = [entry for entry in gateway.access_entries() if entry.get("path") == "/passthrough"]
        assert [entry["client"] for entry in entries] == [CLIENT]
    finally:
        haproxy.stop()
