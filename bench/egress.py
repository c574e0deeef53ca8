#!/usr/bin/env python3
"""bench/egress: what a domain entry of allow_out costs a sandbox (issue 19's benchmark).

In network namespaces made for the run (as tests/integration/test_egress.py makes them: a
"sandbox" joined to a "world" by a veth pair), with sandbox-netpolicy running in a cgroup of its
own and resolving through a small DNS server of this script, it measures from the sandbox:

- connection setup: connect, send a TLS ClientHello, receive the server's first byte; directly
  to an address allow_out allows, and to a denied address naming an allowed host (SNI), so that
  the agent intercepts, matches, resolves (cached after the first) and dials;
- bulk: 512 MiB sent over one connection, directly and through the relay.

It prints a table with the targets (setup p99 adds under 1 ms; bulk >= 0.8 x direct) and exits
0. Needs root, `ip` and nft; run it as `bench/egress` (builds build/ first)."""
import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "integration")]

import test_egress as egress  # noqa: E402  (the namespaces, the DNS server, a ClientHello)
from lib.redis import RedisServer  # noqa: E402

PID = os.getpid()
SANDBOX_NS = f"sgw-eb-s{PID}"
WORLD_NS = f"sgw-eb-w{PID}"
ALLOWED = "192.0.2.10"   # pypi.org, and allowed by address for the direct runs
DENIED = "203.0.113.20"  # dialled by the sandbox while naming pypi.org
PORT = 443
MiB = 1 << 20


def make_network():
    for name in (SANDBOX_NS, WORLD_NS):
        egress.remove_namespace(name)
        egress.ip("netns", "add", name)
        egress.ip("link", "set", "lo", "up", namespace=name)
    egress.ip("link", "add", "sw0", "netns", SANDBOX_NS, "type", "veth", "peer", "name", "ws0",
              "netns", WORLD_NS)
    egress.ip("addr", "add", "203.0.113.249/30", "dev", "ws0", namespace=WORLD_NS)
    egress.ip("addr", "add", "203.0.113.250/30", "dev", "sw0", namespace=SANDBOX_NS)
    for name, device in ((WORLD_NS, "ws0"), (SANDBOX_NS, "sw0")):
        egress.ip("link", "set", device, "up", namespace=name)
    for address in (ALLOWED, DENIED):
        egress.ip("addr", "add", address + "/32", "dev", "lo", namespace=WORLD_NS)
    egress.ip("route", "add", "default", "via", "203.0.113.249", namespace=SANDBOX_NS)


class Server:
    """The world's port 443: answers the first bytes with one byte, then reads to the end and
    answers b"done" (bulk)."""

    def __init__(self):
        with egress.inside(WORLD_NS):
            self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("0.0.0.0", PORT))
        self.listener.listen(1024)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    @staticmethod
    def _serve(connection):
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)
            connection.sendall(b"!")
            buffer = bytearray(4 * MiB)
            while connection.recv_into(buffer):
                pass


def setup_times(address, hello, count):
    """Microseconds from connect to the server's first byte, count times."""
    times = []
    for _ in range(count):
        with egress.inside(SANDBOX_NS):
            client = socket.socket()
        with client:
            client.settimeout(5)
            started = time.perf_counter()
            client.connect((address, PORT))
            client.sendall(hello)
            if client.recv(1) != b"!":
                raise RuntimeError(f"no answer through {address}")
            times.append((time.perf_counter() - started) * 1e6)
    return times


def bulk(address, hello, size):
    """MiB/s of size bytes sent after the hello (the server's FIN-side read measures the end)."""
    with egress.inside(SANDBOX_NS):
        client = socket.socket()
    with client:
        client.settimeout(30)
        client.connect((address, PORT))
        client.sendall(hello)
        client.recv(1)
        chunk = b"x" * (4 * MiB)
        started = time.perf_counter()
        for _ in range(size // len(chunk)):
            client.sendall(chunk)
        client.shutdown(socket.SHUT_WR)
        client.recv(1)  # "" once the server read everything and closed
        return size / MiB / (time.perf_counter() - started)


def cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--bulk-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/egress: needs root (network namespaces, nftables)")
    root = egress.cgroup2_root()
    if root is None:
        sys.exit("bench/egress: needs a cgroup2 file system under /sys/fs/cgroup")
    binary = REPO / "build" / "sandbox-netpolicy"
    workdir = Path(tempfile.mkdtemp(prefix="sgw-bench-egress-"))
    cgroup = root / f"sgw-bench-egress-{PID}"
    cgroup.mkdir(exist_ok=True)
    redis = dns = agent = None
    try:
        make_network()
        server = Server()
        dns = egress.DnsServer({"pypi.org": [ALLOWED]})
        redis = RedisServer(workdir / "redis", notify="Kghs")
        redis.start()
        redis.put("bench", addr="203.0.113.250", netns=SANDBOX_NS, deny_out="all",
                  allow_out=f"pypi.org,{ALLOWED}")
        redis.command("SADD", "sandbox:node:bench", "bench")
        config = workdir / "egress.conf"
        config.write_text(f"node_id bench\nredis_url {redis.url}\ndns_server {dns.address}\n"
                          "log_level warn\n")
        log = open(workdir / "netpolicy.log", "wb")
        agent = subprocess.Popen([str(binary), "-c", str(config)], stdout=log, stderr=log,
                                 preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(
                                     str(os.getpid())))
        hello = egress.client_hello("pypi.org")
        egress.wait_for(lambda: "redirect" in (egress.egress_table(SANDBOX_NS) or ""), 10, 0.05,
                        "the agent to apply the policy")
        setup_times(DENIED, hello, 10)  # resolves pypi.org once: the cache serves the rest
        results = {"direct": {"setup": [], "bulk": []}, "relayed": {"setup": [], "bulk": []}}
        agent_cpu = 0.0
        for _ in range(args.rounds):
            for kind, address in (("direct", ALLOWED), ("relayed", DENIED)):
                results[kind]["setup"] += setup_times(address, hello, args.connections)
                before = cpu_seconds(agent.pid)
                results[kind]["bulk"].append(bulk(address, hello, args.bulk_mib * MiB))
                if kind == "relayed":
                    agent_cpu += cpu_seconds(agent.pid) - before
        rows = []
        for kind in ("direct", "relayed"):
            setup = results[kind]["setup"]
            rows.append((kind, statistics.median(setup), percentile(setup, 0.99),
                         statistics.median(results[kind]["bulk"])))
        print(f"\nsandbox-netpolicy: a domain entry's cost, from the sandbox namespace "
              f"({args.rounds} rounds of {args.connections} connections and {args.bulk_mib} MiB)\n")
        print(f"{'path':<40} {'setup p50':>10} {'setup p99':>10} {'bulk':>12}")
        for kind, p50, p99, mibs in rows:
            label = ("direct, allowed by address" if kind == "direct"
                     else "relayed: denied address, SNI pypi.org")
            print(f"{label:<40} {p50:>7.0f} µs {p99:>7.0f} µs {mibs:>7.0f} MiB/s")
        added = rows[1][2] - rows[0][2]
        ratio = rows[1][3] / rows[0][3]
        print(f"\n{'target':<48} {'measured':<24}")
        print(f"{'setup through the relay adds < 1 ms (p99)':<48} {added / 1000:>6.2f} ms"
              f"{'':<11} {'met' if added < 1000 else 'NOT met'}")
        print(f"{'bulk through the relay >= 0.8 x direct':<48} {ratio:>6.2f} x"
              f"{'':<12} {'met' if ratio >= 0.8 else 'NOT met'}")
        relayed_gib = args.rounds * args.bulk_mib / 1024
        print(f"\nthe agent's CPU while relaying: {agent_cpu / relayed_gib:.2f} s per GiB "
              f"({relayed_gib / agent_cpu if agent_cpu else float('inf'):.1f} GiB/s of one core); "
              f"the Python client and server share the machine's {os.cpu_count()} cores with it, "
              f"so where they saturate the cores, the bulk ratio shows the machine, not the relay")
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        if dns is not None:
            dns.stop()
        if redis is not None:
            redis.stop()
        for name in (SANDBOX_NS, WORLD_NS):
            egress.remove_namespace(name)
        with contextlib.suppress(OSError):
            cgroup.rmdir()


if __name__ == "__main__":
    main()
