"""The test suite's helpers; tests/conftest.py holds only the fixtures and hooks built on them.

util      the repository, free ports, wait_for, sanitizer reports, require() (skip or, under
          SGW_REQUIRE_BUILDS=1, fail)
builds    the build directories (SGW_BUILDS) and their binary
redis     a private redis-server and a minimal RESP client
http      the raw HTTP/1.1 client and its Response; RawStream for scripted peers
backends  the recording HTTP backend; RawServer, the scripted one
gateway   the gateway process and its configuration; admin requests and metrics
"""
