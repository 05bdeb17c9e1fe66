"""`lanner simulate --start-agent --json` for real: the agent it starts must detect every host action.

With Lanner's default rules every host action is expected by a loaded rule and must be detected (100 %); with
Falco's falco_rules.yaml every action whose rule is a stable host rule must be. Latencies (p50, worst) are
printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lanner.simulate.actions import ACTIONS
from tests.conftest import ROOT, SHARED, require_or_skip

FALCO_RULES = SHARED / "falco" / "rules" / "falco_rules.yaml"


@pytest.fixture(scope="module")
def kernel_ready() -> None:
    if os.geteuid() != 0:
        require_or_skip("lanner simulate and the agent need root")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        require_or_skip("the sensor needs BTF (/sys/kernel/btf/vmlinux)")
    if not (ROOT / "build" / "bpf" / "sensor.bpf.o").exists():
        require_or_skip("BPF objects not built (make setup)")


def simulate(*args: str) -> tuple[int, dict[str, Any]]:
    res = subprocess.run([sys.executable, "-m", "lanner", "simulate", "--start-agent", "--json", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode in (0, 1), f"exit {res.returncode}: {res.stderr}"
    out: dict[str, Any] = json.loads(res.stdout)
    for r in out["results"]:
        if not r["skipped"]:
            print(f"{r['action']:<40} {r['rule']!s:<50} {r['detected']!s:<5} {r['latency_ms']} ms {r['error'] or ''}")
    s = out["summary"]
    print(f"{s['detected']}/{s['performed']} detected; latency p50 {s['latency_ms_p50']} ms, "
          f"worst {s['latency_ms_worst']} ms")
    return res.returncode, out


def test_default_rules_detect_every_host_action(kernel_ready: None) -> None:
    rc, out = simulate()
    host = {a.name for a in ACTIONS.values() if not a.container_only and a.lanner_rule}
    performed = {r["action"] for r in out["results"] if not r["skipped"]}
    assert performed == host
    assert out["summary"]["missed"] == [], out["summary"]
    assert all(r["detected"] for r in out["results"] if not r["skipped"])
    assert rc == 0


def test_falco_stable_rules_detect_every_host_action(kernel_ready: None) -> None:
    stable = {item["rule"] for item in yaml.safe_load(FALCO_RULES.read_text()) if "rule" in item}
    rc, out = simulate("-r", str(FALCO_RULES))
    expected = {a.name for a in ACTIONS.values() if not a.container_only and a.falco_rule in stable}
    assert len(expected) == 16
    detected = {r["action"] for r in out["results"] if r["detected"]}
    assert expected <= detected, expected - detected
    assert rc == 0, out["summary"]
