"""The fixtures and hooks of the test suite: the builds, a private redis-server, recording and scripted
backends, the gateway. What they are built on lives in tests/lib/.

Everything listens on 127.0.0.1 (backends also on 127.0.0.2) on ports found by binding port 0.
Every test that uses `build` runs once against build/ and once against build-asan/.
"""
import sys
from pathlib import Path

import pytest

# Test modules import the helpers as lib.<module>: tests/ must be on the path (pytest's default
# import mode puts it there for this file; other modes do not).
TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from lib.backends import Backend, RawServer  # noqa: E402
from lib.builds import BUILD_DIRS, Build  # noqa: E402
from lib.gateway import Gateway  # noqa: E402
from lib.redis import RedisServer  # noqa: E402
from lib.util import REPO, require  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "sgw_required(reason): set by lib.util.require_module; "
                                       "each test of the module fails with reason")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Under SGW_REQUIRE_BUILDS=1, a module that lib.util.require_module did not skip fails each
    of its tests before their fixtures run."""
    for mark in item.iter_markers("sgw_required"):
        require(False, mark.args[0])


# --------------------------------------------------------------------------- builds

@pytest.fixture(scope="session", params=BUILD_DIRS)
def build(request):
    built = Build(request.param, REPO / request.param)  # an absolute param stays absolute
    require(built.binary.is_file(),
            f"{request.param}/sandbox-gateway does not exist "
            f"(build it with `make {'asan' if built.sanitized else 'build'}`)")
    return built


# --------------------------------------------------------------------------- redis

@pytest.fixture
def redis_factory(tmp_path):
    servers = []

    def make(notify="Kgh"):
        server = RedisServer(tmp_path / f"redis{len(servers)}", notify=notify)
        servers.append(server)
        server.start()
        return server
    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def redis(redis_factory):
    return redis_factory()


# --------------------------------------------------------------------------- backends

@pytest.fixture
def backend_factory():
    backends = []

    def make(name=None, host="127.0.0.1", port=0):
        backend = Backend(name or f"backend{len(backends)}", host, port)
        backends.append(backend)
        return backend
    yield make
    for backend in backends:
        backend.stop()


@pytest.fixture
def backend(backend_factory):
    return backend_factory("main")


@pytest.fixture
def backend_pair(backend_factory):
    """Two backends on one port number: 127.0.0.1:P ("one") and 127.0.0.2:P ("two")."""
    for _ in range(20):
        first = backend_factory("one", "127.0.0.1")
        try:
            second = backend_factory("two", "127.0.0.2", first.port)
        except OSError:
            continue
        return first, second
    pytest.fail("could not bind 127.0.0.1 and 127.0.0.2 on one port")


@pytest.fixture
def raw_server_factory():
    """raw_server_factory(handler, host=, port=, backlog=): a RawServer stopped at teardown.

    Request it before gateway_factory so that gateways stop first."""
    servers = []

    def make(handler, host="127.0.0.1", port=0, backlog=128):
        server = RawServer(handler, host, port, backlog)
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- gateway

@pytest.fixture
def gateway_factory(build, tmp_path, request, redis_factory, backend_factory):
    """gateway_factory(redis, **directives, extra=[lines], start=True): a running gateway.

    It depends on the Redis and backend factories so that gateways stop before them."""
    gateways = []
    request.node.sgw_gateways = gateways

    def make(redis=None, extra=(), start=True, wait_routable=True, **directives):
        workdir = tmp_path / f"gateway{len(gateways)}"
        workdir.mkdir()
        gateway = Gateway(build, workdir, redis, directives, extra)
        gateways.append(gateway)
        if start:
            gateway.start(wait_routable=wait_routable)
        return gateway
    yield make
    problems = []
    for gateway in gateways:
        try:
            gateway.check_exit()
        except AssertionError as error:
            problems.append(str(error))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(gateway_factory, redis):
    """A running gateway (one worker) on the test's redis."""
    return gateway_factory(redis)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for index, gateway in enumerate(getattr(item, "sgw_gateways", [])):
            text = gateway.stderr_text()
            if text:
                report.sections.append((f"gateway {index} stderr (last 6000 chars)", text[-6000:]))
