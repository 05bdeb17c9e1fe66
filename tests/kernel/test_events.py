"""Live events from the real kernel: each syscall family, performed by a child process, gives the
event and the field values a rule would see."""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lanner.events import Event
from lanner.rules.fieldtypes import MISSING
from tests.kernel._fields import extract as x
from tests.kernel._fields import text as t
from tests.kernel.conftest import Live

ACTIONS = str(Path(__file__).with_name("actions.py"))
PY = "/usr/bin/python3"


def act(live: Live, *argv: str, **kw: Any) -> tuple[list[Event], dict[str, Any]]:
    events = live.run([PY, ACTIONS, *argv], **kw)
    lines = [line for line in live.last_stdout.splitlines() if line.startswith("{")]
    return events, (json.loads(lines[-1]) if lines else {})


def one(events: list[Event], evtype: str, pred: Callable[[Event], bool] = lambda e: True) -> Event:
    found = [e for e in events if e.type == evtype and pred(e)]
    assert found, f"no {evtype} event matched; saw {sorted({e.type for e in events})}"
    return found[0]


def arg(name: str, value: Any) -> Callable[[Event], bool]:
    return lambda e: e.args.get(name) == value


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "w"
    d.mkdir()
    (d / "sub").mkdir()
    (d / "link-to-hostname").symlink_to("/etc/hostname")
    return d


def test_exec_tree_and_exit(live: Live, workdir: Path) -> None:
    (workdir / "mytrue").symlink_to("/usr/bin/true")
    events = live.run(["/bin/sh", "-c", "cd sub && ../mytrue first 'two words'; exit 3"], cwd=workdir,
                      env={"PATH": "/usr/bin:/bin", "LANNER_TEST": "yes"}, check=False)
    sh = one(events, "execve", lambda e: e.proc is not None and e.proc.name == "sh")
    assert x(sh, "proc.exepath") == "/usr/bin/dash"           # /bin/sh -> dash, resolved by the kernel
    assert x(sh, "proc.exe") == "/bin/sh"
    assert x(sh, "proc.cwd") == f"{workdir}/"
    assert x(sh, "proc.pid") == x(sh, "proc.vpid")
    assert x(sh, "proc.pname") in ("python", "python3", "pytest", "python3.11")

    # comm is the basename of the path as passed (the symlink's name), exepath the real file
    tr = one(events, "execve", lambda e: e.proc is not None and e.proc.name == "mytrue")
    assert x(tr, "evt.res") == "SUCCESS"
    assert x(tr, "proc.exepath") == "/usr/bin/true"           # through a relative symlink
    assert x(tr, "proc.exe") == "../mytrue"
    assert x(tr, "proc.args") == "first two words"
    assert x(tr, "proc.cmdline") == "mytrue first two words"
    assert x(tr, "proc.cwd") == f"{workdir}/sub/"
    assert x(tr, "proc.pname") == "sh"
    assert x(tr, "proc.pcmdline").startswith("sh -c cd sub")
    assert x(tr, "proc.aname[1]") == "sh"
    assert x(tr, "proc.ppid") == x(sh, "proc.pid")
    assert "LANNER_TEST=yes" in x(tr, "proc.env")
    assert x(tr, "proc.env[LANNER_TEST]") == "yes"
    assert x(tr, "user.uid") == 0 and x(tr, "user.name") == "root"
    assert x(tr, "proc.tty") == 0
    assert tr.args.get("filename") == "../mytrue"
    assert t(tr, "evt.arg.filename") == f"{workdir}/mytrue"    # FSPATH: cwd + path, normalised
    assert x(tr, "thread.cap_effective") not in (MISSING, None, "")
    assert x(tr, "proc.exe_ino") == os.stat("/usr/bin/true").st_ino

    exits = [e for e in events if e.type == "procexit"]
    assert {e.proc.pid for e in exits if e.proc} >= {x(sh, "proc.pid"), x(tr, "proc.pid")}
    sh_exit = one(events, "procexit", lambda e: e.proc is not None and e.proc.pid == x(sh, "proc.pid"))
    assert sh_exit.args.get("ret") == 3 or sh_exit.args.get("status") == 3 << 8


def test_failed_exec_reports_errno(live: Live, tmp_path: Path) -> None:
    events = live.py("import os\ntry:\n os.execv('/nonexistent/prog', ['prog'])\nexcept OSError:\n pass")
    ev = one(events, "execve", lambda e: (e.res or 0) < 0)
    assert ev.res == -2
    assert t(ev, "evt.res") == "ENOENT"
    assert t(ev, "evt.arg.filename") == "/nonexistent/prog"


def test_memfd_fileless_exec(live: Live) -> None:
    events, _ = act(live, "memfd_exec", check=False)
    mc = one(events, "memfd_create", arg("name", "lanner-fileless"))
    assert x(mc, "fd.type") == "memfd" and x(mc, "fd.name") == "lanner-fileless"
    ev = one(events, "execve", lambda e: e.proc is not None and e.proc.name != "python3" and (e.res or 0) == 0)
    assert x(ev, "proc.is_exe_from_memfd") is True
    assert str(x(ev, "proc.exepath")).startswith("memfd:lanner-fileless")
    assert x(ev, "proc.exe") == "fileless"
    assert x(ev, "proc.args") == "arg1"


def test_open_family(live: Live, workdir: Path) -> None:
    events, out = act(live, "files", str(workdir))
    fd1, fd2, fd3, fd4, fd5 = out["fds"]
    op = one(events, "open", arg("name", "rel-open.txt"))
    assert x(op, "fd.num") == fd1
    assert x(op, "fd.name") == f"{workdir}/rel-open.txt"
    assert x(op, "fd.nameraw") == "rel-open.txt"
    assert x(op, "fd.directory") == str(workdir)
    assert x(op, "fd.filename") == "rel-open.txt"
    assert x(op, "fd.typechar") == "f"
    assert x(op, "evt.is_open_write") is True and x(op, "evt.is_open_read") is False
    assert t(op, "evt.arg.flags") == "O_TRUNC|O_CREAT|O_WRONLY"
    assert t(op, "evt.arg.mode") == "0640"
    st = os.stat(workdir / "rel-open.txt")
    assert x(op, "fd.ino") == st.st_ino

    at = one(events, "openat", arg("name", "sub/../at-open.txt"))
    assert x(at, "fd.num") == fd2
    assert x(at, "fd.name") == f"{workdir}/at-open.txt"          # dirfd base, normalised
    assert x(at, "fd.nameraw") == "sub/../at-open.txt"
    assert x(at, "evt.is_open_read") is True and x(at, "evt.is_open_write") is True
    assert at.args.get("dirfd") == out["dirfd"]
    assert t(at, "evt.arg.dirfd") == f"<d>{workdir}" and t(at, "evt.arg.name") == f"{workdir}/at-open.txt"

    o2 = one(events, "openat2")
    assert x(o2, "fd.num") == fd3 and x(o2, "fd.name") == "/etc/hostname"
    assert x(o2, "evt.is_open_read") is True

    cr = one(events, "creat")
    assert x(cr, "fd.num") == fd4 and x(cr, "fd.name") == f"{workdir}/creat.txt"
    assert x(cr, "fd.typechar") == "f" and cr.args.get("mode") == 0o644
    assert x(cr, "evt.is_open_write") is False   # Falco: the is_open_* fields only cover open/openat/openat2

    ln = one(events, "openat", arg("name", "link-to-hostname"))
    assert x(ln, "fd.num") == fd5
    assert x(ln, "fd.name") == f"{workdir}/link-to-hostname"     # Falco: symlinks are not resolved...
    assert x(ln, "fd.ino") == os.stat("/etc/hostname").st_ino      # ...but the file is the target

    bad = one(events, "openat", arg("name", "/nonexistent/x"))
    assert bad.res == -2 and x(bad, "fd.num") == -1 and x(bad, "fd.typechar") == "f"
    assert x(bad, "fd.name") == "/nonexistent/x"


def test_file_operations(live: Live, workdir: Path) -> None:
    events, out = act(live, "fsops", str(workdir))
    w = str(workdir)
    ch = one(events, "chmod")
    assert t(ch, "evt.arg.filename") == f"{w}/a" and (ch.res or 0) == 0
    assert t(ch, "evt.arg.mode") == "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
    fch = one(events, "fchmod")
    assert x(fch, "fd.name") == f"{w}/b" and x(fch, "fd.num") == out["fd"]
    fat = one(events, "fchmodat")
    assert t(fat, "evt.arg.filename") == f"{w}/c"
    rn = one(events, "rename")
    assert t(rn, "evt.arg.oldpath") == f"{w}/a" and t(rn, "evt.arg.newpath") == f"{w}/a2"
    ra = one(events, "renameat", arg("oldpath", "b"))
    assert t(ra, "evt.arg.oldpath") == f"{w}/b"              # relative to a dirfd, resolved
    assert t(ra, "evt.arg.olddirfd") == f"<d>{w}" and t(ra, "evt.arg.newdirfd") == "AT_FDCWD"
    one(events, "renameat2", arg("newpath", "c2"))
    lk = one(events, "link")
    assert t(lk, "evt.arg.newpath") == f"{w}/hard1"
    la = one(events, "linkat")
    assert la.args.get("oldpath") == "b2" and la.args.get("newpath") == "hard2"
    sy = one(events, "symlink")
    assert t(sy, "evt.arg.target") == "/etc/shadow" and t(sy, "evt.arg.linkpath") == f"{w}/sym1"
    sa = one(events, "symlinkat")
    assert t(sa, "evt.arg.target") == "/etc/passwd"
    assert t(sa, "evt.arg.linkpath") == f"{w}/sym2"
    mk = one(events, "mkdir")
    assert t(mk, "evt.arg.path") == f"{w}/dir1" and t(mk, "evt.arg.mode") == "1ED"
    one(events, "mkdirat", arg("path", "dir2"))
    rm = one(events, "rmdir")
    assert t(rm, "evt.arg.path") == f"{w}/dir1"
    ul = one(events, "unlink")
    assert t(ul, "evt.arg.path") == f"{w}/hard1"
    ua = one(events, "unlinkat", arg("name", "hard2"))
    assert t(ua, "evt.arg.name") == f"{w}/hard2"
    rd = one(events, "unlinkat", arg("name", "dir2"))
    assert t(rd, "evt.arg.flags") == "AT_REMOVEDIR"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_network(live: Live) -> None:
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    events, out = act(live, "net", str(tcp), str(udp))
    sk = one(events, "socket", lambda e: e.res == out["listen"])
    assert t(sk, "evt.arg.domain") == "AF_INET" and x(sk, "fd.typechar") == "4"
    bd = one(events, "bind", lambda e: e.args.get("fd") == out["listen"])
    assert x(bd, "fd.name") == f"127.0.0.1:{tcp}"
    ls = one(events, "listen")
    assert x(ls, "fd.sport") == tcp and x(ls, "fd.sip") is not MISSING

    cn = one(events, "connect", lambda e: e.args.get("fd") == out["client"])
    assert cn.res == 0
    assert x(cn, "fd.name") == f"127.0.0.1:{out['client_port']}->127.0.0.1:{tcp}"
    assert str(x(cn, "fd.sip")) == "127.0.0.1" and x(cn, "fd.sport") == tcp
    assert x(cn, "fd.cport") == out["client_port"] and x(cn, "fd.l4proto") == "tcp"
    assert x(cn, "fd.connected") is True
    assert t(cn, "evt.arg.tuple") == f"127.0.0.1:{out['client_port']}->127.0.0.1:{tcp}"

    ac = one(events, "accept4", lambda e: e.res == out["accepted"]) if any(
        e.type == "accept4" for e in events) else one(events, "accept")
    assert x(ac, "fd.cport") == out["client_port"] and x(ac, "fd.sport") == tcp
    assert x(ac, "fd.name") == f"127.0.0.1:{out['client_port']}->127.0.0.1:{tcp}"

    st = one(events, "sendto", lambda e: e.args.get("fd") == out["udp"])
    assert x(st, "fd.sport") == udp and str(x(st, "fd.sip")) == "127.0.0.1" and x(st, "fd.l4proto") == "udp"
    sm = one(events, "sendmsg", lambda e: e.args.get("fd") == out["udp"])
    assert x(sm, "fd.sport") == udp + 1

    c6 = one(events, "connect", lambda e: e.args.get("fd") == out["v6_client"])
    assert x(c6, "fd.typechar") == "6"
    assert x(c6, "fd.name") == f"::1:{out['v6_client_port']}->::1:{out['v6_port']}"


def test_credentials(live: Live) -> None:
    events, _ = act(live, "creds")
    su = one(events, "setuid")
    assert su.res == 0 and su.args.get("uid") == 65534
    assert x(su, "user.uid") == 65534 and x(su, "user.name") == "nobody"
    one(events, "setgid", arg("gid", 65534))
    rs = one(events, "setresuid")
    assert rs.args.get("euid") == 65534
    one(events, "setresgid")
    op = one(events, "open")
    assert x(op, "user.uid") == 65534 and x(op, "group.gid") == 65534


def test_ptrace(live: Live) -> None:
    events, _ = act(live, "ptrace")
    at = one(events, "ptrace", lambda e: t(e, "evt.arg.request") == "PTRACE_ATTACH")
    assert at.res == 0
    assert t(at, "evt.arg.pid") in ("python3", "python3.11")   # the target's name
    one(events, "ptrace", lambda e: t(e, "evt.arg.request") == "PTRACE_TRACEME")


def test_namespaces_and_mounts(live: Live, tmp_path: Path) -> None:
    events, out = act(live, "namespaces")
    un = one(events, "unshare")
    assert un.res == 0 and t(un, "evt.arg.flags") == "CLONE_NEWUTS"
    sn = one(events, "setns")
    assert x(sn, "fd.num") == out["fd"]
    mnt = tmp_path / "m"
    mnt.mkdir()
    events, out = act(live, "mounts", str(mnt))
    assert out["mount"] == 0
    mo = one(events, "mount", arg("type", "tmpfs"))
    assert t(mo, "evt.arg.dir") == str(mnt) and mo.args.get("dev") == "lanner-test"
    um = one(events, "umount2")
    assert t(um, "evt.arg.name") == str(mnt) and um.res == 0


def test_fd_events(live: Live) -> None:
    events, out = act(live, "fds")
    mc = one(events, "memfd_create")
    assert mc.res == out["memfd"] and x(mc, "fd.typechar") == "m"
    d2 = one(events, "dup2", lambda e: e.args.get("newfd") == 2 and e.args.get("oldfd") == out["sock"])
    assert d2.res == 2 and x(d2, "fd.type") == "ipv4" and x(d2, "fd.num") == 2
    assert x(d2, "evt.rawres") == 2
    one(events, "dup", lambda e: e.res == out["dup"])
    one(events, "dup3", lambda e: e.res == out["dup3"])
    if out["uffd"] >= 0:
        uf = one(events, "userfaultfd")
        assert x(uf, "fd.type") == "userfaultfd"
    bp = one(events, "bpf")
    assert bp.res == out["bpf"] and t(bp, "evt.arg.cmd") == "BPF_MAP_CREATE" and x(bp, "fd.type") == "bpf"
    im = one(events, "init_module")
    assert im.res == out["init"]
    fm = one(events, "finit_module")
    assert fm.res == out["finit"] and x(fm, "fd.name") == "/etc/hostname"


def test_inside_pid_and_mount_namespaces(live: Live, workdir: Path) -> None:
    """A process in new pid and mount namespaces: host pid, namespace vpid, correct paths."""
    events = live.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "/bin/sh", "-c",
                       f"cd {workdir} && cat link-to-hostname > /dev/null && /usr/bin/true"])
    cat = one(events, "execve", lambda e: e.proc is not None and e.proc.name == "cat")
    assert x(cat, "proc.vpid") != x(cat, "proc.pid") and 1 < x(cat, "proc.vpid") < 100
    assert x(cat, "proc.cwd") == f"{workdir}/"
    op = one(events, "openat", lambda e: e.args.get("name") == "link-to-hostname")
    assert x(op, "fd.name") == f"{workdir}/link-to-hostname"
    assert x(op, "proc.aname[1]") == "sh"


def test_child_cgroup(live: Live, tmp_path: Path) -> None:
    """Events of a process moved into a child cgroup keep their context."""
    base = Path("/sys/fs/cgroup/unified")
    if not base.is_dir():
        base = Path("/sys/fs/cgroup")
    cg = base / f"lanner-test-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        events = live.run(["/bin/sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec cat /etc/hostname"])
        cat = one(events, "execve", lambda e: e.proc is not None and e.proc.name == "cat")
        assert x(cat, "container.id") == "host"
        op = one(events, "openat", lambda e: e.args.get("name") == "/etc/hostname")
        assert x(op, "fd.name") == "/etc/hostname" and x(op, "proc.name") == "cat"
        assert x(op, "proc.pname") in ("python", "python3", "pytest", "python3.11")
    finally:
        cg.rmdir()


def test_process_older_than_the_sensor_has_full_context(live: Live) -> None:
    """The test runner started before the sensor: its children see its name and command line."""
    events = live.run(["/usr/bin/true"])
    ev = one(events, "execve")
    parent = ev.proc.parent if ev.proc else None
    assert parent is not None and parent.pid == os.getpid()
    assert parent.exepath == os.path.realpath(sys.executable)
    assert x(ev, "proc.pcmdline").split()[0] == parent.name
    cmdline = Path(f"/proc/{os.getpid()}/cmdline").read_text().split("\0")
    assert parent.args == [a for a in cmdline if a][1:]
