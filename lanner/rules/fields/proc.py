"""Classes ``proc`` and ``thread`` (FIELDS.md §7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from lanner.events import Event, Process
from lanner.rules.fieldtypes import MISSING, ArgMode, Field, FieldType, Quantifier

from .tables import caps_to_string

_MAX_DEPTH: Final = 1024
"""Bound on ancestor walks: the parent chain of hand-written or hostile data may loop."""

U64_MASK: Final = (1 << 64) - 1


def _cmdline(p: Process) -> str:
    args = p.args
    return p.name + " " + " ".join(args) if args else p.name


def _exeline(p: Process) -> str:
    args = p.args
    return p.exe + " " + " ".join(args) if args else p.exe


def ancestors(p: Process) -> list[Process]:
    """Ancestors from the parent upward, stopping at the top or at a loop."""
    # Fast path without a visited set; real process trees are shallow.
    out: list[Process] = []
    cur = p.parent
    while cur is not None and cur is not p:
        out.append(cur)
        if len(out) > 32:
            return _ancestors_checked(p)
        cur = cur.parent
    return out


def _ancestors_checked(p: Process) -> list[Process]:
    out: list[Process] = []
    seen = {id(p)}
    cur = p.parent
    while cur is not None and id(cur) not in seen and len(out) < _MAX_DEPTH:
        out.append(cur)
        seen.add(id(cur))
        cur = cur.parent
    return out


def ancestor(p: Process, n: int) -> Process | None:
    cur: Process | None = p
    while n > 0 and cur is not None:
        cur = cur.parent
        n -= 1
    return cur


def parse_index(arg: str | None) -> int | None:
    """An ``[N]`` argument: a non-negative decimal; ValueError otherwise."""
    if arg is None:
        return None
    if not arg.isdigit():
        raise ValueError(f"expected a non-negative index, not {arg!r}")
    return int(arg)


def _simple(attr: Callable[[Process], Any]) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        p = ev.proc
        return MISSING if p is None else attr(p)
    return extract


def _parent(attr: Callable[[Process], Any]) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        p = ev.proc
        if p is None:
            return MISSING
        pp = p.parent
        return MISSING if pp is None else attr(pp)
    return extract


def _ancestral(attr: Callable[[Process], Any]) -> Callable[[Event, str | None], Any]:
    """``proc.aX[N]`` (0 = self) or, without an index, the list of ancestors' values."""
    def extract(ev: Event, arg: str | None = None) -> Any:
        p = ev.proc
        if p is None:
            return MISSING
        if arg is None:
            vals = [attr(a) for a in ancestors(p)]
            return vals if vals else MISSING
        a = ancestor(p, int(arg))
        return MISSING if a is None else attr(a)
    return extract


def bind_ancestral(attr: Callable[[Process], Any], n: int) -> Callable[[Event], Any]:
    """``proc.aX[n]`` with the index parsed once."""
    def extract(ev: Event) -> Any:
        cur = ev.proc
        i = n
        while i > 0 and cur is not None:
            cur = cur.parent
            i -= 1
        return MISSING if cur is None else attr(cur)
    return extract


def _name(p: Process) -> str:
    return p.name


def _exe(p: Process) -> str:
    return p.exe


def _exepath(p: Process) -> str:
    return p.exepath


def _pid(p: Process) -> int:
    return p.pid


def _cwd(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    cwd = p.cwd
    return cwd if cwd.endswith("/") else cwd + "/"


def _args(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    if arg is None:
        return " ".join(p.args)
    i = int(arg)
    return p.args[i] if i < len(p.args) else ""


def _env(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    if arg is None:
        return " ".join(p.env)
    prefix = arg + "="
    for e in p.env:
        if e.startswith(prefix):
            return e[len(prefix):]
    return MISSING


def _vpid(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or p.vpid == -1:
        return MISSING
    return p.vpid


def _pvpid(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or p.parent is None or p.parent.vpid == -1:
        return MISSING
    return p.parent.vpid


def _sname(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    sid = p.sid
    if p.pid == sid:
        return p.name
    eldest = p
    for a in ancestors(p):
        if a.pid == sid:
            return a.name
        if a.sid != sid:
            break
        eldest = a
    # Inside a pid namespace the leader may be out of sight: take the eldest sharing the sid.
    if p.vpid != p.pid and eldest is not p:
        return eldest.name
    return ""


def _vpgid_leader(ev: Event) -> Process | None:
    p = ev.proc
    if p is None:
        return None
    if p.vpid == p.vpgid:
        return p
    for a in ancestors(p):
        if a.vpid == p.vpgid:
            return a
    return None


def _vpgid_name(ev: Event, arg: str | None = None) -> Any:
    a = _vpgid_leader(ev)
    return MISSING if a is None else a.name


def _vpgid_exe(ev: Event, arg: str | None = None) -> Any:
    a = _vpgid_leader(ev)
    return MISSING if a is None else a.exe


def _duration(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or not p.start_ts:
        return MISSING
    return ev.ts - p.start_ts


def _pduration(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or p.parent is None or not p.parent.start_ts:
        return MISSING
    return ev.ts - p.parent.start_ts


def _nonzero(attr: Callable[[Process], int]) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        p = ev.proc
        if p is None:
            return MISSING
        v = attr(p)
        return v if v else MISSING
    return extract


def _ctime_duration(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or not p.start_ts or not p.exe_ino_ctime:
        return MISSING
    # Unsigned subtraction, as libs does (a later ctime wraps around).
    return (p.start_ts - p.exe_ino_ctime) & U64_MASK or MISSING


def _tid(ev: Event, arg: str | None = None) -> Any:
    return MISSING if ev.proc is None else ev.tid


def _vtid(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    # Only the main thread's namespace id is known.
    if p is None or ev.tid != p.pid or p.vpid == -1:
        return MISSING
    return p.vpid


def _ismain(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    return MISSING if p is None else ev.tid == p.pid


def _caps(attr: Callable[[Process], int]) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        p = ev.proc
        return MISSING if p is None else caps_to_string(attr(p))
    return extract


def _F(name: str, typ: FieldType, desc: str, fn: Callable[[Event, str | None], Any],
       arg: ArgMode = ArgMode.NONE, **kw: Any) -> Field:
    return Field(name=name, type=typ, desc=desc, extract=fn, arg=arg, **kw)


C, I64, U32, B, RT, AT = (FieldType.CHARBUF, FieldType.INT64, FieldType.UINT32, FieldType.BOOL,
                          FieldType.RELTIME, FieldType.ABSTIME)
PID = FieldType.PID
_ANY: Final = {"quantifier": Quantifier.ANY, "list_with_arg": True}

FIELDS: Final[tuple[Field, ...]] = (
    _F("proc.pid", PID, "Process id (tgid) on the host.", _simple(_pid)),
    _F("proc.ppid", PID, "Parent process id.", _simple(lambda p: p.ppid)),
    _F("proc.vpid", PID, "Process id in its own pid namespace (1 for a container's init).", _vpid),
    _F("proc.pvpid", PID, "Parent's process id in its pid namespace.", _pvpid),
    _F("proc.sid", PID, "Session id.", _simple(lambda p: p.sid)),
    _F("proc.vpgid", PID, "Process group id in the pid namespace.", _simple(lambda p: p.vpgid)),
    _F("proc.vpgid.name", C, "Name of the process group leader.", _vpgid_name),
    _F("proc.vpgid.exe", C, "argv[0] of the process group leader.", _vpgid_exe),
    _F("proc.name", C, "The kernel comm of the process (at most 15 bytes).", _simple(_name)),
    _F("proc.exe", C, "argv[0] as passed to execve.", _simple(_exe)),
    _F("proc.exepath", C, "Canonical path of the executable file.", _simple(_exepath)),
    _F("proc.args", C, "Arguments (argv[1:]) joined with spaces; proc.args[i] picks one.", _args,
       ArgMode.OPTIONAL_INDEX),
    _F("proc.cmdline", C, "proc.name followed by the arguments.", _simple(_cmdline)),
    _F("proc.exeline", C, "proc.exe followed by the arguments.", _simple(_exeline)),
    _F("proc.pname", C, "Name (comm) of the parent process.", _parent(_name)),
    _F("proc.pexe", C, "argv[0] of the parent process.", _parent(_exe)),
    _F("proc.pexepath", C, "Executable path of the parent process.", _parent(_exepath)),
    _F("proc.pcmdline", C, "Command line of the parent process.", _parent(_cmdline)),
    _F("proc.aname", C, "Name of the N-th ancestor (0 = self); without N, any ancestor from the parent.",
       _ancestral(_name), ArgMode.OPTIONAL_INDEX, **_ANY),
    _F("proc.aexe", C, "argv[0] of the N-th ancestor; without N, any ancestor.", _ancestral(_exe),
       ArgMode.OPTIONAL_INDEX, **_ANY),
    _F("proc.aexepath", C, "Executable path of the N-th ancestor; without N, any ancestor.",
       _ancestral(_exepath), ArgMode.OPTIONAL_INDEX, **_ANY),
    _F("proc.acmdline", C, "Command line of the N-th ancestor; without N, any ancestor.",
       _ancestral(_cmdline), ArgMode.OPTIONAL_INDEX, **_ANY),
    _F("proc.apid", PID, "Pid of the N-th ancestor; without N, any ancestor.", _ancestral(_pid),
       ArgMode.OPTIONAL_INDEX, **_ANY),
    _F("proc.cwd", C, "Current working directory, ending in '/'.", _cwd),
    _F("proc.env", C, "Environment as NAME=value separated by spaces; proc.env[NAME] gives one value.",
       _env, ArgMode.OPTIONAL_KEY),
    _F("proc.tty", U32, "Controlling terminal device number; 0 when there is none.",
       _simple(lambda p: p.tty)),
    _F("proc.sname", C, "Name of the session leader; empty when unknown.", _sname),
    _F("proc.duration", RT, "Nanoseconds since the process was created.", _duration),
    _F("proc.ppid.duration", RT, "Nanoseconds since the parent process was created.", _pduration),
    _F("proc.is_exe_writable", B, "The executable is writable by the process's user.",
       _simple(lambda p: p.exe_writable)),
    _F("proc.is_exe_upper_layer", B, "The executable is in the upper layer of an overlayfs.",
       _simple(lambda p: p.exe_upper_layer)),
    _F("proc.is_exe_lower_layer", B, "The executable is in a lower layer of an overlayfs.",
       _simple(lambda p: p.exe_lower_layer)),
    _F("proc.is_exe_from_memfd", B, "The executable was run from a memfd.",
       _simple(lambda p: p.exe_from_memfd)),
    _F("proc.is_vpgid_leader", B, "The process leads its process group (vpgid == vpid).",
       _simple(lambda p: p.vpgid == p.vpid)),
    _F("proc.is_sid_leader", B, "The process leads its session (sid == vpid).",
       _simple(lambda p: p.sid == p.vpid)),
    _F("proc.exe_ino", FieldType.INT64, "Inode number of the executable.", _nonzero(lambda p: p.exe_ino)),
    _F("proc.exe_ino.ctime", AT, "Executable inode change time, ns since the epoch.",
       _nonzero(lambda p: p.exe_ino_ctime)),
    _F("proc.exe_ino.mtime", AT, "Executable inode modification time, ns since the epoch.",
       _nonzero(lambda p: p.exe_ino_mtime)),
    _F("proc.exe_ino.ctime_duration_proc_start", AT,
       "Process start time minus the executable's ctime, in ns.", _ctime_duration),
    _F("proc.pidns_init_start_ts", AT, "Start time of the process's pid namespace, ns since the epoch.",
       _nonzero(lambda p: p.pidns_start_ts)),
    _F("thread.tid", PID, "Thread id of the event.", _tid),
    _F("thread.vtid", PID, "Thread id in its pid namespace (known for the main thread).", _vtid),
    _F("thread.ismain", B, "The thread is the main thread of its process.", _ismain),
    _F("thread.cap_permitted", C, "Permitted capabilities, names separated by spaces.",
       _caps(lambda p: p.cap_permitted)),
    _F("thread.cap_effective", C, "Effective capabilities, names separated by spaces.",
       _caps(lambda p: p.cap_effective)),
    _F("thread.cap_inheritable", C, "Inheritable capabilities, names separated by spaces.",
       _caps(lambda p: p.cap_inheritable)),
)

ANCESTRAL_ATTRS: Final[dict[str, Callable[[Process], Any]]] = {
    "proc.aname": _name, "proc.aexe": _exe, "proc.aexepath": _exepath, "proc.acmdline": _cmdline,
    "proc.apid": _pid,
}

INDEXED: Final = frozenset({"proc.aname", "proc.aexe", "proc.aexepath", "proc.acmdline", "proc.apid",
                            "proc.args"})
"""Fields whose optional argument must be a non-negative index."""
