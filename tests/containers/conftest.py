"""Container tests: one private containerd for the session, real pods made through the CRI.

`containerd` (session) is a started tests.containers.harness.Containerd; pods a test makes with
`containerd.run_pod(...)` are removed after that test. Needs root, containerd, runc,
containernetworking-plugins, busybox-static, gcc and the CRI stubs, all installed by `make setup`;
without them the tests skip (fail under LANNER_REQUIRE_KERNEL=1).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_or_skip
from tests.containers.harness import Containerd, HarnessError, missing_prerequisites

CRI_STUBS = ROOT / "build" / "cri"  # the generated package lanner_cri (scripts/setup.sh)
if str(CRI_STUBS) not in sys.path:
    sys.path.insert(0, str(CRI_STUBS))

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    missing = missing_prerequisites()
    if missing:
        require_or_skip("a private containerd needs: " + ", ".join(missing))
    Containerd.reclaim_stale()  # instances of test runs that were killed before their teardown
    cd = Containerd()
    try:
        cd.start()
    except BaseException:
        cd.close()
        raise
    yield cd
    problems = cd.close()
    left = cd.leftovers()
    if problems or left:
        raise HarnessError(f"containerd teardown: problems {problems}, left behind {left}")


@pytest.fixture(autouse=True)
def _remove_pods_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pods made during a test (not those of wider-scoped fixtures) are removed after it."""
    if "containerd" not in request.fixturenames:
        yield
        return
    cd: Containerd = request.getfixturevalue("containerd")
    before = set(cd.pods)
    yield
    errors = cd.remove_pods(keep=before)
    if errors:
        raise HarnessError("removing the test's pods: " + "; ".join(errors))
