"""`lanner simulate --in-pod --start-agent` against the harness's private containerd: every container-only action
is detected (Lanner's default rules: all; Falco's rules: those whose rule is a stable rule), the TTY one included
when `ctr` is installed (it is run with `ctr tasks exec --tty`), and the throwaway pod is gone afterwards (sandbox,
container, pod cgroup folders)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lanner.simulate.actions import ACTIONS
from lanner.simulate.pod import NO_CTR, POD_STEPS, PRIVILEGED_ACTIONS
from lanner.simulate.verify import rule_names
from tests.agent_support import require_agent_machine
from tests.conftest import ROOT
from tests.containers.harness import Containerd, cri

DEFAULT_RULES = ROOT / "lanner" / "rules" / "default" / "lanner_rules.yaml"
FALCO_RULES = Path("/work/shared/falco/rules/falco_rules.yaml")
CONTAINER_ACTIONS = sorted(a.name for a in ACTIONS.values() if a.container_only)
HAVE_CTR = shutil.which("ctr") is not None


def _performable(name: str) -> bool:
    """ExecSync can do it, or it needs a TTY and ctr is here (the harness's runtime is containerd)."""
    step = POD_STEPS[name]
    return step.script is not None and (not step.tty or HAVE_CTR)


def _simulate(containerd: Containerd, *rules: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "lanner", "simulate", "--in-pod", "--start-agent", "--cri-socket",
            str(containerd.socket), "--json"]
    for r in rules:
        argv += ["-r", str(r)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert res.returncode in (0, 1), f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    out: dict[str, Any] = json.loads(res.stdout)
    summ = out["summary"]
    print(f"\n{[r.name for r in rules]}: {summ['detected']}/{summ['performed']} detected, "
          f"p50 {summ['latency_ms_p50']} ms, worst {summ['latency_ms_worst']} ms")
    for r in out["results"]:
        print(f"  {r['action']:<42} {r['rule'] or r['skipped'] or r['error']}  {r['latency_ms']}")
    return out


def _no_pods_left(containerd: Containerd) -> None:
    pods = containerd.runtime.ListPodSandbox(cri.pb.ListPodSandboxRequest(), timeout=30).items
    ours = [p.metadata.name for p in pods if p.metadata.namespace == "lanner-simulate"]
    assert not ours, f"pods left behind: {ours}"
    left = [str(d) for d in Path("/sys/fs/cgroup").glob("*/kubepods/besteffort/pod*")
            if not any(p.uid in str(d) for p in containerd.pods.values())]
    assert not left, f"pod cgroups left behind: {left}"


def _check(out: dict[str, Any], loaded: set[str]) -> None:
    results = {r["action"]: r for r in out["results"]}
    assert sorted(results) == CONTAINER_ACTIONS
    for name in CONTAINER_ACTIONS:
        act, r = ACTIONS[name], results[name]
        if not set(act.rules) & loaded:
            assert r["skipped"] == "rule not loaded", r
        elif not _performable(name):
            assert r["skipped"] == NO_CTR, r
        else:
            assert r["detected"], r
    summ = out["summary"]
    assert summ["performed"] > 0 and summ["detected"] == summ["performed"] and not summ["missed"], summ


@pytest.fixture(scope="module")
def kernel_ready() -> None:
    require_agent_machine()


def test_in_pod_default_rules(kernel_ready: None, containerd: Containerd) -> None:
    out = _simulate(containerd)
    _check(out, rule_names([DEFAULT_RULES]))
    # every container action of the default rules was performed (the TTY one when ctr is here)
    performed = {r["action"] for r in out["results"] if not r["skipped"]}
    assert performed == {n for n in CONTAINER_ACTIONS if ACTIONS[n].lanner_rule and _performable(n)}
    if HAVE_CTR:
        assert "TerminalShellInContainer" in performed and len(performed) == 6, performed
    _no_pods_left(containerd)


@pytest.mark.skipif(not FALCO_RULES.is_file(), reason=f"{FALCO_RULES} not present")
def test_in_pod_falco_rules(kernel_ready: None, containerd: Containerd) -> None:
    out = _simulate(containerd, FALCO_RULES)
    stable = rule_names([FALCO_RULES])
    _check(out, stable)
    performed = {r["action"] for r in out["results"] if not r["skipped"]}
    assert performed == {n for n in CONTAINER_ACTIONS if ACTIONS[n].falco_rule in stable and _performable(n)}
    if HAVE_CTR:
        assert "TerminalShellInContainer" in performed and len(performed) == 8, performed
    assert set(PRIVILEGED_ACTIONS) & performed  # the pod was privileged for them
    _no_pods_left(containerd)
