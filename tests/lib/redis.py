"""A private redis-server on a loopback port, with a minimal RESP client for the catalog's records."""
import re
import socket
import subprocess
from pathlib import Path

from lib.util import free_port, wait_for


class RedisError(Exception):
    pass


class RedisServer:
    """A private redis-server on a fixed loopback port that can be stopped and started again."""

    def __init__(self, workdir: Path, notify="Kgh", port=None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.notify = notify
        self.port = port or free_port()
        self.process = None
        self.log = self.workdir / "redis.log"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self):
        """The redis-server command line."""
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--notify-keyspace-events", self.notify, "--daemonize", "no",
                "--dir", str(self.workdir), "--logfile", str(self.log)]

    def answers(self):
        """True once the server takes commands."""
        return self.command("PING") == "PONG"

    def start(self, timeout=10):
        assert self.process is None, f"redis-server on port {self.port} already running"
        self.process = subprocess.Popen(
            self.arguments(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def up():
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server on port {self.port} exited "
                                     f"({self.process.returncode}): "
                                     f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                return self.answers()
            except OSError:
                return False
        wait_for(up, timeout, 0.02, f"redis-server on port {self.port}")

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    # A minimal RESP client: one connection per command, so it survives restarts.
    def command(self, *args, timeout=5):
        return self.pipeline([args], timeout)[0]

    def pipeline(self, commands, timeout=10):
        """Each command of commands (tuples) on one connection, sent together: their replies in order."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as connection:
            payload = b""
            for args in commands:
                payload += b"*%d\r\n" % len(args)
                for argument in args:
                    data = argument if isinstance(argument, bytes) else str(argument).encode()
                    payload += b"$%d\r\n%s\r\n" % (len(data), data)
            connection.sendall(payload)
            reader = connection.makefile("rb")
            return [self._read_reply(reader) for _ in commands]

    def _read_reply(self, reader):
        line = reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = reader.read(length + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read_reply(reader) for _ in range(count)]
        raise RedisError(f"unexpected reply {line!r}")

    def key(self, sandbox_id, prefix="sandbox:catalog:"):
        return prefix + sandbox_id

    def put(self, sandbox_id, addr="127.0.0.1", prefix="sandbox:catalog:", **fields):
        """Replaces the record of sandbox_id in one transaction (fields whose value is None are left out)."""
        fields = {"addr": addr, "execution_id": f"{sandbox_id}-1", **fields}
        values = []
        for name, value in fields.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            values += [name, str(value)]
        # MULTI needs one connection: the whole transaction is sent in one go.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            commands = [("MULTI",), ("DEL", self.key(sandbox_id, prefix)),
                        ("HSET", self.key(sandbox_id, prefix), *values), ("EXEC",)]
            payload = b""
            for command in commands:
                payload += b"*%d\r\n" % len(command)
                for argument in command:
                    data = str(argument).encode()
                    payload += b"$%d\r\n%s\r\n" % (len(data), data)
            connection.sendall(payload)
            reader = connection.makefile("rb")
            replies = [self._read_reply(reader) for _ in commands]
        assert replies[-1] is not None, f"transaction failed: {replies}"

    def hset(self, sandbox_id, prefix="sandbox:catalog:", **fields):
        values = []
        for name, value in fields.items():
            values += [name, str(value).lower() if isinstance(value, bool) else str(value)]
        return self.command("HSET", self.key(sandbox_id, prefix), *values)

    def delete(self, sandbox_id, prefix="sandbox:catalog:"):
        return self.command("DEL", self.key(sandbox_id, prefix))

    def command_calls(self, name):
        """How many times `name` ran, from INFO commandstats (cmdstat_<name>:calls=N)."""
        info = self.command("INFO", "commandstats")
        match = re.search(rf"^cmdstat_{name.lower()}:calls=(\d+)", info, re.MULTILINE)
        return int(match.group(1)) if match else 0

    def lookup_calls(self):
        """Catalog lookups the gateway sent (it reads a record's fields with HMGET)."""
        return self.command_calls("hmget")

    def subscribed_clients(self):
        """Clients with at least one channel or pattern subscription."""
        count = 0
        for line in self.command("CLIENT", "LIST").splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if int(fields.get("sub", 0)) > 0 or int(fields.get("psub", 0)) > 0:
                count += 1
        return count
