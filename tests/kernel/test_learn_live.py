"""`lanner learn --host` for real: programs the test runs while it listens end up in the allow-list,
by their canonical path; failed execs do not; Ctrl-C (SIGINT) ends learning and still writes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from lanner.rules import load
from lanner.rules.policy import check
from tests.agent_support import require_agent_machine
from tests.learn_support import Learn


@pytest.fixture
def programs(tmp_path: Path) -> dict[str, Path]:
    """Three distinct executables (copies of true), a symlink to one, and a file that is not executable."""
    require_agent_machine()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out: dict[str, Path] = {}
    for name in ("learn-alpha", "learn-beta", "learn-gamma"):
        shutil.copy2("/usr/bin/true", bin_dir / name)
        out[name] = bin_dir / name
    (bin_dir / "learn-link").symlink_to(bin_dir / "learn-alpha")
    out["learn-link"] = bin_dir / "learn-link"
    not_exec = bin_dir / "learn-noexec"
    not_exec.write_bytes((bin_dir / "learn-alpha").read_bytes())
    not_exec.chmod(0o644)
    out["learn-noexec"] = not_exec
    return out


def _items(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    items: list[str] = doc[0]["items"]
    return items


def test_host_programs_are_learned(programs: dict[str, Path], learn_runs: list[Learn], tmp_path: Path) -> None:
    out = tmp_path / "host-allow.yaml"
    learn = Learn("--host", "--duration", "2", "-o", str(out))
    learn_runs.append(learn)
    learn.wait_ready()
    for name in ("learn-alpha", "learn-beta", "learn-gamma", "learn-link", "learn-alpha"):
        subprocess.run([str(programs[name])], check=True, timeout=10)
    with pytest.raises(PermissionError):
        subprocess.run([str(programs["learn-noexec"])], timeout=10)
    rc, stdout, stderr = learn.finish()
    assert rc == 0, stderr
    assert stdout == ""
    items = _items(out)
    for name in ("learn-alpha", "learn-beta", "learn-gamma"):
        assert str(programs[name]) in items, (name, items)
        assert f"new program {programs[name]}" in stderr
    # the kernel's path of the file, not the name it was called by; a refused exec is no program
    assert str(programs["learn-link"]) not in items
    assert str(programs["learn-noexec"]) not in items
    assert items == sorted(items)
    assert f"        3  {programs['learn-alpha']}\n" in stderr  # twice by name, once through the link
    rs = load([out])
    check(rs)
    assert rs.errors == []


def test_ctrl_c_ends_learning_and_writes(programs: dict[str, Path], learn_runs: list[Learn], tmp_path: Path) -> None:
    out = tmp_path / "host-allow.yaml"
    learn = Learn("--host", "--duration", "300", "-o", str(out), "--name", "ci runner")
    learn_runs.append(learn)
    learn.wait_ready()
    subprocess.run([str(programs["learn-beta"])], check=True, timeout=10)
    # wait until it was seen, so the interrupt cannot beat the event
    deadline = 20.0
    while f"new program {programs['learn-beta']}" not in "".join(learn.stderr) and deadline > 0:
        threading.Event().wait(0.1)
        deadline -= 0.1
    os.kill(learn.proc.pid, signal.SIGINT)
    rc, _, stderr = learn.finish(timeout=20)
    assert rc == 0, stderr
    assert "interrupted after" in stderr
    text = out.read_text()
    assert "- list: lanner_allowed_ci_runner\n" in text and "- rule: Unapproved program in ci runner\n" in text
    assert str(programs["learn-beta"]) in _items(out)
