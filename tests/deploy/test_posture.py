"""The rendered agent and webhook pods pass `lanner scan` at the Pod Security level they claim
(annotation lanner.dev/pod-security-level), failing exactly the controls they list as exceptions
(lanner.dev/pod-security-exceptions), each of which docs/deploy.md justifies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.support import OVERLAYS, find, render

DOCS = ROOT / "docs" / "deploy.md"


def scan(obj: dict[str, Any], level: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    path = tmp_path / f"{obj['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(obj))
    proc = subprocess.run([sys.executable, "-m", "lanner", "scan", str(path), "--level", level, "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["errors"] == [] and report["summary"]["objects"] == 1, report
    return proc.returncode, report


def claims(obj: dict[str, Any]) -> tuple[str, set[str]]:
    ann = obj["metadata"]["annotations"]
    exceptions = {x for x in ann["lanner.dev/pod-security-exceptions"].split(",") if x}
    return ann["lanner.dev/pod-security-level"], exceptions


def exceptions_table() -> str:
    text = DOCS.read_text()
    start = text.index("## What each privilege is for")
    return text[start:text.index("\n## ", start + 1)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_fails_exactly_its_listed_exceptions_at_baseline(overlay: str, tmp_path: Path) -> None:
    ds = find(render(overlay), "DaemonSet", "lanner-agent")
    level, exceptions = claims(ds)
    assert level == "baseline"
    rc, report = scan(ds, level, tmp_path)
    failing = {f["pss_control"] for f in report["findings"] if f["severity"] == "error"}
    assert failing == exceptions, f"scan fails {sorted(failing)}, the DaemonSet lists {sorted(exceptions)}"
    assert rc == (1 if exceptions else 0)
    # Each exception, and each hardening warning the scan gives, is explained in docs/deploy.md.
    table = exceptions_table()
    for control in exceptions:
        assert f"`{control}`" in table, f"{control} not justified in docs/deploy.md"
    for check in {f["check"] for f in report["findings"] if f["check"].startswith("extra.")}:
        assert f"`{check}`" in table, f"{check} not explained in docs/deploy.md"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_webhook_is_restricted_without_exceptions(overlay: str, tmp_path: Path) -> None:
    deploy = find(render(overlay), "Deployment", "lanner-admission")
    assert claims(deploy) == ("restricted", set())
    rc, report = scan(deploy, "restricted", tmp_path)
    assert rc == 0
    assert report["findings"] == [], "the webhook should not even draw a warning"


def test_scan_notices_a_new_privilege(tmp_path: Path) -> None:
    """The check above can fail: one more privilege on the agent is one more failing control."""
    ds = find(render("monitor"), "DaemonSet", "lanner-agent")
    ds["spec"]["template"]["spec"]["hostNetwork"] = True
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    _, report = scan(ds, "baseline", tmp_path)
    failing = {f["pss_control"] for f in report["findings"] if f["severity"] == "error"}
    assert failing - claims(ds)[1] == {"privileged"}  # hostNetwork falls under hostNamespaces, already listed
