#!/usr/bin/python3
"""Reference control plane for auto-resume (DESIGN "Auto-resume"), for `make run` and the tests.

It reads the gateway's resume requests from the stream (XADD <stream> * sandbox_id <id>) as a
consumer group, so several resumers share the work and an entry a crashed resumer took is read
again when it restarts. "Resuming" the demo sandbox means starting demo/app.py (if nothing
listens on its port), waiting until it accepts, and then writing the record the way a real
control plane does once its VM runs:

    HSET <prefix><id> state running addr 127.0.0.1

Every entry is acknowledged (XACK) once handled; an ID it cannot resume is logged and left paused
(the gateway's held requests then end at resume_timeout). The demo app runs as this process's
child and its PID is written to --pid-file, so that `kill $(cat .run/demo-app.pid)` stops it
like a pause would.

Usage: resumer.py --redis-url redis://127.0.0.1:6379/0 [--stream sandbox:resume]
                  [--prefix sandbox:catalog:] [--sandbox demo] [--app-port 3000] [--pid-file F]
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

GROUP = "resumers"


class Redis:
    """A minimal RESP client over one connection (standard library only)."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(parts.path)
            database = int(parse_qs(parts.query).get("db", ["0"])[0])
        elif parts.scheme == "redis":
            self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
            database = int(parts.path.strip("/") or 0)
        else:
            raise ValueError(f"not a redis:// or unix:// URL: {url}")
        self.reader = self.sock.makefile("rb")
        if database:
            self.command("SELECT", database)

    def command(self, *args):
        payload = b"*%d\r\n" % len(args)
        for argument in args:
            data = argument if isinstance(argument, bytes) else str(argument).encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(payload)
        return self._reply()

    def _reply(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self.reader.read(length + 2)[:-2].decode()
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise RuntimeError(f"unexpected reply {line!r}")


def log(message):
    sys.stderr.write(f"resumer: {message}\n")
    sys.stderr.flush()


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class DemoSandbox:
    """The demo app as a sandbox that can be stopped and started again."""

    def __init__(self, port, pid_file):
        self.port = port
        self.pid_file = pid_file
        self.process = None

    def start(self):
        if accepts(self.port):
            return True
        app = Path(__file__).with_name("app.py")
        self.process = subprocess.Popen([sys.executable, str(app), "--host", "127.0.0.1",
                                         "--port", str(self.port)])
        if self.pid_file:
            Path(self.pid_file).write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if accepts(self.port):
                return True
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        log(f"the demo app did not start on port {self.port}")
        return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--stream", default="sandbox:resume")
    parser.add_argument("--prefix", default="sandbox:catalog:")
    parser.add_argument("--sandbox", default="demo", help="the sandbox ID this resumer can wake")
    parser.add_argument("--app-port", type=int, default=3000)
    parser.add_argument("--pid-file", default=None)
    parser.add_argument("--start-app", action="store_true", help="start the demo app at once")
    arguments = parser.parse_args()

    demo = DemoSandbox(arguments.app_port, arguments.pid_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    redis = Redis(arguments.redis_url)
    try:
        redis.command("XGROUP", "CREATE", arguments.stream, GROUP, "$", "MKSTREAM")
    except RuntimeError as error:
        if "BUSYGROUP" not in str(error):
            raise
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    if arguments.start_app:
        demo.start()
    log(f"reading {arguments.stream} as group {GROUP}, consumer {consumer}")
    # First what this consumer name was given and never acknowledged, then new entries.
    cursor = "0"
    try:
        while True:
            reply = redis.command("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", 100,
                                  "BLOCK", 5000, "STREAMS", arguments.stream, cursor)
            batch = reply[0][1] if reply else []
            if cursor == "0" and not batch:
                cursor = ">"
                continue
            for entry_id, fields in batch:
                sandbox_id = dict(zip(fields[::2], fields[1::2])).get("sandbox_id")
                if sandbox_id == arguments.sandbox and demo.start():
                    redis.command("HSET", arguments.prefix + sandbox_id, "state", "running",
                                  "addr", "127.0.0.1")
                    log(f"resumed {sandbox_id} ({entry_id})")
                else:
                    log(f"cannot resume {sandbox_id!r} ({entry_id}); it stays paused")
                redis.command("XACK", arguments.stream, GROUP, entry_id)
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
