"""The Redis catalog: record changes, keyspace notifications, Redis outages, malformed records."""
import threading
import time

import pytest

from conftest import wait_for


def backend_name(gateway, sandbox_id, port):
    response = gateway.get(sandbox_id, port)
    if response.status != 200:
        return f"status {response.status}"
    return response.json()["backend"]


def test_change_seen_within_cache_ttl_without_notifications(gateway_factory, redis_factory, backend_pair):
    one, two = backend_pair
    redis = redis_factory(notify="")
    gateway = gateway_factory(redis, route_cache_ttl="1s")
    redis.put("moving1", addr="127.0.0.1")
    assert backend_name(gateway, "moving1", one.port) == "one"
    redis.put("moving1", addr="127.0.0.2")
    changed = time.monotonic()
    wait_for(lambda: backend_name(gateway, "moving1", one.port) == "two", 5, 0.05,
             "the new addr to be used (route_cache_ttl 1s)")
    elapsed = time.monotonic() - changed
    assert elapsed < 1.0 + 1.5, f"took {elapsed:.2f}s with route_cache_ttl 1s"


def test_change_seen_within_100ms_with_notifications(gateway_factory, redis, backend_pair):
    one, two = backend_pair
    gateway = gateway_factory(redis, route_cache_ttl="60s")
    wait_for(lambda: redis.subscribed_clients() > 0, 10, 0.02, "the gateway to subscribe to notifications")
    redis.put("moving2", addr="127.0.0.1")
    with gateway.connect() as connection:
        host = gateway.host("moving2", one.port)
        assert connection.request("GET", "/", host=host).json()["backend"] == "one"
        redis.hset("moving2", addr="127.0.0.2")
        changed = time.monotonic()

        def moved():
            response = connection.request("GET", "/", host=host)
            return response.status == 200 and response.json()["backend"] == "two"
        wait_for(moved, 5, 0.01, "a notified change to be used (route_cache_ttl 60s)")
        elapsed = time.monotonic() - changed
    # DESIGN: 100 ms; the margin is for a loaded 2-core CI machine.
    assert elapsed < 0.6, f"the change took {elapsed * 1000:.0f} ms"


def test_delete_seen_with_notifications(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, route_cache_ttl="60s")
    wait_for(lambda: redis.subscribed_clients() > 0, 10, 0.02, "the gateway to subscribe to notifications")
    redis.put("gone1")
    assert gateway.get("gone1", backend.port).status == 200
    redis.delete("gone1")
    deleted = time.monotonic()
    wait_for(lambda: gateway.get("gone1", backend.port).status == 502, 5, 0.01, "the deleted route to go")
    assert time.monotonic() - deleted < 0.6
    assert gateway.get("gone1", backend.port).json()["message"] == "The sandbox was not found"


def test_record_created_after_miss_is_found(gateway_factory, redis_factory, backend):
    redis = redis_factory(notify="")
    gateway = gateway_factory(redis, route_negative_ttl="1s")
    assert gateway.get("late1", backend.port).status == 502
    redis.put("late1")
    created = time.monotonic()
    wait_for(lambda: gateway.get("late1", backend.port).status == 200, 5, 0.05,
             "a new record to be found after route_negative_ttl")
    assert time.monotonic() - created < 1.0 + 1.5


def test_redis_outage_and_recovery(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, route_cache_ttl="1s", route_stale_ttl="30s", redis_timeout="500ms")
    redis.put("cached1")
    redis.put("fresh1")
    assert gateway.get("cached1", backend.port).status == 200

    redis.stop()
    # Still served from the cache, also past route_cache_ttl (stale while Redis is unreachable).
    assert gateway.get("cached1", backend.port).status == 200
    time.sleep(1.3)
    for _ in range(3):
        response = gateway.get("cached1", backend.port)
        assert response.status == 200, response
    # Not cached: 503.
    response = gateway.get("fresh1", backend.port, timeout=10)
    assert response.status == 503, response
    body = response.json()
    assert body["message"] == "Sandbox routing is temporarily unavailable", body
    assert body["code"] == 503 and body["sandboxId"] == "fresh1", body

    redis.start()  # same port, empty data
    redis.put("fresh1")
    restarted = time.monotonic()
    wait_for(lambda: gateway.get("fresh1", backend.port).status == 200, 10, 0.1,
             "lookups to work again after Redis restarted")
    elapsed = time.monotonic() - restarted
    assert elapsed < 3.0, f"the gateway took {elapsed:.1f}s to use the restarted Redis"


def test_redis_down_at_start_then_up(gateway_factory, redis, backend):
    redis.stop()
    gateway = gateway_factory(redis, wait_routable=False)
    response = gateway.get("early1", backend.port, timeout=10)
    assert response.status == 503, response
    redis.start()
    redis.put("early1")
    wait_for(lambda: gateway.get("early1", backend.port).status == 200, 10, 0.1,
             "lookups to work once Redis came up")


@pytest.mark.parametrize("fields", [
    {"addr": "not-an-ip"},
    {"addr": ""},
    {"addr": "127.0.0.1:3000"},
    {"addr": None},
    {"max_connections": "many"},
    {"allow_public_traffic": "maybe"},
])
def test_malformed_record_is_502(gateway, redis, backend, fields):
    redis.put("broken1", **fields)
    response = gateway.get("broken1", backend.port)
    assert response.status == 502, response
    body = response.json()
    assert body["code"] == 502 and body["sandboxId"] == "broken1", body
    assert backend.count() == 0


def test_key_prefix(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, redis_key_prefix="custom:prefix:")
    redis.put("pref1", prefix="custom:prefix:")
    redis.put("pref2")  # under the default prefix: not seen
    assert gateway.get("pref1", backend.port).status == 200
    assert gateway.get("pref2", backend.port).status == 502


def test_concurrent_misses_share_one_lookup(gateway, redis, backend):
    """Single-flight: many simultaneous requests for one uncached sandbox, few HGETALLs."""
    redis.put("flight1")
    before = redis.hgetall_calls()
    connections = [gateway.connect() for _ in range(20)]
    request = (f"GET / HTTP/1.1\r\nHost: {gateway.host('flight1', backend.port)}\r\n\r\n").encode()
    statuses = []
    lock = threading.Lock()

    def go(connection):
        connection.send(request)
        response = connection.read_response()
        with lock:
            statuses.append(response.status)
    threads = [threading.Thread(target=go, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for connection in connections:
        connection.close()
    assert statuses == [200] * 20
    # One worker: one lookup, unless the cache TTL (1s) ran out during the burst on a slow machine.
    assert redis.hgetall_calls() - before <= 3
