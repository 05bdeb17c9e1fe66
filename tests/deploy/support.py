"""What the deployment tests share: rendering the Kustomize overlays with the kubectl that `make setup`
installs (build/tools/kubectl), and picking objects out of the result."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lanner import config as lanner_config
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
OVERLAYS = ("monitor", "enforce")
KUBECTL = ROOT / "build" / "tools" / "kubectl"
RULES_FILE = DEPLOY / "prometheus" / "lanner-alerts.rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "lanner-dashboard.json"
AGENT_JOB = "lanner-agent-metrics"
# docs/deploy.md's in-place rules reload: `kubectl exec POD -- sh -c '<this>'` sends SIGHUP to the agent
# of that pod (the process in the pod's mount namespace running `lanner run`). tests/deploy/test_image.py
# runs it in the image; test_manifests.py checks the docs give it verbatim.
SIGHUP_AGENT = (
    'me=$(readlink /proc/self/ns/mnt); for p in /proc/[0-9]*; do '
    '[ "$(readlink $p/ns/mnt 2>/dev/null)" = "$me" ] || continue; '
    'if tr "\\0" " " < $p/cmdline | grep -q "^/opt/lanner/venv/bin/python3 /opt/lanner/venv/bin/lanner run "; '
    'then kill -HUP ${p#/proc/} && echo "SIGHUP sent to ${p#/proc/}"; fi; done'
)


def tool(name: str) -> str:
    """A program `make setup` installs (scripts/setup-deploy.sh); its absence fails the test."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run `make setup` (scripts/setup-deploy.sh installs it)")
    return path


def kubectl() -> Path:
    if not KUBECTL.is_file():
        pytest.fail(f"{KUBECTL} missing: run `make setup` (scripts/setup-deploy.sh installs it)")
    return KUBECTL


@functools.cache
def rendered_text(overlay: str) -> str:
    """`kubectl kustomize deploy/overlays/OVERLAY`, as a user runs it before `kubectl apply -k`."""
    proc = subprocess.run([str(kubectl()), "kustomize", str(DEPLOY / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed: {proc.stderr}"
    return proc.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered_text(overlay)) if d]


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def configmap(objs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    found = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    assert len(found) == 1, f"expected one ConfigMap {prefix}-<hash>, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in workload["spec"]["template"]["spec"]["containers"]
                                   if c["name"] == name]
    assert len(found) == 1, f"no container {name} in {workload['metadata']['name']}"
    return found[0]


def agent_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(configmap(objs, "lanner-config")["data"]["lanner.yaml"])
    return cfg


def without_unknown_enforcement(cfg: dict[str, Any]) -> dict[str, Any]:
    """The agent config minus its `enforcement:` section while lanner/config.py does not know that key
    yet (the overlays set it ahead of the enforcement work); unchanged once it does."""
    if "enforcement" in {f.name for f in dataclasses.fields(lanner_config.Config)}:
        return cfg
    return {k: v for k, v in cfg.items() if k != "enforcement"}
