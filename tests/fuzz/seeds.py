#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into tests/fuzz/corpus/<target>/seed-<name>.

Run it again after changing a seed: files are written by name, so entries the fuzzers found
(named by their SHA-1, as libFuzzer names them) stay beside them. The request target's seeds
include every smuggling probe of tests/integration/test_hostile.py.
"""
import hashlib
import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "integration")]
from test_hostile import PROBES  # noqa: E402  (needs tests/ on the path first)

SEPARATOR = b"\xff"
TOKEN = b"s3cret-fuzz-token"  # tests/fuzz/fuzz_request.c: the private sandboxes' token
PUB = b"30000-pub.fuzz.test"  # "30000" becomes the sandboxes' port

# What python3's ssl module (OpenSSL 3.0.19) sends first for server_hostname="pypi.org":
# ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_bio(incoming, outgoing, server_hostname="pypi.org")
# .do_handshake(), then outgoing.read(). Kept as bytes: a new capture differs every time (random,
# key shares), and the seed files should not.
PYTHON_CLIENT_HELLO = bytes.fromhex(
    "1603010200010001fc03034e03c3615e2f2762b00f14c5442c219886e34c71c0373833cca4fac9b72db60b20e8d49fe5"
    "fc23b550e8d7cda7ad287099917fdf8ceaedab0f6754a976e6c34aa9003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175"
    "0000000d000b000008707970692e6f7267000b000403000102000a00160014001d0017001e0019001801000101010201"
    "030104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401050106"
    "01030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00201ff68f0f8677"
    "2ac92eb43b3bd4aacc062dbb85080f047f55c9dcf08a52b4fb08001500c7000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000")

# What `openssl s_client -connect 127.0.0.1:PORT -servername example.com` (OpenSSL 3.0.19) sends
# first.
OPENSSL_CLIENT_HELLO = bytes.fromhex(
    "160301013801000134030397c4eae2be1b589824a1ecd7fcc0c80eb0d66c596290c9c48c1c9331e52f70a7200efa334a"
    "a77a3351e7e0276dc047931cd3809a699831990946a1bf50d7a140f0003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000ad"
    "00000010000e00000b6578616d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101"
    "010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401"
    "05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d0020a549a6"
    "eac93befb0892e8d657ae6fc1064587d1dda1c8d7f07e6ecaaf1bdb363")


def h2_seeds():
    """HTTP/2 inputs for the request target: the preface, SETTINGS, then streams (HPACK without
    Huffman, so the fuzzer can mutate the text)."""
    import hpack
    from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame,
                                  SettingsFrame, WindowUpdateFrame)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()

    def headers(stream_id, fields, end_stream=True, end_headers=True):
        frame = HeadersFrame(stream_id)
        frame.data = hpack.Encoder().encode(fields, huffman=False)
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def data(stream_id, payload, end_stream=True):
        frame = DataFrame(stream_id, data=payload)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def request(authority, path=b"/", method=b"GET", extra=()):
        return [(b":method", method), (b":scheme", b"http"), (b":authority", authority),
                (b":path", path)] + list(extra)

    pub, priv = PUB, b"30000-priv.fuzz.test"
    seeds = {}
    seeds["h2-get"] = b"\x00" + preface + headers(1, request(pub))
    seeds["h2-streams"] = b"\x00" + preface + b"".join(
        headers(2 * n + 1, request(pub if n % 2 else priv, b"/%d" % n, extra=[(b"e2b-traffic-access-token", TOKEN)]))
        for n in range(4))
    seeds["h2-post-chunked"] = b"\x02" + preface + headers(1, request(pub, b"/p", b"POST"), end_stream=False) + \
        data(1, b"hello", end_stream=False) + headers(1, [(b"x-sum", b"1"), (b"host", b"evil")])
    seeds["h2-post-sized"] = b"\x00" + preface + headers(
        1, request(pub, b"/p", b"POST", extra=[(b"content-length", b"5")]), end_stream=False) + data(1, b"hello")
    seeds["h2-shared-host"] = b"\x00" + preface + headers(1, request(b"sandbox.fuzz.test", extra=[
        (b"e2b-sandbox-id", b"pub"), (b"e2b-sandbox-port", b"30000"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
        (b"te", b"trailers")]))
    seeds["h2-bad-header"] = b"\x00" + preface + headers(1, request(pub, extra=[(b"connection", b"close")])) + \
        headers(3, request(pub))
    seeds["h2-continuation"] = b"\x00" + preface + headers(1, request(pub), end_headers=False) + \
        ContinuationFrame(1, data=hpack.Encoder().encode([(b"x-a", b"b")], huffman=False),
                          flags=["END_HEADERS"]).serialize()
    reset = RstStreamFrame(1)
    reset.error_code = 8
    seeds["h2-reset-ping-window"] = b"\x00" + preface + headers(1, request(pub)) + reset.serialize() + \
        PingFrame(0, opaque_data=b"12345678").serialize() + WindowUpdateFrame(0, window_increment=1000).serialize() + \
        headers(3, request(pub, b"/after"))
    grpc = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
    seeds["h2-grpc"] = b"\x00" + preface + headers(1, request(pub, b"/s.E/U", b"POST", extra=grpc),
                                                  end_stream=False) + data(1, b"\0\0\0\0\1x")
    seeds["h2-grpc-refused"] = b"\x00" + preface + headers(1, request(b"30000-gone.fuzz.test", b"/s.E/U", b"POST",
                                                                      extra=grpc))
    for kind in range(8):
        seeds[f"h2-answer-{kind}"] = bytes([kind << 1]) + preface + headers(1, request(pub)) + \
            headers(3, request(pub, b"/h", b"HEAD"))
    return seeds


def h2_upstream_seeds():
    """What a sandbox's HTTP/2 server sends (fuzz_h2_upstream.c): its SETTINGS, then answers to
    streams 1 and 3, parts split at 0xff."""
    import hpack
    from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

    def headers(stream_id, fields, end_stream=False):
        frame = HeadersFrame(stream_id)
        frame.data = hpack.Encoder().encode(fields, huffman=False)
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def data(stream_id, payload, end_stream=False):
        frame = DataFrame(stream_id, data=payload)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    settings = SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 1}).serialize()
    ok = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    trailers = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
    seeds = {}
    for mode in (0, 1, 2, 3):
        seeds[f"h2up-unary-{mode}"] = bytes([mode]) + settings + headers(1, ok) + \
            data(1, b"\0\0\0\0\2hi") + headers(1, trailers, end_stream=True) + \
            headers(3, ok) + data(3, b"x" * 300) + b"\xff" + data(3, b"", end_stream=True)
    seeds["h2up-trailers-only"] = b"\x01" + settings + headers(1, ok + [(b"grpc-status", b"12")], end_stream=True)
    seeds["h2up-informational"] = b"\x01" + settings + headers(1, [(b":status", b"103"), (b"link", b"</a>")]) + \
        headers(1, [(b":status", b"204")], end_stream=True)
    reset = RstStreamFrame(1)
    reset.error_code = 8
    seeds["h2up-reset"] = b"\x01" + settings + headers(1, ok) + b"\xff" + reset.serialize()
    goaway = GoAwayFrame(0)
    goaway.last_stream_id = 1
    seeds["h2up-goaway"] = b"\x01" + settings + goaway.serialize() + headers(1, ok) + \
        data(1, b"done", end_stream=True)
    seeds["h2up-not-h2"] = b"\x01HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    seeds["h2up-bad-status"] = b"\x01" + settings + headers(1, [(b":status", b"2000")], end_stream=True)
    return seeds


def request_seeds():
    def host(sandbox):
        return b"30000-%s.fuzz.test" % sandbox

    seeds = {}
    for name, probe in PROBES.items():
        seeds["probe-" + name] = b"\x00" + probe.replace(b"{host}", PUB)
    get = b"GET /a HTTP/1.1\r\nHost: " + PUB + b"\r\n\r\n"
    seeds["get"] = b"\x00" + get
    # One seed per way the sandboxes answer (mode bits 1-3), with a pipeline behind it.
    for kind in range(8):
        seeds[f"answer-{kind}"] = bytes([kind << 1]) + get + b"HEAD /h HTTP/1.1\r\nHost: " + PUB + \
            b"\r\n\r\n" + get
    seeds["post-sized"] = b"\x00POST /p HTTP/1.1\r\nHost: " + PUB + \
        b"\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: " + PUB + b"\r\n\r\n"
    seeds["post-chunked-trailers"] = (
        b"\x00POST /c HTTP/1.1\r\nHost: " + PUB + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;a=b\r\nhello\r\n0\r\nX-Sum: 1\r\ne2b-traffic-access-token: x\r\nX-Forwarded-For: 1.2.3.4\r\n"
        b"Host: evil\r\nForwarded: for=x\r\nE2b-Sandbox-Id: y\r\n\r\n")
    seeds["private-token"] = (
        b"\x00GET / HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\ne2b-traffic-access-token: " +
        TOKEN + b"\r\n\r\nGET /nope HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\n\r\n")
    seeds["private-sha-token"] = (
        b"\x00POST / HTTP/1.1\r\nHost: " + host(b"privsha") + b"\r\ne2b-traffic-access-token: " +
        TOKEN + b"\r\nContent-Length: 3\r\n\r\nabc")
    seeds["two-tokens"] = (
        b"\x00GET / HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\ne2b-traffic-access-token: wrong\r\n"
        b"e2b-traffic-access-token: " + TOKEN + b"\r\n\r\n")
    seeds["mask-origin"] = (
        b"\x00GET / HTTP/1.1\r\nHost: " + host(b"mask") + b"\r\nOrigin: http://" + host(b"mask") +
        b"\r\nX-Forwarded-Host: evil\r\n\r\n")
    seeds["limit-pipeline"] = b"\x00" + (b"GET / HTTP/1.1\r\nHost: " + host(b"lim") + b"\r\n\r\n") * 3
    for sandbox in [b"bad", b"meta", b"gone", b"unknown", b"paused", b"asleep"]:
        seeds["record-" + sandbox.decode()] = b"\x00GET / HTTP/1.1\r\nHost: " + host(sandbox) + \
            b"\r\n\r\n" + get
    seeds["self-loop"] = b"\x00GET / HTTP/1.1\r\nHost: 18080-self.fuzz.test\r\n\r\n" + get
    seeds["via-loop"] = b"\x00GET / HTTP/1.1\r\nHost: " + PUB + b"\r\nVia: 1.0 a, 1.1 fuzz-gw\r\n\r\n" + get
    seeds["via-other"] = b"\x00GET / HTTP/1.1\r\nHost: " + PUB + b"\r\nVia: 1.1 lb\r\n\r\n"
    seeds["browser-url-token"] = (
        b"\x00GET /a?x=1&e2b_traffic_access_token=" + TOKEN + b"&y=%2F HTTP/1.1\r\nHost: " + host(b"priv") +
        b"\r\n\r\nGET /a?e2b_traffic_access_token=wrong HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\n\r\n")
    seeds["browser-cookie"] = (
        b"\x00GET / HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\nCookie: a=1; e2b_traffic_access=v1.9999999999."
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; b=2\r\nSec-Fetch-Site: same-site\r\n"
        b"Sec-Fetch-Mode: navigate\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\n\r\n"
        b"GET /p HTTP/1.1\r\nHost: " + PUB + b"\r\nCookie: e2b_traffic_access=x;k=v\r\n\r\n")
    seeds["browser-preflight"] = (
        b"\x00OPTIONS /api HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\nOrigin: https://a.example\r\n"
        b"Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-a\r\n\r\n"
        b"GET /?q=%3Cb%3E&r HTTP/1.1\r\nHost: " + host(b"priv") + b"\r\nOrigin: https://a.example\r\n"
        b"User-Agent: Mozilla/5.0\r\n\r\n")
    seeds["mask-own-origin"] = (
        b"\x00GET / HTTP/1.1\r\nHost: " + host(b"mask") + b"\r\nOrigin: https://" + host(b"mask") + b"\r\n\r\n")
    seeds.update(h2_seeds())
    seeds["http10"] = b"\x00GET / HTTP/1.0\r\nHost: " + PUB + b"\r\nConnection: keep-alive\r\n\r\n" + get
    seeds["absolute-form"] = b"\x00GET http://" + PUB + b"/x?y HTTP/1.1\r\nHost: other\r\n\r\n"
    seeds["upgrade"] = (b"\x00GET /ws HTTP/1.1\r\nHost: " + PUB + b"\r\nConnection: Upgrade\r\n"
                        b"Upgrade: websocket\r\n\r\nraw bytes after the upgrade")
    seeds["expect-continue"] = (b"\x00POST /e HTTP/1.1\r\nHost: " + PUB + b"\r\nExpect: 100-continue\r\n"
                                b"Content-Length: 4\r\n\r\nbody")
    seeds["hop-by-hop"] = (b"\x00GET / HTTP/1.1\r\nHost: " + PUB + b"\r\nConnection: keep-alive, X-A, TE\r\n"
                           b"X-A: 1\r\nTE: trailers\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\n"
                           b"Upgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n")
    seeds["shared-host-headers"] = (b"\x00GET / HTTP/1.1\r\nHost: " + PUB + b"\r\nE2b-Sandbox-Id: priv\r\n"
                                    b"E2b-Sandbox-Port: 30000\r\n\r\n")
    seeds["proxy-v1"] = b"\x01PROXY TCP4 203.0.113.9 192.0.2.1 5555 443\r\n" + get
    v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12 + 8) +
          bytes([203, 0, 113, 9, 192, 0, 2, 1]) + struct.pack("!HH", 5555, 443) +
          bytes([0x20]) + struct.pack("!H", 5) + bytes([0x01]) + b"\x00\x00\x00\x00")
    seeds["proxy-v2-ssl"] = b"\x01" + v2 + get
    seeds["proxy-missing"] = b"\x01" + get
    return seeds


def host_seeds():
    names = [b"3000-i62mff4ahtrdfdkyn2esc.e2b.app", b"03000-abc.E2B.app.", b"3000-abc.e2b.app:443",
             b"3000-abc-ignored.eu.e2b.app", b"3000-abc.sandbox.localhost", b"65535-z.x",
             b"65536-a.e2b.app", b"0-a.e2b.app", b"-a.e2b.app", b"3000-.e2b.app", b"e2b.app",
             b"a.b.e2b.app", b"3000-ABC.e2b.app", b"[::1]:8080", b"127.0.0.1", b"sandbox.e2b.app",
             b"3000-abc.e2b.app\x00.evil", b"3000-" + b"a" * 64 + b".e2b.app"]
    return {f"host-{i}": name for i, name in enumerate(names)}


def proxy_seeds():
    v2_ipv4 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
               bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 1000, 443))
    v2_ipv6 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21]) + struct.pack("!H", 36) +
               bytes(range(16)) + bytes(range(16, 32)) + struct.pack("!HH", 1000, 443))
    v2_local = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    v2_tlv = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12 + 3 + 8) +
              bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 1000, 443) +
              bytes([0x04]) + struct.pack("!H", 0) +
              bytes([0x20]) + struct.pack("!H", 5) + bytes([0x01]) + b"\x00\x00\x00\x00")
    return {
        "v1-tcp4": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
        "v1-unknown": b"PROXY UNKNOWN\r\n",
        "v1-bad-port": b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 443\r\n",
        "v2-ipv4": v2_ipv4 + b"GET /",
        "v2-ipv6": v2_ipv6,
        "v2-local": v2_local,
        "v2-tlvs": v2_tlv,
    }


def record_seeds():
    def record(*pairs):
        return SEPARATOR.join(pairs)
    return {
        "minimal": record(b"addr", b"10.0.0.1"),
        "full": record(b"addr", b"fd00::1", b"execution_id", b"e-1", b"allow_public_traffic", b"false",
                       b"traffic_access_token", b"t", b"mask_request_host", b"localhost:${PORT}",
                       b"max_connections", b"10", b"netns", b"ns1"),
        "digest": record(b"addr", b"10.0.0.1", b"traffic_access_token_sha256", b"ab" * 32),
        "mask-twice": record(b"addr", b"10.0.0.1", b"mask_request_host", b"${PORT}.${PORT}:${PORT}"),
        "mask-bad": record(b"addr", b"10.0.0.1", b"mask_request_host", b"a b\r\n"),
        "exec-newline": record(b"addr", b"10.0.0.1", b"execution_id", b"1\n10.0.0.2\n80"),
        "ports": record(b"addr", b"10.0.0.1", b"public_ports", b"49983, 1", b"h2c_ports", b"50051,8080",
                        b"state", b"paused", b"auto_resume", b"false"),
        "h2c-all": record(b"addr", b"10.0.0.1", b"h2c_ports", b"*"),
        # HMGET order: addr, execution_id, allow_public_traffic, tokens, mask, max_connections.
        "ordered": record(b"10.0.0.1", b"e", b"true", b"!", b"!", b"h:${PORT}", b"5"),
    }


def config_seeds():
    repository_config = (HERE.parent.parent / "gateway.conf").read_bytes()
    minimal = b"domain example.com\nlisten 127.0.0.1:8080\n"
    return {
        "sample": repository_config,
        "minimal": minimal,
        "every-kind": minimal + b"upstream_deny 10.0.0.0/8 fd00::/8\ninstance_name gw-1\n"
                      b"redis_url unix:///run/redis.sock?db=2\nmax_header_size 64k\n"
                      b"route_cache_ttl 500ms\nworkers auto\nadmin_listen [::1]:9090\n",
        "nul": minimal + b"log_level de\x00bug\n",
        "crlf": b"domain a.b\r\nlisten *:80 proxy_protocol\r\n# comment\r\n",
    }


def egress_seeds():
    return {
        "blocks": b"10.0.0.0/8,192.168.1.1, 172.16.0.0/12" + SEPARATOR + b"10.1.0.0/16,::/0" +
                  SEPARATOR + b"true",
        "all": b"all" + SEPARATOR + b"8.8.8.8,2001:4860::/32" + SEPARATOR + b"false",
        "adjacent": b"10.0.0.0/9,10.128.0.0/9,11.0.0.0/8" + SEPARATOR + b"" + SEPARATOR + b"",
        "bad": b"10.0.0.1/8,," + SEPARATOR + b"example.com",
        "mapped": b"::ffff:10.0.0.0/104,0.0.0.0/0" + SEPARATOR + b"fe80::/10",
    }


def egress_dns_seeds():
    """Queries to the egress agent's DNS responder (fuzz_egress_dns.c): dig's, with and without
    EDNS, and ones built to reach each refusal of egress/dns_message.c."""
    def header(flags=0x0100, questions=1, answers=0, authority=0, additional=0, ident=0xabcd):
        return struct.pack("!6H", ident, flags, questions, answers, authority, additional)

    def name(*labels):
        return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"

    def opt(size=1232, version=0, flags=0, options=b""):
        return b"\x00" + struct.pack("!HHBBHH", 41, size, 0, version, flags, len(options)) + options

    pypi = name(b"pypi", b"org") + struct.pack("!HH", 1, 1)
    cookie = struct.pack("!HH", 10, 8) + bytes.fromhex("03d18ff21a71e18b")
    return {
        # dig 9.18: pypi.org A +noedns, pypi.org A, PyPI.Org AAAA (RD and AD set).
        "dig-noedns": bytes.fromhex("9cf9012000010000000000000470797069036f72670000010001"),
        "dig-edns": bytes.fromhex("914c012000010000000000010470797069036f7267000001000100002904d0"
                                  "00000000000c000a000803d18ff21a71e18b"),
        "dig-aaaa-mixed-case": bytes.fromhex("2fec012000010000000000010450795049034f726700001c0001"
                                             "00002904d000000000000c000a0008849ba154940c67d4"),
        "mx": header() + name(b"pypi", b"org") + struct.pack("!HH", 15, 1),
        "root": header() + name() + struct.pack("!HH", 2, 1),
        "edns-do-small": header(additional=1) + pypi + opt(size=100, flags=0x8000, options=cookie),
        "edns-version": header(additional=1) + pypi + opt(version=1),
        "longest-name": header(additional=1) + name(b"a" * 63, b"b" * 63, b"C" * 63, b"d" * 61) +
                        struct.pack("!HH", 28, 1) + opt(size=512),
        "not-hostname": header() + name(b"a.b", b"c\x00d", b"E_-9") + struct.pack("!HH", 1, 1),
        "pointer": header() + b"\x04pypi\xc0\x0c" + struct.pack("!HH", 1, 1),
        "two-opts": header(additional=2) + pypi + opt() + opt(),
        "trailing": header(additional=1) + pypi + opt() + b"junk",
        "status": header(flags=0x1100) + pypi,
        "response": header(flags=0x8180) + pypi,
        "header-only-edns": header(questions=0, additional=1) + opt(options=cookie),
    }


def ticket_seeds():
    key = bytes(range(80))
    other = bytes(range(80, 160))
    return {
        "one-key": key + SEPARATOR + key[:16] + b"\x00" * 16,
        "two-keys": key + other + SEPARATOR + other[:16] + key[:16],
        "same-names": key + key[:16] + other[16:] + SEPARATOR + key[:16],
        "short": key[:79],
    }


def http1_seeds():
    """The request path's inputs (their mode byte means the same: a request, whole), and
    responses (mode 1), in pieces of every size."""
    seeds = {name: data for name, data in request_seeds().items() if not name.startswith("proxy")}
    responses = {
        "sized": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\nok",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: 5\r\n\r\n0\r\n\r\n",
        "upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "framing-named": b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok",
        "informational": b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n",
    }
    for name, response in responses.items():
        for piece in range(0, 8, 3):
            seeds[f"response-{name}-{piece}"] = bytes([1 | piece << 1]) + response
    return seeds


def egress_sniff_seeds():
    """The first bytes of intercepted connections (fuzz_egress_sniff.c): real ClientHellos, ones
    built here (split over records, broken on purpose, one padded to the 16 KiB limit), and HTTP
    request heads."""
    def vector(length_size, payload):
        return len(payload).to_bytes(length_size, "big") + payload

    def extension(kind, payload):
        return struct.pack("!H", kind) + vector(2, payload)

    def server_name(*names):
        return extension(0, vector(2, b"".join(b"\x00" + vector(2, name) for name in names)))

    usual = extension(10, b"\x00\x04\x00\x1d\x00\x17") + extension(43, b"\x04\x03\x04\x03\x03")

    def client_hello(extensions=None):
        body = (b"\x03\x03" + bytes(range(32)) + vector(1, bytes(range(32))) +
                vector(2, b"\x13\x01\x13\x02\xc0\x2f") + b"\x01\x00")
        if extensions is not None:
            body += vector(2, extensions)
        return b"\x01" + vector(3, body)

    def records(message, *sizes):
        out, offset = b"", 0
        for size in list(sizes) + [len(message)]:
            fragment = message[offset:offset + size]
            if fragment:
                out += b"\x16\x03\x01" + vector(2, fragment)
            offset += size
        return out

    hello = client_hello(usual + server_name(b"example.com"))
    seeds = {
        "tls-python-pypi": PYTHON_CLIENT_HELLO,
        "tls-openssl-example": OPENSSL_CLIENT_HELLO,
        "tls-built": records(hello),
        "tls-two-records": records(hello, 40),
        "tls-three-records": records(hello, 1, 3),
        "tls-then-early-data": records(hello) + b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x02hi",
        "tls-no-server-name": records(client_hello(usual)),
        "tls-no-extensions": records(client_hello()),
        "tls-upper-case": records(client_hello(server_name(b"WWW.Example.COM."))),
        "tls-ip-literal": records(client_hello(server_name(b"192.0.2.1"))),
        "tls-two-host-names": records(client_hello(server_name(b"good.example", b"evil.example"))),
        "tls-duplicate": records(client_hello(server_name(b"a.example") + usual + usual)),
        "tls-alert-between": records(hello[:30]) + b"\x15\x03\x03\x00\x02\x02\x28" + records(hello[30:]),
    }
    # Padded (RFC 7685) so that the record ends at the 16 KiB the agent reads: libFuzzer then
    # tries inputs up to that size.
    short = client_hello(server_name(b"big.example"))
    padding = 16384 - 5 - len(short) - 4
    seeds["tls-16k"] = records(client_hello(server_name(b"big.example") + extension(21, bytes(padding))))
    # Past the 16 KiB: what follows the ClientHello, and a body behind a request head.
    seeds["tls-16k-then-more"] = seeds["tls-16k"] + b"\x14\x03\x03\x00\x01\x01"
    heads = {
        "get": b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        "port": b"GET /a?b=c HTTP/1.1\r\nHost: Example.COM.:8080\r\n\r\n",
        "absolute": b"GET http://example.com:80/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "absolute-mismatch": b"GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
        "http10": b"GET / HTTP/1.0\r\nUser-Agent: old\r\n\r\n",
        "two-hosts": b"GET / HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\r\n",
        "ipv6": b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
        "ipv4": b"OPTIONS * HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n",
        "post-body": b"POST /u HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5000\r\n\r\nfirst bytes",
        "chunked": b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        "obs-fold": b"GET / HTTP/1.1\r\nHost: good.example\r\n evil.example\r\n\r\n",
        "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "http09": b"GET /\r\n",
    }
    heads["big-body"] = (b"PUT /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: 20000\r\n\r\n" +
                         b"x" * 20000)
    seeds.update({"http-" + name: head for name, head in heads.items()})
    return seeds


def redis_reply_seeds():
    """Redis replies as successive reads (separated); fuzz_redis_reply's limit is 16 bytes."""
    nils = b"$-1\r\n" * 9
    long_value = b"$40\r\n" + b"e" * 40 + b"\r\n"
    return {
        "hmget-record": b"*11\r\n$8\r\n10.0.0.9\r\n" + long_value + nils,
        "hmget-split": (b"*11\r\n$8\r\n10.0.0.9\r\n$4" + SEPARATOR + b"0\r\n" + b"e" * 10 +
                        SEPARATOR + b"e" * 30 + b"\r\n" + nils + b"*2\r\n$1\r\na\r\n$-1\r\n"),
        "value-ends-a-read": b"$20\r\n" + b"x" * 5 + SEPARATOR + b"x" * 15 + b"\r\n" + SEPARATOR + b"+OK\r\n",
        "nested": b"*2\r\n*2\r\n:1\r\n$17\r\n" + SEPARATOR + b"y" * 17 + b"\r\n-ERR no\r\n",
        "pong-and-pubsub": (b"+PONG\r\n*4\r\n$8\r\npmessage\r\n$3\r\nk:*\r\n$3\r\nk:a\r\n"
                            b"$4\r\nhset\r\n"),
        "bad-length": b"$0017\r\n" + b"z" * 17 + b"\r\n",
    }


TARGETS = {
    "fuzz_request": request_seeds,
    "fuzz_http1": http1_seeds,
    "fuzz_host": host_seeds,
    "fuzz_proxy_protocol": proxy_seeds,
    "fuzz_record": record_seeds,
    "fuzz_config": config_seeds,
    "fuzz_egress_policy": egress_seeds,
    "fuzz_egress_dns": egress_dns_seeds,
    "fuzz_ticket": ticket_seeds,
    "fuzz_h2_upstream": h2_upstream_seeds,
    "fuzz_egress_sniff": egress_sniff_seeds,
    "fuzz_redis_reply": redis_reply_seeds,
}


def main():
    for target, make in TARGETS.items():
        directory = HERE / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in make().items():
            (directory / f"seed-{name}").write_bytes(data)
        print(f"{target}: {len(os.listdir(directory))} inputs")


if __name__ == "__main__":
    main()
