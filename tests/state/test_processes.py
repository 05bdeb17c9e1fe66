"""Process table: fork, exec, exit, reparenting, unknown pids, seeding from /proc."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lanner.events import Process
from lanner.rules.fieldtypes import MISSING
from lanner.sensor.records import Kind
from lanner.state import StateTracker
from lanner.state.processes import ProcessTable, exe_writable, memfd_exepath, read_proc

from .builders import EPOCH, NR, U32, World, blobs, exec_info, fixed_clock, x


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.init()
    return world


def test_exec_describes_the_new_program(w: World) -> None:
    w.spawn(1, 100, ["-bash"], "/usr/bin/bash", comm="bash", cwd="/root",
            info=exec_info(tty=34816, sid=100, vpgid=100))
    w.fork(100, 200)
    ev = w.exec(200, ["cat", "/etc/hostname", "-n"], "/usr/bin/cat", cwd="/home/alice", env=["A=1", "B=two"],
                filename="/bin/cat", info=exec_info(tty=34816, sid=100, vpgid=200, cap_effective=1 << 21,
                                                    cap_permitted=(1 << 21) | 1, exe_ino=99,
                                                    exe_ctime=5, exe_mtime=6))
    assert ev.type == "execve" and ev.res == 0
    assert x("proc.name", ev) == "cat"
    assert x("proc.exe", ev) == "cat"
    assert x("proc.exepath", ev) == "/usr/bin/cat"
    assert x("proc.cmdline", ev) == "cat /etc/hostname -n"
    assert x("proc.args", ev) == "/etc/hostname -n"
    assert x("proc.cwd", ev) == "/home/alice/"
    assert x("proc.env", ev, "B") == "two"
    assert x("proc.tty", ev) == 34816
    assert x("proc.pname", ev) == "bash"
    assert x("proc.pexe", ev) == "-bash"
    assert x("proc.aname", ev, "2") == "systemd"
    assert x("proc.aname", ev, "3") is MISSING
    assert x("proc.sname", ev) == "bash"
    assert x("proc.is_vpgid_leader", ev) is True
    assert x("thread.cap_effective", ev) == "CAP_SYS_ADMIN"
    assert x("thread.cap_permitted", ev) == "CAP_CHOWN CAP_SYS_ADMIN"
    assert x("proc.exe_ino", ev) == 99 and x("proc.exe_ino.ctime", ev) == 5 and x("proc.exe_ino.mtime", ev) == 6
    # The execve parameters, as rules and outputs render them.
    assert x("evt.arg.filename", ev) == "/bin/cat"
    assert x("evt.arg.exe", ev) == "cat"
    assert x("evt.arg.ptid", ev) == "bash"
    assert x("evt.arg.cwd", ev) == "/home/alice"
    assert x("evt.arg.trusted_exepath", ev) == "/usr/bin/cat"
    assert x("evt.arg.loginuid", ev) == "<NONE>"
    assert x("evt.arg.flags", ev) == "EXE_WRITABLE"  # root may write a root-owned 0755 file


def test_fork_copies_context_with_new_ids(w: World) -> None:
    w.spawn(1, 100, ["bash"], "/usr/bin/bash", cwd="/srv", env=["X=1"])
    w.fork(100, 101, vpid=7, start=9_000)
    ev = w.syscall(101, "clone", 0, (0x1200011,))
    p = ev.proc
    assert p is not None
    assert (p.pid, p.vpid, p.ppid) == (101, 7, 100)
    assert p.start_ts == EPOCH + 9_000
    assert (p.name, p.exepath, p.cwd, p.env) == ("bash", "/usr/bin/bash", "/srv/", ["X=1"])
    assert x("proc.pname", ev) == "bash" and x("proc.aname", ev, "2") == "systemd"
    assert x("evt.arg.flags", ev) == "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID"
    assert x("evt.arg.ptid", ev) == "bash"
    assert x("proc.duration", ev) == ev.ts - (EPOCH + 9_000)


def test_clone_parent_links_to_the_real_parent(w: World) -> None:
    w.spawn(1, 100, ["bash"], "/usr/bin/bash")
    w.spawn(100, 110, ["runc"], "/usr/bin/runc")
    w.fork(110, 120, real_parent=100)  # CLONE_PARENT: the child is a sibling of the caller
    ev = w.syscall(120, "kill", 0, (120, 0))
    assert ev.proc is not None and ev.proc.ppid == 100
    assert x("proc.pname", ev) == "bash"
    assert x("proc.name", ev) == "runc"  # context copied from the caller


def test_exec_makes_a_new_object_and_old_events_keep_the_old_program(w: World) -> None:
    w.spawn(1, 100, ["bash"], "/usr/bin/bash")
    w.fork(100, 101)
    w.fork(101, 102)  # a child of the old program
    child_before = w.syscall(102, "kill", 0, (1, 0))
    before = w.openat(101, "/etc/hostname", 3)
    ev = w.exec(101, ["curl", "http://x"], "/usr/bin/curl")
    assert before.proc is not ev.proc
    assert x("proc.name", before) == "bash" and x("proc.name", ev) == "curl"
    assert w.tracker.fd(101, 3) is not None  # exec keeps the fds
    # The child is relinked to the new program by its next record; its earlier event is unchanged.
    child_ev = w.syscall(102, "kill", 0, (1, 0))
    assert x("proc.pname", child_ev) == "curl"
    assert x("proc.pname", child_before) == "bash"


def test_header_refreshes_ids_without_touching_earlier_events(w: World) -> None:
    w.spawn(1, 100, ["su"], "/usr/bin/su", comm="su")
    first = w.openat(100, "/etc/passwd", 3)
    ev = w.syscall(100, "setuid", 0, (1000,), uid=1000, gid=1000, loginuid=1000)
    assert x("user.uid", ev) == 1000 and x("user.name", ev) == "alice"
    assert x("group.gid", ev) == 1000 and x("group.name", ev) == "alice"
    assert x("user.loginuid", ev) == 1000 and x("user.loginname", ev) == "alice"
    assert x("evt.arg.uid", ev) == "alice"
    assert x("user.uid", first) == 0 and x("user.name", first) == "root"
    assert x("user.loginuid", first) == -1


def test_unknown_user_falls_back_like_falco(w: World) -> None:
    w.spawn(1, 100, ["app"], "/opt/app", uid=4242)
    ev = w.syscall(100, "kill", 0, (1, 0))
    assert x("user.uid", ev) == 4242
    assert x("user.name", ev) == "<NA>"
    assert x("evt.arg.pid", ev) == "systemd"


def test_reparent_when_the_parent_dies(w: World) -> None:
    w.spawn(1, 100, ["bash"], "/usr/bin/bash")
    w.spawn(100, 101, ["sleep", "100"], "/usr/bin/sleep")
    assert x("proc.pname", w.syscall(101, "kill", 0, (1, 0))) == "bash"
    w.exit(100)
    w.ppid[101] = 1  # the kernel reparents the orphan to init
    ev = w.syscall(101, "kill", 0, (1, 0))
    assert x("proc.ppid", ev) == 1
    assert x("proc.pname", ev) == "systemd"


def test_exit_reports_procexit_and_drops_the_process(w: World) -> None:
    w.spawn(1, 100, ["bash"], "/usr/bin/bash")
    w.openat(100, "/etc/hostname", 3)
    assert w.tracker.fd(100, 3) is not None
    ev = w.exit(100, status=(1 << 8))
    assert ev.type == "procexit" and ev.res is None
    assert ev.args == {"status": 256, "ret": 1, "sig": 0, "core": 0}
    assert x("proc.name", ev) == "bash"
    assert w.tracker.process(100) is None and w.tracker.fd(100, 3) is None
    killed = w.spawn(1, 101, ["x"], "/x")
    assert killed.proc is not None
    ev = w.exit(101, status=9 | 0x80)
    assert (ev.args["ret"], ev.args["sig"], ev.args["core"]) == (0, 9, 1)


def test_exit_of_an_unknown_process_does_not_read_proc(w: World, tmp_path: Path) -> None:
    ev = w.exit(555)
    assert ev.type == "procexit" and ev.proc is not None and ev.proc.pid == 555
    assert w.tracker.process(555) is None


def test_unknown_pid_is_created_from_the_header(w: World) -> None:
    ev = w.syscall(777, "kill", 0, (1, 0), comm="mystery", uid=33, ppid=1)
    p = ev.proc
    assert p is not None and (p.pid, p.name, p.uid, p.ppid) == (777, "mystery", 33, 1)
    assert x("user.name", ev) == "www-data"
    assert x("proc.pname", ev) == "systemd"
    assert w.tracker.stats()["unknown_processes"] == 2  # init and this one


def test_unknown_pid_is_read_from_proc_when_possible(tmp_path: Path) -> None:
    world = World(tmp_path)
    _fake_proc_entry(world.proc, 4321, comm="nginx", ppid=1, argv=["nginx: master", "-g", "x"],
                     cwd=tmp_path, exe=Path(sys.executable))
    ev = world.syscall(4321, "kill", 0, (1, 0), comm="nginx", ppid=1)
    assert x("proc.cmdline", ev) == "nginx -g x"
    assert x("proc.exe", ev) == "nginx: master"
    assert x("proc.cwd", ev) == str(tmp_path) + "/"
    assert x("proc.exepath", ev) == os.readlink(world.proc / "4321" / "exe")


def test_failed_exec_changes_nothing(w: World) -> None:
    w.spawn(1, 100, ["bash"], "/usr/bin/bash", cwd="/tmp")
    ev = w.syscall(100, "execve", -2, bl=blobs(path0="nosuch", base0="/tmp"))
    assert ev.type == "execve" and ev.res == -2
    assert x("proc.name", ev) == "bash"
    assert x("evt.arg.filename", ev) == "/tmp/nosuch"  # FSPATH: relative -> cwd + path
    assert x("evt.res", ev) == "ENOENT"
    ev2 = w.syscall(100, "execveat", -13, (3, 0, 0, 0, 0x1000), bl=blobs(path0=""))
    assert ev2.type == "execveat" and "filename" not in ev2.args


def test_successful_execveat_is_reported_as_execve(w: World) -> None:
    w.fork(1, 100)
    bl = blobs(argv="ls\0", env="", exepath="/usr/bin/ls", cwd="/", filename="", exec=exec_info())
    ev = w.syscall(100, "execveat", 0, (3, 0, 0, 0, 0x1000), bl=bl, comm="ls")
    assert ev.type == "execve" and x("proc.name", ev) == "ls"


def test_memfd_execution(w: World) -> None:
    w.spawn(1, 100, ["python3", "loader.py"], "/usr/bin/python3.11", comm="python3")
    w.fork(100, 101)
    ev = w.exec(101, ["true", "x"], "/memfd:runc_cloned:/proc/self/exe", comm="memfd:runc_clon",
                info=exec_info(exe_nlink=0, exe_magic=0x01021994, exe_mode=0o100777))
    assert x("proc.exepath", ev) == "memfd:runc_cloned:/proc/self/exe"
    assert x("proc.is_exe_from_memfd", ev) is True
    assert "EXE_FROM_MEMFD" in x("evt.arg.flags", ev)
    # An ordinary file named like a memfd but with links is not one.
    w.fork(100, 102)
    ev2 = w.exec(102, ["x"], "/tmp/memfd:x", info=exec_info(exe_nlink=1))
    assert x("proc.exepath", ev2) == "/tmp/memfd:x" and x("proc.is_exe_from_memfd", ev2) is False


def test_exe_writable_follows_owner_group_other(w: World) -> None:
    w.fork(1, 100)
    ev = w.exec(100, ["tool"], "/home/alice/tool", uid=1000,
                info=exec_info(exe_mode=0o100755, exe_uid=1000, exe_gid=1000))
    assert x("proc.is_exe_writable", ev) is True
    w.fork(1, 101)
    ev = w.exec(101, ["ls"], "/usr/bin/ls", uid=1000, info=exec_info(exe_mode=0o100755, exe_uid=0))
    assert x("proc.is_exe_writable", ev) is False
    assert exe_writable(0o100775, 0, 50, 1000, 50) is True
    assert exe_writable(0o100757, 0, 0, 1000, 1000) is True
    assert exe_writable(0o100750, 0, 0, 0, 0) is True


def test_cwd_follows_chdir_fchdir_and_relative_paths(w: World) -> None:
    w.spawn(1, 100, ["sh"], "/usr/bin/dash", cwd="/")
    ev = w.syscall(100, "chdir", 0, bl=blobs(cwd="/var/log"))
    assert x("proc.cwd", ev) == "/var/log/"
    assert x("evt.arg.path", ev) == "/var/log"
    failed = w.syscall(100, "chdir", -2)
    assert x("proc.cwd", failed) == "/var/log/"
    w.openat(100, "/srv", 5, flags=0o200000, fmt=0o040000)
    ev = w.syscall(100, "fchdir", 0, (5,), bl=blobs(cwd="/srv"))
    assert x("proc.cwd", ev) == "/srv/"
    assert x("fd.name", ev) == "/srv" and x("fd.typechar", ev) == "d"
    # A relative path comes with the kernel's cwd: a missed chdir is caught up.
    ev = w.syscall(100, "unlink", 0, bl=blobs(path0="x.log", base0="/var/tmp"))
    assert x("proc.cwd", ev) == "/var/tmp/"
    assert x("evt.arg.path", ev) == "/var/tmp/x.log"
    # ...but not from a path relative to another dirfd.
    ev = w.syscall(100, "unlinkat", 0, (5, 0, 0), bl=blobs(path0="y", base0="/srv"))
    assert x("proc.cwd", ev) == "/var/tmp/"


def test_user_namespace_entry_grants_all_capabilities(w: World) -> None:
    w.spawn(1, 100, ["unshare", "-U"], "/usr/bin/unshare")
    ev = w.syscall(100, "unshare", 0, (0x10000000,))
    assert "CAP_SYS_ADMIN" in x("thread.cap_effective", ev)
    assert x("evt.arg.flags", ev) == "CLONE_NEWUSER"
    w.spawn(1, 101, ["x"], "/x")
    ev = w.syscall(101, "unshare", -1, (0x10000000,))
    assert x("thread.cap_effective", ev) == ""


def test_table_is_bounded_evicting_dead_processes_first(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    for pid in (1, 2):
        (proc / str(pid)).mkdir()  # alive, and the oldest entries
    table = ProcessTable(proc_root=str(proc), max_processes=10)
    evicted: list[int] = []
    for pid in range(1, 12):
        evicted += table.put(Process(pid=pid))
    assert len(table) <= 10
    assert 1 in table and 2 in table
    assert evicted == [3, 4]
    assert table.evicted == 2
    # Nobody dead: the oldest go.
    (proc / "5").mkdir()
    for pid in range(5, 12):
        (proc / str(pid)).mkdir(exist_ok=True)
    for pid in range(12, 14):
        (proc / str(pid)).mkdir()
        evicted = table.put(Process(pid=pid))
    assert 1 not in table and 13 in table and len(table) <= 10


def test_tracker_drops_fds_of_evicted_processes(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.tracker.procs.max_processes = 4
    world.init()
    world.spawn(1, 10, ["a"], "/a")
    world.openat(10, "/etc/hostname", 3)
    for pid in range(11, 16):
        world.spawn(1, pid, ["b"], "/b")
    assert len(world.tracker.procs) <= 4
    assert world.tracker.process(10) is None and world.tracker.fd(10, 3) is None


# --- /proc -------------------------------------------------------------------------------------

def _fake_proc_entry(proc: Path, pid: int, *, comm: str, ppid: int, argv: list[str], cwd: Path, exe: Path,
                     tty: int = 0, uid: int = 0, env: list[str] | None = None, starttime: int = 100,
                     loginuid: int = U32, nspid: str | None = None) -> None:
    d = proc / str(pid)
    d.mkdir()
    rest = ["S", str(ppid), str(pid), "55", str(tty)] + ["0"] * 14 + [str(starttime)] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")
    (d / "status").write_text(
        f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t7\t7\t7\t7\n"
        f"NSpid:\t{nspid or pid}\nNSpgid:\t{pid}\nCapInh:\t0000000000000000\n"
        "CapPrm:\t0000000000200000\nCapEff:\t0000000000200001\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "environ").write_bytes(b"\0".join(e.encode() for e in (env or [])) + (b"\0" if env else b""))
    (d / "loginuid").write_text(str(loginuid))
    os.symlink(cwd, d / "cwd")
    os.symlink(exe, d / "exe")


def test_read_proc_parses_every_field(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    exe = tmp_path / "bin" / "tool"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    _fake_proc_entry(proc, 50, comm="my (tool) x", ppid=7, argv=["./tool", "-v", "a b"], cwd=tmp_path, exe=exe,
                     tty=34817, uid=1000, env=["HOME=/h", "TERM=xterm"], starttime=250, loginuid=1000,
                     nspid="50\t3")
    p = read_proc(str(proc), 50, boot_ns=10**18)
    assert p is not None
    assert p.name == "my (tool) x"
    assert (p.ppid, p.sid, p.tty, p.uid, p.gid, p.loginuid, p.vpid, p.vpgid) == (7, 55, 34817, 1000, 7, 1000, 3, 50)
    assert (p.exe, p.args) == ("./tool", ["-v", "a b"])
    assert p.env == ["HOME=/h", "TERM=xterm"]
    assert p.cwd == str(tmp_path) + "/"
    assert p.exepath == str(exe)
    assert (p.cap_inheritable, p.cap_permitted, p.cap_effective) == (0, 1 << 21, (1 << 21) | 1)
    assert p.start_ts == 10**18 + 250 * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    st = exe.stat()
    assert (p.exe_ino, p.exe_ino_ctime, p.exe_ino_mtime) == (st.st_ino, st.st_ctime_ns, st.st_mtime_ns)
    assert p.exe_writable is False  # uid 1000 / gid 7 may not write a root-owned 0755 file
    assert read_proc(str(proc), 51, boot_ns=0) is None


def test_memfd_exepath_forms() -> None:
    assert memfd_exepath("/memfd:runc_cloned:/proc/self/exe", 0) == "memfd:runc_cloned:/proc/self/exe"
    assert memfd_exepath("/memfd:x (deleted)", 0) == "memfd:x"
    assert memfd_exepath("/memfd:x", 1) is None
    assert memfd_exepath("/usr/bin/x", 0) is None


def test_seed_from_a_fake_proc_links_parents(tmp_path: Path) -> None:
    world = World(tmp_path)
    exe = Path(sys.executable)
    _fake_proc_entry(world.proc, 1, comm="systemd", ppid=0, argv=["/sbin/init"], cwd=Path("/"), exe=exe)
    _fake_proc_entry(world.proc, 20, comm="sshd", ppid=1, argv=["sshd: alice"], cwd=Path("/"), exe=exe,
                     uid=1000)
    assert world.tracker.seed() == 2
    assert world.tracker.seed() == 0  # known processes are kept
    ev = world.syscall(20, "kill", 0, (1, 0), uid=1000, ppid=1, comm="sshd")
    assert x("proc.pname", ev) == "systemd"
    assert x("user.name", ev) == "alice"
    assert x("proc.cmdline", ev) == "sshd"
    stats = world.tracker.stats()
    assert (stats["processes"], stats["fds"], stats["unknown_processes"]) == (2, 0, 0)


def test_seed_asks_the_container_of_each_process_by_cgroup_id(tmp_path: Path) -> None:
    cgroot = tmp_path / "cgroup"
    (cgroot / "kubepods" / "pod1" / "ctr1").mkdir(parents=True)
    world = World(tmp_path)
    _fake_proc_entry(world.proc, 30, comm="nginx", ppid=1, argv=["nginx"], cwd=Path("/"), exe=Path(sys.executable))
    (world.proc / "30" / "cgroup").write_text("0::/kubepods/pod1/ctr1\n")
    ino = (cgroot / "kubepods" / "pod1" / "ctr1").stat().st_ino
    tracker = StateTracker(world.clock, proc_root=str(world.proc), cgroup_root=str(cgroot),
                           cgroup_container=lambda cg, pid: f"c{cg}-{pid}", users=world.tracker.users)
    assert tracker.seed() == 1
    p = tracker.process(30)
    assert p is not None and p.container_id == f"c{ino}-30"


def test_seed_on_the_real_proc_knows_this_test_process() -> None:
    t = StateTracker(fixed_clock())
    assert t.seed() > 1
    me = t.process(os.getpid())
    assert me is not None
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as fh:
        argv = [a.decode() for a in fh.read().split(b"\0")[:-1]]
    assert [me.exe, *me.args] == argv
    assert me.exepath == os.readlink("/proc/self/exe")
    assert me.cwd == os.getcwd().rstrip("/") + "/"
    assert me.ppid == os.getppid()
    assert me.parent is not None and me.parent.pid == os.getppid()
    with open(f"/proc/{os.getppid()}/comm") as fh:
        assert me.parent.name == fh.read().strip()
    assert me.uid == os.geteuid() and me.gid == os.getegid()
    assert me.vpid == os.getpid()
    assert me.start_ts > 0 and me.exe_ino == os.stat("/proc/self/exe").st_ino
    assert me.name == Path(f"/proc/{os.getpid()}/comm").read_text().strip()


def test_fork_record_of_an_unknown_parent_creates_both(w: World) -> None:
    assert w.feed(w.record(Kind.FORK, 300, -1, 301, (1, 301, 300), ppid=1, comm="cron")) is None
    assert w.tracker.process(300) is not None
    child = w.tracker.process(301)
    assert child is not None and child.parent is w.tracker.process(300) and child.name == "cron"


def test_container_ids_come_from_the_cgroup(tmp_path: Path) -> None:
    asked: list[tuple[int, int]] = []

    def cgroup_container(cgid: int, pid: int) -> str:
        asked.append((cgid, pid))
        return "6ea8c5a9bea1db2f3a11ac13870dd88c650edf8e7d0993aabd533b62c3b05e90" if cgid == 77 else ""

    world = World(tmp_path)
    world.tracker = StateTracker(world.clock, proc_root=str(world.proc), cgroup_container=cgroup_container,
                                 users=world.tracker.users)
    world.init()
    world.spawn(1, 100, ["containerd-shim"], "/usr/bin/containerd-shim-runc-v2")
    world.fork(100, 101)
    rec = world.record(Kind.SYSCALL, 101, NR["execve"], 0, (), blobs(
        argv="nginx\0", exepath="/usr/sbin/nginx", cwd="/", exec=exec_info()), comm="nginx")
    rec.cgroup_id = 77
    ev = world.feed(rec)
    assert ev is not None and (77, 101) in asked
    assert x("container.id", ev) == "6ea8c5a9bea1"
    assert x("proc.pname", ev) == "containerd-shim" and ev.proc is not None
    assert ev.proc.parent is not None and ev.proc.parent.container_id == ""
    world.fork(101, 102)  # children inherit the container
    child = world.syscall(102, "kill", 0, (1, 0))
    assert x("container.id", child) == "6ea8c5a9bea1"
    assert ev.container is None  # container metadata comes later


def test_exec_without_a_container_resolver_keeps_the_container_id(w: World) -> None:
    w.spawn(1, 100, ["x"], "/x")
    p = w.tracker.process(100)
    assert p is not None
    p.container_id = "abc"
    ev = w.exec(100, ["y"], "/y")
    assert x("container.id", ev) == "abc"
