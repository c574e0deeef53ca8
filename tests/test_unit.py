"""Runs every cmocka unit-test binary of each build (<build>/unit/unit_<folder>_test_<name>), one test each."""
import os
import subprocess

from lib.builds import BUILD_DIRS
from lib.util import REPO, SANITIZER_ENV, require, sanitizer_findings


def unit_binaries():
    names = set()
    for build_dir in BUILD_DIRS:
        unit_dir = REPO / build_dir / "unit"
        if unit_dir.is_dir():
            names.update(entry.name for entry in unit_dir.iterdir()
                         if entry.is_file() and os.access(entry, os.X_OK))
    return sorted(names)


def pytest_generate_tests(metafunc):
    if "unit_binary" in metafunc.fixturenames:
        names = unit_binaries()
        metafunc.parametrize("unit_binary", names or ["<none>"])


def test_unit_binary(build, unit_binary):
    require(unit_binary != "<none>",
            "no unit-test binaries in build*/unit/ (tests/unit/<folder>/test_*.c, cmocka)")
    binary = build.path / "unit" / unit_binary
    require(binary.is_file(), f"{build.name}/unit/{unit_binary} is missing while another build has it")
    env = dict(os.environ, **SANITIZER_ENV)
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300,
                            cwd=REPO, env=env, stdin=subprocess.DEVNULL)
    output = f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    assert not sanitizer_findings(result.stderr), f"sanitizer report from {binary}:\n{output}"
    assert result.returncode == 0, f"{binary} exited with {result.returncode}:\n{output}"
