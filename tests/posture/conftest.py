from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MANIFESTS = HERE / "manifests"
ROOT = HERE.parent.parent


def run_lanner(*args: str, stdin: bytes | None = None, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m lanner`` as a user would, returning its exit code and output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lanner", *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


@pytest.fixture
def manifests() -> Path:
    return MANIFESTS
