# Thin wrapper around the CMake build: make run, make test, and the builds they use.
SHELL := /bin/bash
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON ?= /usr/bin/python3
SGW_WERROR ?= OFF
PYTEST_ARGS ?=

.PHONY: all build asan fuzz-build fuzz test unit run deps clean bench

all: build

deps:
	bash scripts/deps.sh build

# Release build: build/sandbox-gateway (and build/unit/* when cmocka is installed).
build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSGW_SANITIZE=OFF -DSGW_WERROR=$(SGW_WERROR)
	cmake --build build -j $(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer build: build-asan/sandbox-gateway.
asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSGW_SANITIZE=ON -DSGW_WERROR=$(SGW_WERROR)
	cmake --build build-asan -j $(JOBS)

# libFuzzer targets of tests/fuzz/ (clang, ASan+UBSan): build-fuzz/fuzz/fuzz_*.
fuzz-build:
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSGW_FUZZ=ON -DSGW_WERROR=$(SGW_WERROR)
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets

# Runs each fuzz target for FUZZ_SECONDS (default 60) and prints a table; crashes land in build-fuzz/artifacts/.
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/deps.sh fuzz
	$(MAKE) --no-print-directory fuzz-build
	bash tests/fuzz/run $(FUZZ_SECONDS)

# Installs what is missing, builds all three with -Werror, then one pytest run: every unit binary
# and every integration test against build/ and build-asan/, and each fuzz target for 5 s.
test:
	bash scripts/deps.sh test
	$(MAKE) --no-print-directory build asan fuzz-build SGW_WERROR=ON
	SGW_REQUIRE_BUILDS=1 $(PYTHON) -m pytest -v tests/ $(PYTEST_ARGS)

run:
	bash scripts/run.sh

# Measures the gateway beside nginx and HAProxy (bench/run; `bash bench/run --quick` takes about 2.5 minutes).
bench:
	bash bench/run

clean:
	rm -rf build build-asan build-fuzz .run .pytest_cache
