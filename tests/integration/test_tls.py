"""TLS termination (DESIGN.md: `listen ... tls`, tls_certificate / tls_certificate_key pairs chosen
by SNI, tls_ticket_key_file, SIGHUP reload), checked with real clients: curl (--cacert, --resolve),
openssl s_client (SNI, ALPN, protocol versions, resumption with -sess_out / -sess_in), wrk (reload
under load) and Python's ssl module (keep-alive, streaming, wss, PROXY v2 before the handshake,
plaintext and truncated handshakes on a TLS port).

Certificates are made once per session by `openssl req` in a temporary directory: a test CA (EC
P-256) that signs an ECDSA P-256 and an RSA-2048 wildcard certificate for *.sandbox.localhost +
sandbox.localhost, one for *.other.test + other.test, and a second ECDSA one for the sandbox names
(another serial) that a reload switches to. Certificate files name the leaf then the CA (a chain);
clients trust the CA only, so every verified handshake also checks the chain and the wildcard.

Each TLS gateway keeps its plain listener (gateway.port, used by the start-up probe) and gets a TLS
listener on gateway.tls_port.
"""
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lib.backends import pattern_bytes
from lib.gateway import DOMAIN, TOKEN_HEADER, admin_gateway, gateway_metrics
from lib.h2client import H2Client
from lib.http import HttpConnection
from lib.util import free_port, wait_for

OTHER_DOMAIN = "other.test"
SANDBOX = "tls1"
SERIALS = {"ecdsa": "5A1001", "rsa": "5A1002", "other": "5A1003", "ecdsa-next": "5A1004"}
PAIRS = ("ecdsa", "rsa", "other")  # the order of the pairs in the config: ecdsa is the default
MiB = 1024 * 1024


# =========================================================================== certificates

@dataclass
class Certificates:
    directory: Path

    @property
    def ca(self):
        return self.directory / "ca.pem"

    def certificate(self, name):
        return self.directory / f"{name}.pem"

    def key(self, name):
        return self.directory / f"{name}.key"


def openssl(*args, timeout=60, **kwargs):
    result = subprocess.run(["openssl", *args], capture_output=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"openssl {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
    return result


EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
RSA_KEY = ["-newkey", "rsa:2048"]


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-certs")
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    openssl("req", "-x509", *EC_KEY, "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=sandbox-gateway test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaves = {"ecdsa": (EC_KEY, DOMAIN), "rsa": (RSA_KEY, DOMAIN), "other": (EC_KEY, OTHER_DOMAIN),
              "ecdsa-next": (EC_KEY, DOMAIN)}
    for name, (key_options, domain) in leaves.items():
        leaf = directory / f"{name}.leaf.pem"
        openssl("req", "-x509", "-CA", str(ca), "-CAkey", str(ca_key), *key_options, "-nodes",
                "-keyout", str(directory / f"{name}.key"), "-out", str(leaf), "-days", "2",
                "-set_serial", "0x" + SERIALS[name], "-subj", f"/CN=*.{domain}",
                "-addext", f"subjectAltName=DNS:*.{domain},DNS:{domain}",
                "-addext", "basicConstraints=critical,CA:FALSE",
                "-addext", "extendedKeyUsage=serverAuth")
        # The chain as served: the leaf, then its issuer.
        (directory / f"{name}.pem").write_bytes(leaf.read_bytes() + ca.read_bytes())
    return Certificates(directory)


def ticket_key(path, *keys):
    """Writes nginx-format ticket keys (80 bytes each) to path; returns path."""
    for key in keys:
        assert len(key) == 80
    path.write_bytes(b"".join(keys))
    return path


# =========================================================================== gateways

def tls_gateway(gateway_factory, redis, certs, tmp_path, pairs=PAIRS, ticket_key_file=None,
                proxy_protocol=False, admin=False, extra=(), **directives):
    """A gateway with its plain listener and a TLS one (.tls_port, `tls proxy_protocol` when asked);
    the pairs are copies in .tls_dir (so a test may replace them), named <pair>.pem / <pair>.key."""
    tls_dir = tmp_path / f"tls-{free_port()}"
    tls_dir.mkdir()
    port = free_port()
    lines = [f"listen 127.0.0.1:{port} tls" + (" proxy_protocol" if proxy_protocol else "")]
    for name in pairs:
        shutil.copy(certs.certificate(name), tls_dir / f"{name}.pem")
        shutil.copy(certs.key(name), tls_dir / f"{name}.key")
        lines += [f"tls_certificate {tls_dir / name}.pem", f"tls_certificate_key {tls_dir / name}.key"]
    if ticket_key_file is not None:
        lines.append(f"tls_ticket_key_file {ticket_key_file}")
    directives.setdefault("domain", [DOMAIN, OTHER_DOMAIN])
    lines += list(extra)
    if admin:
        gateway = admin_gateway(gateway_factory, redis, extra=lines, **directives)
    else:
        gateway = gateway_factory(redis, extra=lines, **directives)
    gateway.tls_port = port
    gateway.tls_dir = tls_dir
    return gateway


def hostname(port, sandbox=SANDBOX, domain=DOMAIN):
    return f"{port}-{sandbox}.{domain}"


def client_context(certs, alpn=("http/1.1",)):
    context = ssl.create_default_context(cafile=str(certs.ca))
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


class TlsConnection(HttpConnection):
    """An HttpConnection over TLS to the gateway's TLS port, verified against the test CA (chain and
    name). raw: an already connected socket (a PROXY header may have been sent on it)."""

    def __init__(self, port, certs, server_hostname, timeout=20, raw=None, context=None):
        self.timeout = timeout
        raw = raw or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.settimeout(timeout)
        self.sock = (context or client_context(certs)).wrap_socket(raw, server_hostname=server_hostname)
        self.buffer = b""


def tls_request(gateway, certs, host, target="/", method="GET", headers=(), body=None):
    """One request on its own TLS connection (SNI = host without port); returns the Response."""
    with TlsConnection(gateway.tls_port, certs, host.split(":")[0]) as connection:
        return connection.request(method, target, host=host, headers=headers, body=body)


def curl_https(gateway, certs, host, target="/", *args, timeout=40):
    """curl --cacert over https to host (resolved to the gateway's TLS port); returns
    (status, headers dict lower-cased, body bytes, http_version)."""
    url = f"https://{host}:{gateway.tls_port}{target}"
    command = ["curl", "-sS", "--max-time", str(timeout - 5), "--cacert", str(certs.ca),
               "--resolve", f"{host}:{gateway.tls_port}:127.0.0.1", "-D", "-",
               "-w", "\n%{http_version}", url, *args]
    result = subprocess.run(command, capture_output=True, timeout=timeout)
    assert result.returncode == 0, f"curl {url} failed ({result.returncode}): {result.stderr!r}"
    output, _, version = result.stdout.rpartition(b"\n")
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body, version.decode()


def s_client(port, *args, servername=None, stdin=b"", timeout=30):
    """Runs openssl s_client against 127.0.0.1:port (SNI servername, or none); returns its
    stdout + stderr as text and the exit code."""
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    command += ["-servername", servername] if servername else ["-noservername"]
    result = subprocess.run(command + list(args), input=stdin, capture_output=True, timeout=timeout)
    return (result.stdout + result.stderr).decode(errors="replace"), result.returncode


def peer(port, *args, servername=None):
    """The certificate a handshake got: {'serial', 'subject', 'bits', 'protocol', 'alpn'}."""
    output, code = s_client(port, *args, servername=servername)
    match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", output, re.S)
    assert code == 0 and match, f"s_client {args} servername={servername} failed:\n{output[-3000:]}"
    decoded = openssl("x509", "-noout", "-serial", "-subject", input=match.group(0).encode()).stdout.decode()
    serial = re.search(r"serial=([0-9A-F]+)", decoded).group(1)
    subject = re.search(r"subject=(.*)", decoded).group(1).strip()
    bits = re.search(r"Server public key is (\d+) bit", output)
    protocol = re.search(r"^(?:New|Reused), (TLSv1\.[0-3]), Cipher is", output, re.M)
    alpn = re.search(r"ALPN protocol: (\S+)", output)
    return {"serial": serial, "subject": subject, "bits": int(bits.group(1)) if bits else None,
            "protocol": protocol.group(1) if protocol else None,
            "alpn": alpn.group(1) if alpn else None, "output": output}


def still_serving(gateway, certs, backend):
    """A fresh verified TLS request through the gateway answers 200 from the backend."""
    response = tls_request(gateway, certs, hostname(backend.port), "/alive")
    assert response.status == 200, response
    assert response.json()["path"] == "/alive"


def client_hello(certs, server_hostname):
    """The bytes of a real TLS ClientHello (and the SSLObject that made it, to go on with)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(certs).wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read(), tls, incoming, outgoing


@pytest.fixture
def sandbox(redis):
    redis.put(SANDBOX)
    return SANDBOX


@pytest.fixture
def tls_gw(gateway_factory, redis, certs, tmp_path, sandbox):
    return tls_gateway(gateway_factory, redis, certs, tmp_path)


# =========================================================================== routing over TLS

def test_curl_https_routes_with_forwarded_proto(tls_gw, certs, backend):
    """curl (verifying the chain and the wildcard against the CA only) gets the backend's answer;
    the backend sees X-Forwarded-Proto https, not what the client sent, and the client's Host."""
    host = hostname(backend.port)
    status, headers, body, version = curl_https(
        tls_gw, certs, host, "/hello?x=1", "-H", "X-Forwarded-Proto: http",
        "-H", "Forwarded: proto=http")
    assert status == 200, body
    assert version == "2"  # curl offers h2 first, and the gateway prefers it
    seen = backend.last
    assert seen.path == "/hello?x=1"
    assert seen.header_all("X-Forwarded-Proto") == ["https"]
    assert seen.header_all("Forwarded") == []
    assert seen.header_all("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.header("Host") == f"{host}:{tls_gw.tls_port}"
    # The plain listener of the same gateway still says http.
    response = tls_gw.get(SANDBOX, backend.port, "/plain")
    assert response.status == 200
    assert backend.last.header_all("X-Forwarded-Proto") == ["http"]


def test_sni_selects_the_pair_and_defaults_to_the_first(gateway_factory, redis, certs, tmp_path,
                                                        sandbox, backend_factory):
    backend = backend_factory("main")
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path)
    port = gateway.tls_port
    assert peer(port, servername=hostname(3000))["serial"] == SERIALS["ecdsa"]
    assert peer(port, servername=DOMAIN)["serial"] == SERIALS["ecdsa"]
    assert peer(port, servername=f"3000-{SANDBOX}.{OTHER_DOMAIN}")["serial"] == SERIALS["other"]
    assert peer(port, servername=OTHER_DOMAIN.upper())["serial"] == SERIALS["other"]
    # No SNI, or a name no certificate covers (a wildcard covers one label only): the first pair.
    assert peer(port)["serial"] == SERIALS["ecdsa"]
    assert peer(port, servername="3000-x.example.com")["serial"] == SERIALS["ecdsa"]
    assert peer(port, servername=f"a.b.{OTHER_DOMAIN}")["serial"] == SERIALS["ecdsa"]

    # The second domain routes over TLS with its own certificate (curl verifies it).
    other_host = hostname(backend.port, domain=OTHER_DOMAIN)
    status, _, body, _ = curl_https(gateway, certs, other_host, "/other")
    assert status == 200, body
    assert backend.last.path == "/other"
    assert backend.last.header_all("X-Forwarded-Proto") == ["https"]

    # A foreign SNI and Host: the default certificate serves, the request is 421.
    context = client_context(certs)
    context.check_hostname = False  # the default certificate does not cover example.com
    with TlsConnection(port, certs, "3000-x.example.com", context=context) as connection:
        response = connection.request(host=f"3000-x.example.com:{port}", target="/foreign")
    assert response.status == 421, response
    assert backend.count() == 1

    # "First" is the order of the config, not an accident of names: other.test first.
    reordered = tls_gateway(gateway_factory, redis, certs, tmp_path, pairs=("other", "ecdsa", "rsa"))
    assert peer(reordered.tls_port)["serial"] == SERIALS["other"]
    assert peer(reordered.tls_port, servername=hostname(3000))["serial"] == SERIALS["ecdsa"]


def test_ecdsa_and_rsa_for_the_same_names(tls_gw, certs):
    port, name = tls_gw.tls_port, hostname(3000)
    default = peer(port, servername=name)
    assert default["serial"] == SERIALS["ecdsa"] and default["bits"] == 256
    # A TLS 1.2 client that can only do RSA key exchange signatures gets the RSA certificate.
    rsa12 = peer(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", servername=name)
    assert (rsa12["serial"], rsa12["bits"], rsa12["protocol"]) == (SERIALS["rsa"], 2048, "TLSv1.2")
    # A TLS 1.3 client that offers only RSA-PSS signatures gets the RSA certificate too.
    rsa13 = peer(port, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256", servername=name)
    assert (rsa13["serial"], rsa13["bits"], rsa13["protocol"]) == (SERIALS["rsa"], 2048, "TLSv1.3")
    ecdsa12 = peer(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", servername=name)
    assert (ecdsa12["serial"], ecdsa12["protocol"]) == (SERIALS["ecdsa"], "TLSv1.2")


def test_alpn_h2_preferred(tls_gw, certs, backend):
    """With http2 on (the default) h2 is agreed whenever offered; http/1.1 otherwise."""
    port, name = tls_gw.tls_port, hostname(3000)
    assert peer(port, "-alpn", "http/1.1", servername=name)["alpn"] == "http/1.1"
    assert peer(port, "-alpn", "http/1.1,h2", servername=name)["alpn"] == "h2"
    assert peer(port, "-alpn", "h2", servername=name)["alpn"] == "h2"
    status, _, body, version = curl_https(tls_gw, certs, hostname(backend.port), "/alpn", "--http2")
    assert (status, version) == (200, "2"), body
    assert backend.last.header_all("X-Forwarded-Proto") == ["https"]
    assert backend.last.version == "HTTP/1.1"
    # A raw HTTP/2 client over TLS: many streams, each routed.
    context = client_context(certs, alpn=("h2",))
    with H2Client(port, context=context, server_hostname=hostname(backend.port)) as client:
        assert client.sock.selected_alpn_protocol() == "h2"
        streams = [client.request(hostname(backend.port), f"/s{number}", scheme="https") for number in range(20)]
        for stream_id in streams:
            assert client.response(stream_id).status == 200
        big = client.get(hostname(backend.port), f"/big?bytes={4 * MiB}", scheme="https")
        assert bytes(big.data) == pattern_bytes(4 * MiB)


def test_alpn_http11_only(gateway_factory, redis, certs, tmp_path, sandbox, backend):
    tls_gw = tls_gateway(gateway_factory, redis, certs, tmp_path, http2="off")
    port, name = tls_gw.tls_port, hostname(3000)
    assert peer(port, "-alpn", "http/1.1", servername=name)["alpn"] == "http/1.1"
    assert peer(port, "-alpn", "h2,http/1.1", servername=name)["alpn"] == "http/1.1"
    only_h2 = peer(port, "-alpn", "h2", servername=name)  # not refused, and h2 not agreed to
    assert only_h2["alpn"] is None and "No ALPN negotiated" in only_h2["output"]
    # curl asking for HTTP/2 ends up speaking HTTP/1.1.
    status, _, body, version = curl_https(tls_gw, certs, hostname(backend.port), "/alpn", "--http2")
    assert (status, version) == (200, "1.1"), body
    # Python offering h2 first gets http/1.1 selected.
    context = client_context(certs, alpn=("h2", "http/1.1"))
    with TlsConnection(port, certs, hostname(backend.port), context=context) as connection:
        assert connection.sock.selected_alpn_protocol() == "http/1.1"
        assert connection.request(host=hostname(backend.port)).status == 200


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_protocol_versions_are_refused(tls_gw, version, backend, certs):
    # SECLEVEL=0 lets Debian's client offer the old version, so the refusal is the server's.
    output, code = s_client(tls_gw.tls_port, version, "-cipher", "DEFAULT@SECLEVEL=0",
                            servername=hostname(3000))
    assert code != 0, output
    assert "alert protocol version" in output, output  # the gateway's alert (70)
    assert "BEGIN CERTIFICATE" not in output
    still_serving(tls_gw, certs, backend)


def test_modern_versions_and_ciphers_only(tls_gw):
    port, name = tls_gw.tls_port, hostname(3000)
    assert peer(port, "-tls1_2", servername=name)["protocol"] == "TLSv1.2"
    assert peer(port, "-tls1_3", servername=name)["protocol"] == "TLSv1.3"
    # TLS 1.2 without forward secrecy or without AEAD: refused.
    for cipher in ("AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"):
        output, code = s_client(port, "-tls1_2", "-cipher", cipher, servername=name)
        assert code != 0 and "alert handshake failure" in output, f"{cipher} was accepted:\n{output}"


# =========================================================================== everything else over TLS

def test_keep_alive_several_requests_on_one_connection(gateway_factory, redis, certs, tmp_path,
                                                       sandbox, backend_factory):
    first, second = backend_factory("first"), backend_factory("second")
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path, admin=True)
    before = gateway_metrics(gateway)["sgw_tls_handshakes_total"]
    with TlsConnection(gateway.tls_port, certs, hostname(first.port)) as connection:
        for index in range(4):
            backend = first if index % 2 == 0 else second
            response = connection.request(host=hostname(backend.port), target=f"/ka{index}")
            assert response.status == 200, response
            assert response.keeps_alive
            assert response.json()["backend"] == backend.name  # routed per request
            assert response.json()["path"] == f"/ka{index}"
    assert [r.path for r in first.requests] == ["/ka0", "/ka2"]
    assert [r.path for r in second.requests] == ["/ka1", "/ka3"]
    # Four requests, one handshake.
    assert gateway_metrics(gateway)["sgw_tls_handshakes_total"] - before == 1


def test_auth_and_mask_over_tls(tls_gw, redis, certs, backend):
    redis.put("private1", allow_public_traffic=False, traffic_access_token="tls-token",
              mask_request_host="localhost:${PORT}")
    host = hostname(backend.port, "private1")
    missing = tls_request(tls_gw, certs, host, "/missing")
    assert missing.status == 403 and "is missing" in missing.json()["message"], missing
    wrong = tls_request(tls_gw, certs, host, "/wrong", headers=[(TOKEN_HEADER, "nope")])
    assert wrong.status == 403 and "is invalid" in wrong.json()["message"], wrong
    assert backend.count() == 0
    granted = tls_request(tls_gw, certs, host, "/granted", headers=[(TOKEN_HEADER, "tls-token")])
    assert granted.status == 200, granted
    seen = backend.last
    assert seen.path == "/granted"
    assert seen.header(TOKEN_HEADER) is None
    assert seen.header("Host") == f"localhost:{backend.port}"
    assert seen.header("X-Forwarded-Host") == host
    assert seen.header_all("X-Forwarded-Proto") == ["https"]


def test_streaming_over_tls(tls_gw, certs, backend):
    host = hostname(backend.port)
    with TlsConnection(tls_gw.tls_port, certs, host) as connection:
        # A 3 MiB response, byte for byte.
        big = connection.request(host=host, target=f"/big?bytes={3 * MiB}")
        assert big.status == 200 and big.body == pattern_bytes(3 * MiB)
        # A 2 MiB chunked upload, then a sized one, on the same connection.
        upload = pattern_bytes(2 * MiB)
        chunked = connection.request("POST", "/upload", host=host,
                                     chunks=[upload[i:i + 100000] for i in range(0, len(upload), 100000)])
        assert chunked.status == 200
        assert chunked.json()["body_sha256"] == hashlib.sha256(upload).hexdigest()
        sized = connection.request("POST", "/sized", host=host, body=upload[:MiB])
        assert sized.json()["body_sha256"] == hashlib.sha256(upload[:MiB]).hexdigest()
        # Server-sent events: the first one arrives while the backend still holds the second.
        connection.send(f"GET /sse HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        connection.read_until(b"data: event 1", timeout=15)
        assert b"event 2" not in connection.buffer
        backend.release()
        connection.read_until(b"data: event 2", timeout=15)


def test_slow_tls_reader_holds_the_sandbox_back(raw_server_factory, gateway_factory, redis, certs,
                                                tmp_path, sandbox):
    """Backpressure over TLS: while the client reads nothing the sandbox is stopped after what the
    sockets and the gateway's bounded buffers hold, and then every byte arrives, in order."""
    size = 32 * MiB
    body = pattern_bytes(size)
    sent = {"bytes": 0}

    def handler(stream, server):
        stream.read_head()
        stream.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        view = memoryview(body)
        for offset in range(0, size, 65536):
            stream.sock.sendall(view[offset:offset + 65536])
            sent["bytes"] = offset + 65536

    backend = raw_server_factory(handler)
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path)
    host = hostname(backend.port)
    with TlsConnection(gateway.tls_port, certs, host) as connection:
        connection.send(f"GET /big HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        last, still_since = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() - still_since < 1.0:  # until the backend stopped for 1 s
            assert time.monotonic() < deadline, "the backend never stopped sending"
            if sent["bytes"] != last:
                last, still_since = sent["bytes"], time.monotonic()
            time.sleep(0.05)
        assert last < 24 * MiB, f"the backend wrote {last} bytes while the client read nothing"
        version, status, reason, headers = connection.read_head()
        assert status == 200
        # Reads in bursts with pauses: many stops and restarts of the flow (each restart must
        # wake TLS up again, whichever side drained the socket).
        received = bytearray(connection.buffer)
        while len(received) < size:
            data = connection.sock.recv(1 << 18)
            if not data:
                break
            received += data
            if len(received) // (1 << 20) != (len(received) - len(data)) // (1 << 20):
                time.sleep(0.01)
    assert len(received) == size
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert not backend.errors, backend.errors


def test_a_small_response_is_one_tls_record(raw_server_factory, gateway_factory, redis, certs,
                                             tmp_path, sandbox):
    """A response the sandbox sends in one piece reaches the client as one TLS record, head and
    body together, so the client decrypts it with one read (two records cost it twice the reads).
    TLS 1.2 here: no session tickets arrive after the handshake to be told apart."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\nX-Kind: small\r\n\r\n" + b"s" * 300

    def handler(stream, server):
        for _ in range(3):
            stream.read_head()
            stream.sock.sendall(response)

    backend = raw_server_factory(handler)
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path)
    host = hostname(backend.port)
    context = client_context(certs)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
    with socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=10) as raw:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                data = raw.recv(65536)
                assert data, "the gateway closed during the handshake"
                incoming.write(data)
        raw.sendall(outgoing.read())
        for index in range(3):   # keep-alive: each response on its own
            tls.write(f"GET /small{index} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            raw.sendall(outgoing.read())
            records, plaintext, pending = 0, b"", b""
            while len(plaintext) < len(response):
                data = raw.recv(65536)
                assert data, f"closed after {plaintext!r}"
                pending += data
                while len(pending) >= 5 and len(pending) >= 5 + struct.unpack("!H", pending[3:5])[0]:
                    size = 5 + struct.unpack("!H", pending[3:5])[0]
                    assert pending[0] == 23, f"record type {pending[0]}"   # application data
                    incoming.write(pending[:size])
                    pending = pending[size:]
                    records += 1
                    plaintext += tls.read(65536)
            assert plaintext.endswith(b"s" * 300) and b"X-Kind: small" in plaintext, plaintext
            assert records == 1, f"response {index} came in {records} TLS records"


def open_connections(gateway):
    metrics = gateway_metrics(gateway)
    return {name: metrics[f"sgw_{name}"] for name in ("client_connections", "upstream_connections", "tunnels")}


def wait_all_closed(gateway, what, timeout=10):
    """Waits until the gateway holds no client, upstream or tunnel connection."""
    last = []

    def closed():
        last[:] = [open_connections(gateway)]
        return not any(last[0].values())
    try:
        wait_for(closed, timeout, 0.05, what)
    except AssertionError as error:
        raise AssertionError(f"{error}; still open: {last[0]}") from None


def streaming_upgrade(stream, server):
    """Answers an upgrade with 101, then sends up to 16 MiB (or until the gateway goes away)."""
    stream.read_head()
    stream.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    stream.sock.settimeout(20)
    block = pattern_bytes(65536)
    for _ in range(256):
        stream.sock.sendall(block)


@pytest.mark.parametrize("what", ["response", "tunnel"])
def test_client_gone_mid_stream_frees_the_connection(gateway_factory, redis, certs, tmp_path,
                                                     sandbox, backend, raw_server_factory, what):
    """A client that reads the head of a large response (or a 101) and then disconnects: the
    gateway closes the client connection and the sandbox one at once, over plain HTTP as over TLS
    (a browser cancelling a download, a tab closed on a wss stream)."""
    server = raw_server_factory(streaming_upgrade)
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path, admin=True)
    port = backend.port if what == "response" else server.port
    host = hostname(port)
    if what == "response":
        request = f"GET /big?bytes={8 * MiB} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    else:
        request = (f"GET /stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
    for listener in ("plain", "tls"):
        if listener == "plain":
            connection = HttpConnection(gateway.port)
        else:
            connection = TlsConnection(gateway.tls_port, certs, host)
        with connection:
            connection.send(request.encode())
            connection.read_until(b"\r\n\r\n", timeout=15)
            assert connection.buffer.startswith(b"HTTP/1.1 200" if what == "response" else b"HTTP/1.1 101")
        wait_all_closed(gateway, f"the gateway to close a {listener} {what} whose client went away")


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload, masked):
    header = bytes([0x80 | opcode])
    bit = 0x80 if masked else 0
    if len(payload) < 126:
        header += bytes([bit | len(payload)])
    elif len(payload) < 65536:
        header += bytes([bit | 126]) + struct.pack("!H", len(payload))
    else:
        header += bytes([bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_read(stream):
    """(opcode, masked, payload) of one frame from anything with read_exactly."""
    first, second = stream.read_exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", stream.read_exactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", stream.read_exactly(8))[0]
    key = stream.read_exactly(4) if second & 0x80 else None
    payload = stream.read_exactly(length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, key is not None, payload


def ws_echo_server(stream, server):
    """A minimal RFC 6455 echo server: checks the handshake, requires masked client frames,
    echoes data frames unmasked, answers a close with a close."""
    line, headers = stream.read_head()
    fields = {name.lower(): value for name, value in headers}
    server.record(("handshake", line, headers))
    accept = ws_accept(fields["sec-websocket-key"])
    stream.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    while True:
        opcode, masked, payload = ws_read(stream)
        if not masked:
            raise AssertionError("unmasked client frame")
        if opcode == 0x8:
            stream.sock.sendall(ws_frame(0x8, payload, masked=False))
            return
        server.record(("frame", opcode, len(payload)))
        stream.sock.sendall(ws_frame(opcode, payload, masked=False))


def test_wss_echo(tls_gw, redis, certs, raw_server_factory):
    server = raw_server_factory(ws_echo_server)
    host = hostname(server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    with TlsConnection(tls_gw.tls_port, certs, host) as connection:
        connection.send((f"GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\nOrigin: https://{host}\r\n\r\n").encode())
        version, status, _, headers = connection.read_head()
        assert status == 101, (status, headers)
        fields = {name.lower(): value for name, value in headers}
        assert fields["sec-websocket-accept"] == ws_accept(key)
        assert fields["upgrade"].lower() == "websocket"
        messages = [(0x1, "héllo over wss".encode()), (0x2, pattern_bytes(300000)), (0x1, b"bye")]
        for opcode, payload in messages:
            connection.send(ws_frame(opcode, payload, masked=True))
            assert ws_read(connection) == (opcode, False, payload)
        connection.send(ws_frame(0x8, struct.pack("!H", 1000), masked=True))
        assert ws_read(connection) == (0x8, False, struct.pack("!H", 1000))
        assert connection.is_closed(wait=10)
    handshake = next(item for item in server.requests if item[0] == "handshake")
    seen = {name.lower(): value for name, value in handshake[2]}
    assert handshake[1] == "GET /chat HTTP/1.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["upgrade"].lower() == "websocket"
    assert [item for item in server.requests if item[0] == "frame"] == [
        ("frame", 0x1, len(messages[0][1])), ("frame", 0x2, 300000), ("frame", 0x1, 3)]
    assert server.errors == []


# =========================================================================== PROXY protocol + TLS

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(source, destination="192.0.2.1", source_port=41000, destination_port=443):
    body = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", source_port, destination_port)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_tls_after_proxy_v2_header(gateway_factory, redis, certs, tmp_path, sandbox, backend):
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path, proxy_protocol=True)
    host = hostname(backend.port)

    # The header in its own segment, then the handshake (a verified one) and two requests.
    raw = socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=20)
    raw.sendall(proxy_v2("203.0.113.9"))
    time.sleep(0.1)
    with TlsConnection(gateway.tls_port, certs, host, raw=raw) as connection:
        for path in ("/pp-1", "/pp-2"):
            response = connection.request(host=host, target=path,
                                          headers=[("X-Forwarded-For", "6.6.6.6")])
            assert response.status == 200, response
    seen = [r for r in backend.requests if r.path.startswith("/pp-")]
    assert len(seen) == 2
    for record in seen:
        assert record.header_all("X-Forwarded-For") == ["203.0.113.9"]
        assert record.header_all("X-Forwarded-Proto") == ["https"]

    # The header and the ClientHello in one segment (as a load balancer often sends them).
    hello, tls, incoming, outgoing = client_hello(certs, host)
    with socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=20) as raw:
        raw.sendall(proxy_v2("198.51.100.77") + hello)
        while True:
            data = raw.recv(65536)
            assert data, "the gateway closed during the handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
        tls.write(f"GET /pp-same HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw.sendall(outgoing.read())
        answer = b""
        while True:  # to the end: the response, then the gateway's close_notify
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                chunk = None
            except ssl.SSLZeroReturnError:
                break
            if chunk == b"":  # Python's SSLObject: a close_notify reads as b""
                break
            if chunk:
                answer += chunk
                continue
            data = raw.recv(65536)
            if not data:
                break
            incoming.write(data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    assert length and len(body) == int(length.group(1)), answer
    assert backend.last.path == "/pp-same"
    assert backend.last.header_all("X-Forwarded-For") == ["198.51.100.77"]
    assert backend.last.header_all("X-Forwarded-Proto") == ["https"]

    # TLS without the PROXY header first: not a PROXY header, closed, nothing proxied.
    count = backend.count()
    with pytest.raises((ssl.SSLError, OSError)):
        tls_request(gateway, certs, host, "/no-header")
    assert backend.count() == count


# =========================================================================== hostile bytes on a TLS port

def read_until_closed(sock, timeout):
    """Everything the peer sends until it closes; fails if it has not closed by the deadline."""
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the gateway did not close the connection within {timeout}s (got {received[:200]!r})"
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def test_plaintext_http_to_the_tls_port(tls_gw, certs, backend):
    for request in (f"GET / HTTP/1.1\r\nHost: {hostname(backend.port)}\r\n\r\n".encode(),
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00" * 64):
        with socket.create_connection(("127.0.0.1", tls_gw.tls_port), timeout=20) as sock:
            sock.sendall(request)
            received = read_until_closed(sock, 15)
        assert b"HTTP/" not in received, received  # no plaintext answer, at most a TLS alert
        if received:
            assert received[0] == 0x15, received  # a TLS alert record
    assert backend.count() == 0
    still_serving(tls_gw, certs, backend)


def test_truncated_client_hello(gateway_factory, redis, certs, tmp_path, sandbox, backend):
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path, client_header_timeout="1s")
    hello, *_ = client_hello(certs, hostname(backend.port))
    assert len(hello) > 100
    # Half a ClientHello, then the client goes away.
    with socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=20) as sock:
        sock.sendall(hello[:len(hello) // 2])
    # Half a ClientHello, then silence: the gateway closes it (client_header_timeout from accept).
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=20) as sock:
        sock.sendall(hello[:len(hello) // 2])
        received = read_until_closed(sock, 15)
    assert b"HTTP/" not in received
    assert time.monotonic() - started >= 0.5
    # Only the 5-byte record header, then silence; and a record header claiming 16 KiB that never comes.
    for prefix in (hello[:5], b"\x16\x03\x01\x40\x00" + hello[5:40]):
        with socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=20) as sock:
            sock.sendall(prefix)
            read_until_closed(sock, 15)
    still_serving(gateway, certs, backend)


# =========================================================================== resumption

def resume_pair(first_port, second_port, workdir, *versions):
    """For each version, a session from first_port (-sess_out) offered to second_port (-sess_in);
    returns {version: 'Reused' | 'New'}."""
    outcome = {}
    for version in versions:
        session = workdir / f"session-{first_port}-{version}"
        request = f"GET / HTTP/1.1\r\nHost: {hostname(1)}\r\nConnection: close\r\n\r\n".encode()
        # -ign_eof: read until the server closes, so TLS 1.3's post-handshake tickets arrive.
        output, code = s_client(first_port, version, "-sess_out", str(session), "-ign_eof",
                                servername=hostname(1), stdin=request)
        assert code == 0 and re.search(r"^New, TLSv1\.[23]", output, re.M), output
        assert session.stat().st_size > 0
        output, code = s_client(second_port, version, "-sess_in", str(session),
                                servername=hostname(1))
        assert code == 0, output
        match = re.search(r"^(New|Reused), (TLSv1\.[23])", output, re.M)
        assert match, output
        assert match.group(2) == ("TLSv1.3" if version == "-tls1_3" else "TLSv1.2")
        outcome[version] = match.group(1)
    return outcome


def test_resumption_across_gateways_sharing_a_ticket_key_file(gateway_factory, redis, certs,
                                                                tmp_path, sandbox):
    keys = ticket_key(tmp_path / "ticket.key", os.urandom(80))
    first = tls_gateway(gateway_factory, redis, certs, tmp_path, ticket_key_file=keys, workers="2")
    second = tls_gateway(gateway_factory, redis, certs, tmp_path, ticket_key_file=keys, workers="2",
                         admin=True)
    before = gateway_metrics(second)
    assert resume_pair(first.tls_port, second.tls_port, tmp_path, "-tls1_3", "-tls1_2") == {
        "-tls1_3": "Reused", "-tls1_2": "Reused"}
    assert resume_pair(second.tls_port, first.tls_port, tmp_path, "-tls1_3") == {"-tls1_3": "Reused"}
    after = gateway_metrics(second)
    assert after["sgw_tls_sessions_resumed_total"] - before["sgw_tls_sessions_resumed_total"] == 2
    assert after["sgw_tls_handshakes_total"] - before["sgw_tls_handshakes_total"] == 3

    # Rotation: a file whose first key is new and second is the old one encrypts with the new
    # and still decrypts the old tickets.
    rotated_file = ticket_key(tmp_path / "rotated.key", os.urandom(80), keys.read_bytes())
    rotated = tls_gateway(gateway_factory, redis, certs, tmp_path, ticket_key_file=rotated_file)
    assert resume_pair(first.tls_port, rotated.tls_port, tmp_path, "-tls1_3") == {"-tls1_3": "Reused"}
    # ... but its own new tickets (first key) mean nothing to a gateway with only the old key.
    assert resume_pair(rotated.tls_port, first.tls_port, tmp_path, "-tls1_3") == {"-tls1_3": "New"}


def test_random_ticket_keys_are_per_process(gateway_factory, redis, certs, tmp_path, sandbox):
    first = tls_gateway(gateway_factory, redis, certs, tmp_path, workers="2")
    second = tls_gateway(gateway_factory, redis, certs, tmp_path, workers="2")
    # Resumes on the same process (whichever worker), not on another.
    assert resume_pair(first.tls_port, first.tls_port, tmp_path, "-tls1_3", "-tls1_2") == {
        "-tls1_3": "Reused", "-tls1_2": "Reused"}
    assert resume_pair(first.tls_port, second.tls_port, tmp_path, "-tls1_3", "-tls1_2") == {
        "-tls1_3": "New", "-tls1_2": "New"}


# =========================================================================== reload

def sighup_and_wait(gateway, marker):
    """Sends SIGHUP and waits for one more stderr line containing marker; returns that line."""
    before = gateway.stderr_text().count(marker)
    gateway.process.send_signal(signal.SIGHUP)

    def logged():
        lines = [line for line in gateway.stderr_text().splitlines() if marker in line]
        return lines[-1] if len(lines) > before else None
    return wait_for(logged, 20, 0.05, f"'{marker}' in the gateway's log after SIGHUP")


RELOADED = "SIGHUP: certificates and ticket keys reloaded"
RELOAD_FAILED = "SIGHUP: reload failed"


def replace_file(path, data):
    """Replaces path atomically (write a temporary file, rename), as deployment tools do."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def run_wrk(url, host, duration, connections, extra=()):
    return subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                             "-H", f"Host: {host}", *extra, url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wrk_result(process, timeout=60):
    output = process.communicate(timeout=timeout)[0].decode(errors="replace")
    assert process.returncode == 0, output
    match = re.search(r"(\d+) requests in", output)
    assert match, output
    assert "Socket errors" not in output, output
    assert "Non-2xx" not in output, output
    return int(match.group(1)), output


def test_reload_under_load(gateway_factory, redis, certs, tmp_path, sandbox, backend):
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path)
    port, name = gateway.tls_port, hostname(backend.port)
    certificate, key = gateway.tls_dir / "ecdsa.pem", gateway.tls_dir / "ecdsa.key"
    assert peer(port, servername=name)["serial"] == SERIALS["ecdsa"]

    # A keep-alive connection opened before any reload.
    early = TlsConnection(port, certs, name)
    assert early.request(host=name, target="/early-0").status == 200

    url = f"https://127.0.0.1:{port}/load"
    keep_alive = run_wrk(url, name, 4, 10)
    # New connections every request, so handshakes run across the reloads too.
    handshaking = run_wrk(url, name, 4, 2, ["-H", "Connection: close"])
    processes = [keep_alive, handshaking]
    try:
        time.sleep(1.0)
        replace_file(key, certs.key("ecdsa-next").read_bytes())
        replace_file(certificate, certs.certificate("ecdsa-next").read_bytes())
        sighup_and_wait(gateway, RELOADED)
        assert peer(port, servername=name)["serial"] == SERIALS["ecdsa-next"]
        assert peer(port)["serial"] == SERIALS["ecdsa-next"]  # the default pair too
        assert peer(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256",
                    servername=name)["serial"] == SERIALS["rsa"]

        time.sleep(0.5)
        replace_file(certificate, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                                  b"-----END CERTIFICATE-----\n")
        failed = sighup_and_wait(gateway, RELOAD_FAILED)
        assert str(certificate) in failed, failed
        assert peer(port, servername=name)["serial"] == SERIALS["ecdsa-next"]

        # The connection from before both reloads still works.
        assert early.request(host=name, target="/early-1").status == 200
        results = [wrk_result(process) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        early.close()
    assert results[0][0] >= 20, results[0][1]
    assert results[1][0] >= 5, results[1][1]
    # A missing file is as bad as a damaged one; a good one afterwards reloads again.
    os.unlink(certificate)
    failed = sighup_and_wait(gateway, RELOAD_FAILED)
    assert str(certificate) in failed, failed
    assert peer(port, servername=name)["serial"] == SERIALS["ecdsa-next"]
    replace_file(certificate, certs.certificate("ecdsa-next").read_bytes())
    replace_file(key, certs.key("ecdsa-next").read_bytes())
    sighup_and_wait(gateway, RELOADED)
    still_serving(gateway, certs, backend)


def test_reload_ticket_keys(gateway_factory, redis, certs, tmp_path, sandbox):
    keys = ticket_key(tmp_path / "ticket.key", os.urandom(80))
    gateway = tls_gateway(gateway_factory, redis, certs, tmp_path, ticket_key_file=keys)
    port = gateway.tls_port
    peer_gateway = tls_gateway(gateway_factory, redis, certs, tmp_path, ticket_key_file=keys)
    # Sessions issued with the first key (by another process sharing it).
    assert resume_pair(peer_gateway.tls_port, port, tmp_path, "-tls1_3") == {"-tls1_3": "Reused"}

    # A bad key file (79 bytes) fails the reload and keeps the old keys.
    replace_file(keys, os.urandom(79))
    failed = sighup_and_wait(gateway, RELOAD_FAILED)
    assert str(keys) in failed, failed
    assert resume_pair(peer_gateway.tls_port, port, tmp_path, "-tls1_3") == {"-tls1_3": "Reused"}

    # A new key: tickets of the old one no longer resume, new ones do.
    replace_file(keys, os.urandom(80))
    sighup_and_wait(gateway, RELOADED)
    assert resume_pair(peer_gateway.tls_port, port, tmp_path, "-tls1_3") == {"-tls1_3": "New"}
    assert resume_pair(port, port, tmp_path, "-tls1_3", "-tls1_2") == {"-tls1_3": "Reused",
                                                                       "-tls1_2": "Reused"}


def test_bad_certificate_at_start_up(build, tmp_path, certs):
    """A key that does not match its certificate, or a missing file, stops start-up naming the file."""
    cases = {"mismatch": (certs.certificate("ecdsa"), certs.key("rsa")),
             "missing": (tmp_path / "absent.pem", certs.key("ecdsa"))}
    for case, (certificate, key) in cases.items():
        config = tmp_path / f"{case}.conf"
        config.write_text(f"domain {DOMAIN}\nlisten 127.0.0.1:{free_port()} tls\nworkers 1\n"
                          f"redis_url redis://127.0.0.1:{free_port()}/0\n"
                          f"tls_certificate {certificate}\ntls_certificate_key {key}\n")
        result = build.run("-c", str(config), timeout=60)
        assert result.returncode == 1, (case, result.returncode, result.stderr)
        named = str(key) if case == "mismatch" else str(certificate)
        assert named in result.stderr, (case, result.stderr)


def test_gateway_errors_over_tls_log_their_size(tls_gw, certs, backend):
    """An error the gateway writes itself is logged with its real size over TLS too (the TLS
    stream takes the bytes as they are added, which left bytes_out at 0)."""
    before = len(tls_gw.access_entries())
    with TlsConnection(tls_gw.tls_port, certs, hostname(backend.port)) as connection:
        connection.send(f"GET /x HTTP/1.1\r\nHost: {hostname(backend.port, 'nosuch')}\r\n\r\n".encode())
        buffer = connection.read_until(b"\r\n\r\n")
        head = buffer[:buffer.index(b"\r\n\r\n") + 4]
        response_length = len(head) + int(re.search(rb"Content-Length: (\d+)", head).group(1))
    entries = wait_for(lambda: tls_gw.access_entries()[before:] or None, 10, 0.05, "a log line")
    assert entries[0]["status"] == 502, entries
    assert entries[0]["bytes_out"] == response_length, entries


def test_check_loads_certificates_and_keys_as_a_start_would(build, certs, tmp_path):
    """-t loads every certificate with its key and the ticket key file, as a start would, and names
    the FILE:LINE of the first that does not load: a file -t accepts starts."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    head = f"domain {DOMAIN}\nlisten 127.0.0.1:{free_port()} tls\n"
    cases = {
        "good": (f"tls_certificate {certs.certificate('ecdsa')}\n"
                 f"tls_certificate_key {certs.key('ecdsa')}\n", None),
        "not a certificate": (f"tls_certificate {garbage}\ntls_certificate_key {certs.key('ecdsa')}\n",
                              3),
        "a key of another certificate": (f"tls_certificate {certs.certificate('ecdsa')}\n"
                                         f"tls_certificate_key {certs.key('rsa')}\n", 4),
        "the second pair's key": (f"tls_certificate {certs.certificate('ecdsa')}\n"
                                  f"tls_certificate_key {certs.key('ecdsa')}\n"
                                  f"tls_certificate {certs.certificate('rsa')}\n"
                                  f"tls_certificate_key {garbage}\n", 6),
    }
    for name, (lines, bad_line) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.conf"
        path.write_text(head + lines)
        result = build.run("-t", "-c", str(path))
        output = result.stdout + result.stderr
        if bad_line is None:
            assert result.returncode == 0 and f"{path}: ok" in output, (name, output)
        else:
            assert result.returncode == 1, (name, output)
            assert output.startswith(f"{path}:{bad_line}: tls_certificate"), (name, output)
            # The start refuses it the same way.
            start = build.run("-c", str(path), timeout=20)
            assert start.returncode == 1 and f"{path}:{bad_line}:" in start.stderr, (name, start)
