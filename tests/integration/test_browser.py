"""A real browser: headless Chromium (Debian's chromium) through the gateway. It loads the demo
page of `make run` (demo/app.py) over TLS and HTTP/2 (the page reports Navigation Timing's
nextHopProtocol); opens a private sandbox with the token once in the URL, then with the cookie
alone, WebSocket included; and calls a private sandbox from a page on another origin with the
token header, after the gateway's answer to the preflight."""
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lib.devtools import DevTools
from lib.gateway import DOMAIN
from lib.util import REPO, free_port, require, wait_for


def chromium_dump(chromium, profile, url):
    """The DOM Chromium (headless) ends up with after loading url (redirects followed)."""
    result = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--ignore-certificate-errors",
         f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1", "--virtual-time-budget=5000",
         "--dump-dom", url],
        capture_output=True, timeout=120)
    return result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")[-2000:]


def make_certificate(tmp_path):
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "1",
                    "-subj", f"/CN=*.{DOMAIN}", "-addext", f"subjectAltName=DNS:*.{DOMAIN}"],
                   check=True, capture_output=True, timeout=60)
    return key, certificate


@pytest.fixture
def chromium():
    binary = shutil.which("chromium")
    require(binary is not None, "chromium is not installed (scripts/deps.sh test installs it)")
    return binary


@pytest.fixture
def demo_over_tls(gateway_factory, redis, tmp_path):
    """demo_over_tls(sandbox, **record): the demo app of `make run` as that sandbox behind a gateway
    with a TLS listener (a self-signed certificate); returns (gateway, the page's https URL)."""
    key, certificate = make_certificate(tmp_path)
    apps = []

    def make(sandbox, **record):
        app_port = free_port()
        apps.append(subprocess.Popen([sys.executable, str(REPO / "demo" / "app.py"), "--port", str(app_port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        tls_port = free_port()
        gateway = gateway_factory(redis, extra=[f"listen 127.0.0.1:{tls_port} tls",
                                                f"tls_certificate {certificate}",
                                                f"tls_certificate_key {key}"])
        redis.put(sandbox, **record)
        host = f"{app_port}-{sandbox}.{DOMAIN}"
        url = f"https://{host}:{tls_port}/"
        wait_for(lambda: subprocess.run(["curl", "-sk", "-o", "/dev/null", "--resolve",
                                         f"{host}:{tls_port}:127.0.0.1", url], timeout=10).returncode == 0, 10)
        return gateway, url
    yield make
    for app in apps:
        app.terminate()
        app.wait(10)


def test_chromium_loads_the_demo_page_over_h2(chromium, demo_over_tls, tmp_path):
    gateway, url = demo_over_tls("demo")
    dom, errors = chromium_dump(chromium, tmp_path / "chromium-profile", url)
    assert "Hello from the demo sandbox" in dom, (dom[-2000:], errors)
    protocol = re.search(r'<code id="protocol">([^<]*)</code>', dom)
    assert protocol and protocol.group(1) == "h2", dom[-2000:]
    wait_for(lambda: any(entry.get("protocol") == "h2" and entry.get("path") == "/"
                         for entry in gateway.access_entries()), 10)


def test_chromium_opens_a_private_sandbox_with_the_token_once(chromium, demo_over_tls, tmp_path):
    """The token in the URL, the 302 and its cookie, the page: as a browser does it. Without the
    token the browser gets the 403 page with its form."""
    gateway, base = demo_over_tls("privdemo", allow_public_traffic=False, traffic_access_token="browser-token")
    refused, errors = chromium_dump(chromium, tmp_path / "fresh-profile", base + "?tab=1")
    assert 'name="e2b_traffic_access_token"' in refused, (refused[-2000:], errors)
    assert '<input type="hidden" name="tab" value="1">' in refused
    opened, errors = chromium_dump(chromium, tmp_path / "profile", base + "?e2b_traffic_access_token=browser-token")
    assert "Hello from the demo sandbox" in opened, (opened[-2000:], errors)
    assert "browser-token" not in opened  # the app saw neither the token nor the cookie
    again, errors = chromium_dump(chromium, tmp_path / "profile", base)  # the cookie, kept
    assert "Hello from the demo sandbox" in again, (again[-2000:], errors)
    # The page's WebSocket handshake carries no header either: the cookie admits it. A dump
    # may come before the echo: the page is watched until it shows it.
    browser = DevTools(chromium, tmp_path / "profile", base)
    try:
        shown = "(document.getElementById('websocket') || {}).textContent"
        wait_for(lambda: browser.evaluate(shown) == "echo: hello", 30, 0.2, "the page's WebSocket echo")
    finally:
        browser.close()
    entries = gateway.access_entries()
    assert any(entry["status"] == 302 for entry in entries), entries
    assert any(entry["status"] == 200 and entry["path"] == "/" for entry in entries), entries


class _CorsApp(BaseHTTPRequestHandler):
    """Two sandboxes' app: "/" is a page (on the public sandbox) whose script calls the private
    sandbox's "/api" with the token header; "/api" answers with CORS fields of its own."""
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _send(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/api"):
            origin = self.headers.get("Origin") or "*"
            return self._send(200, b'{"answer": "from the private sandbox"}', "application/json",
                              [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")])
        target, token = self.server.target, self.server.token
        page = f"""<!doctype html><html><body><p id="result">pending</p><script>
fetch("{target}", {{headers: {{"e2b-traffic-access-token": "{token}"}}}})
  .then(response => response.json())
  .then(body => {{ document.getElementById("result").textContent = "fetched: " + body.answer; }})
  .catch(error => {{ document.getElementById("result").textContent = "failed: " + error; }});
</script></body></html>"""
        self._send(200, page.encode(), "text/html; charset=utf-8")


def test_chromium_cross_origin_fetch_with_the_token_header(chromium, gateway_factory, redis, tmp_path):
    """A page on another origin calls a private sandbox with the token header: the browser's
    preflight is answered by the gateway, the call reaches the sandbox."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CorsApp)
    server.daemon_threads = True
    app_port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        gateway = gateway_factory(redis)
        redis.put("corspage")
        redis.put("corsapi", allow_public_traffic=False, traffic_access_token="cors-token")
        server.target = f"http://{app_port}-corsapi.{DOMAIN}:{gateway.port}/api"
        server.token = "cors-token"
        page = f"http://{app_port}-corspage.{DOMAIN}:{gateway.port}/"
        dom, errors = chromium_dump(chromium, tmp_path / "profile", page)
        assert "fetched: from the private sandbox" in dom, (dom[-2000:], errors)
        entries = gateway.access_entries()
        assert any(entry["method"] == "OPTIONS" and entry["status"] == 204 for entry in entries), entries
        assert any(entry["path"] == "/api" and entry["status"] == 200 for entry in entries), entries
    finally:
        server.shutdown()
        server.server_close()
