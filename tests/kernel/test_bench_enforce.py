"""``lanner bench enforce`` runs every case and reports figures. Nothing here is about speed:
benchmarks never pass or fail on it; the test checks that each case ran and was measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lanner.bench import bench_group
from lanner.bench.enforce import CASES
from lanner.sensor.loader import bpf_dir
from lanner.state.cgroups import find_cgroup2_mount
from tests.conftest import ROOT, require_or_skip


def _bench_cgroups(mount: str) -> set[str]:
    return {p.name for p in Path(mount).iterdir() if p.name.startswith("lanner-bench-")}


def test_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    res = CliRunner().invoke(bench_group, ["enforce", "--seconds", "0.1"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "lanner bench enforce: needs root (it loads fanotify groups and BPF guards)"]


@pytest.mark.kernel
def test_every_case_is_measured() -> None:
    if os.geteuid() != 0:
        require_or_skip("the enforcement benchmark needs root")
    for obj in ("exec_guard.bpf.o", "net_guard.bpf.o"):
        if not (bpf_dir() / obj).is_file():
            require_or_skip(f"BPF object {obj} not built (make setup)")
    if not (ROOT / "build" / "loadgen").is_file():
        require_or_skip("build/loadgen not built (make setup)")
    mount = find_cgroup2_mount()
    if mount is None:
        require_or_skip("no cgroup2 hierarchy is mounted")
        return
    before = _bench_cgroups(mount)
    out = subprocess.run([sys.executable, "-m", "lanner", "bench", "enforce", "--seconds", "0.2", "--rounds", "1",
                          "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    rows = {(r["mechanism"], r["case"]): r for r in res["results"]}
    assert set(rows) == {(c.mechanism, c.case) for c in CASES}
    assert {m for m, _ in rows} == {"fanotify", "exec-guard", "net-guard"}
    for key, r in rows.items():
        assert r["off"] > 0 and r["on"] > 0 and r["ratio"] > 0, key
        assert len(r["off_runs"]) == len(r["on_runs"]) == 1, key
        # nothing names the loops' files, cgroup or port, and the loop only reads in the write-protected
        # directory: no guard decides anything
        assert r["decisions"] == 0, key
    # Marks decide what reaches the responder: the unrelated policies see none of the loops'
    # opens and execs, the loop's own directory sees every open.
    assert rows["fanotify", "exec-deny, unrelated files"]["permission_events"] == 0
    assert rows["fanotify", "open-deny, unrelated directory"]["permission_events"] == 0
    assert rows["fanotify", "write-deny, the loop's directory"]["permission_events"] > 0
    for key in (("exec-guard", "deny set + scopes elsewhere"), ("exec-guard", "allow-list on the loop's cgroup"),
                ("net-guard", "deny, unrelated port")):
        assert rows[key]["bpf_runs"] > 0 and rows[key]["bpf_ns_per_run"] > 0, key
    assert _bench_cgroups(mount) <= before, "the benchmark left a cgroup behind"
