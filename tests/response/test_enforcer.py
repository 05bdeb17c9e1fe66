"""The enforcer's bookkeeping of containers on the real cgroup tree (no mechanism started)."""

from __future__ import annotations

import os
import subprocess
import sys

from lanner.config import Enforcement
from lanner.events import Container
from lanner.response import plan as P
from lanner.response.enforcer import Enforcer
from lanner.response.safety import Protection
from tests.response.conftest import Cgroup


def test_a_workload_follows_its_cgroup_until_no_process_is_left(test_cgroup: Cgroup) -> None:
    enforcer = Enforcer([], Enforcement(), Protection(os.getpid()), log=lambda msg: None)
    first = subprocess.Popen([sys.executable, "-c", "pass"], preexec_fn=test_cgroup.enter)
    first.wait()
    second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], preexec_fn=test_cgroup.enter)
    try:
        container = Container(id="c" * 64)
        enforcer.workloads[test_cgroup.id] = P.Workload(test_cgroup.id, container, first.pid)
        assert enforcer._prune()  # the first process is gone: the one left in the cgroup takes over
        assert enforcer.workloads[test_cgroup.id].pid == second.pid
        assert enforcer.cgroup_of_container("c" * 64) == test_cgroup.id
        assert not enforcer._prune()
    finally:
        second.kill()
        second.wait()
    assert enforcer._prune() and test_cgroup.id not in enforcer.workloads
    assert set(enforcer.workloads) == {0}  # the host stays
    enforcer.close()
