"""Shared test set-up: where the reference data is, and the kernel-test policy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LANNER_SHARED", ROOT.parent / "shared"))
FALCO_RULES = SHARED / "falco" / "rules"


def require_or_skip(reason: str) -> None:
    """Skip a test that needs the kernel or containerd, or fail under LANNER_REQUIRE_KERNEL=1 (CI)."""
    if os.environ.get("LANNER_REQUIRE_KERNEL") == "1":
        pytest.fail(f"required environment missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def falco_rules_dir() -> Path:
    if not (FALCO_RULES / "falco_rules.yaml").exists():
        pytest.fail(f"Falco reference rules not found under {FALCO_RULES} (set LANNER_SHARED)")
    return FALCO_RULES


@pytest.fixture
def learn_runs() -> Iterator[list[Any]]:
    """`lanner learn` runs a test started (tests.learn_support.Learn), killed if still running at its end."""
    runs: list[Any] = []
    yield runs
    for r in runs:
        r.kill()
