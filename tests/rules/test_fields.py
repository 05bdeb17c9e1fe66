"""Field registry: values a Falco user would see for hand-built events (FIELDS.md)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lanner.events import Container, Event, FdInfo, Mount, Process
from lanner.rules.fields import (
    FIELDS,
    all_fields,
    bind,
    check_arg,
    lookup,
    parse_hex_literal,
    parse_literal,
    render_json,
    render_text,
)
from lanner.rules.fieldtypes import MISSING, ArgMode, FieldType, Quantifier

RULES_DIR = Path("/work/shared/falco/rules")
CID = "0123456789abcdef0123456789abcdef"


def x(name: str, ev: Event, arg: str | None = None) -> Any:
    f = lookup(name)
    assert f is not None, name
    return f.extract(ev, arg)


def shell_chain() -> Process:
    init = Process(pid=1, ppid=0, vpid=1, name="systemd", exe="/sbin/init",
                   exepath="/usr/lib/systemd/systemd")
    sshd = Process(pid=100, ppid=1, vpid=100, name="sshd", exe="/usr/sbin/sshd", exepath="/usr/sbin/sshd",
                   args=["-D"], parent=init)
    bash = Process(pid=200, ppid=100, vpid=200, sid=200, vpgid=200, name="bash", exe="-bash",
                   exepath="/usr/bin/bash", cwd="/root/", tty=34816, parent=sshd)
    return bash


def ln_proc() -> Process:
    bash = shell_chain()
    return Process(pid=300, ppid=200, vpid=300, sid=200, vpgid=300, name="ln", exe="ln",
                   exepath="/usr/bin/ln", args=["-s", "/etc/shadow", "/srv/x"], cwd="/root/",
                   tty=34816, uid=0, loginuid=1000, start_ts=1_000, parent=bash,
                   env=["HOME=/root", "PATH=/usr/bin"])


# --- registry ---------------------------------------------------------------------------------

def test_registry_shape() -> None:
    names = [f.name for f in all_fields()]
    assert names == sorted(names)
    assert set(names) == set(FIELDS)
    for f in all_fields():
        assert f.desc and "\n" not in f.desc
        # Every extractor accepts the argument positionally and by default (bind relies on it).
        ev = Event(type="openat")
        f.extract(ev, None)
        f.extract(ev)  # type: ignore[call-arg]


def test_field_types_and_modes() -> None:
    assert FIELDS["proc.aname"].quantifier is Quantifier.ANY
    assert FIELDS["proc.aname"].quantifier_for("2") is Quantifier.ONE
    assert FIELDS["fd.ip"].quantifier is Quantifier.EITHER_END and FIELDS["fd.ip"].filter_only
    assert FIELDS["fd.net"].type is FieldType.IPNET and FIELDS["fd.snet"].filter_only
    assert FIELDS["evt.dir"].deprecated
    assert FIELDS["container.mount.dest"].arg is ArgMode.REQUIRED_KEY
    assert FIELDS["user.loginuid"].type is FieldType.INT64
    assert FIELDS["proc.tty"].type is FieldType.UINT32
    assert FIELDS["fd.sport"].type is FieldType.PORT


def test_dynamic_lookup() -> None:
    f = lookup("evt.arg.flags")
    assert f is not None and f.type is FieldType.CHARBUF and lookup("evt.arg.flags") is f
    assert lookup("evt.arg.no_such_param") is None
    assert lookup("evt.rawarg.fd") is not None
    assert lookup("evt.rawarg.fd").type is FieldType.INT64  # type: ignore[union-attr]
    assert lookup("proc.nope") is None
    assert lookup("evt.arg") is FIELDS["evt.arg"]


def _rules_field_refs() -> set[tuple[str, str | None]]:
    refs: set[tuple[str, str | None]] = set()
    token = re.compile(r"(?<![\w.%])([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)(\[[^\]]*\])?")
    out_token = re.compile(r"%([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)(\[[^\]]*\])?")
    classes = ("evt", "proc", "thread", "user", "group", "fd", "container", "k8s", "fs")
    for path in sorted(RULES_DIR.glob("*.yaml")):
        for item in yaml.safe_load(path.read_text()) or []:
            if not isinstance(item, dict):
                continue
            texts = [str(item.get("condition", "")), *[str(e.get("fields", "")) for e in
                                                       item.get("exceptions", []) or []]]
            for text in texts:
                # Quoted strings hold paths and names, not fields.
                text = re.sub(r"\"[^\"]*\"|'[^']*'", " ", text)
                for m in token.finditer(text):
                    if m.group(1).split(".")[0] in classes:
                        arg = m.group(2)[1:-1] if m.group(2) else None
                        refs.add((m.group(1), arg))
            for m in out_token.finditer(str(item.get("output", ""))):
                refs.add((m.group(1), m.group(2)[1:-1] if m.group(2) else None))
    return refs


def _rules_field_names() -> set[str]:
    return {name for name, _ in _rules_field_refs()}


def test_every_rules_field_resolves() -> None:
    names = _rules_field_names()
    assert len(names) >= 90, names
    missing = sorted(n for n in names if lookup(n) is None)
    assert missing == []
    for name, arg in _rules_field_refs():
        f = lookup(name)
        assert f is not None
        check_arg(f, arg)


FIELDS_MD_INDEX = (
    "container.id", "container.image.repository", "container.mount.dest", "container.mounts",
    "container.privileged", "container.start_ts", "evt.arg.cmd", "evt.arg.domain", "evt.arg.fd",
    "evt.arg.filename", "evt.arg.flags", "evt.arg.linkpath", "evt.arg.mode", "evt.arg.name",
    "evt.arg.newpath", "evt.arg.oldpath", "evt.arg.path", "evt.arg.request", "evt.arg.target",
    "evt.arg.uid", "evt.args", "evt.buffer", "evt.is_open_exec", "evt.is_open_read", "evt.is_open_write",
    "evt.num", "evt.rawres", "evt.res", "evt.type", "fd.cip", "fd.cip.name", "fd.cnet", "fd.connected",
    "fd.name_changed", "fd.directory", "fd.filename", "fd.ip", "fd.net", "fd.port", "fd.l4proto",
    "fd.lip.name", "fd.lport", "fd.name", "fd.nameraw", "fd.num", "fd.rip", "fd.rip.name", "fd.rnet",
    "fd.rport", "fd.sip", "fd.sip.name", "fd.snet", "fd.sockfamily", "fd.sport", "fd.type",
    "fd.typechar", "group.gid", "group.name", "k8s.ns.name", "k8s.pod.name", "proc.aexe",
    "proc.aexepath", "proc.aname", "proc.args", "proc.cmdline", "proc.pcmdline", "proc.cwd", "proc.env",
    "proc.exe", "proc.exepath", "proc.duration", "proc.tty", "proc.vpid", "proc.exe_ino.ctime",
    "proc.exe_ino.mtime", "proc.exe_ino.ctime_duration_proc_start", "proc.is_exe_from_memfd",
    "proc.is_exe_upper_layer", "proc.is_vpgid_leader", "proc.name", "proc.pname", "proc.pexe",
    "proc.pexepath", "proc.sname", "thread.cap_effective", "thread.cap_permitted", "user.loginname",
    "user.loginuid", "user.name", "user.uid", "evt.time", "container.name", "container.image.tag",
)


def test_fields_md_index_resolves() -> None:
    assert len(set(FIELDS_MD_INDEX)) == 93  # the 90 names of §12 plus the implicit three
    assert [n for n in FIELDS_MD_INDEX if lookup(n) is None] == []


# --- evt --------------------------------------------------------------------------------------

def test_evt_basic() -> None:
    ev = Event(type="openat", ts=1_735_726_868_123_456_789, num=7, res=-2, proc=ln_proc(),
               args={"fd": -2, "dirfd": -100, "name": "x", "flags": 0o1101, "mode": 0o644})
    assert x("evt.type", ev) == "openat"
    assert x("evt.num", ev) == 7
    assert x("evt.res", ev) == "ENOENT"
    assert x("evt.rawres", ev) == -2
    assert x("evt.failed", ev) is True
    assert x("evt.dir", ev) == "<"
    assert x("evt.source", ev) == "syscall"
    assert x("evt.rawtime", ev) == 1_735_726_868_123_456_789
    t = x("evt.time", ev)
    assert t.endswith(".123456789") and len(t) == 18
    assert render_json(FIELDS["evt.time"], t) == 1_735_726_868_123_456_789
    assert x("evt.time.iso8601", ev) == "2025-01-01T10:21:08.123456789+0000"
    assert render_json(FIELDS["evt.time.iso8601"], x("evt.time.iso8601", ev)) == ev.ts
    ok = Event(type="openat", res=3)
    assert x("evt.res", ok) == "SUCCESS"
    assert x("evt.res", Event(type="procexit")) is MISSING
    assert x("evt.rawres", Event(type="procexit")) is MISSING
    assert x("evt.dir", Event(type="procexit")) == ">"
    assert x("evt.res", Event(type="close", res=-512)) == "-512"
    assert x("evt.res", Event(type="connect", res=-115)) == "EINPROGRESS"
    assert x("evt.res", Event(type="openat", res=-100)) == "AT_FDCWD"


@pytest.mark.parametrize(("etype", "flags", "mode", "read", "write", "exe"), [
    ("openat", 0, 0, True, False, False),
    ("openat", 0o1, 0, False, True, False),
    ("open", 0o2, 0, True, True, False),
    ("openat2", 0o1101, 0o755, False, True, True),
    ("openat", 0o1101, 0o644, False, True, False),
    ("openat", 0o1, 0o755, False, True, False),  # no O_CREAT: mode ignored
    ("openat", "O_WRONLY|O_CREAT", "0755", False, True, True),
    ("openat", "O_RDONLY", 0, True, False, False),
    ("openat", "O_TRUNC|O_CREAT|O_RDWR", 0, True, True, False),
    ("creat", None, 0o700, False, False, True),
    ("read", None, 0, False, False, False),
])
def test_is_open(etype: str, flags: Any, mode: Any, read: bool, write: bool, exe: bool) -> None:
    args: dict[str, Any] = {"mode": mode}
    if flags is not None:
        args["flags"] = flags
    ev = Event(type=etype, args=args, res=3)
    assert x("evt.is_open_read", ev) is read
    assert x("evt.is_open_write", ev) is write
    assert x("evt.is_open_exec", ev) is exe


def test_evt_buffer() -> None:
    ev = Event(type="write", data=b"\x7fELF\x00ab", res=7, args={"fd": 1})
    f = FIELDS["evt.buffer"]
    assert x("evt.buffer", ev) == b"\x7fELF\x00ab"
    assert render_text(f, x("evt.buffer", ev)) == ".ELF.ab"
    assert render_json(f, x("evt.buffer", ev)) == ".ELF.ab"
    assert x("evt.buffer", Event(type="write")) is MISSING
    assert x("evt.buflen", ev) == 7


# --- argument rendering (FIELDS.md §6) ---------------------------------------------------------

def arg(name: str, ev: Event) -> Any:
    return x("evt.arg." + name, ev)


@pytest.mark.parametrize(("flags", "text"), [
    (0o1101, "O_TRUNC|O_CREAT|O_WRONLY"),
    (0o2, "O_RDWR"),
    (0, "O_RDONLY"),
    (0o2000000, "O_RDONLY|O_CLOEXEC"),
    (0o200000, "O_DIRECTORY|O_RDONLY|O_TMPFILE"),  # FIELDS.md §13.4 quirk
    (0o2101, "O_APPEND|O_CREAT|O_WRONLY"),
    ("O_WRONLY|O_CREAT|O_TRUNC", "O_TRUNC|O_CREAT|O_WRONLY"),
])
def test_open_flags_rendering(flags: Any, text: str) -> None:
    ev = Event(type="openat", res=3, args={"flags": flags})
    assert arg("flags", ev) == text


def test_open_args_rendering() -> None:
    p = ln_proc()
    fdi = FdInfo(num=3, type="file", name="/etc/shadow", nameraw="/etc/shadow")
    ev = Event(type="openat", res=3, proc=p, fd=fdi,
               args={"fd": 3, "dirfd": -100, "name": "/etc/shadow", "flags": 0o1, "mode": 0})
    assert arg("fd", ev) == "<f>/etc/shadow"
    assert arg("dirfd", ev) == "AT_FDCWD"
    assert arg("name", ev) == "/etc/shadow"
    assert arg("mode", ev) == "0"
    assert x("evt.rawarg.flags", ev) == 2
    assert x("evt.arg", ev, "0") == "<f>/etc/shadow"
    assert x("evt.arg", ev, "flags") == "O_WRONLY"
    assert x("evt.args", ev) == ("fd=3(<f>/etc/shadow) dirfd=-100(AT_FDCWD) name=/etc/shadow "
                                 "flags=2(O_WRONLY) mode=0")
    rel = Event(type="openat", res=4, proc=p, args={"fd": 4, "dirfd": -100, "name": "../etc//./passwd",
                                                     "flags": 0o101, "mode": 0o644})
    assert arg("name", rel) == "/etc/passwd"
    assert arg("mode", rel) == "0644"
    assert arg("fd", rel) == "4"  # no fdinfo for it
    # A parameter of another event is missing.
    assert arg("path", ev) is MISSING
    assert arg("target", ev) is MISSING


def test_fspath_and_relpath() -> None:
    p = ln_proc()
    ev = Event(type="mkdir", res=0, proc=p, args={"path": "a/../b", "mode": 0o755})
    assert arg("path", ev) == "/root/b"
    assert arg("mode", ev) == "1ED"
    ab = Event(type="mkdir", res=0, proc=p, args={"path": "/tmp//x/", "mode": 0o700})
    assert arg("path", ab) == "/tmp//x/"  # absolute: raw, not normalised
    d = FdInfo(num=5, type="directory", name="/var/lib")
    at = Event(type="mkdirat", res=0, proc=p, fd=d, args={"dirfd": 5, "path": "dpkg", "mode": 0o755})
    assert arg("path", at) == "/var/lib/dpkg"
    assert arg("dirfd", at) == "<d>/var/lib"
    unk = Event(type="mkdirat", res=0, proc=p, args={"dirfd": 9, "path": "dpkg", "mode": 0o755})
    assert arg("path", unk) == "<UNKNOWN>/dpkg"


def test_symlink_target_never_resolved() -> None:
    ev = Event(type="symlinkat", res=0, proc=ln_proc(),
               args={"target": "../etc/shadow", "linkdirfd": -100, "linkpath": "x"})
    assert arg("target", ev) == "../etc/shadow"
    assert arg("linkpath", ev) == "/root/x"


def test_chmod_mode_and_misc_tables() -> None:
    ev = Event(type="chmod", res=0, args={"filename": "/bin/x", "mode": 0o4755})
    assert arg("mode", ev) == "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
    assert x("evt.args", ev) == ("res=0 filename=/bin/x mode=04755(S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|"
                                 "S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID)")
    assert arg("mode", Event(type="chmod", args={"mode": 0})) == "0"
    assert arg("request", Event(type="ptrace", args={"request": 16, "pid": 5})) == "PTRACE_ATTACH"
    assert arg("request", Event(type="ptrace", args={"request": 0x4206})) == "PTRACE_SEIZE"
    assert arg("request", Event(type="ptrace", args={"request": "PTRACE_TRACEME"})) == "PTRACE_TRACEME"
    assert arg("domain", Event(type="socket", args={"domain": 1})) == "AF_LOCAL|AF_UNIX"
    assert arg("domain", Event(type="socket", args={"domain": 16})) == "AF_ROUTE|AF_NETLINK"
    assert arg("domain", Event(type="socket", args={"domain": 17})) == "AF_PACKET"
    assert arg("domain", Event(type="socket", args={"domain": 2})) == "AF_INET"
    assert arg("cmd", Event(type="bpf", args={"cmd": 5})) == "BPF_PROG_LOAD"
    assert arg("flags", Event(type="memfd_create", args={"flags": 3})) == "MFD_CLOEXEC|MFD_ALLOW_SEALING"
    assert arg("flags", Event(type="unlinkat", args={"flags": 0x200})) == "AT_REMOVEDIR"
    assert arg("flags", Event(type="unlinkat", args={"flags": 0})) == "0"
    assert arg("flags", Event(type="unshare", args={"flags": 0x10000000})) == "CLONE_NEWUSER"
    assert arg("flags", Event(type="unshare", args={"flags": 0x20020000})) == "CLONE_NEWNS|CLONE_NEWPID"
    assert x("evt.rawarg.flags", Event(type="unshare", args={"flags": 0x10000000})) == 1 << 20
    assert arg("flags", Event(type="mount", args={"flags": 4096 | 16384})) == "BIND|REC"
    assert arg("flags", Event(type="execve", args={"flags": 0})) == "0"
    assert arg("flags", Event(type="execve", args={"flags": 6})) == "EXE_UPPER_LAYER|EXE_FROM_MEMFD"


def test_uid_and_pid_args() -> None:
    p = ln_proc()
    p.user_name = "root"
    ev = Event(type="setuid", res=0, proc=p, args={"uid": 0})
    assert arg("uid", ev) == "root"
    assert arg("uid", Event(type="setuid", args={"uid": -1}, proc=p)) == "<NONE>"
    c = Process(pid=9, uid=0, container_id=CID)
    assert arg("uid", Event(type="setuid", args={"uid": 4242}, proc=c)) == "<NA>"
    assert arg("uid", Event(type="setuid", args={"uid": 0}, proc=c)) == "<NA>"  # no root fallback
    pt = Event(type="ptrace", res=0, proc=p, args={"request": 16, "pid": 200})
    assert arg("pid", pt) == "bash"
    assert arg("pid", Event(type="ptrace", proc=p, args={"pid": 4242})) == "4242"


def test_errno_params_and_res_fallback() -> None:
    ev = Event(type="unlink", res=-13, args={"path": "/etc/x"})
    assert arg("res", ev) == "EACCES"
    assert x("evt.args", ev) == "res=-13(EACCES) path=/etc/x"
    ok = Event(type="unlink", res=0, args={"path": "/etc/x"})
    assert arg("res", ok) == "0"


def test_socket_tuple_args() -> None:
    fdi = FdInfo(num=3, type="ipv4", name="10.0.0.1:4444->1.2.3.4:80", l4proto="tcp", role="client",
                 cip="10.0.0.1", cport=4444, sip="1.2.3.4", sport=80, connected=True)
    ev = Event(type="connect", res=0, fd=fdi, args={"res": 0, "tuple": "10.0.0.1:4444->1.2.3.4:80", "fd": 3})
    assert arg("fd", ev) == "<4t>10.0.0.1:4444->1.2.3.4:80"
    assert arg("tuple", ev) == "10.0.0.1:4444->1.2.3.4:80"


# --- proc / thread ----------------------------------------------------------------------------

def test_proc_fields() -> None:
    p = ln_proc()
    ev = Event(type="symlinkat", ts=5_000, tid=300, res=0, proc=p)
    assert x("proc.name", ev) == "ln"
    assert x("proc.exe", ev) == "ln"
    assert x("proc.exepath", ev) == "/usr/bin/ln"
    assert x("proc.cmdline", ev) == "ln -s /etc/shadow /srv/x"
    assert x("proc.exeline", ev) == "ln -s /etc/shadow /srv/x"
    assert x("proc.args", ev) == "-s /etc/shadow /srv/x"
    assert x("proc.args", ev, "1") == "/etc/shadow"
    assert x("proc.args", ev, "9") == ""
    assert x("proc.pname", ev) == "bash"
    assert x("proc.pcmdline", ev) == "bash"
    assert x("proc.pexe", ev) == "-bash"
    assert x("proc.pexepath", ev) == "/usr/bin/bash"
    assert x("proc.aname", ev, "0") == "ln"
    assert x("proc.aname", ev, "1") == "bash"
    assert x("proc.aname", ev, "3") == "systemd"
    assert x("proc.aname", ev, "4") is MISSING
    assert x("proc.aname", ev) == ["bash", "sshd", "systemd"]
    assert render_text(FIELDS["proc.aname"], x("proc.aname", ev)) == "bash sshd systemd"
    assert x("proc.aexepath", ev, "2") == "/usr/sbin/sshd"
    assert x("proc.acmdline", ev, "2") == "sshd -D"
    assert x("proc.apid", ev) == [200, 100, 1]
    assert x("proc.cwd", ev) == "/root/"
    assert x("proc.tty", ev) == 34816
    assert x("proc.vpid", ev) == 300
    assert x("proc.pid", ev) == 300 and x("proc.ppid", ev) == 200
    assert x("proc.sid", ev) == 200
    assert x("proc.sname", ev) == "bash"
    assert x("proc.duration", ev) == 4_000
    assert x("proc.env", ev) == "HOME=/root PATH=/usr/bin"
    assert x("proc.env", ev, "HOME") == "/root"
    assert x("proc.env", ev, "NOPE") is MISSING
    assert x("proc.is_vpgid_leader", ev) is True
    assert x("proc.vpgid.name", ev) == "ln"
    assert x("thread.tid", ev) == 300
    assert x("thread.vtid", ev) == 300


def test_proc_missing_rules() -> None:
    init = Process(pid=1, vpid=1, name="systemd")
    ev = Event(type="execve", proc=init)
    assert x("proc.pname", ev) is MISSING
    assert x("proc.pcmdline", ev) is MISSING
    assert x("proc.aname", ev) is MISSING
    assert x("proc.aname", ev, "1") is MISSING
    assert x("proc.duration", ev) is MISSING  # start_ts unknown
    assert x("proc.args", ev) == ""  # not missing
    assert x("proc.cmdline", ev) == "systemd"
    assert x("proc.sname", ev) == ""
    assert x("proc.exe_ino.ctime", ev) is MISSING
    noproc = Event(type="execve")
    for name in ("proc.name", "proc.pid", "user.uid", "user.name", "group.gid", "thread.cap_effective",
                 "container.id", "container.name", "k8s.pod.name"):
        assert x(name, noproc) is MISSING, name
    assert x("proc.vpid", Event(type="execve", proc=Process(pid=5, vpid=-1))) is MISSING


def test_aname_stops_on_loops() -> None:
    a = Process(pid=10, name="a")
    b = Process(pid=11, name="b", parent=a)
    a.parent = b
    ev = Event(type="execve", proc=a)
    assert x("proc.aname", ev) == ["b"]


def test_proc_flags_and_caps() -> None:
    p = Process(pid=7, name="x", exe_upper_layer=True, exe_from_memfd=True, start_ts=100,
                exe_ino_ctime=40, exe_ino_mtime=30,
                cap_effective=(1 << 0) | (1 << 21), cap_permitted=(1 << 16) | (1 << 19))
    ev = Event(type="execve", ts=200, proc=p)
    assert x("proc.is_exe_upper_layer", ev) is True
    assert x("proc.is_exe_from_memfd", ev) is True
    assert x("proc.is_exe_writable", ev) is False
    assert x("thread.cap_effective", ev) == "CAP_CHOWN CAP_SYS_ADMIN"
    assert x("thread.cap_permitted", ev) == "CAP_SYS_MODULE CAP_SYS_PTRACE"
    assert x("thread.cap_inheritable", ev) == ""
    assert x("proc.exe_ino.ctime", ev) == 40
    assert x("proc.exe_ino.mtime", ev) == 30
    assert x("proc.exe_ino.ctime_duration_proc_start", ev) == 60


# --- user / group -----------------------------------------------------------------------------

def test_user_fields() -> None:
    root = Event(type="execve", proc=Process(pid=1, uid=0, gid=0, loginuid=-1))
    assert x("user.uid", root) == 0
    assert x("user.name", root) == "root"
    assert x("user.loginuid", root) == -1
    assert x("user.loginname", root) == "<NA>"
    assert x("group.gid", root) == 0
    assert x("group.name", root) == "root"
    unknown = Event(type="execve", proc=Process(pid=1, uid=1234, gid=1234, loginuid=0))
    assert x("user.name", unknown) == "<NA>"
    assert x("group.name", unknown) == "<NA>"
    assert x("user.loginname", unknown) == "root"
    assert x("user.loginuid", unknown) == 0
    named = Event(type="execve", proc=Process(pid=1, uid=1000, user_name="alice", loginuid=0xFFFFFFFF,
                                              gid=1000, group_name="alice"))
    assert x("user.name", named) == "alice"
    assert x("group.name", named) == "alice"
    assert x("user.loginuid", named) == -1
    placeholder = Event(type="execve", proc=Process(pid=-1, uid=-1, name="<NA>"))
    assert x("user.uid", placeholder) == 4294967295
    assert x("user.name", placeholder) == "<NA>"


# --- fd ---------------------------------------------------------------------------------------

def test_fd_file() -> None:
    p = ln_proc()
    fdi = FdInfo(num=3, type="file", name="/etc/shadow", nameraw="../etc/shadow")
    ev = Event(type="openat", res=3, proc=p, fd=fdi, args={"fd": 3, "dirfd": -100, "name": "../etc/shadow",
                                                           "flags": 0, "mode": 0})
    assert x("fd.num", ev) == 3
    assert x("fd.type", ev) == "file"
    assert x("fd.typechar", ev) == "f"
    assert x("fd.name", ev) == "/etc/shadow"
    assert x("fd.nameraw", ev) == "../etc/shadow"
    assert x("fd.directory", ev) == "/etc"
    assert x("fd.filename", ev) == "shadow"
    assert x("fd.l4proto", ev) == "<NA>"
    assert x("fd.sockfamily", ev) is MISSING
    assert x("fd.sip", ev) is MISSING
    assert x("fd.ip", ev) is MISSING
    root = Event(type="openat", res=3, fd=FdInfo(num=3, type="file", name="/x"))
    assert x("fd.directory", root) == "/"
    d = Event(type="openat", res=3, fd=FdInfo(num=3, type="directory", name="/etc"))
    assert x("fd.directory", d) == "/etc"
    assert x("fd.filename", d) is MISSING
    assert x("fd.typechar", d) == "d"


def test_fd_failed_opens_without_fdinfo() -> None:
    p = ln_proc()
    failed_at = Event(type="openat", res=-2, proc=p,
                      args={"fd": -2, "dirfd": -100, "name": "nope//x/", "flags": 0, "mode": 0})
    assert x("fd.num", failed_at) == -1
    assert x("fd.typechar", failed_at) == "f"
    assert x("fd.name", failed_at) == "/root/nope/x"
    assert x("fd.nameraw", failed_at) == "nope/x/"
    assert x("fd.directory", failed_at) == "/root/nope"
    assert x("fd.filename", failed_at) is MISSING
    assert x("fd.type", failed_at) is MISSING
    assert x("fd.l4proto", failed_at) is MISSING
    failed_open = Event(type="open", res=-13, proc=p, args={"fd": -13, "name": "/etc/shadow", "flags": 0})
    assert x("fd.typechar", failed_open) == "o"  # FIELDS.md §13.1
    assert x("fd.num", failed_open) == -1
    assert x("fd.name", failed_open) == "/etc/shadow"
    # *at event using AT_FDCWD as its dirfd: fd -100, no fdinfo.
    ul = Event(type="unlinkat", res=0, proc=p, args={"dirfd": -100, "name": "x", "flags": 0})
    assert x("fd.num", ul) == -100
    assert x("fd.name", ul) == ""
    assert x("fd.typechar", ul) == "o"
    # Events that use no fd have no fd fields at all.
    none = Event(type="unlink", res=0, proc=p, args={"path": "/x"})
    for name in ("fd.num", "fd.name", "fd.typechar", "fd.directory", "fd.nameraw"):
        assert x(name, none) is MISSING, name


def test_fd_sockets() -> None:
    client = FdInfo(num=3, type="ipv4", name="10.0.0.1:4444->1.2.3.4:80", l4proto="tcp", role="client",
                    cip="10.0.0.1", cport=4444, sip="1.2.3.4", sport=80, connected=True)
    ev = Event(type="connect", res=0, fd=client, args={"fd": 3})
    ip = ipaddress.ip_address
    assert x("fd.sip", ev) == ip("1.2.3.4")
    assert x("fd.cip", ev) == ip("10.0.0.1")
    assert x("fd.rip", ev) == ip("1.2.3.4")
    assert x("fd.lip", ev) == ip("10.0.0.1")
    assert x("fd.sport", ev) == 80 and x("fd.cport", ev) == 4444
    assert x("fd.lport", ev) == 4444 and x("fd.rport", ev) == 80
    assert x("fd.l4proto", ev) == "tcp"
    assert x("fd.sockfamily", ev) == "ip"
    assert x("fd.connected", ev) is True
    assert x("fd.name_changed", ev) is False
    assert x("fd.typechar", ev) == "4"
    assert x("fd.ip", ev) == [ip("10.0.0.1"), ip("1.2.3.4")]
    assert x("fd.port", ev) == [4444, 80]
    assert x("fd.net", ev) == [ip("10.0.0.1"), ip("1.2.3.4")]
    assert x("fd.snet", ev) == ip("1.2.3.4")
    assert x("fd.sip.name", ev) is MISSING
    assert render_text(FIELDS["fd.sip"], x("fd.sip", ev)) == "1.2.3.4"
    assert render_json(FIELDS["fd.sip"], x("fd.sip", ev)) == "1.2.3.4"
    assert render_json(FIELDS["fd.rport"], x("fd.rport", ev)) == 80
    server = FdInfo(num=4, type="ipv6", name="::1:40000->::1:80", l4proto="tcp", role="server",
                    cip="::1", cport=40000, sip="::1", sport=80)
    sev = Event(type="accept4", res=4, fd=server)
    assert x("fd.lport", sev) == 80 and x("fd.rport", sev) == 40000
    listening = FdInfo(num=5, type="ipv4", name="0.0.0.0:8080", l4proto="tcp", role="listen",
                       sip="0.0.0.0", sport=8080)
    lev = Event(type="listen", res=0, fd=listening, args={"fd": 5})
    assert x("fd.sip", lev) == ip("0.0.0.0") and x("fd.sport", lev) == 8080
    assert x("fd.cip", lev) is MISSING and x("fd.lport", lev) is MISSING
    assert x("fd.ip", lev) == [ip("0.0.0.0")]
    assert x("fd.l4proto", lev) == "tcp"
    fresh = FdInfo(num=6, type="ipv4", l4proto="tcp")
    fev = Event(type="socket", res=6, fd=fresh)
    assert x("fd.l4proto", fev) == "<NA>"
    assert x("fd.sip", fev) is MISSING and x("fd.ip", fev) is MISSING
    assert x("fd.name", fev) == ""
    unix = Event(type="connect", res=0, fd=FdInfo(num=3, type="unix", name="ffff->ffff /run/docker.sock"))
    assert x("fd.sockfamily", unix) == "unix"
    assert x("fd.typechar", unix) == "u"
    assert x("fd.l4proto", unix) == "<NA>"
    # No fdinfo: guessed typechar and the tuple as name.
    acc = Event(type="accept", res=-11, args={"tuple": "1.1.1.1:1->2.2.2.2:2"})
    assert x("fd.typechar", acc) == "4"
    assert x("fd.name", acc) == "1.1.1.1:1->2.2.2.2:2"


def test_dup_fd() -> None:
    sock = FdInfo(num=1, type="ipv4", name="a->b", l4proto="tcp", role="client", cip="1.1.1.1",
                  cport=1, sip="2.2.2.2", sport=2)
    ev = Event(type="dup2", res=1, fd=sock, args={"res": 1, "oldfd": 3, "newfd": 1})
    assert x("fd.num", ev) == 1 and x("evt.rawres", ev) == 1
    assert x("fd.type", ev) == "ipv4"


# --- container / k8s --------------------------------------------------------------------------

def test_container_host_entry() -> None:
    ev = Event(type="execve", proc=Process(pid=5, name="x"))
    assert x("container.id", ev) == "host"
    assert x("container.name", ev) == "host"
    assert x("container.image.repository", ev) == ""
    assert x("container.image.tag", ev) == ""
    assert x("container.privileged", ev) is False
    assert x("container.mounts", ev) == ""
    assert x("container.mount.dest", ev, "/") is MISSING
    assert x("k8s.pod.name", ev) is MISSING
    assert x("k8s.ns.name", ev) is MISSING


def test_container_without_metadata() -> None:
    ev = Event(type="execve", proc=Process(pid=5, container_id=CID, pidns_start_ts=10), ts=30)
    assert x("container.id", ev) == CID[:12]
    assert x("container.start_ts", ev) == 10
    assert x("container.duration", ev) == 20
    for name in ("container.name", "container.image.repository", "container.image.tag",
                 "container.privileged", "container.mounts", "k8s.pod.name", "k8s.ns.name"):
        assert x(name, ev) is MISSING, name


def test_container_with_metadata() -> None:
    c = Container(id=CID, name="web", image="registry.example.com:5000/foo/bar:latest@sha256:abc",
                  privileged=True,
                  mounts=[Mount(source="/var/run/docker.sock", dest="/run/docker.sock", mode="", rw=True,
                                propagation="rprivate"),
                          Mount(source="/proc", dest="/host/proc", rw=False)],
                  labels={"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "prod"},
                  pod_labels={"app": "web"})
    ev = Event(type="execve", proc=Process(pid=5, container_id=CID), container=c)
    assert x("container.name", ev) == "web"
    assert x("container.image.repository", ev) == "registry.example.com:5000/foo/bar"
    assert x("container.image.tag", ev) == "latest"
    assert x("container.image.digest", ev) == "sha256:abc"
    assert x("container.privileged", ev) is True
    assert x("container.mounts", ev) == ("/var/run/docker.sock:/run/docker.sock::true:rprivate,"
                                         "/proc:/host/proc::false:private")
    assert x("container.mount.dest", ev, "/var/run/docker.sock") == "/run/docker.sock"
    assert x("container.mount.dest", ev, "/proc*") == "/host/proc"  # regex, not glob
    assert x("container.mount.dest", ev, "/etc") is MISSING
    assert x("container.mount.dest", ev, "1") == "/host/proc"
    assert x("container.mount.source", ev, "/host/proc") == "/proc"
    assert x("k8s.pod.name", ev) == "web-1"
    assert x("k8s.ns.name", ev) == "prod"
    assert x("k8s.pod.label", ev, "app") == "web"
    assert x("k8s.pod.label", ev, "nope") is MISSING
    assert x("k8s.pod.labels", ev) == "app:web"
    assert x("container.label", ev, "io.kubernetes.pod.namespace") == "prod"
    plain = Event(type="execve", proc=Process(pid=5, container_id=CID),
                  container=Container(id=CID, image="alpine"))
    assert x("container.image.repository", plain) == "alpine"
    assert x("container.image.tag", plain) == ""
    assert x("k8s.pod.name", plain) is MISSING


# --- output rendering: the FIELDS.md §11.3 example --------------------------------------------

def test_fields_md_json_example() -> None:
    p = ln_proc()
    ev = Event(type="symlinkat", ts=1_735_726_868_123_456_789, res=0, proc=p,
               args={"target": "/etc/shadow", "linkdirfd": -100, "linkpath": "/srv/x"})
    expected = {
        "container.id": "host", "container.image.repository": "", "container.image.tag": "",
        "container.name": "host", "evt.arg.linkpath": "/srv/x", "evt.arg.target": "/etc/shadow",
        "evt.time": 1735726868123456789, "evt.type": "symlinkat", "k8s.ns.name": None,
        "k8s.pod.name": None, "proc.cmdline": "ln -s /etc/shadow /srv/x", "proc.exepath": "/usr/bin/ln",
        "proc.name": "ln", "proc.pname": "bash", "proc.tty": 34816, "user.loginuid": 1000,
        "user.name": "root", "user.uid": 0,
    }
    got = {}
    for name in expected:
        f = lookup(name)
        assert f is not None
        got[name] = render_json(f, f.extract(ev, None))
    assert got == expected
    text = {n: render_text(lookup(n), lookup(n).extract(ev, None))  # type: ignore[union-attr,arg-type]
            for n in ("k8s.pod.name", "container.image.tag", "proc.tty", "user.loginuid")}
    assert text == {"k8s.pod.name": "<NA>", "container.image.tag": "", "proc.tty": "34816",
                    "user.loginuid": "1000"}


def test_render_values() -> None:
    f = FIELDS["container.privileged"]
    assert render_text(f, True) == "true" and render_text(f, False) == "false"
    assert render_json(f, True) is True
    assert render_text(f, MISSING) == "<NA>" and render_json(f, MISSING) is None
    assert render_json(FIELDS["proc.duration"], 5) == 5


# --- literals ---------------------------------------------------------------------------------

def test_parse_literal_numbers() -> None:
    assert parse_literal(FIELDS["evt.rawres"], "-1") == -1
    assert parse_literal(FIELDS["user.uid"], "-1") == 4294967295
    assert parse_literal(FIELDS["evt.num"], "0") == 0
    assert parse_literal(FIELDS["proc.duration"], "5000000000") == 5_000_000_000
    for bad in ("0x10", "10k", "", " 1", "1.5", "--1"):
        with pytest.raises(ValueError):
            parse_literal(FIELDS["user.uid"], bad)
    with pytest.raises(ValueError):
        parse_literal(FIELDS["user.loginuid"], "99999999999999999999")


def test_parse_literal_ports_bools_ips() -> None:
    port = FIELDS["fd.sport"]
    assert parse_literal(port, "22") == 22
    assert parse_literal(port, "ssh") == 22
    assert parse_literal(port, "") == 0
    with pytest.raises(ValueError):
        parse_literal(port, "no-such-service-xyz")
    b = FIELDS["fd.connected"]
    assert parse_literal(b, "true") is True and parse_literal(b, "false") is False
    for bad in ("True", "1", "yes"):
        with pytest.raises(ValueError):
            parse_literal(b, bad)
    assert parse_literal(FIELDS["fd.sip"], "1.2.3.4") == ipaddress.IPv4Address("1.2.3.4")
    assert parse_literal(FIELDS["fd.sip"], "::1") == ipaddress.IPv6Address("::1")
    with pytest.raises(ValueError):
        parse_literal(FIELDS["fd.sip"], "1.2.3")
    assert parse_literal(FIELDS["fd.snet"], "10.0.0.0/8") == ipaddress.ip_network("10.0.0.0/8")
    assert parse_literal(FIELDS["fd.snet"], "fe80::/10") == ipaddress.ip_network("fe80::/10")
    with pytest.raises(ValueError):
        parse_literal(FIELDS["fd.snet"], "10.0.0.1")
    with pytest.raises(ValueError):
        parse_literal(FIELDS["fd.snet"], "10.0.0.0/33")


def test_parse_literal_strings_and_buffers() -> None:
    assert parse_literal(FIELDS["proc.name"], "runc:[0:PARENT]") == "runc:[0:PARENT]"
    with pytest.raises(ValueError, match="NUL"):
        parse_literal(FIELDS["proc.name"], "a\0b")
    assert parse_literal(FIELDS["evt.buffer"], "ELF") == b"ELF"
    assert parse_hex_literal("cafebabe") == b"\xca\xfe\xba\xbe"
    for bad in ("abc", "zz", "ca fe"):
        with pytest.raises(ValueError):
            parse_hex_literal(bad)


# --- arguments and binding --------------------------------------------------------------------

def test_check_arg_and_bind() -> None:
    with pytest.raises(ValueError):
        check_arg(FIELDS["proc.name"], "1")
    with pytest.raises(ValueError):
        check_arg(FIELDS["proc.aname"], "x")
    with pytest.raises(ValueError):
        check_arg(FIELDS["container.mount.dest"], None)
    with pytest.raises(ValueError):
        check_arg(FIELDS["container.mount.dest"], "[")
    with pytest.raises(ValueError):
        check_arg(FIELDS["evt.arg"], "no_such_param")
    check_arg(FIELDS["evt.arg"], "flags")
    check_arg(FIELDS["proc.env"], "HOME")
    ev = Event(type="execve", proc=ln_proc())
    assert bind(FIELDS["proc.aname"], "2")(ev) == "sshd"
    assert bind(FIELDS["proc.aname"], "9")(ev) is MISSING
    assert bind(FIELDS["proc.aname"], None)(ev) == ["bash", "sshd", "systemd"]
    assert bind(FIELDS["proc.name"], None)(ev) == "ln"
    assert bind(FIELDS["proc.env"], "PATH")(ev) == "/usr/bin"
