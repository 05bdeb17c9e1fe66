"""FanotifyGuard on the real kernel (root): exec and open denies with EPERM, monitor mode, safety,
cgroup scope, atomic apply, clean close.

Every guarded action runs in a child process (``CHILD`` below): a permission event blocks the
process that caused it until the guard answers, and a broken guard must not hang pytest itself.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanner.response import _fanotify_sys as sys_
from lanner.response.fanotify import ExecDenyEntry, FanotifyGuard, FanotifyTable, OpenDenyEntry
from tests.conftest import require_or_skip
from tests.response.conftest import Cgroup

pytestmark = pytest.mark.kernel

# Runs a JSON list of actions and prints one result each: "ok", an errno name, or an exit status.
CHILD = r"""
import ctypes, errno, json, os, struct, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def err(e): return errno.errorcode.get(e, str(e))
def sysc(nr, *args):
    r = libc.syscall(nr, *args)
    if r < 0: return err(ctypes.get_errno())
    os.close(r); return "ok"
def act(a):
    kind = a[0]
    try:
        if kind == "exec":
            return subprocess.run(a[1], cwd=a[2], stderr=subprocess.DEVNULL).returncode
        if kind == "sh":
            return subprocess.run(["sh", "-c", a[1]], stderr=subprocess.DEVNULL).returncode
        if kind == "execveat":
            fd = os.open(a[1], os.O_RDONLY)
            pid = os.fork()
            if pid == 0:
                try: os.execve(fd, a[2], {})  # glibc's fexecve: execveat(fd, "", ..., AT_EMPTY_PATH)
                except OSError as e: os._exit(200 + e.errno)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if kind == "open":
            os.close(os.open(a[1], a[2], 0o644)); return "ok"
        if kind == "read":
            with open(a[1], "rb") as f: f.read(); return "ok"
        if kind == "listdir":
            os.listdir(a[1]); return "ok"
        if kind == "openat2":
            how = struct.pack("=QQQ", a[2], 0o644 if a[2] & os.O_CREAT else 0, 0)
            return sysc(437, ctypes.c_int(-100), a[1].encode(), how, ctypes.c_size_t(len(how)))
        if kind == "creat":
            return sysc(85, a[1].encode(), 0o644)
    except OSError as e:
        return err(e.errno)
    raise ValueError(kind)
if sys.argv[1] == "wait":
    sys.stdin.readline()
actions = json.loads(sys.argv[2])
execv = actions.pop() if actions and actions[-1][0] == "execv" else None
print(json.dumps([act(a) for a in actions]), flush=True)
if execv:  # this very process (its tgid) runs the program; exit status 201 = EPERM
    try: os.execv(execv[1][0], execv[1])
    except OSError as e: os._exit(200 + e.errno)
"""

W, RW, CREAT, TRUNC = os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC


def run(actions: list[list[Any]], **kw: Any) -> list[Any]:
    """The actions' results, performed by a child process."""
    out = subprocess.run([sys.executable, "-c", CHILD, "now", json.dumps(actions)], capture_output=True,
                         text=True, timeout=20, check=True, **kw)
    return list(json.loads(out.stdout))


def spawn(actions: list[list[Any]]) -> subprocess.Popen[str]:
    """A child that performs the actions once ``finish`` releases it (its pid is known before)."""
    return subprocess.Popen([sys.executable, "-c", CHILD, "wait", json.dumps(actions)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[list[Any], int]:
    """The results and the exit status of a spawned child."""
    out, _ = proc.communicate("go\n", timeout=20)
    return list(json.loads(out)), proc.returncode


@pytest.fixture(scope="module", autouse=True)
def _kernel() -> None:
    if os.geteuid() != 0:
        require_or_skip("fanotify permission events need root")
    fd = sys_.fanotify_init_raw(sys_.FAN_CLASS_CONTENT | sys_.FAN_REPORT_TID, os.O_RDONLY)
    if fd < 0:
        require_or_skip(f"fanotify_init(FAN_CLASS_CONTENT | FAN_REPORT_TID): {os.strerror(-fd)}")
    os.close(fd)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """bin/evil and bin/good (copies of touch), prot/ with files, out/ unprotected."""
    (tmp_path / "bin").mkdir()
    for name in ("evil", "good"):
        shutil.copy("/usr/bin/touch", tmp_path / "bin" / name)
    (tmp_path / "prot" / "sub").mkdir(parents=True)
    (tmp_path / "prot" / "f").write_text("orig")
    (tmp_path / "prot" / "sub" / "g").write_text("orig")
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.fixture
def guard() -> Iterator[FanotifyGuard]:
    g = FanotifyGuard()
    try:
        yield g
    finally:
        g.close()


def deny_writes(tree: Path, *, enforce: bool = True, rule_id: int = 7, **kw: Any) -> FanotifyTable:
    return FanotifyTable(open_deny=(OpenDenyEntry(rule_id, enforce, (str(tree / "prot"),), **kw),))


def deny_exec(tree: Path, *, enforce: bool = True, rule_id: int = 3, **kw: Any) -> FanotifyTable:
    return FanotifyTable(exec_deny=(ExecDenyEntry(rule_id, enforce, (str(tree / "bin" / "evil"),), **kw),))


def wait_dirs(guard: FanotifyGuard, n: int) -> None:
    """Until the watcher has marked n directories."""
    deadline = time.monotonic() + 3
    while guard.stats()["dirs"] < n:
        assert time.monotonic() < deadline, guard.stats()
        time.sleep(0.005)


# --- exec --------------------------------------------------------------------------------------------

def test_denied_exec_fails_with_eperm_by_every_name(tree: Path, guard: FanotifyGuard) -> None:
    evil = tree / "bin" / "evil"
    (tree / "out" / "link").symlink_to(evil)
    os.link(evil, tree / "out" / "hard")
    guard.apply(deny_exec(tree))
    m = tree / "out"
    res = run([
        ["exec", [str(evil), str(m / "m-abs")], None],
        ["exec", ["./evil", str(m / "m-rel")], str(tree / "bin")],
        ["exec", ["../bin/./evil", str(m / "m-dots")], str(tree / "out")],
        ["exec", [str(m / "link"), str(m / "m-link")], None],
        ["exec", [str(m / "hard"), str(m / "m-hard")], None],
        ["execveat", str(evil), ["evil", str(m / "m-at")]],
        ["sh", f"{evil} {m / 'm-sh'}"],
        ["exec", [str(tree / "bin" / "good"), str(m / "m-good")], None],
    ])
    assert res == ["EPERM"] * 5 + [200 + 1, 126, 0]
    assert sorted(p.name for p in m.iterdir() if p.name.startswith("m-")) == ["m-good"]
    st = evil.stat()
    decisions = guard.poll(1.0)
    assert len(decisions) == 7
    assert {(d.mechanism, d.kind, d.rule_id, d.enforced, d.ino, d.dev) for d in decisions} == {
        ("fanotify", "exec", 3, True, st.st_ino, (os.major(st.st_dev) << 20) | os.minor(st.st_dev))}
    assert all(d.tgid > 1 and d.tid > 1 and d.ts_ns > 0 and d.comm and d.cgroup_id for d in decisions)
    assert guard.stats()["denied"] == 7


# --- open --------------------------------------------------------------------------------------------

def test_write_below_protected_directory_fails_while_reads_work(tree: Path, guard: FanotifyGuard) -> None:
    prot = tree / "prot"
    (tree / "out" / "alias").symlink_to(prot / "f")
    guard.apply(deny_writes(tree))
    assert guard.stats()["dirs"] == 2
    (prot / "later" / "deep").mkdir(parents=True)  # after apply(): the watcher marks both
    (tree / "out" / "moved" / "inner").mkdir(parents=True)
    (tree / "out" / "moved").rename(prot / "moved")  # moved in: its subtree too
    wait_dirs(guard, 6)
    creat = ["creat", str(prot / "c")] if platform.machine() == "x86_64" else ["open", str(prot / "c"), W | CREAT]
    res = run([
        ["open", str(prot / "f"), W],
        ["open", str(prot / "f"), RW],
        ["open", str(prot / "new"), W | CREAT],
        ["open", str(prot / "f"), W | TRUNC],
        ["open", str(prot / "f"), os.O_RDONLY | TRUNC],
        ["open", str(prot / "sub" / ".." / "f"), os.O_APPEND | W],
        ["open", str(tree / "out" / "alias"), W],
        ["openat2", str(prot / "f"), W],
        creat,
        ["open", str(prot / "sub" / "g"), W],
        ["open", str(prot / "later" / "deep" / "x"), W | CREAT],
        ["open", str(prot / "moved" / "inner" / "x"), W | CREAT],
        ["read", str(prot / "f")],
        ["read", str(prot / "sub" / "g")],
        ["openat2", str(prot / "f"), os.O_RDONLY],
        ["listdir", str(prot)],
        ["open", str(tree / "out" / "free"), W | CREAT],
    ])
    assert res == ["EPERM"] * 12 + ["ok"] * 5
    assert (prot / "f").read_text() == "orig"  # O_TRUNC was refused before truncating
    decisions = guard.poll(1.0)
    assert len(decisions) == 12
    assert all(d.kind == "open" and d.rule_id == 7 and d.enforced for d in decisions)
    assert decisions[0].path == str(prot / "f") and decisions[0].flags & os.O_ACCMODE == W
    assert decisions[-1].path == str(prot / "moved" / "inner" / "x")


def test_read_deny_denies_reads_and_listing_not_writes(tree: Path, guard: FanotifyGuard) -> None:
    prot = tree / "prot"
    shutil.copy("/usr/bin/touch", prot / "tool")
    guard.apply(deny_writes(tree, write=False, read=True))
    res = run([
        ["read", str(prot / "f")],
        ["read", str(prot / "sub" / "g")],
        ["listdir", str(prot / "sub")],
        ["exec", [str(prot / "tool"), str(tree / "out" / "m")], None],  # the exec's open is a read
        ["open", str(prot / "f"), W],
    ])
    assert res == ["EPERM"] * 4 + ["ok"]
    assert not (tree / "out" / "m").exists()


def test_monitor_mode_allows_and_reports(tree: Path, guard: FanotifyGuard) -> None:
    table = FanotifyTable(exec_deny=deny_exec(tree, enforce=False).exec_deny,
                          open_deny=deny_writes(tree, enforce=False).open_deny)
    guard.apply(table)
    res = run([["open", str(tree / "prot" / "f"), W], ["exec", [str(tree / "bin" / "evil"), str(tree / "out" / "m")],
                                                       None]])
    assert res == ["ok", 0]
    assert (tree / "out" / "m").exists()
    decisions = guard.poll(1.0)
    assert sorted(d.kind for d in decisions) == ["exec", "open"]
    assert not any(d.enforced for d in decisions)
    assert all(d.result == "allowed" for d in decisions)
    assert guard.stats()["monitored"] == 2 and guard.stats()["denied"] == 0


# --- safety --------------------------------------------------------------------------------------------

def test_protected_tgid_and_program_are_never_denied(tree: Path) -> None:
    protected_sh = tree / "out" / "psh"
    shutil.copy("/bin/sh", protected_sh)
    evil = str(tree / "bin" / "evil")
    child = spawn([["open", str(tree / "prot" / "f"), W], ["execv", [evil, str(tree / "out" / "m1")]]])
    other = spawn([["open", str(tree / "prot" / "f"), W], ["execv", [evil, str(tree / "out" / "m0")]]])
    with FanotifyGuard(protected_tgids={child.pid}, protected_files=[str(protected_sh)]) as g:
        assert {1, os.getpid(), child.pid} <= g.protected_tgids
        g.apply(FanotifyTable(deny_exec(tree).exec_deny, deny_writes(tree).open_deny))
        assert finish(child) == (["ok"], 0)
        assert finish(other) == (["EPERM"], 201)
        assert (tree / "out" / "m1").exists() and not (tree / "out" / "m0").exists()
        # A protected program (matched by /proc/<pid>/exe): its own open, and the exec it calls.
        res = run([["exec", [str(protected_sh), "-c", f"echo x >> {tree / 'prot' / 'f'}"], None],
                   ["exec", [str(protected_sh), "-c", f"exec {tree / 'bin' / 'evil'} {tree / 'out' / 'm2'}"], None]])
        assert res == [0, 0]
        assert (tree / "out" / "m2").exists()
        assert g.stats()["exempt"] >= 4


def test_internal_error_allows_and_is_counted(tree: Path, guard: FanotifyGuard) -> None:
    guard.apply(deny_writes(tree))

    def broken(*_: object) -> int:
        raise RuntimeError("bug")

    guard._decide = broken  # type: ignore[method-assign]
    assert run([["open", str(tree / "prot" / "f"), W]]) == ["ok"]
    assert guard.stats()["errors"] >= 1


# --- scope ---------------------------------------------------------------------------------------------

def test_scope_denies_only_inside_the_cgroup(tree: Path, guard: FanotifyGuard, test_cgroup: Cgroup) -> None:
    scope = frozenset({test_cgroup.id})
    guard.apply(FanotifyTable(deny_exec(tree, scope=scope).exec_deny, deny_writes(tree, scope=scope).open_deny))
    actions = [["open", str(tree / "prot" / "f"), W], ["exec", [str(tree / "bin" / "evil"), str(tree / "out" / "m")],
                                                      None]]
    inside = spawn(actions)
    (test_cgroup.path / "cgroup.procs").write_text(str(inside.pid))
    outside = spawn(actions)
    assert finish(inside) == (["EPERM", "EPERM"], 0)
    assert finish(outside) == (["ok", 0], 0)
    decisions = guard.poll(1.0)
    assert {d.cgroup_id for d in decisions} == set(scope) and len(decisions) == 2


def test_paths_in_another_mount_namespace_are_judged_by_inode(tree: Path, guard: FanotifyGuard) -> None:
    """A container's view (/proc/<pid>/root/...): a process in its own mount namespace has a tmpfs
    over ``ns``. Its evil and data/f are denied; the host's files at the same paths are not."""
    if shutil.which("unshare") is None:
        require_or_skip("unshare(1) is missing")
    d = tree / "ns"
    (d / "data").mkdir(parents=True)
    (d / "data" / "f").write_text("host")
    shutil.copy("/usr/bin/touch", d / "evil")
    script = (f"mount -t tmpfs lanner-test {d} && mkdir {d}/data && echo ns > {d}/data/f && "
              f"cp /usr/bin/touch {d}/evil && echo ready && read go && "
              f"{{ {d}/evil {d}/m 2>/dev/null; echo $?; }} && {{ (echo x > {d}/data/f) 2>/dev/null; echo $?; }} && "
              f"cat {d}/data/f && {{ test -e {d}/m; echo $?; }}")
    ns = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert ns.stdout is not None and ns.stdout.readline() == "ready\n"
        root = f"/proc/{ns.pid}/root"
        guard.apply(FanotifyTable(exec_deny=[ExecDenyEntry(1, True, (f"{root}{d}/evil",))],
                                  open_deny=[OpenDenyEntry(2, True, (f"{root}{d}/data",))]))
        out, _ = ns.communicate("go\n", timeout=20)
    finally:
        if ns.poll() is None:
            ns.kill()
    assert out.split() == ["126", "2", "ns", "1"]  # exec denied, write denied, never ran
    assert run([["exec", [str(d / "evil"), str(tree / "out" / "m")], None],
                ["open", str(d / "data" / "f"), W]]) == [0, "ok"]
    assert sorted((x.kind, x.rule_id) for x in guard.poll(1.0)) == [("exec", 1), ("open", 2)]


# --- policy changes and the end ----------------------------------------------------------------------------

def test_apply_swaps_atomically(tree: Path, guard: FanotifyGuard) -> None:
    guard.apply(deny_writes(tree, rule_id=1))
    assert run([["open", str(tree / "prot" / "f"), W], ["open", str(tree / "out" / "x"), W | CREAT]]) == ["EPERM", "ok"]
    guard.apply(FanotifyTable(open_deny=(OpenDenyEntry(2, True, (str(tree / "out"),)),)))
    assert run([["open", str(tree / "prot" / "f"), W], ["open", str(tree / "out" / "x"), W]]) == ["ok", "EPERM"]
    assert [d.rule_id for d in guard.poll(1.0)] == [1, 2]
    assert guard.stats()["dirs"] == 1
    # A failing apply leaves the policy in force.
    with pytest.raises(ValueError, match="does not exist"):
        guard.apply(FanotifyTable(open_deny=(OpenDenyEntry(3, True, (str(tree / "nope"),)),)))
    assert run([["open", str(tree / "out" / "x"), W]]) == ["EPERM"]


def test_invalid_policies_are_refused(tree: Path) -> None:
    with FanotifyGuard(max_dirs=3) as g:
        for table, match in [
            (FanotifyTable(open_deny=(OpenDenyEntry(1, True, (str(tree / "prot" / "f"),)),)), "not a directory"),
            (FanotifyTable(exec_deny=(ExecDenyEntry(1, True, (str(tree / "bin"),)),)), "not a regular file"),
            (FanotifyTable(exec_deny=(ExecDenyEntry(1, True, (str(tree / "nope"),)),)), "does not exist"),
            (FanotifyTable(open_deny=(OpenDenyEntry(1, True, (str(tree),)),)), "more than 3 directories"),
            (FanotifyTable(open_deny=(OpenDenyEntry(1, True, ("/proc/self",)),)), "procfs"),
            (FanotifyTable(open_deny=(OpenDenyEntry(1, True, (str(tree),), write=False),)), "read or write"),
            (FanotifyTable(exec_deny=(ExecDenyEntry(1, True, str(tree / "bin" / "evil")),)), "sequence"),  # type: ignore[arg-type]
        ]:
            with pytest.raises(ValueError, match=match):
                g.apply(table)
        assert g.stats()["dirs"] == 0


def test_close_removes_every_mark(tree: Path) -> None:
    g = FanotifyGuard()
    g.apply(FanotifyTable(deny_exec(tree).exec_deny, deny_writes(tree).open_deny))
    assert run([["open", str(tree / "prot" / "f"), W]]) == ["EPERM"]
    g.close()
    links = [_link(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
    assert not [link for link in links if link.startswith("anon_inode:[fanotify]")]
    assert run([["open", str(tree / "prot" / "f"), W],
                ["exec", [str(tree / "bin" / "evil"), str(tree / "out" / "m")], None]]) == ["ok", 0]


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # the listing's own fd, closed meanwhile
        return ""


def test_a_file_mounted_below_a_protected_directory_is_protected(tree: Path, guard: FanotifyGuard) -> None:
    """Runtimes bind-mount /etc/hosts, /etc/resolv.conf... over a container's /etc: the file's parent is
    elsewhere, so the directory's mark alone would not see it (a bind mount from the same filesystem too).
    The file itself is marked: it is protected whichever name it is opened by (docs/enforcement.md)."""
    source = tree / "out" / "hosts"
    source.write_text("orig")
    target = tree / "prot" / "hosts"
    target.write_text("")
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        guard.apply(deny_writes(tree))
        assert run([["open", str(target), W], ["read", str(target)], ["open", str(source), W]]) == \
            ["EPERM", "ok", "EPERM"]
        assert source.read_text() == "orig"
    finally:
        subprocess.run(["umount", str(target)], check=True)
