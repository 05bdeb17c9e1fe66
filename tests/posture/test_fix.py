"""`lanner scan --fix`: fixed manifests pass, comments and layout survive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.posture.conftest import MANIFESTS, run_lanner

APP = MANIFESTS / "fix" / "app.yaml"


def _errors(path: Path, *args: str) -> list[dict]:  # type: ignore[type-arg]
    r = run_lanner("scan", "--format", "json", *args, str(path))
    return [f for f in json.loads(r.stdout)["findings"] if f["severity"] == "error"]


@pytest.mark.parametrize("level", ["restricted", "baseline"])
def test_fix_round_trip(tmp_path: Path, level: str) -> None:
    target = tmp_path / "app.yaml"
    shutil.copy(APP, target)
    before = APP.read_text()
    assert _errors(target, "--level", level)
    r = run_lanner("scan", "--fix", "--level", level, str(target))
    assert "Traceback" not in r.stderr
    assert "fixed" in r.stderr
    after = target.read_text()
    # What is left after the fix: nothing fixable. hostPath-free file, so nothing at all.
    assert _errors(target, "--level", level) == []
    assert r.returncode == 0, r.stdout + r.stderr
    # every comment line survives, in order
    comments = [ln.split("#", 1)[1].strip() for ln in before.splitlines() if "#" in ln]
    kept = [ln.split("#", 1)[1].strip() for ln in after.splitlines() if "#" in ln]
    assert comments == kept
    # key order and untouched values survive
    docs_before = list(yaml.safe_load_all(before))
    docs_after = list(yaml.safe_load_all(after))
    assert [list(d) for d in docs_before] == [list(d) for d in docs_after]
    assert list(docs_after[0]["spec"]) == list(docs_before[0]["spec"])
    assert "image: 'registry.example/shop:2.1'" in after  # quoting kept
    assert "matchLabels: {app: shop}" in after  # flow style kept
    assert after.startswith("# Application manifests")
    # the second document keeps its 4-space indentation
    assert "\n    containers:\n" in after


def test_fix_is_minimal(tmp_path: Path) -> None:
    target = tmp_path / "app.yaml"
    shutil.copy(APP, target)
    run_lanner("scan", "--fix", "--level", "baseline", str(target))
    spec = next(iter(yaml.safe_load_all(target.read_text())))["spec"]["template"]["spec"]
    web = spec["containers"][0]["securityContext"]
    assert web["privileged"] is False
    assert web["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    assert web["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["hostPID"] is False
    assert [s["name"] for s in spec["securityContext"]["sysctls"]] == ["net.ipv4.tcp_syncookies"]
    assert "hostPort" not in spec["containers"][0]["ports"][0]
    # baseline does not ask for these, so the fix does not add them
    assert "allowPrivilegeEscalation" not in web
    assert spec["securityContext"]["runAsUser"] == 0
    assert "runAsNonRoot" not in spec["securityContext"]


def test_fix_json(tmp_path: Path) -> None:
    target = tmp_path / "pods.json"
    shutil.copy(MANIFESTS / "kinds" / "pod-list.json", target)
    r = run_lanner("scan", "--fix", str(target))
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(target.read_text())["items"][0]["spec"]["hostNetwork"] is False


def test_fix_leaves_unfixable_findings(tmp_path: Path) -> None:
    target = tmp_path / "ds.yaml"
    shutil.copy(MANIFESTS / "pss" / "hostPathVolumes-fail.yaml", target)
    r = run_lanner("scan", "--fix", str(target))
    assert r.returncode == 1
    assert "restrictedVolumes" in r.stdout


def test_fix_refuses_stdin() -> None:
    r = run_lanner("scan", "--fix", "-", stdin=b"kind: Pod\n")
    assert r.returncode == 2 and "standard input" in r.stderr
