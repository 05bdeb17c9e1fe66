"""Fixtures of the enforcement tests that run as root on the real kernel."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lanner.response.decisions import Decision
from lanner.response.exec_guard import ExecGuard
from lanner.response.net_guard import NetGuard
from lanner.sensor.loader import bpf_dir
from lanner.state.cgroups import find_cgroup2_mount, rmdir_cgroup
from tests.conftest import require_or_skip


class Decisions:
    """Everything a guard reported, collected across polls."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        self.seen: list[Decision] = []

    def of(self, tgid: int, timeout: float = 3.0) -> list[Decision]:
        deadline = time.monotonic() + timeout
        while True:
            self.seen.extend(self.guard.poll(50))
            found = [d for d in self.seen if d.tgid == tgid]
            if found or time.monotonic() > deadline:
                return found


G = TypeVar("G", ExecGuard, NetGuard)


def loaded_guard(kind: type[G], obj: str) -> Iterator[G]:
    """A guard loaded and attached with pins of its own (never an agent's), closed and unpinned after."""
    require_bpf(obj)
    pin = f"/sys/fs/bpf/lanner-test-{os.getpid()}-{secrets.token_hex(3)}"
    g = kind(pin_dir=pin)
    try:
        g.load()
        g.attach()
        yield g
    finally:
        g.close()
        shutil.rmtree(pin, ignore_errors=True)


def require_bpf(obj: str) -> None:
    """Skip (fail under LANNER_REQUIRE_KERNEL=1) unless root with BTF, bpffs and the built object."""
    if os.geteuid() != 0:
        require_or_skip("enforcement tests need root")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        require_or_skip("the guards need BTF (/sys/kernel/btf/vmlinux)")
    if not os.path.ismount("/sys/fs/bpf"):
        require_or_skip("bpffs is not mounted on /sys/fs/bpf (make setup)")
    if not (bpf_dir() / obj).is_file():
        require_or_skip(f"BPF object {obj} not built (make setup)")


@dataclass
class Cgroup:
    """A cgroup2 directory this test created: its path and id (the directory's inode number)."""

    path: Path
    id: int

    def enter(self) -> None:
        """For preexec_fn: move the calling (forked) process into the cgroup."""
        with open(self.path / "cgroup.procs", "w") as f:
            f.write("0")

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside the cgroup."""
        enter: Callable[[], None] = self.enter
        return subprocess.run(list(argv), preexec_fn=enter, capture_output=True, timeout=30, **kw)


@pytest.fixture
def test_cgroup() -> Iterator[Cgroup]:
    """A fresh child of the cgroup2 root, removed afterwards (we never touch cgroups we did not create)."""
    if os.geteuid() != 0:
        require_or_skip("creating a cgroup needs root")
    root = find_cgroup2_mount()
    if root is None:
        require_or_skip("no cgroup2 hierarchy is mounted")
        return
    path = Path(root) / f"lanner-test-{os.getpid()}-{secrets.token_hex(3)}"
    path.mkdir()
    try:
        yield Cgroup(path, path.stat().st_ino)
    finally:
        err = rmdir_cgroup(path)
        assert err is None, err
