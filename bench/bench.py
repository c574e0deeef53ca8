"""The benchmark runner behind `bench/run` / `make bench` (Debian's /usr/bin/python3, standard library).

Starts a private Redis with a catalog of routes, an nginx backend on loopback, a WebSocket backend,
the gateway, the two peers (nginx and HAProxy as plain reverse proxies) and a TCP relay (HAProxy in
mode tcp, the floor), each proxy with one worker pinned to the same core; then runs every scenario
against the backend directly, the gateway, nginx, HAProxy and the relay in turn, round after round
(the TLS scenarios against the gateway and nginx, both terminating TLS with the same ECDSA P-256
certificate); prints a table and writes bench/results/latest.md, latest.json and latest.png.
Everything it started is stopped on the way out, however it ends.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import ws  # noqa: E402  (bench/ws.py)

DOMAIN = "bench.localhost"
NOTIFY_EVENTS = "Kgh"            # the keyspace events Redis publishes (without_notifications turns them off)
IDLE_WAVE = 200                  # idle-10k: idle clients opened (and answered) at a time
SINGLE_ID = "bench"              # the single route every scenario but churn uses
CHURN_PREFIX = "c"               # churn IDs: c00000 .. c09999
SMALL_BODY = "sandbox-gateway benchmark: a small fixed response body from the nginx backend.".ljust(127, ".") + "\n"
LARGE_SIZE = 1 << 20             # /1m
PEERS = ["direct", "gateway", "nginx", "haproxy"]           # every scenario but churn runs these
# and these the TCP relay (HAProxy in mode tcp, templates/haproxy-tcp.cfg) too, as the floor: with one
# backend connection per client connection it dials per request in `close` and relays 1 MiB in 16 KiB
# buffers in `large`, so there it is no floor
FLOOR_SCENARIOS = ("keepalive", "clients-1000")
# gateway_compare: a second gateway build (--compare), beside the first in COMPARED scenarios; not in churn,
# where the two gateways' 10,000 pooled connections each would crowd the one backend
COMPARED = ("keepalive", "close", "large", "clients-1000")
# table order; gateway_single: churn only; gateway_h1: the h2 scenarios' HTTP/1.1 comparison (h2load --h1)
# gateway_quiet: the same gateway with activity_interval off (the activity scenario)
# gateway_unnotified: churn while Redis publishes no keyspace events (routes live route_cache_ttl)
# floor_single, floor_churn: churn's floor, bench/churn_floor.c (a TCP relay pooling per sandbox) with as many
# backend connections as clients, and with one per churn ID; started for their own runs only, so that their
# idle backend connections never sit beside another server's run
SERVERS = ["direct", "gateway_single", "gateway", "gateway_compare", "gateway_unnotified", "gateway_h1",
           "gateway_quiet", "nginx", "haproxy", "tcp_relay", "floor_single", "floor_churn"]
LABELS = {"direct": "backend (direct)", "gateway_single": "sandbox-gateway, 1 ID", "gateway": "sandbox-gateway",
          "gateway_compare": "sandbox-gateway, --compare build", "gateway_unnotified": "sandbox-gateway, notifications off",
          "gateway_h1": "sandbox-gateway, HTTP/1.1", "gateway_quiet": "sandbox-gateway, activity off",
          "nginx": "nginx", "haproxy": "HAProxy", "tcp_relay": "TCP relay (HAProxy mode tcp)",
          "floor_single": "TCP relay pooling per sandbox, 1 ID", "floor_churn": "TCP relay pooling per sandbox"}
TLS_PEERS = ["gateway", "nginx"]                            # the TLS scenarios: HAProxy not measured
TLS_SCENARIOS = ("tls-keepalive", "tls-handshake", "h2-tls", "h2-sdk", "h2-large")
H2_SCENARIOS = ("h2-tls", "h2-sdk", "h2-large")
# wrk's OpenSSL settings for full handshakes: OpenSSL 3 reads OPENSSL_CONF at start. wrk keeps each
# connection's session across reconnects and would resume it; TLS 1.2 without tickets leaves it
# nothing to resume with (neither server keeps a session cache).
WRK_FULL_HANDSHAKE_CNF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MaxProtocol = TLSv1.2
Options = -SessionTicket
"""
MiB = 1 << 20


# ----------------------------------------------------------------------------- small helpers

def free_ports(count):
    """`count` distinct loopback TCP ports that nothing listens on right now."""
    probes, ports = [], []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
            ports.append(probe.getsockname()[1])
    finally:
        for probe in probes:
            probe.close()
    return ports


def http_get(port, host, path="/", timeout=5.0):
    """(status, body) of one GET with Connection: close, or (None, error text)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = sock.recv(262144)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return None, str(exc)
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None, f"no HTTP response ({len(data)} bytes)"
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return int(parts[1]), body


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def response_complete(data):
    """True once data holds a whole HTTP/1.1 response with a Content-Length body."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return False
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_int(value):
    return "—" if value is None else f"{value:,.0f}"


def fmt_ms(us):
    if us is None:
        return "—"
    ms = us / 1000.0
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def fmt_ratio(value):
    return "—" if value is None else f"{value:.2f}×"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def read_tail(path, lines=15):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def command_output(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (proc.stdout + proc.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({exc})"


def dpkg_version(package):
    out = command_output(["dpkg-query", "-W", "-f=${Version}", package])
    return out if out and "no packages found" not in out else "not installed"


# ----------------------------------------------------------------------------- processes

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
PR_SET_PDEATHSIG = 1


# The holder of idle_elsewhere: accepts connections and keeps them until its stdin closes.
HOLDER = """
import socket, sys, threading
listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
held = []
def keep():
    while True:
        held.append(listener.accept()[0])
threading.Thread(target=keep, daemon=True).start()
print(listener.getsockname()[1], flush=True)
sys.stdin.read()
"""


def _child_setup():
    # Dies with the runner even if the runner is SIGKILLed; a session of its own keeps a Ctrl-C
    # in the terminal from reaching it before the runner stops it in order.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """One long-running process the runner starts and stops: argv pinned with taskset."""
    registry = []

    def __init__(self, name, argv, log, cpu=None, ready=None, env=None):
        self.name, self.argv, self.log, self.cpu, self.ready, self.env = name, argv, log, cpu, ready, env
        self.proc = None
        Service.registry.append(self)

    def start(self, timeout=15.0):
        argv = (["taskset", "-c", str(self.cpu)] if self.cpu is not None else []) + self.argv
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_setup, start_new_session=True, env=self.env)
        logf.close()
        deadline = time.monotonic() + timeout
        last = "not ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:\n{read_tail(self.log)}")
            ok, last = self.ready() if self.ready else (True, "")
            if ok:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s ({last}):\n{read_tail(self.log)}")

    def stop(self, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def pids(self):
        """This process and all its descendants (nginx's workers)."""
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    todo.extend(int(c) for c in children)
            except OSError:
                pass
        return out

    def rss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def cpu_seconds(self):
        """User + system CPU time of this process and its descendants so far (from /proc/PID/stat)."""
        ticks = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])     # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return ticks / os.sysconf("SC_CLK_TCK")

    @classmethod
    def stop_all(cls):
        for service in reversed(cls.registry):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                print(f"bench: stopping {service.name}: {exc}", file=sys.stderr)


def core_times():
    """{core number: (total jiffies, idle jiffies)} from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields]
            out[int(name[3:])] = (sum(values), values[3] + values[4])
    return out


def core_busy_pct(before, after, core):
    """How busy one core was between two core_times() readings, in % (interrupts and softirqs count as busy)."""
    if core is None or core not in before or core not in after:
        return None
    total = after[core][0] - before[core][0]
    return 100.0 * (1 - (after[core][1] - before[core][1]) / total) if total > 0 else None


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True, ""
    except OSError as exc:
        return False, str(exc)


def http_ready(port, host, path="/"):
    def check():
        status, body = http_get(port, host, path, timeout=2.0)
        return status == 200, f"GET {path}: {status} {body[:80]!r}"
    return check


# ----------------------------------------------------------------------------- progress

class Progress:
    def __init__(self, total):
        self.total, self.done, self.tty = total, 0, sys.stderr.isatty()
        self.started = time.monotonic()

    def step(self, text):
        self.done += 1
        elapsed = time.monotonic() - self.started
        line = f"[{self.done:>2}/{self.total}] {elapsed:4.0f}s  {text}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def note(self, text):
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def finish(self):
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"all runs done in {time.monotonic() - self.started:.0f}s\n")
        sys.stderr.flush()


# ----------------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="sgw-bench-"))
        os.chmod(self.tmp, 0o755)   # nginx workers may run as nobody: they read www/ and write temp dirs here
        self.gateway_bin = Path(args.gateway).resolve()
        self.compare_bin = Path(args.compare).resolve() if args.compare else None
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cores = os.cpu_count() or 1
        self.cores = cores
        if cores >= 3:
            self.cpu_proxy, self.cpu_wrk, self.cpu_backend = 0, 1, 2
        elif cores == 2:
            self.cpu_proxy, self.cpu_wrk, self.cpu_backend = 0, 1, 1
        else:
            self.cpu_proxy = self.cpu_wrk = self.cpu_backend = None
        (self.p_redis, self.p_backend, self.p_ws, self.p_gateway, self.p_nginx, self.p_haproxy,
         self.p_gateway_tls, self.p_nginx_tls, self.p_gateway_admin, self.p_quiet, self.p_quiet_tls,
         self.p_quiet_admin, self.p_h2c, self.p_nginx_grpc, self.p_compare, self.p_compare_tls,
         self.p_compare_admin, self.p_relay, self.p_floor_single, self.p_floor_churn) = free_ports(20)
        self.runs = {}       # scenario -> server -> [run dict]
        self.ws_notes = {}
        self.tls_notes = {}  # "keepalive"/"handshake" -> server -> what openssl s_client negotiated
        self.scenarios = [s for s in SCENARIOS if s in args.only]

    # --------------------------------------------------------------------- setup

    def render(self, template, out_name, **values):
        text = (BENCH / "templates" / template).read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", str(value))
        leftover = re.findall(r"@[A-Z_]+@", text)
        if leftover:
            raise RuntimeError(f"{template}: unfilled placeholders {leftover}")
        out = self.tmp / out_name
        out.write_text(text)
        return out

    def gateway_service(self, name, file_stem, binary, port, tls_port, admin_port, activity):
        """A gateway process (not started) of binary on templates/gateway.conf, checked with -t first."""
        conf = self.render("gateway.conf", f"{file_stem}.conf", DOMAIN=DOMAIN, PORT=port, REDIS_PORT=self.p_redis,
                           TMP=self.tmp, TLS_PORT=tls_port, ADMIN_PORT=admin_port, ACTIVITY=activity)
        check = command_output([str(binary), "-t", "-c", str(conf)])
        if not check.endswith(": ok"):
            raise RuntimeError(f"{binary} rejects the bench config: {check}")
        return Service(name, [str(binary), "-c", str(conf)], self.tmp / f"{file_stem}.log", cpu=self.cpu_proxy,
                       ready=http_ready(port, self.host()))

    def host(self, port=None):
        return f"{port or self.p_backend}-{SINGLE_ID}.{DOMAIN}"

    def start_all(self):
        tmp = self.tmp
        (tmp / "www").mkdir()
        (tmp / "www" / "1m").write_bytes(os.urandom(LARGE_SIZE))
        for path in [tmp / "www", tmp / "www" / "1m"]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        worker_connections = max(1024, self.nofile - 200)
        maxconn = max(1000, (self.nofile - 200) // 2)
        self.make_tls_files()

        # Redis: private, no persistence, keyspace notifications on as in production.
        self.redis = Service("redis", [
            "redis-server", "--port", str(self.p_redis), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--notify-keyspace-events", NOTIFY_EVENTS,
            "--dir", str(tmp), "--logfile", str(tmp / "redis.log"), "--maxclients", "1000"],
            tmp / "redis.out", cpu=self.cpu_backend, ready=lambda: port_open(self.p_redis))
        self.redis.start()
        self.seed_catalog()

        backend_conf = self.render("nginx-backend.conf", "nginx-backend.conf", TMP=tmp, PORT=self.p_backend,
                                   NOFILE=self.nofile, WORKER_CONNECTIONS=worker_connections,
                                   SMALL_BODY=SMALL_BODY.replace("\n", "\\n"))
        self.backend = Service("backend (nginx)", ["nginx", "-c", str(backend_conf), "-e", str(tmp / "backend.error.log")],
                               tmp / "backend.out", cpu=self.cpu_backend,
                               ready=http_ready(self.p_backend, self.host()))
        self.backend.start()

        self.ws_backend = Service("websocket backend", [sys.executable, str(BENCH / "ws.py"), "serve", str(self.p_ws)],
                                  tmp / "ws-backend.out", cpu=self.cpu_backend, ready=lambda: port_open(self.p_ws))
        self.ws_backend.start()

        self.gateway = self.gateway_service("gateway", "gateway", self.gateway_bin, self.p_gateway,
                                            self.p_gateway_tls, self.p_gateway_admin, "1s")
        self.gateway_quiet = self.gateway_service("gateway, activity off", "gateway-quiet", self.gateway_bin,
                                                  self.p_quiet, self.p_quiet_tls, self.p_quiet_admin, "off")
        # --compare: another build on the same configuration, alternating with the first in each round.
        self.gateway_compare = None
        if self.compare_bin is not None:
            self.gateway_compare = self.gateway_service("gateway, --compare build", "gateway-compare",
                                                        self.compare_bin, self.p_compare, self.p_compare_tls,
                                                        self.p_compare_admin, "1s")

        # The h2c backend of the gRPC scenarios: nghttpd (no TLS) serving www/ to any method.
        (tmp / "www" / "unary").write_bytes(b"\0\0\0\0\x1b" + b"sandbox-gateway gRPC reply.")
        (tmp / "grpc-request").write_bytes(b"\0\0\0\0\x0agrpc-ping!")
        os.chmod(tmp / "www" / "unary", 0o644)
        self.h2c_backend = Service("h2c backend (nghttpd)", [
            "nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(tmp / "www"), str(self.p_h2c)],
            tmp / "nghttpd.out", cpu=self.cpu_backend, ready=lambda: port_open(self.p_h2c))
        self.h2c_backend.start()

        nginx_conf = self.render("nginx-proxy.conf", "nginx-proxy.conf", TMP=tmp, PORT=self.p_nginx,
                                 TLS_PORT=self.p_nginx_tls, GRPC_PORT=self.p_nginx_grpc, H2C_PORT=self.p_h2c,
                                 BACKEND_PORT=self.p_backend, WS_PORT=self.p_ws, NOFILE=self.nofile,
                                 WORKER_CONNECTIONS=worker_connections,
                                 PROXY_BUFFERING="off" if self.args.nginx_no_buffering else "on")
        self.nginx = Service("nginx (peer)", ["nginx", "-c", str(nginx_conf), "-e", str(tmp / "nginx-proxy.error.log")],
                             tmp / "nginx-proxy.out", cpu=self.cpu_proxy, ready=http_ready(self.p_nginx, self.host()))

        haproxy_conf = self.render("haproxy.cfg", "haproxy.cfg", TMP=tmp, PORT=self.p_haproxy,
                                   BACKEND_PORT=self.p_backend, WS_PORT=self.p_ws, MAXCONN=maxconn)
        self.haproxy = Service("haproxy (peer)", ["haproxy", "-db", "-f", str(haproxy_conf)], tmp / "haproxy.out",
                               cpu=self.cpu_proxy, ready=http_ready(self.p_haproxy, self.host()))
        relay_conf = self.render("haproxy-tcp.cfg", "haproxy-tcp.cfg", PORT=self.p_relay,
                                 BACKEND_PORT=self.p_backend, MAXCONN=maxconn)
        self.relay = Service("tcp relay (haproxy)", ["haproxy", "-db", "-f", str(relay_conf)], tmp / "haproxy-tcp.out",
                             cpu=self.cpu_proxy, ready=http_ready(self.p_relay, self.host()))

        # Churn's floor: bench/churn_floor.c, built here; each relay is started for its own runs only.
        self.floors = {}
        if "churn" in self.scenarios:
            floor_bin = tmp / "churn_floor"
            subprocess.run(["gcc", "-O2", "-o", str(floor_bin), str(BENCH / "churn_floor.c")], check=True)
            for server, port, connections in [("floor_single", self.p_floor_single, self.args.connections),
                                              ("floor_churn", self.p_floor_churn, self.args.churn_ids)]:
                self.floors[server] = (Service(
                    f"churn floor ({connections:,} backend connections)",
                    [str(floor_bin), str(port), str(self.p_backend), str(connections)], tmp / f"{server}.out",
                    cpu=self.cpu_proxy, ready=lambda p=port: port_open(p)), port)
        for service in (self.gateway, self.gateway_quiet, self.gateway_compare, self.nginx, self.haproxy, self.relay):
            if service is not None:
                service.start()
        self.proxies = {"gateway": self.gateway, "gateway_quiet": self.gateway_quiet, "nginx": self.nginx,
                        "haproxy": self.haproxy, "tcp_relay": self.relay}
        self.ports = {"direct": self.p_backend, "gateway": self.p_gateway, "gateway_single": self.p_gateway,
                      "gateway_unnotified": self.p_gateway,
                      "gateway_quiet": self.p_quiet, "nginx": self.p_nginx,
                      "haproxy": self.p_haproxy, "tcp_relay": self.p_relay}
        if self.gateway_compare is not None:
            self.proxies["gateway_compare"] = self.gateway_compare
            self.ports["gateway_compare"] = self.p_compare
        self.tls_ports = {"gateway": self.p_gateway_tls, "nginx": self.p_nginx_tls}
        self.verify()
        self.verify_tls()

    def make_tls_files(self):
        """The certificate both TLS servers serve (ECDSA P-256, *.DOMAIN), the shared ticket key, and wrk's
        OpenSSL configuration for full handshakes."""
        tls = self.tmp / "tls"
        tls.mkdir()
        proc = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"), "-days", "2",
             "-subj", f"/CN=*.{DOMAIN}", "-addext", f"subjectAltName=DNS:*.{DOMAIN},DNS:{DOMAIN}"],
            capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl req failed: {proc.stderr.strip()}")
        (tls / "ticket.key").write_bytes(os.urandom(80))   # = openssl rand 80: one key, nginx's format
        for path in tls.iterdir():
            os.chmod(path, 0o644)    # nginx reads them as root at start; the gateway as whoever runs it
        self.wrk_full_handshake_cnf = self.tmp / "wrk-full-handshake.cnf"
        self.wrk_full_handshake_cnf.write_text(WRK_FULL_HANDSHAKE_CNF)

    def verify_tls(self):
        """Over TLS, verified against the certificate (curl --cacert), every TLS server returns the same bytes
        as over plain HTTP; then records what a wrk-like client negotiates with and without the
        full-handshake configuration."""
        cert = self.tmp / "tls" / "cert.pem"
        large = (self.tmp / "www" / "1m").read_bytes()
        host = self.host()
        for server, port in self.tls_ports.items():
            for path, expected in [("/", SMALL_BODY.encode()), ("/1m", large)]:
                proc = subprocess.run(
                    ["curl", "-sS", "--fail", "--http1.1", "--max-time", "10", "--cacert", str(cert),
                     "--resolve", f"{host}:{port}:127.0.0.1", "-H", f"Host: {host}", f"https://{host}:{port}{path}"],
                    capture_output=True, timeout=20)
                if proc.returncode != 0 or proc.stdout != expected:
                    raise RuntimeError(f"{server} over TLS: GET {path} gave curl status {proc.returncode}, "
                                       f"{len(proc.stdout)} bytes {proc.stdout[:120]!r} "
                                       f"{proc.stderr.decode(errors='replace').strip()}")
            for kind, env in [("keepalive", {}), ("handshake", {"OPENSSL_CONF": str(self.wrk_full_handshake_cnf)})]:
                self.tls_notes.setdefault(kind, {})[server] = self.tls_negotiated(port, env)
        for server in self.tls_ports:
            if not self.tls_notes["handshake"][server].startswith("TLSv1.2"):
                raise RuntimeError(f"{server}: the full-handshake client configuration did not give TLS 1.2: "
                                   f"{self.tls_notes['handshake'][server]}")

    def tls_negotiated(self, port, env):
        """'TLSv1.3, TLS_AES_256_GCM_SHA384, X25519, ECDSA P-256' or so, from openssl s_client -brief."""
        proc = subprocess.run(
            ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}", "-servername", self.host(),
             "-CAfile", str(self.tmp / "tls" / "cert.pem")],
            input="", capture_output=True, text=True, timeout=10, env=dict(os.environ, **env))
        out = proc.stdout + proc.stderr
        fields = {}
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        parts = [fields.get("Protocol version"), fields.get("Ciphersuite"),
                 (fields.get("Server Temp Key") or "").split(",")[0] or None]
        if not parts[0]:
            raise RuntimeError(f"openssl s_client to 127.0.0.1:{port} failed:\n{out[-1500:]}")
        return ", ".join(p for p in parts if p) + ", ECDSA P-256 certificate"

    def gateway_tls_counters(self):
        """(handshakes, resumed) from the gateway's /metrics, or (None, None)."""
        status, body = http_get(self.p_gateway_admin, "127.0.0.1", "/metrics")
        if status != 200:
            return None, None
        text = body.decode(errors="replace")

        def counter(name):
            match = re.search(rf"^{name}(?:{{[^}}]*}})? (\d+)", text, re.M)
            return int(match.group(1)) if match else None
        return counter("sgw_tls_handshakes_total"), counter("sgw_tls_sessions_resumed_total")

    def seed_catalog(self):
        """The single route and args.churn_ids churn routes, all to 127.0.0.1, in one redis-cli --pipe."""
        def resp(*words):
            out = [f"*{len(words)}\r\n".encode()]
            for word in words:
                data = word.encode()
                out.append(b"$%d\r\n%s\r\n" % (len(data), data))
            return b"".join(out)
        ids = [SINGLE_ID] + [f"{CHURN_PREFIX}{i:05d}" for i in range(self.args.churn_ids)]
        # The single route's h2c_ports: the gRPC scenarios' nghttpd (gRPC requests would go over h2c anyway).
        payload = b"".join(resp("HSET", f"sandbox:catalog:{sid}", "addr", "127.0.0.1", "execution_id", "bench-1",
                                *(("h2c_ports", str(self.p_h2c)) if sid == SINGLE_ID else ()))
                           for sid in ids)
        proc = subprocess.run(["redis-cli", "-p", str(self.p_redis), "--pipe"], input=payload,
                              capture_output=True, timeout=60)
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0 or f"errors: 0, replies: {len(ids)}" not in out:
            raise RuntimeError(f"seeding Redis failed: {out} {proc.stderr.decode(errors='replace')}")
        self.seeded = len(ids)

    def verify(self):
        """Every path answers the same bytes through every server before anything is measured."""
        large = (self.tmp / "www" / "1m").read_bytes()
        for server, port in self.ports.items():
            status, body = http_get(port, self.host(), "/")
            if status != 200 or body.decode(errors="replace") != SMALL_BODY:
                raise RuntimeError(f"{server}: GET / gave {status} {body[:200]!r}")
            status, body = http_get(port, self.host(), "/1m", timeout=10)
            if status != 200 or body != large:
                raise RuntimeError(f"{server}: GET /1m gave {status} and {len(body)} bytes (not the 1 MiB file)")
        status, body = http_get(self.p_gateway, f"{self.p_backend}-{CHURN_PREFIX}00042.{DOMAIN}", "/")
        if status != 200:
            raise RuntimeError(f"gateway: a churn route gave {status} {body[:200]!r}")

    def serve(self):
        """--serve: what is running, pinned where, and how to load it; then wait until interrupted."""
        print(f"bench: serving until Ctrl-C (temporary folder {self.tmp})")
        for name, port in ([("redis", self.p_redis), ("backend (direct)", self.p_backend),
                            ("websocket backend", self.p_ws), ("gateway", self.p_gateway),
                            ("gateway tls", self.p_gateway_tls), ("gateway admin", self.p_gateway_admin),
                            ("nginx", self.p_nginx), ("nginx tls", self.p_nginx_tls), ("haproxy", self.p_haproxy),
                            ("tcp relay", self.p_relay)]
                           + ([("gateway --compare", self.p_compare)] if self.gateway_compare else [])):
            print(f"  {name:18} 127.0.0.1:{port}")
        for service in Service.registry:
            if service.proc is not None:
                print(f"  {service.name:18} pids {' '.join(map(str, service.pids()))}")
        wrk_cpu = f"taskset -c {self.cpu_wrk} " if self.cpu_wrk is not None else ""
        print(f"  e.g. {wrk_cpu}wrk -t1 -c{self.args.connections} -d5s -H 'Host: {self.host()}' "
              f"http://127.0.0.1:{self.p_gateway}/")
        print(f"  churn: BENCH_CHURN_IDS={self.args.churn_ids} BENCH_PORT={self.p_backend} BENCH_DOMAIN={DOMAIN} "
              f"{wrk_cpu}wrk -t1 -c{self.args.connections} -d5s -s {BENCH / 'wrk' / 'churn.lua'} "
              f"http://127.0.0.1:{self.p_gateway}/", flush=True)
        while True:
            time.sleep(1)
            self.check_alive()

    def check_alive(self):
        for service in Service.registry:
            if service.proc is not None and service.proc.poll() is not None:
                raise RuntimeError(f"{service.name} exited with status {service.proc.returncode} during the run:\n"
                                   f"{read_tail(service.log)}")

    def redis_lookup_calls(self):
        """How many HMGETs Redis has answered (INFO commandstats), or None."""
        try:
            with socket.create_connection(("127.0.0.1", self.p_redis), timeout=2) as sock:
                sock.sendall(b"INFO commandstats\r\n")
                data = b""
                while True:   # one bulk string: $LEN CRLF, LEN bytes, CRLF
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    header, sep, rest = data.partition(b"\r\n")
                    if sep and header[:1] == b"$" and len(rest) >= int(header[1:]) + 2:
                        break
        except (OSError, ValueError):
            return None
        match = re.search(rb"cmdstat_hmget:calls=(\d+)", data)
        return int(match.group(1)) if match else 0

    # --------------------------------------------------------------------- wrk

    def wrk(self, server, path="/", headers=(), script="report.lua", env=None, duration=None, tls=False,
            connections=None):
        duration = duration or self.args.duration
        argv = (["taskset", "-c", str(self.cpu_wrk)] if self.cpu_wrk is not None else []) + [
            "wrk", "-t1", f"-c{connections or self.args.connections}", f"-d{duration}s", "--timeout", "5s",
            "-s", str(BENCH / "wrk" / script), "-H", f"Host: {self.host()}"]
        for header in headers:
            argv += ["-H", header]
        argv.append(f"https://127.0.0.1:{self.tls_ports[server]}{path}" if tls
                    else f"http://127.0.0.1:{self.ports[server]}{path}")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, **(env or {})), preexec_fn=_child_setup)
        try:
            out, _ = proc.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"wrk against {server} did not finish within {duration + 30}s")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        match = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
        if not match:
            raise RuntimeError(f"wrk against {server} printed no result:\n{out[-2000:]}")
        raw = json.loads(match.group(1))
        seconds = raw["duration_us"] / 1e6
        errors = sum(raw["errors"].values())
        return {
            "rps": raw["requests"] / seconds if seconds else 0.0,
            "mibs": raw["bytes"] / seconds / MiB if seconds else 0.0,
            "p50_us": raw["p50_us"], "p90_us": raw["p90_us"], "p99_us": raw["p99_us"], "max_us": raw["max_us"],
            "requests": raw["requests"], "errors": errors, "error_detail": raw["errors"],
        }

    # --------------------------------------------------------------------- scenarios

    def scenario_plan(self):
        """[(scenario, server, runner)] for one round, alternating servers."""
        churn_env = {"BENCH_CHURN_IDS": str(self.args.churn_ids), "BENCH_PORT": str(self.p_backend),
                     "BENCH_DOMAIN": DOMAIN}
        plan = []
        for scenario in self.scenarios:
            peers = self.compared(scenario, PEERS) + (["tcp_relay"] if scenario in FLOOR_SCENARIOS else [])
            if scenario == "keepalive":
                for server in peers:
                    plan.append((scenario, server, lambda s=server: self.measured(s, lambda: self.wrk(s, "/"))))
            elif scenario == "close":
                for server in peers:
                    plan.append((scenario, server, lambda s=server: self.measured(
                        s, lambda: self.wrk(s, "/", headers=["Connection: close"]))))
            elif scenario == "large":
                for server in peers:
                    plan.append((scenario, server, lambda s=server: self.measured(s, lambda: self.wrk(s, "/1m"))))
            elif scenario == "churn":
                # The same script everywhere; gateway_single sends every request to one sandbox, c00000.
                for server in ["direct", "gateway_single", "gateway", "gateway_unnotified"]:
                    env = dict(churn_env, BENCH_CHURN_IDS="1") if server == "gateway_single" else churn_env
                    run = (lambda s=server, e=env: self.churn(s, e))
                    plan.append((scenario, server, (lambda r=run: self.without_notifications(r))
                                 if server == "gateway_unnotified" else run))
                for server in self.floors:
                    plan.append((scenario, server, lambda s=server: self.churn_floor(s, dict(churn_env,
                                                                                             BENCH_CHURN_IDS="1"))))
            elif scenario == "websocket":
                for server in ["gateway", "nginx", "haproxy"]:
                    plan.append((scenario, server, lambda s=server: self.websocket(s)))
            elif scenario == "tls-keepalive":
                for server in TLS_PEERS:
                    plan.append((scenario, server, lambda s=server: self.measured(
                        s, lambda: self.wrk(s, "/", tls=True))))
            elif scenario == "tls-handshake":
                for server in TLS_PEERS:
                    plan.append((scenario, server, lambda s=server: self.tls_handshakes(s)))
            elif scenario == "activity":
                for server in ["gateway", "gateway_quiet"]:
                    plan.append((scenario, server, lambda s=server: self.measured(s, lambda: self.wrk(s, "/"))))
            elif scenario in ("h2-tls", "h2-sdk"):
                clients, streams = (50, 10) if scenario == "h2-tls" else (1, 100)
                for server in TLS_PEERS:
                    plan.append((scenario, server, lambda s=server, c=clients, m=streams: self.measured(
                        s, lambda: self.h2load(s, "/", c, m))))
            elif scenario == "clients-1000":
                for server in peers:
                    plan.append((scenario, server, lambda s=server: self.many_clients(s)))
            elif scenario == "idle-10k":
                for server in ["gateway", "nginx"]:
                    plan.append((scenario, server, lambda s=server: self.idle_beside_busy(s)))
            elif scenario in ("grpc-unary", "grpc-stream"):
                for server in ["direct", "gateway", "nginx"]:
                    plan.append((scenario, server, lambda s=server, sc=scenario: self.measured(
                        s, lambda: self.h2c_load(s, sc))))
            elif scenario == "resume":
                plan.append((scenario, "gateway", self.resume))
            elif scenario == "h2-large":
                for server in ["gateway", "gateway_h1", "nginx"]:
                    plan.append((scenario, server, lambda s=server: self.measured(
                        s, lambda: self.h2load(s, "/1m", 8, 1, h1=(s == "gateway_h1")))))
        return plan

    @staticmethod
    def round_order(todo, round_no):
        """todo, with the gateway and the --compare build trading places every other round: in clients-1000,
        whichever ran first after the direct backend measured more CPU per request, either build (31.0-31.9
        against 26.5-31.0 µs), so each takes both places."""
        servers = [server for server, _ in todo]
        if round_no % 2 == 1 or "gateway_compare" not in servers:
            return todo
        first, second = servers.index("gateway"), servers.index("gateway_compare")
        swapped = list(todo)
        swapped[first], swapped[second] = todo[second], todo[first]
        return swapped

    def compared(self, scenario, servers):
        """servers, with the --compare build right after the gateway where the scenario compares builds."""
        if self.gateway_compare is None or scenario not in COMPARED:
            return servers
        at = servers.index("gateway") + 1
        return servers[:at] + ["gateway_compare"] + servers[at:]

    def h2load(self, server, path, clients, streams, h1=False, duration=None):
        """h2load over TLS (ALPN h2, or HTTP/1.1 with h1) for a fixed time after a 1 s warm-up: requests/s,
        MiB/s and the mean request time (h2load reports no percentiles)."""
        duration = duration or self.args.duration
        port = self.tls_ports["gateway" if server == "gateway_h1" else server]
        argv = (["taskset", "-c", str(self.cpu_wrk)] if self.cpu_wrk is not None else []) + [
            "h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{duration}", "--warm-up-time=1",
            "-H", f":authority: {self.host()}"] + (["--h1"] if h1 else []) + [f"https://127.0.0.1:{port}{path}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                              preexec_fn=_child_setup)
        out = proc.stdout + proc.stderr
        done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out)
        traffic = re.search(r"traffic: .*?\((\d+)\) total", out)
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
        if proc.returncode != 0 or not done:
            raise RuntimeError(f"h2load against {server} failed:\n{out[-2000:]}")
        requests, failed, errored = int(done.group(3)), int(done.group(4)), int(done.group(5))
        seconds = float(duration)

        def microseconds(text):
            number = float(re.match(r"[0-9.]+", text).group(0))
            return number * (1e6 if text.endswith("s") and not text.endswith(("ms", "us")) else
                             1e3 if text.endswith("ms") else 1.0)
        protocol = re.search(r"Application protocol: (\S+)", out)
        expected = "http/1.1" if h1 else "h2"
        if not protocol or protocol.group(1) != expected:
            raise RuntimeError(f"h2load against {server} spoke {protocol.group(1) if protocol else '?'}, not {expected}")
        return {"rps": requests / seconds, "mibs": int(traffic.group(1)) / seconds / MiB if traffic else None,
                "p50_us": microseconds(mean.group(1)) if mean else None, "requests": requests,
                "errors": failed + errored, "error_detail": {"failed": failed, "errored": errored}}

    def h2c_load(self, server, scenario):
        """h2load over h2c (prior knowledge) to the nghttpd backend, directly, through the gateway and through
        nginx's grpc_pass: grpc-unary, 50 connections x 10 streams of small gRPC POSTs; grpc-stream, 8
        connections of 1 MiB responses. A fixed time after a 1 s warm-up."""
        duration = self.args.duration
        port = {"direct": self.p_h2c, "gateway": self.p_gateway, "nginx": self.p_nginx_grpc}[server]
        authority = self.host(self.p_h2c)
        if scenario == "grpc-unary":
            shape = ["-c50", "-m10", "-d", str(self.tmp / "grpc-request"), "-H", "content-type: application/grpc",
                     "-H", "te: trailers"]
            path = "/unary"
        else:
            shape = ["-c8", "-m1"]
            path = "/1m"
        argv = (["taskset", "-c", str(self.cpu_wrk)] if self.cpu_wrk is not None else []) + [
            "h2load", "-t1", *shape, f"-D{duration}", "--warm-up-time=1", "-H", f":authority: {authority}",
            f"http://127.0.0.1:{port}{path}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, preexec_fn=_child_setup)
        out = proc.stdout + proc.stderr
        done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out)
        codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
        traffic = re.search(r"traffic: .*?\((\d+)\) total", out)
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
        if proc.returncode != 0 or not done:
            raise RuntimeError(f"h2load against {server} failed:\n{out[-2000:]}")
        requests, failed, errored = int(done.group(3)), int(done.group(4)), int(done.group(5))
        not_2xx = int(codes.group(1)) + int(codes.group(2)) if codes else 0

        def microseconds(text):
            number = float(re.match(r"[0-9.]+", text).group(0))
            return number * (1e6 if text.endswith("s") and not text.endswith(("ms", "us")) else
                             1e3 if text.endswith("ms") else 1.0)
        return {"rps": requests / duration, "mibs": int(traffic.group(1)) / duration / MiB if traffic else None,
                "p50_us": microseconds(mean.group(1)) if mean else None, "requests": requests,
                "errors": failed + errored + not_2xx,
                "error_detail": {"failed": failed, "errored": errored, "4xx and 5xx": not_2xx}}

    def measured(self, server, run):
        """run()'s result plus who worked how hard meanwhile: the proxy's CPU time (its processes' user + system
        time) in % of one core and per request, and how busy the proxy's core and the load core (wrk, backend,
        Redis) were. A proxy below 100 % was not what limited the figure."""
        service = self.proxies.get("gateway" if server in ("gateway_single", "gateway_h1", "gateway_unnotified")
                                   else server)
        start_cpu = service.cpu_seconds() if service else None
        start_cores, start = core_times(), time.monotonic()
        result = run()
        end_cores, elapsed = core_times(), time.monotonic() - start
        result["proxy_core_pct"] = core_busy_pct(start_cores, end_cores, self.cpu_proxy)
        result["load_core_pct"] = core_busy_pct(start_cores, end_cores, self.cpu_wrk)
        if service:
            used = service.cpu_seconds() - start_cpu
            result["proxy_cpu_pct"] = 100.0 * used / elapsed
            if result.get("requests"):
                result["proxy_cpu_us_per_request"] = 1e6 * used / result["requests"]
        return result

    def tls_handshakes(self, server):
        """A new TLS connection per request, each a full TLS 1.2 handshake (wrk under the full-handshake
        configuration); for the gateway, also how many handshakes it completed and resumed meanwhile."""
        before = self.gateway_tls_counters() if server == "gateway" else (None, None)
        result = self.measured(server, lambda: self.wrk(
            server, "/", headers=["Connection: close"], tls=True,
            env={"OPENSSL_CONF": str(self.wrk_full_handshake_cnf)}))
        if server == "gateway":
            after = self.gateway_tls_counters()
            if None not in before + after:
                result["tls_handshakes"] = after[0] - before[0]
                result["tls_resumed"] = after[1] - before[1]
        return result

    def without_notifications(self, run):
        """run() while Redis publishes no keyspace events. The gateway finds out when it subscribes again (the
        subscription is killed), and then keeps routes route_cache_ttl (2 s) instead of 60 s; afterwards the
        events and the subscription come back the same way."""
        def set_events(events):
            self.redis_cli("CONFIG", "SET", "notify-keyspace-events", events)
            self.redis_cli("CLIENT", "KILL", "TYPE", "pubsub")
            time.sleep(1.0)
        set_events("")
        try:
            return run()
        finally:
            set_events(NOTIFY_EVENTS)

    def churn(self, server, env):
        """The churn script after a 2 s warm-up with it, and how many catalog lookups reached Redis meanwhile
        (per second). Without the warm-up a run would measure the gateway dialling again the sandbox connections
        that expired (upstream_idle_timeout, 4 s) while the other servers ran: 10,000 dials in a 3 s run."""
        self.wrk(server, "/", script="churn.lua", env=env, duration=2)
        before = self.redis_lookup_calls()
        result = self.measured(server, lambda: self.wrk(server, "/", script="churn.lua", env=env))
        after = self.redis_lookup_calls()
        if before is not None and after is not None:
            result["redis_lookups_per_s"] = (after - before) / self.args.duration
        return result

    def churn_floor(self, server, env):
        """The churn script through one of churn's floor relays, started for this run (it listens once its
        backend connections are dialled) and stopped after it. The relay picks a backend connection at random
        whatever the Host, so the script's single ID gives the same request bytes as the gateway's."""
        service, port = self.floors[server]
        service.start()
        self.proxies[server], self.ports[server] = service, port
        try:
            self.wrk(server, "/", script="churn.lua", env=env, duration=2)
            return self.measured(server, lambda: self.wrk(server, "/", script="churn.lua", env=env))
        finally:
            del self.proxies[server], self.ports[server]
            service.stop()

    def websocket(self, server):
        """RSS growth of a freshly started proxy per idle upgraded connection it holds."""
        service = self.proxies[server]
        service.restart()
        host, count = self.host(self.p_ws), self.args.ws_connections
        warm = ws.open_idle(self.ports[server], host, "/ws", 8, timeout=10)   # first tunnels, route cached
        warm.close()
        for _ in range(20):
            http_get(self.ports[server], self.host(), "/")
        time.sleep(0.3)
        before = service.rss_kib()
        opened = ws.open_idle(self.ports[server], host, "/ws", count, timeout=60)
        try:
            time.sleep(1.0)
            held = len(opened.sockets)
            after = service.rss_kib()
        finally:
            opened.close()
        return {
            "kib_per_conn": (after - before) / held if held else None,
            "rss_before_kib": before, "rss_after_kib": after, "held": held,
            "errors": count - held, "error_detail": opened.failures, "open_seconds": opened.seconds,
        }

    def redis_cli(self, *words):
        """One redis-cli command on the bench's Redis; its --raw output lines."""
        proc = subprocess.run(["redis-cli", "-p", str(self.p_redis), "--raw", *words], capture_output=True,
                              text=True, timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(words)} failed: {proc.stderr}")
        return proc.stdout.splitlines()

    def gateway_metric(self, name):
        status, body = http_get(self.p_gateway_admin, "admin", "/metrics")
        match = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(errors="replace"), re.MULTILINE)
        return float(match.group(1)) if status == 200 and match else None

    def many_clients(self, server):
        """1,000 keep-alive clients of one sandbox (wrk -c1000) after a 1 s warm-up with as many; for the
        gateway, how many of the measured requests dialled a new sandbox connection (/metrics)."""
        self.wrk(server, "/", duration=1, connections=1000)
        dials = self.gateway_metric("sgw_upstream_dials_total") if server == "gateway" else None
        result = self.measured(server, lambda: self.wrk(server, "/", connections=1000))
        if dials is not None and result.get("requests"):
            result["dial_pct"] = 100.0 * (self.gateway_metric("sgw_upstream_dials_total") - dials) / result["requests"]
        return result

    def idle_beside_busy(self, server):
        """On a freshly started proxy: the keep-alive scenario (50 busy clients) alone, then 10,000 idle
        keep-alive clients that each made one request, opened in waves of IDLE_WAVE as clients arrive over
        time (each wave answered before the next), and the 50 busy clients again beside them. The figures:
        the busy clients' p99 beside the idle ones over their p99 alone, the proxy's CPU time per busy
        request in both, and its RSS growth per idle connection."""
        service = self.proxies[server]
        service.restart()
        self.ensure_descriptors(self.args.idle_connections)
        alone = self.measured(server, lambda: self.wrk(server, "/"))
        request = f"GET / HTTP/1.1\r\nHost: {self.host()}\r\n\r\n".encode()
        time.sleep(0.3)
        before = service.rss_kib()
        sockets, failures, idle = {}, {}, 0
        try:
            while len(sockets) + sum(failures.values()) < self.args.idle_connections:
                wave = min(IDLE_WAVE, self.args.idle_connections - len(sockets) - sum(failures.values()))
                poller, opened, failed = self.open_clients(wave, request, self.ports[server])
                for error, count in failed.items():
                    failures[error] = failures.get(error, 0) + count
                done, answers = self.collect(poller, opened, time.monotonic() + 30, close=False)
                idle += sum(1 for fd in done if answers[fd][9:12] == b"200")
                sockets.update(opened)
            time.sleep(0.5)
            after = service.rss_kib()
            beside = self.measured(server, lambda: self.wrk(server, "/"))
        finally:
            for sock in sockets.values():
                sock.close()
        elsewhere = self.idle_elsewhere(server)
        beside.update({"idle": idle, "alone_p99_us": alone.get("p99_us"), "alone_rps": alone.get("rps"),
                       "elsewhere_p99_us": elsewhere.get("p99_us"),
                       "machine_ratio": elsewhere["p99_us"] / alone["p99_us"]
                       if elsewhere.get("p99_us") and alone.get("p99_us") else None,
                       "alone_cpu_us_per_request": alone.get("proxy_cpu_us_per_request"),
                       "p99_ratio": beside["p99_us"] / alone["p99_us"] if alone.get("p99_us") else None,
                       "kib_per_idle": (after - before) / idle if idle else None,
                       "errors": beside.get("errors", 0) + self.args.idle_connections - idle,
                       "error_detail": dict(beside.get("error_detail") or {}, **failures)})
        return beside

    def idle_elsewhere(self, server):
        """The control of idle_beside_busy: the busy clients once more, beside as many idle connections the
        proxy has nothing to do with (from this runner to a holder process on the load core, which accepts and
        keeps them). What these cost the busy clients' p99 is the machine's (the kernel's 20,000 more sockets,
        the virtual CPUs), not the proxy's."""
        count = self.args.idle_connections
        self.ensure_descriptors(count)
        pin = ["taskset", "-c", str(self.cpu_wrk)] if self.cpu_wrk is not None else []
        holder = subprocess.Popen(pin + [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, preexec_fn=_child_setup)
        sockets = []
        try:
            port = int(holder.stdout.readline())
            for _ in range(count):
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.5)
            return self.measured(server, lambda: self.wrk(server, "/"))
        finally:
            for sock in sockets:
                sock.close()
            holder.stdin.close()
            holder.wait(10)

    @staticmethod
    def ensure_descriptors(count):
        """Room for count more sockets in this process, as far as the hard limit allows."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < count + 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 4096), hard))

    def open_clients(self, count, request=None, port=None):
        """count kept-alive connections to the gateway, each sending request first if given, non-blocking, in an
        epoll: (poller, {fd: socket}, failures)."""
        self.ensure_descriptors(count)
        poller, sockets, failures = select.epoll(), {}, {}
        for _ in range(count):
            try:
                sock = socket.create_connection(("127.0.0.1", port or self.p_gateway), timeout=5)
            except OSError as error:
                failures[repr(error)] = failures.get(repr(error), 0) + 1
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if request is not None:
                sock.sendall(request)  # at once: the listener defers accept until bytes arrive
            sock.setblocking(False)
            sockets[sock.fileno()] = sock
            poller.register(sock.fileno(), select.EPOLLIN)
        return poller, sockets, failures

    @staticmethod
    def collect(poller, sockets, deadline, close=True):
        """Reads each connection's response: {fd: when it completed}, {fd: bytes}. A response is complete when
        its whole body is in; its time is when the kernel reported it readable, not when this loop got to it."""
        done, answers = {}, {fd: b"" for fd in sockets}
        while len(done) < len(sockets) and time.monotonic() < deadline:
            events = poller.poll(1)
            now = time.monotonic()
            for fd, _ in events:
                try:
                    data = sockets[fd].recv(65536)
                except OSError:
                    data = b""
                answers[fd] += data
                if not data or response_complete(answers[fd]):
                    done[fd] = now
                    poller.unregister(fd)
        poller.close()
        if close:
            for sock in sockets.values():
                sock.close()
        return done, answers

    def resume(self):
        """args.resume_requests requests at once, each on its own kept-alive connection, to a paused sandbox; a
        consumer resumes it 500 ms after the gateway's stream entry (HSET state running addr). First on a freshly
        started gateway (its RSS growth per held request), then the same number sent at once to a running
        sandbox it has no connections to (the burst a resume releases, without a hold), then held again on the
        warm process: latency from the resume and from each request sent, the gateway's CPU time from the
        resume to the last response (clock ticks: ±10 ms in all), how many were served, stream entries."""
        self.resume_round = getattr(self, "resume_round", 0) + 1
        count = self.args.resume_requests

        def request(sandbox):
            return f"GET / HTTP/1.1\r\nHost: {self.p_backend}-{sandbox}.{DOMAIN}\r\n\r\n".encode()

        def percentile(values, fraction):
            values = sorted(values)
            return values[min(len(values) - 1, int(fraction * len(values)))] * 1e6 if values else None

        def held(sandbox):
            self.redis_cli("HSET", f"sandbox:catalog:{sandbox}", "addr", "127.0.0.2", "execution_id", sandbox,
                           "state", "paused")
            time.sleep(0.2)
            before = self.gateway.rss_kib()
            poller, sockets, failures = self.open_clients(count)
            sent = {}
            for fd, sock in sockets.items():
                sock.send(request(sandbox))
                sent[fd] = time.monotonic()

            def entries():
                lines = self.redis_cli("XRANGE", "sandbox:resume", "-", "+")
                return sum(1 for i, line in enumerate(lines) if line == sandbox and i and lines[i - 1] == "sandbox_id")
            deadline = time.monotonic() + 10
            while entries() == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            entry_seen = time.monotonic()
            time.sleep(max(0.0, entry_seen + 0.4 - time.monotonic()))
            waiting = self.gateway_metric("sgw_resume_held")
            during = self.gateway.rss_kib()
            time.sleep(max(0.0, entry_seen + 0.5 - time.monotonic()))
            cpu_before = self.gateway.cpu_seconds()
            self.redis_cli("HSET", f"sandbox:catalog:{sandbox}", "state", "running", "addr", "127.0.0.1")
            resumed = time.monotonic()
            done, answers = self.collect(poller, sockets, resumed + 30)
            cpu = self.gateway.cpu_seconds() - cpu_before
            ok = [fd for fd in done if answers[fd][9:12] == b"200"]
            for fd in sockets:
                if fd not in ok:
                    status = answers[fd][9:12].decode(errors="replace") if fd in done else "unanswered"
                    failures[f"status {status}"] = failures.get(f"status {status}", 0) + 1
            return {"served": len(ok), "failures": failures, "entries": entries(), "held": waiting,
                    "kib_per_held": (during - before) / waiting if waiting else None,
                    "added": [done[fd] - resumed for fd in ok], "total": [done[fd] - sent[fd] for fd in ok],
                    "cpu_us": 1e6 * cpu / len(ok) if ok else None}

        self.gateway.restart()
        time.sleep(0.2)
        fresh = held(f"paused{self.resume_round}a")

        burst = f"burst{self.resume_round}"
        self.redis_cli("HSET", f"sandbox:catalog:{burst}", "addr", "127.0.0.1", "execution_id", burst)
        poller, sockets, _ = self.open_clients(count)
        started = time.monotonic()
        for sock in sockets.values():
            sock.send(request(burst))
        done, answers = self.collect(poller, sockets, started + 30)
        burst_times = [when - started for fd, when in done.items() if answers[fd][9:12] == b"200"]

        warm = held(f"paused{self.resume_round}b")
        detail = {f"fresh {k}": v for k, v in fresh["failures"].items()}
        detail.update({f"warm {k}": v for k, v in warm["failures"].items()})
        served = min(fresh["served"], warm["served"])
        return {"requests": count, "served": served, "errors": 2 * count - fresh["served"] - warm["served"],
                "error_detail": detail, "stream_entries": max(fresh["entries"], warm["entries"]),
                "held": min(fresh["held"] or 0, warm["held"] or 0), "kib_per_held": fresh["kib_per_held"],
                "added_first_us": percentile(warm["added"], 0.0),
                "added_p50_us": percentile(warm["added"], 0.5),
                "added_p99_us": percentile(warm["added"], 0.99),
                "fresh_added_p99_us": percentile(fresh["added"], 0.99),
                "burst_p99_us": percentile(burst_times, 0.99), "burst_errors": count - len(burst_times),
                "release_cpu_us_per_request": warm["cpu_us"],
                "p50_us": percentile(warm["total"], 0.5), "p99_us": percentile(warm["total"], 0.99)}

    def run(self):
        plan = self.scenario_plan()
        rounds = self.args.rounds
        warm_ups = PEERS + ["tcp_relay"] + (["gateway_compare"] if self.gateway_compare else [])
        churn_warm = "churn" in self.scenarios
        progress = Progress(len(plan) * rounds + len(warm_ups) + (1 if churn_warm else 0))
        for server in warm_ups:
            progress.step(f"warm-up · {LABELS[server]} (1 s, not counted)")
            self.wrk(server, "/", duration=1)
        for scenario in self.scenarios:
            todo = [(srv, runner) for (sc, srv, runner) in plan if sc == scenario]
            if scenario == "churn":
                progress.step(f"warm-up · route churn · sandbox-gateway (1 s, {self.args.churn_ids:,} IDs: routes cached, "
                              "pools filled)")
                self.wrk("gateway", "/", script="churn.lua", duration=1,
                         env={"BENCH_CHURN_IDS": str(self.args.churn_ids), "BENCH_PORT": str(self.p_backend),
                              "BENCH_DOMAIN": DOMAIN})
            for round_no in range(1, rounds + 1):
                for server, runner in self.round_order(todo, round_no):
                    what = (f"{self.args.ws_connections:,} idle connections" if scenario == "websocket"
                            else f"{self.args.resume_requests:,} requests" if scenario == "resume"
                            else f"{self.args.duration} s")
                    if scenario == "churn":
                        what += (", 1 ID" if server in ("gateway_single", "floor_single")
                                 else f", {self.args.churn_ids:,} IDs")
                    progress.step(f"{TITLES[scenario]} · round {round_no}/{rounds} · {LABELS[server]} ({what})")
                    result = runner()
                    self.check_alive()
                    result["round"] = round_no
                    self.runs.setdefault(scenario, {}).setdefault(server, []).append(result)
                    if result.get("errors"):
                        progress.note(f"  note: {LABELS[server]} had {result['errors']} errors in "
                                      f"{TITLES[scenario]}: {result.get('error_detail')}")
                    if result.get("tls_resumed"):
                        progress.note(f"  note: {LABELS[server]} resumed {result['tls_resumed']} of "
                                      f"{result.get('tls_handshakes')} TLS sessions in {TITLES[scenario]}")
                    time.sleep(0.3)
        progress.finish()

    # --------------------------------------------------------------------- results

    def summary(self):
        """scenario -> server -> medians over rounds."""
        out = {}
        for scenario, by_server in self.runs.items():
            out[scenario] = {}
            for server, runs in by_server.items():
                keys = sorted({k for r in runs for k, v in r.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "round"})
                agg = {k: median([r.get(k) for r in runs]) for k in keys}
                agg["errors"] = sum(r.get("errors") or 0 for r in runs)
                agg["runs"] = len(runs)
                out[scenario][server] = agg
        return out


TITLES = {
    "keepalive": "small responses, keep-alive",
    "close": "new connection per request",
    "large": "1 MiB responses",
    "churn": "route churn",
    "websocket": "idle WebSocket connections",
    "tls-keepalive": "TLS keep-alive (TLS 1.3, ECDSA P-256)",
    "tls-handshake": "full handshakes (TLS 1.2 ECDHE-ECDSA P-256, no resumption)",
    "activity": "small responses, keep-alive: activity on vs off",
    "h2-tls": "h2 over TLS, 50 connections × 10 streams",
    "h2-sdk": "h2 over TLS, 1 connection × 100 streams",
    "h2-large": "1 MiB over TLS, h2 (8 connections)",
    "resume": "requests held for a paused sandbox, resumed after 500 ms",
    "clients-1000": "1,000 keep-alive clients, one sandbox",
    "grpc-unary": "gRPC unary over h2c, 50 connections × 10 streams",
    "grpc-stream": "1 MiB over h2c to the sandbox (8 connections)",
    "idle-10k": "50 busy clients beside 10,000 idle ones",
}
SCENARIOS = list(TITLES)    # run, table and chart order; the default --only
METRIC = {"keepalive": ("rps", "req/s"), "close": ("rps", "req/s"), "large": ("mibs", "MiB/s"),
          "churn": ("rps", "req/s"), "websocket": ("kib_per_conn", "KiB/conn"),
          "tls-keepalive": ("rps", "req/s"), "tls-handshake": ("rps", "handshakes/s"),
          "activity": ("rps", "req/s"), "h2-tls": ("rps", "req/s"), "h2-sdk": ("rps", "req/s"),
          "h2-large": ("mibs", "MiB/s"), "resume": ("added_p99_us", "p99 after the resume"),
          "clients-1000": ("rps", "req/s"), "idle-10k": ("rps", "req/s"),
          "grpc-unary": ("rps", "req/s"), "grpc-stream": ("mibs", "MiB/s")}


def figure_text(scenario, value):
    if value is None:
        return "—"
    if scenario in ("large", "h2-large", "grpc-stream"):
        return f"{value:,.0f} MiB/s"
    if scenario == "websocket":
        return f"{value:.1f} KiB/conn"
    if scenario == "tls-handshake":
        return f"{value:,.0f} handshakes/s"
    if scenario == "resume":
        return f"{value / 1000:.1f} ms p99 after the resume"
    return f"{value:,.0f} req/s"


def table_rows(summary, args):
    """Rows of the main table: (scenario title, server label, figure, p50, p99, errors, ×nginx, ×direct)."""
    rows = []
    for scenario in SCENARIOS:
        if scenario not in summary:
            continue
        key, _ = METRIC[scenario]
        by = summary[scenario]
        nginx_value = by.get("nginx", {}).get(key)
        direct_value = by.get("direct", {}).get(key)
        title = TITLES[scenario]
        if scenario == "churn":
            title = f"route churn, {args.churn_ids:,} IDs"
        if scenario == "websocket":
            title = f"{args.ws_connections:,} idle WebSockets"
        if scenario == "resume":
            title = f"{args.resume_requests:,} {TITLES[scenario]}"
        if scenario == "idle-10k":
            title = f"50 busy clients beside {args.idle_connections:,} idle ones"
        for server in SERVERS:
            if server not in by:
                continue
            agg = by[server]
            value = agg.get(key)
            latency = scenario != "websocket"
            rows.append([
                title, LABELS[server], figure_text(scenario, value),
                fmt_ms(agg.get("p50_us")) if latency else "—",
                fmt_ms(agg.get("p99_us")) if latency else "—",
                f"{agg['errors']:,}",
                fmt_ratio(ratio(value, nginx_value)) if server != "nginx" else ("1.00×" if value else "—"),
                fmt_ratio(ratio(value, direct_value)) if server != "direct" else ("1.00×" if value else "—"),
            ])
            title = ""
    return rows


LIMIT_HEADERS = ["scenario", "server", "figure", "proxy CPU", "proxy CPU per request", "proxy's core", "load core"]


def fmt_pct(value):
    return "—" if value is None else f"{value:.0f}%"


def limit_rows(summary):
    """Who worked how hard in each wrk scenario: the proxy's CPU time (% of a core, µs a request) and how busy
    the proxy's core and the load core were (medians over the rounds)."""
    rows = []
    for scenario in SCENARIOS:
        if scenario in ("websocket", "resume") or scenario not in summary:
            continue
        title = TITLES[scenario]
        for server in SERVERS:
            agg = summary[scenario].get(server)
            if agg is None:
                continue
            per = agg.get("proxy_cpu_us_per_request")
            rows.append([title, LABELS[server], figure_text(scenario, agg.get(METRIC[scenario][0])),
                         fmt_pct(agg.get("proxy_cpu_pct")), "—" if per is None else f"{per:,.1f} µs",
                         fmt_pct(agg.get("proxy_core_pct")), fmt_pct(agg.get("load_core_pct"))])
            title = ""
    return rows


def load_limited(summary, scenario, server="gateway"):
    """True when server had CPU to spare (< 90% of its core) and the load core had none (≥ 95%)."""
    agg = summary.get(scenario, {}).get(server, {})
    proxy, load = agg.get("proxy_cpu_pct"), agg.get("load_core_pct")
    return proxy is not None and load is not None and load >= 95 and proxy < 90


def limit_clause(summary, scenario, server="gateway", peer=None):
    """'; limit: the load core (...)' when the gateway had CPU to spare and the load core had none, else ''.
    With a peer, also each one's CPU per request: what the two would do if the proxies were the limit."""
    if not load_limited(summary, scenario, server):
        return ""
    agg = summary.get(scenario, {}).get(server, {})
    proxy, load = agg.get("proxy_cpu_pct"), agg.get("load_core_pct")
    clause = f"; limit: the load core ({load:.0f}% busy), not the gateway ({proxy:.0f}% of its core)"
    mine = agg.get("proxy_cpu_us_per_request")
    theirs = summary.get(scenario, {}).get(peer, {}).get("proxy_cpu_us_per_request") if peer else None
    if mine and theirs:
        clause += f"; CPU per request {mine:.1f} vs {theirs:.1f} µs ({theirs / mine:.2f} ×)"
    return clause


def targets(summary, args):
    """[(target text, measured text, met: True/False/None)]"""
    out = []

    def get(scenario, server, key):
        return summary.get(scenario, {}).get(server, {}).get(key)

    def clean(scenario, server):
        return (get(scenario, server, "errors") or 0) == 0

    def beside_nginx(scenario, text, p99_text):
        """≥ 1.2 × nginx req/s, and p99 at most nginx's; True when both figures are there."""
        gw, ng = get(scenario, "gateway", "rps"), get(scenario, "nginx", "rps")
        if not (gw and ng):
            return False
        r = gw / ng
        out.append((f"{text}: gateway ≥ 1.2 × nginx req/s",
                    f"{r:.2f} × ({gw:,.0f} vs {ng:,.0f}){limit_clause(summary, scenario, peer='nginx')}",
                    r >= 1.2 and clean(scenario, "gateway")))
        g99, n99 = get(scenario, "gateway", "p99_us"), get(scenario, "nginx", "p99_us")
        out.append((p99_text, f"{fmt_ms(g99)} vs {fmt_ms(n99)}", g99 <= n99))
        return True

    def beside_floor(scenario):
        """What the TCP relay (no HTTP, one backend connection per client) did in the same run: the most a
        proxy's ratio to nginx can be here while the kernel's part of a request is everyone's."""
        relay, ng = get(scenario, "tcp_relay", "rps"), get(scenario, "nginx", "rps")
        if not (relay and ng):
            return
        mine, floor_cpu, theirs = (get(scenario, server, "proxy_cpu_us_per_request")
                                   for server in ("gateway", "tcp_relay", "nginx"))
        cpu = (f"; CPU per request {floor_cpu:.1f} µs ({floor_cpu / theirs:.2f} × nginx's), the gateway's "
               f"{mine / floor_cpu:.2f} × it" if mine and floor_cpu and theirs else "")
        out.append(("… the floor: a TCP relay (HAProxy mode tcp, no HTTP), for comparison",
                    f"{relay / ng:.2f} × nginx ({relay:,.0f} vs {ng:,.0f}){cpu}", None))

    def cpu_beside_nginx(scenario):
        """The ≥ 1.2 × nginx req/s target in CPU per request, where the load core, not the gateway, was the
        limit: ≤ 0.8 × nginx's, the issue's own form of it at 50 clients."""
        mine, theirs = (get(scenario, server, "proxy_cpu_us_per_request") for server in ("gateway", "nginx"))
        if mine and theirs and load_limited(summary, scenario):
            out.append(("… or, the load core being the limit: gateway CPU per request ≤ 0.8 × nginx's",
                        f"{mine / theirs:.2f} × ({mine:.1f} vs {theirs:.1f} µs)",
                        mine <= 0.8 * theirs and clean(scenario, "gateway")))

    beside_nginx("keepalive", "keep-alive small", "keep-alive small: gateway p99 ≤ nginx p99")
    cpu_beside_nginx("keepalive")
    beside_floor("keepalive")
    gw, ng = get("close", "gateway", "rps"), get("close", "nginx", "rps")
    if gw and ng:
        r = gw / ng
        out.append(("connection per request: gateway ≥ 1.1 × nginx",
                    f"{r:.2f} × ({gw:,.0f} vs {ng:,.0f}){limit_clause(summary, 'close', peer='nginx')}",
                    r >= 1.1 and clean("close", "gateway")))
    gw, di = get("large", "gateway", "mibs"), get("large", "direct", "mibs")
    if gw and di:
        r = gw / di
        out.append(("1 MiB responses: gateway ≥ 0.9 × direct MiB/s",
                    f"{r:.2f} × ({gw:,.0f} vs {di:,.0f} MiB/s){limit_clause(summary, 'large')}",
                    r >= 0.9 and clean("large", "gateway")))
    gw, single = get("churn", "gateway", "rps"), get("churn", "gateway_single", "rps")
    if gw and single:
        r = gw / single
        out.append((f"route churn over {args.churn_ids:,} IDs: ≥ 0.9 × gateway single-route (same script, 1 ID)",
                    f"{r:.2f} × ({gw:,.0f} vs {single:,.0f}){limit_clause(summary, 'churn')}",
                    r >= 0.9 and clean("churn", "gateway")))
    mine, single_cpu = (get("churn", server, "proxy_cpu_us_per_request") for server in ("gateway", "gateway_single"))
    if mine and single_cpu and load_limited(summary, "churn") and load_limited(summary, "churn", "gateway_single"):
        out.append(("… or, the load core being the limit: single-route CPU per request ≥ 0.9 × churn's",
                    f"{single_cpu / mine:.2f} × ({single_cpu:.1f} vs {mine:.1f} µs)",
                    single_cpu >= 0.9 * mine and clean("churn", "gateway")))
    floor_churn, floor_single = get("churn", "floor_churn", "rps"), get("churn", "floor_single", "rps")
    if floor_churn and floor_single:
        cpu_churn, cpu_single = (get("churn", server, "proxy_cpu_us_per_request")
                                 for server in ("floor_churn", "floor_single"))
        cpu = (f"; single-route CPU per request {cpu_single / cpu_churn:.2f} × churn's ({cpu_single:.1f} vs "
               f"{cpu_churn:.1f} µs)" if cpu_churn and cpu_single else "")
        out.append((f"… the floor: a TCP relay pooling per sandbox (bench/churn_floor.c, {args.connections} and "
                    f"{args.churn_ids:,} backend connections), for comparison",
                    f"{floor_churn / floor_single:.2f} × ({floor_churn:,.0f} vs {floor_single:,.0f}){cpu}", None))
    off = get("churn", "gateway_unnotified", "rps")
    if off and single:
        lookups = get("churn", "gateway_unnotified", "redis_lookups_per_s")
        out.append(("… with keyspace notifications off (routes live 2 s), for comparison",
                    f"{off / single:.2f} × ({off:,.0f} vs {single:,.0f}); "
                    f"{lookups or 0:,.0f} Redis lookups a second (notifications on: "
                    f"{get('churn', 'gateway', 'redis_lookups_per_s') or 0:,.0f})", None))
    for scenario, text in [("h2-tls", "h2 over TLS, 50 × 10 streams"), ("h2-sdk", "h2 over TLS, 1 × 100 streams")]:
        gw, ng = get(scenario, "gateway", "rps"), get(scenario, "nginx", "rps")
        if gw and ng:
            r = gw / ng
            out.append((f"{text}: gateway ≥ 1.2 × nginx req/s",
                        f"{r:.2f} × ({gw:,.0f} vs {ng:,.0f}){limit_clause(summary, scenario, peer='nginx')}",
                        r >= 1.2 and clean(scenario, "gateway")))
        mine, theirs = get(scenario, "gateway", "proxy_cpu_us_per_request"), get(scenario, "nginx", "proxy_cpu_us_per_request")
        if scenario == "h2-tls" and mine and theirs:
            out.append((f"{text}: gateway CPU per request below nginx's", f"{mine:.1f} vs {theirs:.1f} µs",
                        mine < theirs))
    on, off = get("activity", "gateway", "rps"), get("activity", "gateway_quiet", "rps")
    if on and off:
        r = on / off
        mine, quiet = (get("activity", "gateway", "proxy_cpu_us_per_request"),
                       get("activity", "gateway_quiet", "proxy_cpu_us_per_request"))
        cpu = f"; CPU per request {mine:.1f} vs {quiet:.1f} µs" if mine and quiet else ""
        out.append(("keep-alive with activity on: ≥ 0.97 × activity off req/s",
                    f"{r:.2f} × ({on:,.0f} vs {off:,.0f}){cpu}", r >= 0.97 and clean("activity", "gateway")))
    gw, h1 = get("h2-large", "gateway", "mibs"), get("h2-large", "gateway_h1", "mibs")
    if gw and h1:
        r = gw / h1
        out.append(("1 MiB over h2: ≥ 0.9 × the gateway's HTTP/1.1 MiB/s (both TLS, h2load)",
                    f"{r:.2f} × ({gw:,.0f} vs {h1:,.0f} MiB/s){limit_clause(summary, 'h2-large')}",
                    r >= 0.9 and clean("h2-large", "gateway")))
    if beside_nginx("clients-1000", "1,000 keep-alive clients, one sandbox", "… gateway p99 ≤ nginx p99"):
        cpu_beside_nginx("clients-1000")
        dials = get("clients-1000", "gateway", "dial_pct")
        if dials is not None:
            out.append(("… sandbox connections dialled ≤ 1 % of requests after warm-up", f"{dials:.2f} %",
                        dials <= 1.0))
        beside_floor("clients-1000")
    for scenario, key, floor, text in [("grpc-unary", "rps", 0.5, "gRPC unary, 50 × 10 streams"),
                                       ("grpc-stream", "mibs", 0.8, "1 MiB over h2c")]:
        gw, di, ng = (get(scenario, "gateway", key), get(scenario, "direct", key), get(scenario, "nginx", key))
        if gw and di:
            r = gw / di
            out.append((f"{text}: gateway ≥ {floor} × direct", f"{r:.2f} × ({gw:,.0f} vs {di:,.0f})"
                        f"{limit_clause(summary, scenario, peer='nginx')}", r >= floor and clean(scenario, "gateway")))
        if gw and ng:
            out.append((f"{text}: gateway ≥ nginx grpc_pass", f"{gw / ng:.2f} × ({gw:,.0f} vs {ng:,.0f})",
                        gw >= ng and clean(scenario, "gateway")))
    ratio99 = get("idle-10k", "gateway", "p99_ratio")
    if ratio99 is not None:
        out.append((f"50 busy clients beside {args.idle_connections:,} idle: p99 ≤ 1.2 × without them",
                    f"{ratio99:.2f} × ({fmt_ms(get('idle-10k', 'gateway', 'p99_us'))} vs "
                    f"{fmt_ms(get('idle-10k', 'gateway', 'alone_p99_us'))}; "
                    f"{get('idle-10k', 'gateway', 'idle') or 0:,.0f} idle held)",
                    ratio99 <= 1.2 and clean("idle-10k", "gateway")))
        theirs = get("idle-10k", "nginx", "p99_ratio")
        if theirs is not None:
            out.append(("… nginx in the same run, for comparison", f"{theirs:.2f} × ({fmt_ms(get('idle-10k', 'nginx', 'p99_us'))} vs "
                        f"{fmt_ms(get('idle-10k', 'nginx', 'alone_p99_us'))})", None))
        for server in ["gateway", "nginx"]:
            machine = get("idle-10k", server, "machine_ratio")
            if machine is not None:
                out.append((f"… {LABELS[server]}'s p99 beside {args.idle_connections:,} idle connections between two "
                            f"other processes instead: the machine's share",
                            f"{machine:.2f} × ({fmt_ms(get('idle-10k', server, 'elsewhere_p99_us'))})", None))
        for server in ["gateway", "nginx"]:
            cpu, alone_cpu = (get("idle-10k", server, "proxy_cpu_us_per_request"),
                              get("idle-10k", server, "alone_cpu_us_per_request"))
            if cpu and alone_cpu:
                out.append((f"… {LABELS[server]} CPU per busy request beside the idle clients (alone)",
                            f"{cpu:.1f} µs ({alone_cpu:.1f} µs): {cpu / alone_cpu:.2f} ×", None))
        for server in ["gateway", "nginx"]:
            kib = get("idle-10k", server, "kib_per_idle")
            if kib is not None:
                out.append((f"{args.idle_connections:,} idle keep-alive clients: ≤ 4 KiB {LABELS[server]} RSS per connection"
                            if server == "gateway" else f"… {LABELS[server]} RSS per idle connection, for comparison",
                            f"{kib:.1f} KiB", kib <= 4 and clean("idle-10k", "gateway") if server == "gateway" else None))
    added = get("resume", "gateway", "added_p99_us")
    if added is not None:
        served, entries = get("resume", "gateway", "served"), get("resume", "gateway", "stream_entries")
        out.append((f"{args.resume_requests:,} requests to a paused sandbox: all served, one stream entry",
                    f"{served:,.0f} served, {entries:.0f} entry (each of two resumes a round)",
                    served == args.resume_requests and entries == 1 and clean("resume", "gateway")))
        kib = get("resume", "gateway", "kib_per_held")
        burst = get("resume", "gateway", "burst_p99_us")
        out.append(("… latency added after the resume (p99) < 20 ms",
                    f"{added / 1000:.1f} ms (fresh process: {fmt_ms(get('resume', 'gateway', 'fresh_added_p99_us'))}); "
                    f"the same burst to a running sandbox without a hold: p99 "
                    f"{fmt_ms(burst)}; from each request sent: p99 {fmt_ms(get('resume', 'gateway', 'p99_us'))}; "
                    f"gateway CPU {get('resume', 'gateway', 'release_cpu_us_per_request') or 0:.0f} µs a request; "
                    f"RSS {'—' if kib is None else f'{kib:.1f} KiB'} per held request", added < 20000))
    kib = get("websocket", "gateway", "kib_per_conn")
    if kib is not None:
        out.append(("idle WebSocket: ≤ 8 KiB gateway RSS per connection", f"{kib:.1f} KiB",
                    kib <= 8 and clean("websocket", "gateway")))
    return out


HEADERS = ["scenario", "server", "figure", "p50", "p99", "errors", "× nginx", "× direct"]


def text_table(rows, headers):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    right = {2, 3, 4, 5, 6, 7} if len(headers) == 8 else set()
    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def md_table(rows, headers, right=()):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) if c != "" else " " for c in row) + " |")
    return "\n".join(out)


def environment(bench):
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    git = command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", git):
        git = "unknown"
    elif dirty:
        git += " with local changes"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cores": bench.cores, "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "gateway": command_output([str(bench.gateway_bin), "--version"]).splitlines()[0] + f" (commit {git})"
                   + ("" if bench.gateway_bin == (REPO / "build" / "sandbox-gateway").resolve() else f", {bench.gateway_bin}"),
        "compare": (command_output([str(bench.compare_bin), "--version"]).splitlines()[0] + f", {bench.compare_bin}"
                    if bench.compare_bin else None),
        "nginx": command_output(["nginx", "-v"]).replace("nginx version: ", "") + f" (Debian nginx-light {dpkg_version('nginx-light')})",
        "haproxy": command_output(["haproxy", "-v"]).splitlines()[0].split(" - ")[0] + f" (Debian {dpkg_version('haproxy')})",
        "redis": command_output(["redis-server", "--version"]).split(" sha=")[0] + f" (Debian {dpkg_version('redis-server')})",
        "wrk": command_output(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0] + f" (Debian {dpkg_version('wrk')})",
        "gnuplot": command_output(["gnuplot", "--version"]) if shutil.which("gnuplot") else "not installed",
        "python": f"{platform.python_version()} ({sys.executable})",
    }


def pinning_text(bench):
    if bench.cpu_proxy is None:
        return "one core: nothing pinned (the figures mean little on one core)"
    if bench.cpu_backend == bench.cpu_wrk:
        return (f"the proxy under test (gateway, nginx or HAProxy) alone on core {bench.cpu_proxy}; wrk, the nginx "
                f"backend, the WebSocket backend and Redis share core {bench.cpu_wrk}. Core {bench.cpu_wrk} does the "
                "same work per request in every run (wrk + backend), so a direct run shows what that core can do and a "
                "proxied run adds only the proxy, on its own core")
    return (f"the proxy under test alone on core {bench.cpu_proxy}; wrk on core {bench.cpu_wrk}; the nginx backend, "
            f"the WebSocket backend and Redis on core {bench.cpu_backend}")


def run_mode(args):
    """quick, full, or custom (other durations, rounds or scenarios than those two)."""
    if args.only != SCENARIOS or args.connections != 50 or args.churn_ids != 10000 or args.ws_connections != 5000 \
            or args.resume_requests != 1000 or args.idle_connections != 10000 or args.compare:
        return "custom"
    if args.quick:
        return "quick" if (args.duration, args.rounds) == (3, 2) else "custom"
    return "full" if (args.duration, args.rounds) == (10, 3) else "custom"


def write_outputs(bench, env, summary, args):
    rows = table_rows(summary, args)
    tgt = targets(summary, args)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    mode = run_mode(args)

    # terminal
    print()
    print(f"sandbox-gateway benchmark ({mode}: {args.duration} s × {args.rounds} rounds per server, wrk -t1 "
          f"-c{args.connections}) on {env['cores']} cores, {env['date']}")
    print()
    print(text_table(rows, HEADERS))
    print()
    trows = [[t, m, "—" if ok is None else "met" if ok else "NOT met"] for t, m, ok in tgt]
    if trows:
        print(text_table(trows, ["target", "measured", ""]))
        print()
    lrows = limit_rows(summary)
    if lrows:
        print(text_table(lrows, LIMIT_HEADERS))
        print()
    compare = f"; --compare build {env['compare']}" if env.get("compare") else ""
    print(f"versions: gateway {env['gateway']}{compare}; nginx {env['nginx']}; {env['haproxy']}; {env['redis']}; "
          f"{env['wrk']}")

    # markdown
    md = []
    md.append(f"# sandbox-gateway benchmark, {env['date']} ({mode})\n")
    md.append(f"`{args.command}` on {env['cores']} cores ({env['cpu']}, {env['memory']}, "
              f"Linux {env['kernel']}). Each figure is the median of {args.rounds} runs of {args.duration} s per server, "
              f"the servers alternating within each round; `× nginx` and `× direct` divide it by nginx's and by the "
              f"direct backend's figure in the same scenario (for latencies lower is better, but the ratios are of the "
              f"figure only).\n")
    md.append(md_table(rows, HEADERS, right={2, 3, 4, 5, 6, 7}))
    md.append("")
    md.append("## Targets\n")
    md.append(md_table([[t, m, "—" if ok is None else "met" if ok else "**not met**"] for t, m, ok in tgt], ["target", "measured", ""]))
    md.append("")
    if lrows:
        md.append("## Who was the limit\n")
        md.append("The proxy's own CPU time over each run (its processes' user + system time from /proc: % of one core, "
                  "and per request; a 1 MiB request is 1 MiB), and how busy the proxy's core and the load core "
                  "(wrk, the backend and Redis) were (/proc/stat, interrupts included), medians over the rounds. A "
                  "proxy below 100% had time to spare: its figure was bounded by the load core (or the machine's "
                  "other work), and its CPU time per request compares it with its peers better than `× nginx` does.\n")
        md.append(md_table(lrows, LIMIT_HEADERS, right={2, 3, 4, 5, 6}))
        md.append("")
    md.append("![bar chart](latest.png)\n")
    md.append("## How it was measured\n")
    md.append(f"- **Load**: wrk, one thread, {args.connections} connections, `--timeout 5s`; latency percentiles are "
              "wrk's (from request written to response read). A 1 s warm-up of every server precedes the first round, "
              "uncounted.")
    md.append(f"- **Pinning** ({env['cores']} cores): {pinning_text(bench)}.")
    md.append("- **Backend**: nginx, one worker, `access_log off`, answering `/` with a fixed "
              f"{len(SMALL_BODY)}-byte text body (`return 200`) and `/1m` with a 1 MiB file (sendfile); "
              "`keepalive_requests` unlimited in practice.")
    md.append("- **sandbox-gateway**: `workers 1`, `access_log off`, `log_level warn`, Redis on loopback, "
              "`drain_delay 0` and `drain_timeout 1s` (so that it stops at once), every other directive at its "
              "default (route cache 2 s, upstream idle 4 s). Requests carry "
              f"`Host: <port>-{SINGLE_ID}.{DOMAIN}`, routed through the catalog record `sandbox:catalog:{SINGLE_ID}`.")
    lookups = ""
    rate = summary.get("churn", {}).get("gateway", {}).get("redis_lookups_per_s")
    if rate is not None:
        lookups = (f" During the gateway's churn runs Redis answered {rate:,.0f} catalog lookups (HMGET) a second "
                   "(median), the rest being served from the route cache.")
    buffering = ("`proxy_buffering off` (streaming like the gateway; not nginx's default)" if args.nginx_no_buffering
                 else "`proxy_buffering on` (nginx's default, and its faster choice for 1 MiB bodies)")
    md.append("- **nginx peer**: one worker, `proxy_pass` to an upstream with `keepalive 1024`, `proxy_http_version 1.1`, "
              "`proxy_set_header Connection \"\"`, `Host` set to the client's Host, `X-Forwarded-For`/`-Proto` set (as "
              f"the gateway does), {buffering}, `access_log off`, "
              "keep-alive requests unlimited in practice.")
    md.append("- **HAProxy peer**: `nbthread 1`, `mode http`, `http-reuse always`, `option forwardfor`, "
              "`X-Forwarded-Proto` set, no logging.")
    md.append("- **TCP relay (the floor, not a peer)**: HAProxy with `nbthread 1` in `mode tcp`: each client "
              "connection paired with one backend connection, no HTTP parsed, nothing routed or added; the same four "
              "system calls a keep-alive request as the gateway. What a request costs any proxy on this machine; in the "
              "keep-alive and 1,000-client scenarios only.")
    md.append("- **Same request to all**: the same Host header goes to every server (the backend and the peers ignore "
              "it for routing); every server is checked first to return the same bytes for `/` and `/1m`, over TLS too.")
    md.append("- **new connection per request**: wrk with `Connection: close`; the proxies keep their upstream "
              "connections alive.")
    md.append(f"- **route churn**: `bench/wrk/churn.lua` sends each request to one of {args.churn_ids:,} sandboxes "
              f"(`c00000`…), chosen at random, each a catalog record pointing at the backend; a 1 s warm-up fills the "
              "route cache first, and each gateway run follows a 2 s warm-up with its script (sandbox connections "
              "that expired while the other servers ran are dialled then, not measured). The peers have no routes, "
              "so only the gateway runs it, alternating with the same script sending every request to one sandbox "
              "(`sandbox-gateway, 1 ID`: the single-route figure the target compares with, with the same Lua cost in "
              "wrk), with the script against the backend (`direct`, which shows what wrk can send with it) and with "
              "the gateway while Redis publishes no keyspace events (`notifications off`: set with CONFIG SET and "
              "the gateway's subscription killed, so that it finds out at once; routes then live "
              "`route_cache_ttl`, 2 s). Its floor, `bench/churn_floor.c`: a TCP relay that sends each request over "
              f"one of its idle backend connections picked at random, as the gateway's pool does with one connection "
              f"per sandbox, with {args.connections} of them (`1 ID`) and with {args.churn_ids:,} (each used a few "
              "times a second, so cold, as the gateway's sandbox connections are); no HTTP parsed, plain epoll, `recv` "
              "and `send`. What churn costs any proxy that pools per sandbox on this machine; each relay runs only "
              "for its own runs." + lookups)
    md.append(f"- **idle WebSockets**: each proxy is restarted, warmed with a few requests and 8 tunnels, then "
              f"{args.ws_connections:,} connections are upgraded through it (101 from a Python backend that then "
              "idles) and held; the figure is the growth of its RSS (VmRSS of the process and its children, from "
              f"/proc) divided by the connections held. Memory a proxy allocates at start for its connection tables "
              "(nginx's `worker_connections`) is not counted.")
    if any(s in summary for s in TLS_SCENARIOS):
        notes = bench.tls_notes

        def negotiated(kind):
            return "; ".join(f"{LABELS[s]}: {notes.get(kind, {}).get(s, '?')}" for s in TLS_PEERS)
        md.append("- **TLS**: the gateway (`listen … tls`, `tls_certificate`, `tls_certificate_key`, "
                  "`tls_ticket_key_file`) and nginx (a second `server` in the same configuration, `listen … ssl`, "
                  "proxying as above) terminate TLS with the same certificate, an ECDSA P-256 one for "
                  f"`*.{DOMAIN}` made by `openssl req` at start, and the same ticket key (`openssl rand 80`); nginx "
                  "is set to the gateway's TLS settings: TLS 1.2 and 1.3, its ECDHE+AEAD cipher list with server "
                  "preference, curves X25519:P-256:P-384, `ssl_session_cache off` (the gateway keeps no session "
                  "cache either), tickets on. Both are checked first (`curl --cacert`) to return the same bytes "
                  "for `/` and `/1m` as over plain HTTP. **HAProxy is not measured over TLS**, and there is no "
                  "direct figure (the backend speaks plain HTTP), hence no `× direct`. Upstream, both proxies "
                  "speak plain HTTP with keep-alive, as in the other scenarios.")
        if "tls-keepalive" in summary:
            md.append(f"- **{TITLES['tls-keepalive']}**: wrk as in the plain keep-alive scenario (same Host, "
                      "`report.lua`), to `https://127.0.0.1:<port>/`; one handshake per connection, then requests. "
                      f"Negotiated (openssl s_client with wrk's defaults): {negotiated('keepalive')}.")
        if "tls-handshake" in summary:
            gw = bench.runs.get("tls-handshake", {}).get("gateway", [])
            counted = [r for r in gw if r.get("tls_handshakes") is not None]
            check = ""
            if counted:
                made = sum(r["tls_handshakes"] for r in counted)
                resumed = sum(r["tls_resumed"] for r in counted)
                requests = sum(r["requests"] for r in counted)
                check = (f" The gateway's own counters (`sgw_tls_handshakes_total`, `sgw_tls_sessions_resumed_total`) "
                         f"over its runs: {made:,} handshakes for {requests:,} requests, {resumed:,} resumed.")
            md.append(f"- **{TITLES['tls-handshake']}**: the same with `Connection: close`, so every request "
                      "opens a connection and makes a handshake (the figure is requests/s = handshakes/s). wrk keeps "
                      "each connection's TLS session across reconnects and would resume it; it runs with "
                      "`OPENSSL_CONF` pointing at a file setting `MaxProtocol = TLSv1.2` and "
                      "`Options = -SessionTicket`, and with neither tickets nor a server session cache every "
                      f"handshake is a full one. Negotiated: {negotiated('handshake')}." + check)
    md.append("- **errors**: wrk's connect/read/write/timeout errors and responses with a status of 400 or more, summed "
              "over the rounds (for WebSockets, connections not upgraded); "
              "a target is met only when the gateway's runs had none.")
    md.append("")
    md.append("## Versions\n")
    for key in ["gateway", "compare", "nginx", "haproxy", "redis", "wrk", "gnuplot", "python"]:
        if env.get(key):
            md.append(f"- {key}: {env[key]}")
    md.append("")
    md.append("## Every run\n")
    raw_rows = []
    for scenario in SCENARIOS:
        for server in SERVERS:
            for run in bench.runs.get(scenario, {}).get(server, []):
                key, _ = METRIC[scenario]
                raw_rows.append([TITLES[scenario], LABELS[server], run["round"], figure_text(scenario, run.get(key)),
                                 fmt_ms(run.get("p50_us")), fmt_ms(run.get("p99_us")), run.get("errors", 0)])
    md.append(md_table(raw_rows, ["scenario", "server", "round", "figure", "p50", "p99", "errors"], right={2, 3, 4, 5, 6}))
    md.append("")
    text = "\n".join(md)
    (results / "latest.md").write_text(text)
    (results / "latest.json").write_text(json.dumps(
        {"mode": mode, "args": vars(args), "environment": env, "summary": summary, "runs": bench.runs,
         "tls_negotiated": bench.tls_notes, "tls_servers": TLS_PEERS,
         "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in tgt]}, indent=1, default=str) + "\n")
    png = plot(bench, env, summary, args, results / "latest.png")
    written = [results / "latest.md", results / "latest.json"] + ([png] if png else [])
    if args.save:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + f"-{mode}"
        dated_md = results / f"{stamp}.md"
        dated_md.write_text(text.replace("](latest.png)", f"]({stamp}.png)"))
        written.append(dated_md)
        if png:
            shutil.copyfile(png, results / f"{stamp}.png")
            written.append(results / f"{stamp}.png")
    print("wrote " + ", ".join(str(p.relative_to(REPO)) for p in written))


COLORS = {"direct": "#9e9e9e", "gateway_single": "#fdae6b", "gateway": "#e6550d", "gateway_h1": "#fdd0a2",
          "gateway_unnotified": "#a63603",
          "gateway_quiet": "#fd8d3c", "gateway_compare": "#756bb1",
          "nginx": "#31a354", "haproxy": "#3182bd", "tcp_relay": "#bdbdbd", "floor_single": "#d9d9d9",
          "floor_churn": "#969696"}


def plot_label(scenario, server, args):
    if scenario == "churn" and server in ("gateway", "gateway_single", "gateway_unnotified", "floor_single",
                                          "floor_churn"):
        return {"gateway_single": "gateway, 1 ID", "gateway_unnotified": "gateway, no notifications",
                "floor_single": "TCP relay, 1 ID", "floor_churn": f"TCP relay, {args.churn_ids:,} IDs"}.get(
            server, f"gateway, {args.churn_ids:,} IDs")
    return {"direct": "backend"}.get(server, LABELS[server])


def plot(bench, env, summary, args, out):
    if not shutil.which("gnuplot"):
        print("bench: gnuplot not found, no chart", file=sys.stderr)
        return None
    pdir = bench.tmp / "plot"
    pdir.mkdir(exist_ok=True)
    panels = []
    for scenario in SCENARIOS:
        # resume: one server and a latency, in the tables only
        if scenario not in summary or scenario == "resume":
            continue
        key, unit = METRIC[scenario]
        lines = []
        for index, server in enumerate(SERVERS):
            value = summary[scenario].get(server, {}).get(key)
            if value is not None:
                label = f"{value:.1f}" if scenario == "websocket" else f"{value:,.0f}"
                lines.append(f'"{plot_label(scenario, server, args)}" {value:.3f} {index + 1} "{label}"')
        title = {"keepalive": "small responses, keep-alive (req/s, higher is better)",
                 "close": "new connection per request (req/s, higher is better)",
                 "large": "1 MiB responses (MiB/s, higher is better)",
                 "churn": f"route churn, {args.churn_ids:,} IDs (req/s, higher is better)",
                 "websocket": f"{args.ws_connections:,} idle WebSockets (RSS KiB/conn, lower is better)",
                 "tls-keepalive": "TLS 1.3, small responses, keep-alive (req/s, higher is better)",
                 "tls-handshake": "full TLS 1.2 handshakes, no resumption (handshakes/s, higher is better)",
                 "activity": "keep-alive, activity on vs off (req/s, higher is better)",
                 "clients-1000": "1,000 keep-alive clients, one sandbox (req/s, higher is better)",
                 "grpc-unary": "gRPC unary over h2c, 50 × 10 streams (req/s, higher is better)",
                 "grpc-stream": "1 MiB over h2c to the sandbox (MiB/s, higher is better)",
                 "idle-10k": f"50 busy clients beside {args.idle_connections:,} idle (req/s, higher is better)",
                 "h2-tls": "h2 over TLS, 50 × 10 streams (req/s, higher is better)",
                 "h2-sdk": "h2 over TLS, 1 connection × 100 streams (req/s, higher is better)",
                 "h2-large": "1 MiB over TLS, h2 vs HTTP/1.1 (MiB/s, higher is better)"}[scenario]
        target = None
        s = summary[scenario]
        if scenario == "keepalive" and s.get("nginx", {}).get("rps"):
            target = (1.2 * s["nginx"]["rps"], "target 1.2 × nginx")
        elif scenario == "close" and s.get("nginx", {}).get("rps"):
            target = (1.1 * s["nginx"]["rps"], "target 1.1 × nginx")
        elif scenario == "large" and s.get("direct", {}).get("mibs"):
            target = (0.9 * s["direct"]["mibs"], "target 0.9 × direct")
        elif scenario == "churn" and s.get("gateway_single", {}).get("rps"):
            target = (0.9 * s["gateway_single"]["rps"], "target 0.9 × the gateway with 1 ID")
        elif scenario == "websocket":
            target = (8.0, "target 8 KiB")
        elif scenario == "activity" and s.get("gateway_quiet", {}).get("rps"):
            target = (0.97 * s["gateway_quiet"]["rps"], "target 0.97 × activity off")
        elif scenario == "clients-1000" and s.get("nginx", {}).get("rps"):
            target = (1.2 * s["nginx"]["rps"], "target 1.2 × nginx")
        elif scenario in ("h2-tls", "h2-sdk") and s.get("nginx", {}).get("rps"):
            target = (1.2 * s["nginx"]["rps"], "target 1.2 × nginx")
        elif scenario == "h2-large" and s.get("gateway_h1", {}).get("mibs"):
            target = (0.9 * s["gateway_h1"]["mibs"], "target 0.9 × the gateway over HTTP/1.1")
        (pdir / f"{scenario}.dat").write_text("\n".join(lines) + "\n")
        top = max([summary[scenario].get(server, {}).get(key) or 0 for server in SERVERS] + [target[0] if target else 0])
        panels.append((scenario, title, target, len(lines), top))
    if "keepalive" in summary:
        lines = []
        for index, server in enumerate(SERVERS):
            value = summary["keepalive"].get(server, {}).get("p99_us")
            if value is not None:
                lines.append(f'"{plot_label("keepalive", server, args)}" {value / 1000:.3f} {index + 1} '
                             f'"{value / 1000:.2f}"')
        (pdir / "p99.dat").write_text("\n".join(lines) + "\n")
        top = max((summary["keepalive"].get(server, {}).get("p99_us") or 0) / 1000 for server in SERVERS)
        nginx_p99 = summary["keepalive"].get("nginx", {}).get("p99_us")
        target = (nginx_p99 / 1000, "target: gateway p99 ≤ nginx's") if nginx_p99 else None
        # before the TLS panels, so that these (gateway and nginx only) share the last row
        panels.insert(len([p for p in panels if p[0] not in TLS_SCENARIOS]), ("p99", "small responses, keep-alive: p99 latency (ms, lower is better)", target, len(lines), top))
    mode = run_mode(args)
    script = [
        f'set terminal pngcairo size 1500,{430 * ((len(panels) + 2) // 3) + 60} font "DejaVu Sans,10" noenhanced',
        f'set output "{out}"',
        "set style fill solid 0.9 border -1",
        "set boxwidth 0.6",
        "set grid ytics lc rgb '#dddddd'",
        "unset key",
        "set yrange [0:*]",
    ]
    for index, server in enumerate(SERVERS):
        script.append(f"set linetype {index + 1} lc rgb '{COLORS[server]}'")
    rows = (len(panels) + 2) // 3
    script.append(f'set multiplot layout {rows},3 title "sandbox-gateway vs nginx vs HAProxy, one worker each — '
                  f'{env["date"]}, {env["cores"]} cores, {mode} ({args.duration} s x {args.rounds} rounds)" '
                  'font "DejaVu Sans,13"')
    for scenario, title, target, count, top in panels:
        notes = {"tls-keepalive": "ECDSA P-256 certificate, same for both; HAProxy not measured",
                 "tls-handshake": "ECDHE-ECDSA, P-256 certificate, a new connection per request"}
        subtitle = f"\\n{target[1]} (red dashes)" if target else "\\n" + notes.get(scenario, " ")
        script.append(f'set title "{title}{subtitle}"')
        script.append("unset arrow; unset label")
        script.append(f"set xrange [-0.6:{max(count, 1) - 0.4}]")
        if target:
            value = target[0]
            script.append(f"set arrow from graph 0, first {value:.3f} to graph 1, first {value:.3f} nohead "
                          "dt 2 lw 2 lc rgb '#cc0000' front")
        script.append(f"set yrange [0:{top * 1.12 if top > 0 else 1:.3f}]")
        script.append(f"set format y \"{'%.1f' if scenario in ('websocket', 'p99') else '%.0f'}\"")
        data = pdir / f"{scenario}.dat"
        script.append(f'plot "{data}" using 0:2:3:xtic(1) with boxes lc variable, '
                      '"" using 0:2:4 with labels offset 0,0.7 font ",10"')
    script.append("unset multiplot")
    (pdir / "chart.gp").write_text("\n".join(script) + "\n")
    proc = subprocess.run(["gnuplot", str(pdir / "chart.gp")], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not out.exists():
        print(f"bench: gnuplot failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return out


# ----------------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run", description=(
        "Measures sandbox-gateway beside nginx and HAProxy on this machine: prints a table and writes "
        "bench/results/latest.{md,json,png}."))
    parser.add_argument("--quick", action="store_true", help="about 2.5 minutes: 3 s per run, 2 rounds")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 10, --quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds, each running every server once (default 3, --quick 2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--churn-ids", type=int, default=10000, help="sandbox IDs in route churn (default 10000)")
    parser.add_argument("--ws-connections", type=int, default=5000, help="idle WebSockets held (default 5000)")
    parser.add_argument("--idle-connections", type=int, default=10000,
                        help="idle keep-alive clients beside the busy ones in idle-10k (default 10000)")
    parser.add_argument("--resume-requests", type=int, default=1000,
                        help="requests held for a paused sandbox in the resume scenario (default 1000)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios among {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--nginx-no-buffering", action="store_true",
                        help="run the nginx peer with proxy_buffering off (streaming like the gateway) instead of "
                             "on, nginx's default")
    parser.add_argument("--save", action="store_true",
                        help="also keep this run as bench/results/<date>.md and .png, to commit")
    parser.add_argument("--gateway", default=str(REPO / "build" / "sandbox-gateway"), help="the gateway binary")
    parser.add_argument("--compare", metavar="BINARY",
                        help="another gateway build, run right after the first in " + ", ".join(COMPARED) +
                             " (same configuration, same rounds): a change measured against the machine's noise")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (configs, logs)")
    parser.add_argument("--serve", action="store_true",
                        help="start everything as for a run, print the ports and pids, measure nothing and wait "
                             "for Ctrl-C (to profile by hand)")
    args = parser.parse_args(argv)
    args.command = " ".join(["bench/run"] + list(argv))
    args.duration = args.duration or (3 if args.quick else 10)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(TITLES)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    bench = Bench(args)
    for binary in (bench.gateway_bin, bench.compare_bin):
        if binary is not None and not binary.exists():
            sys.exit(f"bench: {binary} not found (make build)")
    needed = bench.args.ws_connections * 2 + 200
    if "websocket" in args.only and bench.nofile < needed:
        print(f"bench: open-files limit {bench.nofile} is below the {needed} the WebSocket scenario needs; "
              f"holding {(bench.nofile - 200) // 2} connections instead", file=sys.stderr)
        args.ws_connections = (bench.nofile - 200) // 2
    try:
        print(f"bench: temporary folder {bench.tmp}; {pinning_text(bench)}", file=sys.stderr)
        bench.start_all()
        if args.serve:
            bench.serve()
            return 0
        env = environment(bench)
        bench.run()
        write_outputs(bench, env, bench.summary(), args)
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping what it started", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nbench: {exc}", file=sys.stderr)
        return 1
    finally:
        Service.stop_all()
        if args.keep_tmp:
            print(f"bench: kept {bench.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
