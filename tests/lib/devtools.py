"""Headless Chromium driven over its DevTools protocol (tests/lib/websocket.py): a page opened at a
URL, JavaScript evaluated in it, so a test can wait for what a page's script does."""
import json
import subprocess
from pathlib import Path

from lib.gateway import DOMAIN
from lib.http import HttpConnection
from lib.util import wait_for
from lib.websocket import WebSocket


class DevTools:
    """Headless Chromium driven over its DevTools protocol: a page opened at url, JavaScript
    evaluated in it."""

    def __init__(self, chromium, profile, url):
        self.process = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--ignore-certificate-errors",
             f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1",
             "--remote-debugging-port=0", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = Path(profile) / "DevToolsActivePort"
        wait_for(lambda: active.is_file() and active.read_text().strip(), 30, 0.1, "Chromium's DevTools port")
        port = int(active.read_text().split()[0])

        def page():
            with HttpConnection(port, timeout=5) as connection:
                targets = json.loads(connection.request("GET", "/json/list", host=f"127.0.0.1:{port}").body)
            pages = [target for target in targets if target.get("type") == "page"]
            return pages[0] if pages else None
        target = wait_for(page, 30, 0.1, "Chromium's page")
        path = target["webSocketDebuggerUrl"].split(f":{port}", 1)[1]
        self.socket = WebSocket(port, path, f"127.0.0.1:{port}")
        self.next_id = 0

    def evaluate(self, expression):
        self.next_id += 1
        self.socket.send_json({"id": self.next_id, "method": "Runtime.evaluate",
                               "params": {"expression": expression, "returnByValue": True}})
        while True:
            message = self.socket.recv_json()
            if message.get("id") == self.next_id:
                return message.get("result", {}).get("result", {}).get("value")

    def close(self):
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
