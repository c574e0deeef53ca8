"""Runs every libFuzzer target of build-fuzz/ (tests/fuzz/) for a few seconds over its corpus:
every input found so far, each fixed crash among them, is replayed, and a few seconds of new
inputs are tried, so a parser regression fails the suite. `make fuzz` runs them for longer."""
import os
import subprocess

import pytest

from lib.util import REPO, require

FUZZ_BUILD = REPO / os.environ.get("SGW_FUZZ_BUILD", "build-fuzz")
SECONDS = os.environ.get("SGW_FUZZ_SECONDS", "5")
TARGETS = sorted(path.stem for path in (REPO / "tests" / "fuzz").glob("fuzz_*.c"))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target):
    binary = FUZZ_BUILD / "fuzz" / target
    require(binary.is_file(), f"{binary} does not exist (make fuzz-build: clang and libclang-rt-14-dev)")
    result = subprocess.run(["bash", str(REPO / "tests" / "fuzz" / "run"), SECONDS, target],
                            capture_output=True, text=True, timeout=int(SECONDS) * 4 + 300,
                            cwd=REPO, env=dict(os.environ, SGW_FUZZ_BUILD=str(FUZZ_BUILD)),
                            stdin=subprocess.DEVNULL)
    log = FUZZ_BUILD / "logs" / f"{target}.log"
    tail = log.read_text(errors="replace")[-4000:] if log.is_file() else ""
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n--- {log} ---\n{tail}"
