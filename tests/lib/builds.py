"""The build directories the suite runs against, and their sandbox-gateway binary."""
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lib.util import SANITIZER_ENV, sanitizer_findings

# The builds every test runs against; SGW_BUILDS="build-mine,/abs/dir" tests other build directories.
BUILD_DIRS = [name for name in os.environ.get("SGW_BUILDS", "build,build-asan").split(",") if name]


@dataclass
class Build:
    name: str
    path: Path

    @property
    def binary(self):
        return self.path / "sandbox-gateway"

    @property
    def sanitized(self):
        return "asan" in Path(self.name).name

    def env(self):
        env = dict(os.environ)
        env.update(SANITIZER_ENV)
        return env

    def run(self, *args, timeout=30, check_sanitizers=True):
        """Runs the binary to completion (for -t, --version, --help)."""
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                                timeout=timeout, env=self.env(), stdin=subprocess.DEVNULL)
        if check_sanitizers:
            findings = sanitizer_findings(result.stderr)
            assert not findings, f"sanitizer report from {self.binary} {args}:\n{result.stderr}"
        return result
