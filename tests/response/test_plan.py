"""The plan joins policies and workloads: paths as the agent reaches them, scopes and modes."""

from __future__ import annotations

import os
from pathlib import Path

from lanner.config import Enforcement
from lanner.events import Container
from lanner.response import plan as P
from lanner.rules.policy import ExecAllow, ExecDeny, ExecDrift, NetDeny, OpenDeny, Policy, Scope


def test_effective_mode() -> None:
    s = Enforcement(mode="enforce", namespaces={"staging": "monitor", "prod": "enforce"})
    assert P.effective_mode(None, None, s) == "enforce"
    assert P.effective_mode(None, "staging", s) == "monitor"
    assert P.effective_mode("enforce", "staging", s) == "monitor"  # an explicit monitor wins
    assert P.effective_mode("monitor", "prod", s) == "monitor"
    default = Enforcement()
    assert default.mode == "monitor" and P.effective_mode(None, "x", default) == "monitor"
    assert P.effective_mode(None, "prod", Enforcement(namespaces={"prod": "enforce"})) == "enforce"
    assert P.effective_mode("enforce", None, Enforcement(mode="enforce", monitor_only=True)) == "monitor"


def _container(pid: int, ns: str = "prod", image: str = "docker.io/library/app") -> P.Workload:
    return P.Workload(1000 + pid, Container(id=f"{pid:064d}", image_repository=image, pod_namespace=ns), pid)


def test_build_places_each_policy_in_the_workloads_it_covers(tmp_path: Path) -> None:
    me = os.getpid()  # a "container" whose root is this process's root, so its paths exist
    prog = tmp_path / "prog"
    prog.write_text("#!/bin/sh\n")
    (tmp_path / "dir").mkdir()
    policies = [
        Policy("deny", ExecDeny(frozenset({str(prog), "/nonexistent/x"})), Scope(), None),
        Policy("allow", ExecAllow(frozenset({str(prog)})), Scope(images=frozenset({"docker.io/library/app"})),
               "enforce"),
        Policy("drift", ExecDrift(), Scope(containers_only=True), None),
        Policy("open", OpenDeny(frozenset({str(tmp_path / "dir")}), write=True, read=False), Scope(host_only=True),
               None),
        Policy("net", NetDeny(True, False, None, frozenset({9}), frozenset({4})), Scope(namespaces=frozenset({"dev"})),
               None),
    ]
    settings = Enforcement(mode="enforce", namespaces={"staging": "monitor"})
    prod, staging = _container(me, "prod"), P.Workload(7, Container(id="s" * 64, image_repository="x",
                                                                    pod_namespace="staging"), me)
    plan = P.build(policies, [P.HOST, prod, staging], settings)
    root = f"/proc/{me}/root"
    assert plan.exec_deny == [P.FileRule(0, True, str(prog), 0), P.FileRule(0, True, root + str(prog), prod.cgroup_id),
                              P.FileRule(0, False, root + str(prog), 7)]
    assert any("/nonexistent/x does not exist in the host" in s for s in plan.skipped)
    assert plan.allow == [P.AllowRule(1, True, prod.cgroup_id, (root + str(prog),))]
    assert plan.drift == [P.DriftRule(2, True, prod.cgroup_id), P.DriftRule(2, False, 7)]
    assert plan.open_deny == [P.DirRule(3, True, str(tmp_path / "dir"), True, False, 0)]
    assert plan.net == []  # no workload in namespace dev
    dev = P.Workload(9, Container(id="d" * 64, pod_namespace="dev"), me)
    net = P.build(policies[4:], [P.HOST, dev], settings).net
    assert net == [P.NetRule(0, True, 9, None, frozenset({9}), frozenset({4}), True, False)]
