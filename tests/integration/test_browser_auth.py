"""Private sandboxes in a browser (DESIGN "Auth", "Private sandboxes in a browser"): the token once
in the URL, then a signed cookie; the cross-site rule; CORS preflights and CORS fields on errors;
the 403 page's form; the cookie key file with -t and SIGHUP."""
import os
import re
import signal
import subprocess
import time

import pytest

from lib.gateway import DOMAIN, TOKEN_HEADER
from lib.h2client import H2Client
from lib.util import wait_for

TOKEN = "tok_browser_42"
MISSING = ("Sandbox is secured with traffic access token. "
           "Token header 'e2b-traffic-access-token' is missing")
INVALID = ("Sandbox is secured with traffic access token. "
           "Provided token in header 'e2b-traffic-access-token' is invalid")
BROWSER = [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"), ("Accept", "text/html")]


@pytest.fixture
def private(redis):
    redis.put("priv", allow_public_traffic=False, traffic_access_token=TOKEN)
    return "priv"


def cookie_of(response):
    value = response.header("Set-Cookie")
    assert value is not None, response
    return value.split(";", 1)[0]


def login(gateway, backend, sandbox="priv", target="/"):
    separator = "&" if "?" in target else "?"
    response = gateway.get(sandbox, backend.port, f"{target}{separator}e2b_traffic_access_token={TOKEN}")
    assert response.status == 302, response
    return cookie_of(response)


def test_token_in_url_redirects_with_a_cookie(gateway, backend, private):
    response = gateway.get(private, backend.port, f"/app?a=1&e2b_traffic_access_token={TOKEN}&b=%2F")
    assert response.status == 302, response
    assert response.header("Location") == "/app?a=1&b=%2F"
    attributes = [part.strip() for part in response.header("Set-Cookie").split(";")]
    name, _, value = attributes[0].partition("=")
    assert name == "e2b_traffic_access"
    assert re.fullmatch(r"v1\.\d+\.[A-Za-z0-9_-]{43}", value), value
    assert int(value.split(".")[1]) - time.time() == pytest.approx(24 * 3600, abs=60)
    assert set(attributes[1:]) == {"Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=86400"}
    assert TOKEN not in response.header("Set-Cookie")
    only = gateway.get(private, backend.port, f"/?e2b_traffic_access_token={TOKEN}")
    assert only.header("Location") == "/"
    assert backend.count() == 0
    # The access log never shows the token.
    wait_for(lambda: len(gateway.access_entries()) >= 2, 10)
    paths = [entry["path"] for entry in gateway.access_entries()]
    assert all(TOKEN not in path for path in paths), paths
    assert "/app?a=1&e2b_traffic_access_token=REDACTED&b=%2F" in paths


def test_wrong_token_in_url_is_403_invalid(gateway, backend, private):
    response = gateway.get(private, backend.port, "/?e2b_traffic_access_token=nope")
    assert response.status == 403
    assert response.json()["message"] == INVALID
    assert response.header("Set-Cookie") is None
    assert backend.count() == 0


def test_cookie_admits_and_never_reaches_the_sandbox(gateway, backend, private):
    cookie = login(gateway, backend)
    response = gateway.get(private, backend.port, "/in", headers=[("Cookie", f"a=1; {cookie}; b=2")])
    assert response.status == 200, response
    assert backend.last.header_all("Cookie") == ["a=1; b=2"]
    alone = gateway.get(private, backend.port, "/alone", headers=[("Cookie", cookie)])
    assert alone.status == 200
    assert backend.last.header("Cookie") is None
    # Several access cookies (a sibling host's for the parent domain): any valid one counts.
    several = gateway.get(private, backend.port, headers=[("Cookie", f"e2b_traffic_access=v1.1.x; {cookie}")])
    assert several.status == 200


def test_a_wrong_header_wins_over_a_valid_cookie(gateway, backend, private):
    cookie = login(gateway, backend)
    response = gateway.get(private, backend.port, headers=[("Cookie", cookie), (TOKEN_HEADER, "wrong")])
    assert response.status == 403
    assert response.json()["message"] == INVALID


def test_cookie_of_another_sandbox_or_token_is_refused(gateway, redis, backend, private):
    redis.put("priv2", allow_public_traffic=False, traffic_access_token=TOKEN)
    cookie = login(gateway, backend)
    other = gateway.get("priv2", backend.port, headers=[("Cookie", cookie)])
    assert other.status == 403 and other.json()["message"] == MISSING
    # A new token revokes every cookie.
    redis.put("priv", allow_public_traffic=False, traffic_access_token=TOKEN + "-rotated")
    wait_for(lambda: gateway.get("priv", backend.port, headers=[("Cookie", cookie)]).status == 403, 5)
    assert backend.count() == 0


@pytest.mark.parametrize("fetch, method, admitted", [
    ([("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors")], "POST", True),
    ([("Sec-Fetch-Site", "none"), ("Sec-Fetch-Mode", "navigate")], "GET", True),
    ([("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "navigate")], "GET", True),
    ([("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "navigate")], "HEAD", True),
    ([("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "cors")], "GET", False),
    ([("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "navigate")], "POST", False),
    ([("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "no-cors")], "GET", False),
    ([], "POST", True),
])
def test_cookie_counts_only_where_no_forgery_can_be(gateway, backend, private, fetch, method, admitted):
    cookie = login(gateway, backend)
    response = gateway.request(gateway.host(private, backend.port), method, "/f",
                               headers=[("Cookie", cookie)] + fetch, body=b"" if method == "POST" else None)
    assert response.status == (200 if admitted else 403), response


def test_shared_host_takes_no_browser_credentials(gateway, backend, private):
    cookie = login(gateway, backend)
    routing = [("E2b-Sandbox-Id", private), ("E2b-Sandbox-Port", str(backend.port))]
    host = f"sandbox.{DOMAIN}:{gateway.port}"
    by_url = gateway.request(host, target=f"/?e2b_traffic_access_token={TOKEN}", headers=routing)
    assert by_url.status == 403 and by_url.header("Set-Cookie") is None
    by_cookie = gateway.request(host, headers=routing + [("Cookie", cookie)])
    assert by_cookie.status == 403
    by_header = gateway.request(host, headers=routing + [(TOKEN_HEADER, TOKEN)])
    assert by_header.status == 200


def test_preflight_is_answered_by_the_gateway(gateway, redis, backend, private):
    response = gateway.request(gateway.host(private, backend.port), "OPTIONS", "/api",
                               headers=[("Origin", "https://app.example"), ("Access-Control-Request-Method", "PUT"),
                                        ("Access-Control-Request-Headers", "e2b-traffic-access-token, content-type")])
    assert response.status == 204, response
    assert response.header("Access-Control-Allow-Origin") == "https://app.example"
    assert response.header("Access-Control-Allow-Methods") == "PUT"
    assert response.header("Access-Control-Allow-Headers") == "e2b-traffic-access-token, content-type"
    assert response.header("Access-Control-Max-Age") == "600"
    assert response.header("Vary") == "Origin"
    assert response.header("Access-Control-Allow-Credentials") is None
    assert backend.count() == 0
    # A public sandbox's preflight is the sandbox's to answer.
    redis.put("pub")
    passed = gateway.request(gateway.host("pub", backend.port), "OPTIONS", "/api",
                             headers=[("Origin", "https://app.example"), ("Access-Control-Request-Method", "PUT")])
    assert passed.status == 200 and backend.count() == 1


def test_errors_to_a_request_with_origin_carry_cors_fields(gateway, backend, private):
    response = gateway.get(private, backend.port, headers=[("Origin", "https://app.example")])
    assert response.status == 403
    assert response.header("Access-Control-Allow-Origin") == "https://app.example"
    assert response.header("Access-Control-Allow-Credentials") == "true"
    assert response.header("Vary") == "Origin"
    plain = gateway.get(private, backend.port)
    assert plain.header("Access-Control-Allow-Origin") is None


def test_browser_403_page_asks_for_the_token(gateway, backend, private):
    response = gateway.get(private, backend.port, '/nb/tree?x=%3Cb%3E&y="q"&e2b_traffic_access_token=',
                           headers=BROWSER)
    assert response.status == 403, response
    page = response.body.decode()
    assert '<form method="get" action="/nb/tree">' in page
    assert 'name="e2b_traffic_access_token"' in page
    assert '<input type="hidden" name="x" value="&lt;b&gt;">' in page
    assert '<input type="hidden" name="y" value="&quot;q&quot;">' in page
    assert "<b>" not in page
    json_client = gateway.get(private, backend.port, "/nb")
    assert json_client.json()["message"] == MISSING


def test_over_h2(gateway, backend, private):
    with H2Client(gateway.port) as client:
        authority = f"{backend.port}-{private}.{DOMAIN}"
        redirect = client.get(authority, f"/h?e2b_traffic_access_token={TOKEN}")
        assert redirect.status == 302 and redirect.header("location") == "/h"
        cookie = redirect.header("set-cookie").split(";")[0]
        admitted = client.get(authority, "/h", headers=[("cookie", "a=1"), ("cookie", cookie)])
        assert admitted.status == 200
        preflight = client.get(authority, "/h", method="OPTIONS",
                               headers=[("origin", "https://x.example"), ("access-control-request-method", "GET")])
        assert preflight.status == 204 and preflight.header("access-control-allow-origin") == "https://x.example"
        refused = client.get(authority, "/h", headers=[("origin", "https://x.example")])
        assert refused.status == 403 and refused.header("access-control-allow-credentials") == "true"
    assert backend.last.header_all("Cookie") == ["a=1"]


def test_key_file_check_start_and_sighup(gateway_factory, redis, backend, private, tmp_path):
    key = tmp_path / "cookie.key"
    key.write_bytes(os.urandom(31))
    gateway = gateway_factory(redis, start=False, auth_cookie_key_file=str(key), auth_cookie_ttl="1h")
    check = subprocess.run([str(gateway.build.binary), "-t", "-c", str(gateway.config)], capture_output=True, text=True)
    assert check.returncode == 1
    assert re.search(r"gateway\.conf:\d+: auth_cookie_key_file: .* holds 31 bytes, not 32", check.stderr), check.stderr
    key.write_bytes(os.urandom(32))
    gateway.start()
    first = gateway.get(private, backend.port, f"/?e2b_traffic_access_token={TOKEN}")
    assert "Max-Age=3600" in first.header("Set-Cookie")
    cookie = cookie_of(first)
    assert gateway.get(private, backend.port, headers=[("Cookie", cookie)]).status == 200
    # A bad key file on SIGHUP: the old key stays.
    key.write_bytes(b"short")
    gateway.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "previous cookie key stays" in gateway.stderr_text(), 5)
    assert gateway.get(private, backend.port, headers=[("Cookie", cookie)]).status == 200
    # A new key: old cookies are refused, new ones work.
    key.write_bytes(os.urandom(32))
    gateway.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "cookie key reloaded" in gateway.stderr_text(), 5)
    assert gateway.get(private, backend.port, headers=[("Cookie", cookie)]).status == 403
    assert gateway.get(private, backend.port, headers=[("Cookie", login(gateway, backend))]).status == 200


def test_same_key_across_a_fleet(gateway_factory, redis, backend, private, tmp_path):
    key = tmp_path / "fleet.key"
    key.write_bytes(os.urandom(32))
    one = gateway_factory(redis, auth_cookie_key_file=str(key))
    two = gateway_factory(redis, auth_cookie_key_file=str(key))
    cookie = login(one, backend)
    assert two.get(private, backend.port, headers=[("Cookie", cookie)]).status == 200
    lone = gateway_factory(redis)  # a random key of its own
    assert lone.get(private, backend.port, headers=[("Cookie", cookie)]).status == 403


def test_public_sandbox_passes_the_parameter_and_drops_the_cookie(gateway, redis, backend):
    redis.put("open")
    response = gateway.get("open", backend.port, "/o?e2b_traffic_access_token=x&k=v",
                           headers=[("Cookie", "e2b_traffic_access=v1.1.abc; k=v")])
    assert response.status == 200
    assert backend.last.path == "/o?e2b_traffic_access_token=x&k=v"
    assert backend.last.header_all("Cookie") == ["k=v"]


def test_cookie_is_secure_over_tls(gateway_factory, redis, backend, private, tmp_path):
    import socket
    import ssl
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(certificate), "-days", "1", "-subj", f"/CN=*.{DOMAIN}"],
                   check=True, capture_output=True, timeout=60)
    from lib.util import free_port
    tls_port = free_port()
    gateway_factory(redis, extra=[f"listen 127.0.0.1:{tls_port} tls", f"tls_certificate {certificate}",
                                  f"tls_certificate_key {key}"])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host = f"{backend.port}-{private}.{DOMAIN}"
    with context.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=10),
                             server_hostname=host) as connection:
        connection.sendall(f"GET /?e2b_traffic_access_token={TOKEN} HTTP/1.1\r\nHost: {host}\r\n"
                           "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head = data.decode("latin-1")
    assert head.startswith("HTTP/1.1 302"), head
    cookie_line = [line for line in head.split("\r\n") if line.lower().startswith("set-cookie:")][0]
    assert cookie_line.endswith("; Secure"), cookie_line


def test_curl_cookie_jar_follows_the_redirect(gateway, backend, private, tmp_path):
    jar = tmp_path / "jar.txt"
    host = f"{backend.port}-{private}.{DOMAIN}"
    base = ["curl", "-sS", "--max-time", "20", "--resolve", f"{host}:{gateway.port}:127.0.0.1",
            "-c", str(jar), "-b", str(jar), "-o", "/dev/null", "-w", "%{http_code} %{url_effective}"]
    first = subprocess.run(base + ["-L", f"http://{host}:{gateway.port}/p?q=1&e2b_traffic_access_token={TOKEN}"],
                           capture_output=True, text=True, timeout=30)
    assert first.stdout == f"200 http://{host}:{gateway.port}/p?q=1", first
    assert backend.last.path == "/p?q=1" and backend.last.header("Cookie") is None
    assert "e2b_traffic_access" in jar.read_text() and TOKEN not in jar.read_text()
    again = subprocess.run(base + [f"http://{host}:{gateway.port}/later"], capture_output=True, text=True, timeout=30)
    assert again.stdout.startswith("200 "), again
    assert backend.count() == 2
