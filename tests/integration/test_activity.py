"""Sandbox activity and usage (DESIGN "Activity"): once per activity_interval each worker writes
ZADD sandbox:activity GT <unix ms of the last request> <id> and HINCRBY sandbox:usage:<id>
requests / bytes_in / bytes_out, on resume_redis_url; an open tunnel keeps its sandbox active;
off writes nothing; a Redis outage never blocks a request."""
import time

from lib.util import wait_for


def usage(redis, sandbox):
    pairs = redis.command("HGETALL", f"sandbox:usage:{sandbox}") or []
    return {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}


def test_requests_and_bytes_are_written_each_interval(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, activity_interval="200ms")
    redis.put("act1")
    started = time.time() * 1000
    for _ in range(3):
        assert gateway.get("act1", backend.port, "/x").status == 200
    assert gateway.get("nosuchact", backend.port).status == 502  # routed: it counts too
    counted = wait_for(lambda: (lambda u: u if u.get("requests") == 3 else None)(usage(redis, "act1")), 5)
    assert counted["bytes_in"] > 3 * 20 and counted["bytes_out"] > 3 * 100, counted
    score = float(redis.command("ZSCORE", "sandbox:activity", "act1"))
    assert started - 1000 <= score <= time.time() * 1000, score
    wait_for(lambda: usage(redis, "nosuchact").get("requests") == 1, 5)
    # The counters add up over intervals; the activity only moves forward (GT).
    assert gateway.get("act1", backend.port).status == 200
    wait_for(lambda: usage(redis, "act1").get("requests") == 4, 5)
    later = float(redis.command("ZSCORE", "sandbox:activity", "act1"))
    assert later >= score
    redis.command("ZADD", "sandbox:activity", str(int(later) + 10_000_000), "act1")
    assert gateway.get("act1", backend.port).status == 200
    wait_for(lambda: usage(redis, "act1").get("requests") == 5, 5)
    assert float(redis.command("ZSCORE", "sandbox:activity", "act1")) == int(later) + 10_000_000


def test_the_longest_sandbox_id_is_written_whole(gateway_factory, redis, backend):
    """The usage key is sandbox:usage: and all 63 characters of the longest ID routing allows."""
    gateway = gateway_factory(redis, activity_interval="200ms")
    sandbox_id = "y" * 63
    redis.put(sandbox_id)
    assert gateway.get(sandbox_id, backend.port).status == 200
    wait_for(lambda: usage(redis, sandbox_id).get("requests") == 1, 5)
    assert redis.command("ZSCORE", "sandbox:activity", sandbox_id) is not None


def test_an_open_tunnel_keeps_its_sandbox_active(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, activity_interval="200ms")
    redis.put("actws")
    with gateway.connect() as connection:
        connection.send(f"GET /ws HTTP/1.1\r\nHost: {gateway.host('actws', backend.port)}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode())
        head = connection.read_response()
        assert head.status == 101, head
        first = float(wait_for(lambda: redis.command("ZSCORE", "sandbox:activity", "actws"), 5))
        time.sleep(0.8)
        second = float(redis.command("ZSCORE", "sandbox:activity", "actws"))
        assert second - first >= 400, (first, second)  # written again while the tunnel is open


def test_off_writes_nothing(gateway_factory, redis, backend):
    gateway = gateway_factory(redis, activity_interval="off")
    redis.put("actoff")
    assert gateway.get("actoff", backend.port).status == 200
    time.sleep(1.5)
    assert redis.command("EXISTS", "sandbox:usage:actoff") == 0
    assert redis.command("ZSCORE", "sandbox:activity", "actoff") is None


def test_a_separate_resume_redis_and_its_outage(gateway_factory, redis_factory, redis, backend):
    other = redis_factory()
    gateway = gateway_factory(redis, activity_interval="200ms", resume_redis_url=other.url)
    redis.put("actsep")
    assert gateway.get("actsep", backend.port).status == 200
    wait_for(lambda: usage(other, "actsep").get("requests") == 1, 5)
    assert redis.command("EXISTS", "sandbox:usage:actsep") == 0
    other.stop()
    started = time.monotonic()
    for _ in range(5):
        assert gateway.get("actsep", backend.port).status == 200
    assert time.monotonic() - started < 2


def test_a_cached_route_counts_to_its_own_sandbox_after_its_counters_are_dropped(
        gateway_factory, redis, backend):
    """A cached record remembers where its sandbox's counters are. A sandbox with nothing to say
    for an interval is dropped from the worker's counters and the next sandbox served takes their
    place: the record's next request counts to its own sandbox, never to that one."""
    gateway = gateway_factory(redis, activity_interval="200ms", route_cache_ttl="30s")
    redis.put("hintacta")
    redis.put("hintactb")
    with gateway.connect() as connection:  # one connection: one worker, its records and counters
        def get(sandbox_id):
            response = connection.request("GET", "/", host=gateway.host(sandbox_id, backend.port))
            assert response.status == 200, response
        get("hintacta")
        get("hintacta")
        wait_for(lambda: usage(redis, "hintacta").get("requests") == 2, 5)
        time.sleep(0.6)  # an interval with nothing to say: hintacta's counters are dropped
        get("hintactb")  # its counters take their place
        get("hintacta")  # from the cached record
        get("hintactb")
    wait_for(lambda: usage(redis, "hintactb").get("requests") == 2, 5)
    wait_for(lambda: usage(redis, "hintacta").get("requests") == 3, 5)
    time.sleep(0.5)  # two more intervals: nothing more counted
    assert usage(redis, "hintacta")["requests"] == 3 and usage(redis, "hintactb")["requests"] == 2


def test_every_sandbox_of_a_busy_worker_is_written(gateway_factory, redis, backend):
    """A worker writes 256 sandboxes a step, steps 2 ms apart (neither the worker nor Redis takes a
    whole interval's commands at once): 700 sandboxes, three steps, each written once an interval
    with exact counts."""
    gateway = gateway_factory(redis, activity_interval="300ms")
    sandboxes = [f"actmany{i:03d}" for i in range(700)]
    redis.pipeline([("HSET", redis.key(sandbox), "addr", "127.0.0.1", "execution_id", f"{sandbox}-1")
                    for sandbox in sandboxes])
    started = time.time() * 1000
    with gateway.connect() as connection:
        for i, sandbox in enumerate(sandboxes):
            for _ in range(i % 3 + 1):
                connection.send(f"GET / HTTP/1.1\r\nHost: {gateway.host(sandbox, backend.port)}\r\n\r\n".encode())
                assert connection.read_response().status == 200
    last = len(sandboxes) - 1
    wait_for(lambda: usage(redis, sandboxes[last]).get("requests") == last % 3 + 1, 5)
    time.sleep(0.7)  # two more intervals: nothing counted twice
    counts = redis.pipeline([("HGET", f"sandbox:usage:{sandbox}", "requests") for sandbox in sandboxes])
    assert counts == [str(i % 3 + 1) for i in range(len(sandboxes))]
    scores = redis.pipeline([("ZSCORE", "sandbox:activity", sandbox) for sandbox in sandboxes])
    assert all(started - 1000 <= float(score) <= time.time() * 1000 for score in scores), scores
