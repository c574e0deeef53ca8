"""Auto-resume (DESIGN "Auto-resume"): a request to a paused sandbox is held while the gateway asks
the control plane once for the whole fleet (SET <prefix><id>:resuming NX PX, then XADD
sandbox:resume), and is proxied to the record's new addr once it says running; resume_timeout is
504, a client that leaves is dropped, a drain answers what is still held 503. HTTP/1.1, HTTP/2
streams and WebSocket upgrades alike."""
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lib.gateway import admin_gateway, gateway_metrics
from lib.h2client import H2Client
from lib.util import free_port, wait_for

STREAM = "sandbox:resume"
NOT_RESUMED = "The sandbox did not resume in time"


def pause(redis, sandbox, **fields):
    """A paused record whose addr has nothing listening: only a resume makes it answer."""
    redis.put(sandbox, addr="127.0.0.2", state="paused", **fields)


def entries(redis, stream=STREAM):
    """[(entry ID, {field: value})] of the resume stream."""
    return [(entry[0], dict(zip(entry[1][::2], entry[1][1::2])))
            for entry in redis.command("XRANGE", stream, "-", "+") or []]


def resume_after_request(redis, sandbox, delay=0.3, stream=STREAM):
    """What a control plane does: waits for the resume request, then writes the record running."""
    wait_for(lambda: entries(redis, stream), 10, message="a resume request in the stream")
    time.sleep(delay)
    redis.hset(sandbox, state="running", addr="127.0.0.1")


def test_held_then_served_at_the_new_address(admin_gateway_factory, redis, backend):
    gateway = admin_gateway_factory()
    pause(redis, "res1")
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(gateway.get, "res1", backend.port, "/woken")
        resume_after_request(redis, "res1")
        response = answer.result(10)
    assert response.status == 200, response
    assert time.monotonic() - started >= 0.3
    assert backend.last.path == "/woken"
    assert entries(redis) and entries(redis)[0][1] == {"sandbox_id": "res1"}
    # The gateway that saw it running removed the key, so a later pause asks again.
    wait_for(lambda: redis.command("EXISTS", "sandbox:catalog:res1:resuming") == 0, 5)
    logged = wait_for(lambda: [e for e in gateway.access_entries() if e["path"] == "/woken"], 5)[0]
    assert logged["status"] == 200 and logged["resume_wait_ms"] >= 250, logged
    metrics = gateway_metrics(gateway)
    assert metrics["sgw_resume_requests_total"] == 1
    assert metrics['sgw_resume_waits_total{outcome="resumed"}'] == 1
    assert metrics["sgw_resume_held"] == 0
    assert metrics['sgw_resume_hold_seconds_bucket{le="0.25"}'] == 0
    assert metrics["sgw_resume_hold_seconds_count"] == 1
    # Running now: the next request is not held and not logged as such.
    assert gateway.get("res1", backend.port, "/again").status == 200
    again = wait_for(lambda: [e for e in gateway.access_entries() if e["path"] == "/again"], 5)[0]
    assert "resume_wait_ms" not in again


def test_one_resume_request_for_many_requests_and_gateways(gateway_factory, redis, backend):
    gateways = [gateway_factory(redis, workers="2") for _ in range(2)]
    pause(redis, "res2")
    with ThreadPoolExecutor(40) as pool:
        answers = [pool.submit(gateways[i % 2].get, "res2", backend.port, f"/n{i}") for i in range(40)]
        wait_for(lambda: entries(redis), 10)
        time.sleep(0.5)  # every request is held by now
        redis.hset("res2", state="running", addr="127.0.0.1")
        statuses = [answer.result(10).status for answer in answers]
    assert statuses == [200] * 40
    assert len(entries(redis)) == 1


def test_many_held_connections_are_released_together(gateway, redis, backend):
    pause(redis, "res3")
    host = gateway.host("res3", backend.port)
    sockets = []
    for i in range(300):
        connection = socket.create_connection(("127.0.0.1", gateway.port), timeout=15)
        connection.sendall(f"GET /m{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        sockets.append(connection)
    wait_for(lambda: entries(redis), 10)
    time.sleep(0.3)
    released = time.monotonic()
    redis.hset("res3", state="running", addr="127.0.0.1")
    for connection in sockets:
        data = b""
        while b"\r\n" not in data:
            chunk = connection.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        connection.close()
    assert time.monotonic() - released < 5
    assert len(entries(redis)) == 1


def test_timeout_is_504(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, resume_timeout="600ms")
    pause(redis, "res4")
    started = time.monotonic()
    response = gateway.get("res4", backend.port)
    elapsed = time.monotonic() - started
    assert response.status == 504, response
    assert response.json()["message"] == NOT_RESUMED
    assert 0.5 <= elapsed < 3, elapsed
    assert len(entries(redis)) == 1
    # The key lives resume_timeout (it may have expired by now: -2), so the fleet asks again after that.
    pttl = redis.command("PTTL", "sandbox:catalog:res4:resuming")
    assert pttl == -2 or 0 <= pttl <= 600, pttl
    assert backend.count() == 0


def test_no_resume_without_the_credential_or_the_right(gateway, redis, backend):
    pause(redis, "res5", allow_public_traffic="false", traffic_access_token="secret")
    assert gateway.get("res5", backend.port).status == 403
    assert gateway.get("res5", backend.port, headers=[("e2b-traffic-access-token", "wrong")]).status == 403
    pause(redis, "res6", auto_resume="false")
    assert gateway.get("res6", backend.port).status == 409
    # Through a public port of a private sandbox: 409, nobody may wake it from there.
    pause(redis, "res7", allow_public_traffic="false", traffic_access_token="secret",
          public_ports=str(backend.port))
    assert gateway.get("res7", backend.port).status == 409
    assert redis.command("EXISTS", STREAM) == 0
    assert redis.command("KEYS", "*:resuming") == []


def test_private_sandbox_with_its_token_is_woken(gateway, redis, backend):
    pause(redis, "res8", allow_public_traffic="false", traffic_access_token="secret")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res8", backend.port, "/", [("e2b-traffic-access-token", "secret")])
        resume_after_request(redis, "res8", 0.1)
        assert answer.result(10).status == 200
    assert backend.last.header("e2b-traffic-access-token") is None


def test_client_gone_while_held(admin_gateway_factory, redis, backend):
    gateway = admin_gateway_factory()
    pause(redis, "res9")
    connection = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    connection.sendall(f"GET /gone HTTP/1.1\r\nHost: {gateway.host('res9', backend.port)}\r\n\r\n".encode())
    wait_for(lambda: gateway_metrics(gateway)["sgw_resume_held"] == 1, 5)
    connection.close()
    wait_for(lambda: gateway_metrics(gateway)['sgw_resume_waits_total{outcome="gone"}'] == 1, 5)
    assert gateway_metrics(gateway)["sgw_resume_held"] == 0
    logged = wait_for(lambda: [e for e in gateway.access_entries() if e["path"] == "/gone"], 5)[0]
    assert logged["status"] == 499 and "resume_wait_ms" in logged
    # The sandbox resumes later: nothing is sent for the request that left.
    redis.hset("res9", state="running", addr="127.0.0.1")
    assert gateway.get("res9", backend.port, "/after").status == 200
    assert [request.path for request in backend.requests] == ["/after"]


def test_drain_waits_for_held_requests(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, drain_timeout="5s")
    pause(redis, "res10")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res10", backend.port)
        wait_for(lambda: entries(redis), 10)
        time.sleep(0.2)
        gateway.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert gateway.process.poll() is None  # the held request is in flight
        redis.hset("res10", state="running", addr="127.0.0.1")
        response = answer.result(10)
    assert response.status == 200 and not response.keeps_alive
    assert gateway.process.wait(10) == 0


def test_drain_timeout_answers_held_requests_503(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, drain_timeout="1s")
    pause(redis, "res11")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res11", backend.port)
        wait_for(lambda: entries(redis), 10)
        time.sleep(0.2)
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        response = answer.result(10)
        assert response.status == 503, response
        assert 0.5 <= time.monotonic() - signalled < 3
    assert gateway.process.wait(10) == 0


def test_redis_outage_while_held(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, resume_timeout="1500ms", route_stale_ttl="30s")
    redis.put("warm")
    assert gateway.get("warm", backend.port).status == 200
    pause(redis, "res12")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res12", backend.port)
        wait_for(lambda: entries(redis), 10)
        redis.stop()
        started = time.monotonic()
        # Other sandboxes' cached routes keep serving meanwhile.
        assert gateway.get("warm", backend.port).status == 200
        response = answer.result(10)
    assert response.status == 504, response
    assert time.monotonic() - started < 3
    redis.start()


def test_resume_redis_down_is_503(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, resume_redis_url=f"redis://127.0.0.1:{free_port()}/0")
    pause(redis, "res13")
    response = gateway.get("res13", backend.port)
    assert response.status == 503, response
    assert response.json()["message"] == "Sandbox routing is temporarily unavailable"


def test_record_deleted_or_broken_while_held(gateway, redis, backend):
    pause(redis, "res14")
    pause(redis, "res15")
    with ThreadPoolExecutor(2) as pool:
        gone = pool.submit(gateway.get, "res14", backend.port)
        broken = pool.submit(gateway.get, "res15", backend.port)
        wait_for(lambda: len(entries(redis)) == 2, 10)
        redis.delete("res14")
        redis.hset("res15", state="sleeping")
        assert gone.result(10).json()["message"] == "The sandbox was not found"
        assert broken.result(10).status == 502
        assert broken.result().json()["message"] == "The sandbox record is invalid"


def test_a_vanished_key_is_set_again(gateway, redis, backend):
    pause(redis, "res16")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res16", backend.port)
        wait_for(lambda: len(entries(redis)) == 1, 10)
        redis.command("DEL", "sandbox:catalog:res16:resuming")
        wait_for(lambda: len(entries(redis)) == 2, 5)  # asked again within a reread
        redis.hset("res16", state="running", addr="127.0.0.1")
        assert answer.result(10).status == 200


def test_without_notifications_the_reread_finds_it(gateway_factory, redis_factory, backend):
    quiet = redis_factory(notify="")
    gateway = gateway_factory(quiet)
    pause(quiet, "res17")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res17", backend.port)
        resume_after_request(quiet, "res17", 0.1)
        released = time.monotonic()
        assert answer.result(10).status == 200
    assert time.monotonic() - released < 1.5


def test_separate_resume_redis_and_stream(gateway_factory, redis_factory, redis, backend):
    primary = redis_factory()
    gateway = gateway_factory(redis, resume_redis_url=primary.url, resume_stream="wake:me")
    pause(redis, "res18")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gateway.get, "res18", backend.port)
        wait_for(lambda: entries(primary, "wake:me"), 10)
        assert primary.command("EXISTS", "sandbox:catalog:res18:resuming") == 1
        assert redis.command("EXISTS", STREAM) == 0
        redis.hset("res18", state="running", addr="127.0.0.1")
        assert answer.result(10).status == 200


def test_http2_streams_are_held_and_released(gateway, redis, backend):
    pause(redis, "res19")
    authority = gateway.host("res19", backend.port)
    with H2Client(gateway.port) as client:
        streams = [client.request(authority, f"/h2/{i}") for i in range(5)]
        client.read(0.3)
        wait_for(lambda: entries(redis), 10)
        redis.hset("res19", state="running", addr="127.0.0.1")
        for stream in streams:
            assert client.response(stream).status == 200
    assert sorted(request.path for request in backend.requests) == [f"/h2/{i}" for i in range(5)]


def test_http2_stream_timeout_and_reset(gateway_factory, redis, backend):
    gateway = admin_gateway(gateway_factory, redis, resume_timeout="700ms")
    pause(redis, "res20")
    authority = gateway.host("res20", backend.port)
    with H2Client(gateway.port) as client:
        reset = client.request(authority, "/reset")
        timed = client.request(authority, "/timeout")
        client.read(0.2)
        wait_for(lambda: gateway_metrics(gateway)["sgw_resume_held"] == 2, 5)
        client.conn.reset_stream(reset)
        client.flush()
        assert client.response(timed).status == 504
    metrics = gateway_metrics(gateway)
    assert metrics['sgw_resume_waits_total{outcome="gone"}'] == 1
    assert metrics['sgw_resume_waits_total{outcome="timeout"}'] == 1


def test_held_websocket_upgrade_becomes_a_tunnel(gateway, redis, backend):
    pause(redis, "res21")
    host = gateway.host("res21", backend.port)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as connection:
        connection.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n\r\n".encode())
        resume_after_request(redis, "res21", 0.1)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = connection.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        connection.sendall(b"hello")
        assert connection.recv(5) == b"HELLO"


@pytest.fixture
def admin_gateway_factory(gateway_factory, redis):
    return lambda **directives: admin_gateway(gateway_factory, redis, **directives)
