"""The exec guard on the real kernel (root): forbidden programs die before running.

The program under test is a small static binary built here that writes a marker file: if the
marker exists, the program ran. The test process is the "agent" (protected), so every exec
happens in a child.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanner.response.exec_guard import (
    DriftScope,
    ExecAllowList,
    ExecDeny,
    ExecGuard,
    ExecTable,
    GuardError,
    compile_exec_table,
    file_key,
)
from tests.conftest import require_or_skip
from tests.response.conftest import Cgroup, Decisions, loaded_guard, require_bpf

MARKER_C = r"""
#include <fcntl.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc > 1) {
        int fd = open(argv[1], O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd >= 0) { write(fd, "ran\n", 4); close(fd); }
    }
    return 0;
}
"""

# execveat(2) from a child: relative to a directory fd, or of an O_PATH fd with AT_EMPTY_PATH.
EXECVEAT = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
directory, name, marker, empty = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if empty:
    fd, path, flags = os.open(os.path.join(directory, name), os.O_PATH), b"", 0x1000  # AT_EMPTY_PATH
else:
    fd, path, flags = os.open(directory, os.O_RDONLY | os.O_DIRECTORY), name.encode(), 0
argv = (ctypes.c_char_p * 3)(name.encode(), marker.encode(), None)
envp = (ctypes.c_char_p * 1)(None)
libc.syscall(322, fd, path, argv, envp, flags)  # SYS_execveat on x86_64
sys.exit(100 + ctypes.get_errno())
"""

KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def marker_prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        require_or_skip("gcc is needed to build the test program")
    d = tmp_path_factory.mktemp("prog")
    (d / "marker.c").write_text(MARKER_C)
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "marker"), str(d / "marker.c")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        require_or_skip(f"cannot build a static test program: {r.stderr.strip()[-300:]}")
    return d / "marker"


@pytest.fixture
def prog(marker_prog: Path, tmp_path: Path) -> Path:
    """A fresh copy (its own inode) of the marker program."""
    p = tmp_path / "evil"
    shutil.copy2(marker_prog, p)
    return p


def copy(marker_prog: Path, dest: Path) -> Path:
    shutil.copy2(marker_prog, dest)
    return dest


@pytest.fixture
def guard() -> Iterator[ExecGuard]:
    yield from loaded_guard(ExecGuard, "exec_guard.bpf.o")


def run(argv: list[str], **kw: Any) -> tuple[int, int]:
    """Run a child; (pid, returncode)."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return p.pid, p.wait(timeout=30)


def ran(marker: Path) -> bool:
    return marker.exists()


def test_deny_kills_every_way_of_naming_the_file(guard: ExecGuard, prog: Path, marker_prog: Path,
                                                  tmp_path: Path) -> None:
    other = copy(marker_prog, tmp_path / "other")
    (tmp_path / "link").symlink_to(prog)
    os.link(prog, tmp_path / "hard")
    guard.apply(ExecTable(deny=[ExecDeny.for_path(prog, rule_id=11)]))
    dec = Decisions(guard)
    dev, ino = file_key(prog)

    before = time.time_ns()
    paths: list[str] = []
    ways = {
        "absolute path": ([str(prog)], {}),
        "relative path": (["./evil"], {"cwd": tmp_path}),
        "symlink": ([str(tmp_path / "link")], {}),
        "hard link": ([str(tmp_path / "hard")], {}),
        "execveat dirfd": (["/usr/bin/python3", "-c", EXECVEAT, str(tmp_path), "evil"], {}),
        "execveat AT_EMPTY_PATH": (["/usr/bin/python3", "-c", EXECVEAT, str(tmp_path), "evil"], {}),
    }
    for i, (way, (argv, kw)) in enumerate(ways.items()):
        marker = tmp_path / f"marker-{i}"
        extra = [str(marker)] + (["1" if "EMPTY" in way else "0"] if "execveat" in way else [])
        pid, rc = run(argv + extra, **kw)
        assert rc == KILLED, f"{way}: exit {rc}"
        assert not ran(marker), f"{way}: the program ran"
        (d,) = dec.of(pid)
        assert (d.mechanism, d.kind, d.rule_id, d.enforced, d.error) == ("exec-kill", "exec", 11, True, "")
        assert (d.tgid, d.tid, d.dev, d.ino) == (pid, pid, dev, ino)
        assert d.comm in ("evil", "link", "hard"), d.comm
        assert d.cgroup_id > 0
        assert before <= d.ts_ns <= time.time_ns()
        paths.append(d.path)
    # the path as the caller gave it; execveat names it through its fd
    assert paths[:4] == [str(prog), "./evil", str(tmp_path / "link"), str(tmp_path / "hard")]
    assert paths[4].startswith("/dev/fd/") and paths[4].endswith("/evil") and paths[5].startswith("/dev/fd/")

    # an unlisted copy of the same program runs
    pid, rc = run([str(other), str(tmp_path / "marker-other")])
    assert rc == 0 and ran(tmp_path / "marker-other")
    assert dec.of(pid, timeout=0.3) == []
    assert guard.dropped() == 0


def test_monitor_mode_reports_and_lets_it_run(guard: ExecGuard, prog: Path, tmp_path: Path) -> None:
    guard.apply(ExecTable(deny=[ExecDeny.for_path(prog, rule_id=12, enforce=False)]))
    pid, rc = run([str(prog), str(tmp_path / "m")])
    assert rc == 0 and ran(tmp_path / "m")
    (d,) = Decisions(guard).of(pid)
    assert (d.rule_id, d.enforced, d.error, d.result) == (12, False, "", "allowed")


def test_scoped_deny_applies_in_its_cgroup_only(guard: ExecGuard, prog: Path, tmp_path: Path,
                                                test_cgroup: Cgroup) -> None:
    guard.apply(ExecTable(deny=[ExecDeny.for_path(prog, rule_id=13, scope=test_cgroup.id)]))
    r = test_cgroup.run([str(prog), str(tmp_path / "in")])
    assert r.returncode == KILLED and not ran(tmp_path / "in")
    _, rc = run([str(prog), str(tmp_path / "out")])
    assert rc == 0 and ran(tmp_path / "out")

    # a monitoring entry everywhere does not hide the cgroup's enforcing one
    guard.apply(ExecTable(deny=[ExecDeny.for_path(prog, rule_id=14, enforce=False),
                                ExecDeny.for_path(prog, rule_id=13, scope=test_cgroup.id)]))
    dec = Decisions(guard)
    p = subprocess.Popen([str(prog), str(tmp_path / "in2")], preexec_fn=test_cgroup.enter)
    assert p.wait(30) == KILLED and not ran(tmp_path / "in2")
    (d,) = dec.of(p.pid)
    assert (d.rule_id, d.enforced) == (13, True)
    pid, rc = run([str(prog), str(tmp_path / "out2")])
    assert rc == 0 and ran(tmp_path / "out2")
    (d,) = dec.of(pid)
    assert (d.rule_id, d.enforced) == (14, False)


def test_allow_list_kills_unlisted_programs_in_the_cgroup(guard: ExecGuard, marker_prog: Path, tmp_path: Path,
                                                          test_cgroup: Cgroup) -> None:
    good = copy(marker_prog, tmp_path / "good")
    bad = copy(marker_prog, tmp_path / "bad")
    guard.apply(ExecTable(allow=[ExecAllowList(test_cgroup.id, rule_id=21, files=frozenset({file_key(good)}))]))
    dec = Decisions(guard)

    r = test_cgroup.run([str(good), str(tmp_path / "good-ran")])
    assert r.returncode == 0 and ran(tmp_path / "good-ran")
    p = subprocess.Popen([str(bad), str(tmp_path / "bad-ran")], preexec_fn=test_cgroup.enter)
    assert p.wait(30) == KILLED and not ran(tmp_path / "bad-ran")
    (d,) = dec.of(p.pid)
    assert (d.rule_id, d.enforced, d.cgroup_id, d.ino) == (21, True, test_cgroup.id, file_key(bad)[1])
    # outside the cgroup the allow-list does not apply
    _, rc = run([str(bad), str(tmp_path / "bad-outside")])
    assert rc == 0 and ran(tmp_path / "bad-outside")


@pytest.fixture
def overlay(tmp_path: Path, marker_prog: Path) -> Iterator[Path]:
    """An overlayfs whose lower layer holds `lowprog` and `lowchanged`; the merged directory."""
    if shutil.which("mount") is None:
        require_or_skip("mount(8) is needed")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    copy(marker_prog, lower / "lowprog")
    copy(marker_prog, lower / "lowchanged")
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        require_or_skip(f"cannot mount overlayfs: {r.stderr.strip()}")
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_drift_kills_files_written_after_the_mount(guard: ExecGuard, marker_prog: Path, tmp_path: Path,
                                                   overlay: Path, test_cgroup: Cgroup) -> None:
    dropped = copy(marker_prog, overlay / "dropped")          # a new file: upper layer
    os.chmod(overlay / "lowchanged", 0o755 | stat.S_ISVTX)  # a changed lower file is copied up
    guard.apply(ExecTable(drift=[DriftScope(test_cgroup.id, rule_id=31)]))
    dec = Decisions(guard)

    r = test_cgroup.run([str(overlay / "lowprog"), str(tmp_path / "low")])
    assert r.returncode == 0 and ran(tmp_path / "low")
    for name in ("dropped", "lowchanged"):
        p = subprocess.Popen([str(overlay / name), str(tmp_path / name)], preexec_fn=test_cgroup.enter)
        assert p.wait(30) == KILLED, name
        assert not ran(tmp_path / name), name
        (d,) = dec.of(p.pid)
        assert (d.rule_id, d.enforced, d.path) == (31, True, str(overlay / name))
    # drift is per cgroup: the same file runs elsewhere
    _, rc = run([str(dropped), str(tmp_path / "outside")])
    assert rc == 0 and ran(tmp_path / "outside")


def test_deny_of_a_file_seen_through_overlayfs(guard: ExecGuard, tmp_path: Path, overlay: Path) -> None:
    """A container's rootfs is an overlay: its files are keyed as the overlay shows them."""
    guard.apply(ExecTable(deny=[ExecDeny.for_path(overlay / "lowprog", 35)]))
    pid, rc = run([str(overlay / "lowprog"), str(tmp_path / "m")])
    assert rc == KILLED and not ran(tmp_path / "m")
    (d,) = Decisions(guard).of(pid)
    assert (d.rule_id, d.dev, d.ino) == (35, *file_key(overlay / "lowprog"))


def test_protected_processes_and_files_are_never_killed(guard: ExecGuard, prog: Path, marker_prog: Path,
                                                        tmp_path: Path) -> None:
    """Host pid 1 and kernel threads are protected by the same check in the kernel; they cannot
    be made to exec here, so the test covers a listed tgid, a listed file and the agent's entry."""
    helper = ["/usr/bin/python3", "-c", "import os, sys; sys.stdin.readline(); os.execv(sys.argv[1], sys.argv[1:])"]
    waiting = subprocess.Popen([*helper, str(prog), str(tmp_path / "protected")], stdin=subprocess.PIPE)
    tool = copy(marker_prog, tmp_path / "tool")
    guard.apply(ExecTable(deny=[ExecDeny.for_path(prog, 41), ExecDeny.for_path(tool, 42)],
                          protected_tgids=[waiting.pid], protected_files=[file_key(tool)]))
    dec = Decisions(guard)
    assert waiting.stdin is not None
    waiting.stdin.write(b"go\n")
    waiting.stdin.close()
    assert waiting.wait(30) == 0 and ran(tmp_path / "protected")
    (d,) = dec.of(waiting.pid)
    assert (d.rule_id, d.enforced, d.protected, d.result) == (41, False, "protected process", "protected")

    pid, rc = run([str(tool), str(tmp_path / "tool-ran")])
    assert rc == 0 and ran(tmp_path / "tool-ran")
    (d,) = dec.of(pid)
    assert (d.rule_id, d.enforced, d.protected, d.result) == (42, False, "protected file", "protected")

    pid, rc = run([str(prog), str(tmp_path / "unprotected")])  # the deny itself is in force
    assert rc == KILLED and not ran(tmp_path / "unprotected")

    # no table can take the agent's own protection away
    guard.apply(ExecTable(deny=[ExecDeny.for_path(prog, 41)], protected_tgids=[]))
    tgids = guard._maps["protected_tgids"]
    assert tgids.lookup(os.getpid().to_bytes(4, "little"), 1) == b"\x01"


def test_apply_swaps_policies_atomically(guard: ExecGuard, marker_prog: Path, tmp_path: Path) -> None:
    a, b, both = (copy(marker_prog, tmp_path / n) for n in ("a", "b", "both"))
    table_a = ExecTable(deny=[ExecDeny.for_path(a, 1), ExecDeny.for_path(both, 3)])
    table_b = ExecTable(deny=[ExecDeny.for_path(b, 2), ExecDeny.for_path(both, 3)])
    guard.apply(table_a)
    assert run([str(a), str(tmp_path / "a1")])[1] == KILLED
    assert run([str(b), str(tmp_path / "b1")])[1] == 0
    gen = guard.generation
    guard.apply(table_b)
    assert guard.generation == 1 - gen
    assert run([str(a), str(tmp_path / "a2")])[1] == 0  # old entry gone
    assert run([str(b), str(tmp_path / "b2")])[1] == KILLED  # new one in force
    assert len(guard._maps["deny"].keys(32)) == 2  # the old generation was deleted

    # `both` is in every table: while policies are swapped again and again, it never runs
    loop = subprocess.Popen(["sh", "-c", f"while :; do {both} {tmp_path / 'both-ran'}; done"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for swap in range(30):
            guard.apply(table_a if swap % 2 else table_b)
    finally:
        loop.kill()
        loop.wait()
    assert not ran(tmp_path / "both-ran")
    kills = [d for d in guard.poll(100) if d.rule_id == 3]
    assert len(kills) >= 30 and all(d.enforced for d in kills)

    # a table that does not fit, or a bad one, changes nothing
    guard.apply(table_b)
    huge = ExecTable(deny=[ExecDeny(9, 1, ino) for ino in range(1, 20_001)])
    with pytest.raises(GuardError, match=r"policy not applied, the previous one stays.*larger than the map"):
        guard.apply(huge)
    assert len(guard._maps["deny"].keys(32)) == 2
    with pytest.raises(ValueError, match="cgroup id"):
        guard.apply(ExecTable(deny=[ExecDeny.for_path(a, 1)], drift=[DriftScope(0, 9)]))
    assert run([str(b), str(tmp_path / "b3")])[1] == KILLED
    assert run([str(a), str(tmp_path / "a3")])[1] == 0


def _bpftool(*args: str) -> Any:
    r = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip() or "[]")


def _live_prog_ids() -> set[int]:
    return {int(p["id"]) for p in _bpftool("prog", "show")}


def _gone(ids: set[int], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while ids & _live_prog_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_close_removes_everything_and_keep_hands_over(prog: Path, marker_prog: Path, tmp_path: Path) -> None:
    require_bpf("exec_guard.bpf.o")
    if shutil.which("bpftool") is None:
        require_or_skip("bpftool is needed to list programs")
    pin = f"/sys/fs/bpf/lanner-test-{os.getpid()}-{secrets.token_hex(3)}"
    other = copy(marker_prog, tmp_path / "other")
    first = ExecGuard(pin_dir=pin)
    second = ExecGuard(pin_dir=pin)
    try:
        first.load()
        first.attach()
        first.apply(ExecTable(deny=[ExecDeny.for_path(prog, 51)]))
        ids = set(first.prog_ids())
        assert ids <= _live_prog_ids()
        first.close(keep=True)
        # no agent: the pinned program keeps enforcing, and its decisions wait in the pinned ring
        pid, rc = run([str(prog), str(tmp_path / "away")])
        assert rc == KILLED and not ran(tmp_path / "away")
        assert os.path.isdir(f"{pin}/links") and os.listdir(f"{pin}/links")
        first.close()  # a second close leaves the kept enforcement alone
        assert os.listdir(f"{pin}/links")
        # the exited agent's pid must not stay protected (it could be reused)
        assert _bpftool("map", "dump", "pinned", f"{pin}/maps_v1/protected_tgids") == []

        second.load()
        assert second.took_over
        second.attach()
        assert _gone(ids), "the previous guard's program is still loaded after the takeover"
        (d,) = Decisions(second).of(pid)
        assert d.rule_id == 51
        assert run([str(prog), str(tmp_path / "taken")])[1] == KILLED  # the old policy is still in force
        second.apply(ExecTable(deny=[ExecDeny.for_path(other, 52)]))
        assert run([str(prog), str(tmp_path / "p2")])[1] == 0
        assert run([str(other), str(tmp_path / "o2")])[1] == KILLED
        ids = set(second.prog_ids())
        second.close()
        assert not os.path.exists(pin)
        assert _gone(ids), "programs still loaded after close()"
        assert run([str(other), str(tmp_path / "o3")])[1] == 0
    finally:
        first.close()
        second.close()
        shutil.rmtree(pin, ignore_errors=True)


def test_takeover_of_incompatible_pins_starts_fresh(prog: Path, tmp_path: Path) -> None:
    require_bpf("exec_guard.bpf.o")
    pin = f"/sys/fs/bpf/lanner-test-{os.getpid()}-{secrets.token_hex(3)}"
    first, second = ExecGuard(pin_dir=pin), ExecGuard(pin_dir=pin, ring_bytes=512 << 10)
    try:
        first.load()
        first.attach()
        first.apply(ExecTable(deny=[ExecDeny.for_path(prog, 71)]))
        ids = set(first.prog_ids())
        first.close(keep=True)
        second.load()  # another ring size: the pinned maps do not fit, so it makes its own
        assert not second.took_over
        second.attach()
        assert _gone(ids)
        assert run([str(prog), str(tmp_path / "m")])[1] == 0  # an empty policy until apply()
        second.close()
        assert not os.path.exists(pin)
    finally:
        first.close()
        second.close()
        shutil.rmtree(pin, ignore_errors=True)


def test_keep_without_bpffs_is_a_clear_error_and_removes_everything(prog: Path, tmp_path: Path) -> None:
    require_bpf("exec_guard.bpf.o")
    g = ExecGuard(pin_dir=str(tmp_path / "not-bpffs"))
    g.load()
    g.attach()
    g.apply(ExecTable(deny=[ExecDeny.for_path(prog, 61)]))
    ids = set(g.prog_ids())
    with pytest.raises(GuardError, match="cannot keep the enforcement pinned"):
        g.close(keep=True)
    assert _gone(ids)
    assert run([str(prog), str(tmp_path / "m")])[1] == 0


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=str(tmp_path / "missing")):
        file_key(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a regular file"):
        file_key(tmp_path)
    with pytest.raises(ValueError, match="rule id"):
        compile_exec_table(ExecTable(deny=[ExecDeny(-1, 1, 1)]))
    with pytest.raises(ValueError, match="two allow-lists"):
        compile_exec_table(ExecTable(allow=[ExecAllowList(5, 1, frozenset()), ExecAllowList(5, 2, frozenset())]))
    g = ExecGuard(pin_dir=str(tmp_path / "pins"))
    with pytest.raises(GuardError, match="load"):
        g.apply(ExecTable())
