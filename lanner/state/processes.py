"""The process table: every live process (thread group) by host pid, with Falco's process context.

Seeded from /proc when the agent starts, then kept by the kernel's records: a fork copies the
parent's context into the child, a successful exec replaces the process with a new ``Process``
object describing the new program, an exit removes it. ``Process`` objects are never changed once
an event may point at them: an update stores a changed copy (``clone``), so events that wait in a
batch keep describing the process as it was when they happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import fields
from operator import attrgetter
from typing import Final

from lanner.events import Process
from lanner.sensor.records import split_nul

DEFAULT_MAX_PROCESSES: Final = 65536
_READ_LIMIT: Final = 64 << 10
"""Bytes read from /proc/<pid>/cmdline and environ."""

_FIELD_NAMES: Final = tuple(f.name for f in fields(Process))
_ALL_FIELDS: Final = attrgetter(*_FIELD_NAMES)

EXE_WRITABLE: Final = 1
EXE_UPPER_LAYER: Final = 2
EXE_FROM_MEMFD: Final = 4
EXE_LOWER_LAYER: Final = 8
"""Falco's execve flag bits (the execve_flags table)."""


def clone(p: Process) -> Process:
    """A field-for-field copy (lists are shared: they are replaced, never changed in place)."""
    return Process(*_ALL_FIELDS(p))


def exe_flags(p: Process) -> int:
    """The execve ``flags`` parameter for this process's executable."""
    return ((EXE_WRITABLE if p.exe_writable else 0) | (EXE_UPPER_LAYER if p.exe_upper_layer else 0)
            | (EXE_FROM_MEMFD if p.exe_from_memfd else 0) | (EXE_LOWER_LAYER if p.exe_lower_layer else 0))


def exe_writable(mode: int, fuid: int, fgid: int, euid: int, egid: int) -> bool:
    """Whether a process with this effective uid/gid may write the file (root always may)."""
    if euid == 0:
        return True
    if fuid == euid:
        return bool(mode & 0o200)
    if fgid == egid:
        return bool(mode & 0o020)
    return bool(mode & 0o002)


def memfd_exepath(path: str, nlink: int) -> str | None:
    """``memfd:<name>`` when the executable is an unlinked memfd, else None.

    The kernel walks a memfd's path to ``/memfd:<name>`` (the name may itself contain ``/``);
    /proc shows it as ``/memfd:<name> (deleted)``.
    """
    if nlink != 0:
        return None
    i = path.find("/memfd:")
    if i < 0:
        return None
    name = path[i + 1:]
    if name.endswith(" (deleted)"):
        name = name[:-10]
    return name


def cwd_text(path: str) -> str:
    """A working directory in Falco's form: always ending in ``/``."""
    return path if path.endswith("/") else path + "/"


def boot_epoch_ns() -> int:
    """The epoch time of boot, in ns (/proc stat start times count from it)."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


_CLK_TCK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: str, limit: int = _READ_LIMIT) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def read_proc(proc_root: str, pid: int, boot_ns: int) -> Process | None:
    """A process's full context from /proc (None when it is gone or unreadable)."""
    base = f"{proc_root}/{pid}"
    stat = _read(base + "/stat", 4096)
    if not stat:
        return None
    text = stat.decode("utf-8", "replace")
    lp, rp = text.find("("), text.rfind(")")
    if lp < 0 or rp < lp:
        return None
    rest = text[rp + 2:].split()
    if len(rest) < 20:
        return None
    p = Process(pid=pid)
    p.name = text[lp + 1:rp]
    p.ppid = int(rest[1])
    p.sid = int(rest[3])
    p.tty = int(rest[4]) & 0xFFFFFFFF
    p.start_ts = boot_ns + int(rest[19]) * 1_000_000_000 // _CLK_TCK

    status = _read(base + "/status", 16384)
    if status:
        for line in status.decode("utf-8", "replace").splitlines():
            key, _, val = line.partition(":")
            vals = val.split()
            if not vals:
                continue
            if key == "Uid" and len(vals) > 1:
                p.uid = int(vals[1])
            elif key == "Gid" and len(vals) > 1:
                p.gid = int(vals[1])
            elif key == "CapInh":
                p.cap_inheritable = int(vals[0], 16)
            elif key == "CapPrm":
                p.cap_permitted = int(vals[0], 16)
            elif key == "CapEff":
                p.cap_effective = int(vals[0], 16)
            elif key == "NSpid":
                p.vpid = int(vals[-1])
            elif key == "NSpgid":
                p.vpgid = int(vals[-1])
    if p.vpid == -1:
        p.vpid = pid

    lu = _read(base + "/loginuid", 64)
    if lu is not None and lu.strip().isdigit():
        v = int(lu.strip())
        p.loginuid = -1 if v == 0xFFFFFFFF else v

    argv = split_nul(_read(base + "/cmdline"))
    if argv:
        p.exe = argv[0]
        p.args = argv[1:]
    p.env = split_nul(_read(base + "/environ"))
    cwd = _readlink(base + "/cwd")
    p.cwd = cwd_text(cwd) if cwd else "/"

    exepath = _readlink(base + "/exe")
    try:
        st = os.stat(base + "/exe")
    except OSError:
        st = None
    if st is not None:
        p.exe_ino = st.st_ino
        p.exe_ino_ctime = st.st_ctime_ns
        p.exe_ino_mtime = st.st_mtime_ns
        p.exe_writable = exe_writable(st.st_mode, st.st_uid, st.st_gid, p.uid, p.gid)
        memfd = memfd_exepath(exepath, st.st_nlink)
        if memfd is not None:
            exepath = memfd
            p.exe_from_memfd = True
    p.exepath = exepath
    return p


def cgroup_id(proc_root: str, pid: int, cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cgroup v2 id of a process (the inode of its cgroup directory), 0 when unknown."""
    raw = _read(f"{proc_root}/{pid}/cgroup", 8192)
    if not raw:
        return 0
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("0::"):
            try:
                return os.stat(cgroup_root + line[3:]).st_ino
            except OSError:
                return 0
    return 0


class ProcessTable:
    """Host pid -> Process, bounded: past ``max_processes`` the entries of dead processes go first
    (their exit was missed), then the oldest."""

    def __init__(self, *, proc_root: str = "/proc", max_processes: int = DEFAULT_MAX_PROCESSES) -> None:
        self.proc_root = proc_root.rstrip("/") or "/"
        self.max_processes = max_processes
        self.procs: dict[int, Process] = {}
        self.evicted = 0

    def get(self, pid: int) -> Process | None:
        return self.procs.get(pid)

    def put(self, p: Process) -> list[int]:
        """Store ``p`` under its pid; returns the pids evicted to stay within the bound."""
        procs = self.procs
        procs.pop(p.pid, None)
        procs[p.pid] = p
        if len(procs) > self.max_processes:
            return self._evict()
        return []

    def replace(self, p: Process) -> None:
        """Store an updated copy in place (no change of age)."""
        self.procs[p.pid] = p

    def remove(self, pid: int) -> Process | None:
        return self.procs.pop(pid, None)

    def _evict(self) -> list[int]:
        procs = self.procs
        target = max(1, self.max_processes - max(1, self.max_processes // 10))
        out: list[int] = []
        for pid in list(procs):
            if len(procs) <= target:
                break
            if not os.path.exists(f"{self.proc_root}/{pid}"):
                del procs[pid]
                out.append(pid)
        while len(procs) > target:
            pid = next(iter(procs))
            del procs[pid]
            out.append(pid)
        self.evicted += len(out)
        return out

    def link_parents(self) -> None:
        procs = self.procs
        for p in procs.values():
            p.parent = procs.get(p.ppid) if p.ppid != p.pid else None

    def __len__(self) -> int:
        return len(self.procs)

    def __iter__(self) -> Iterator[Process]:
        return iter(list(self.procs.values()))

    def __contains__(self, pid: object) -> bool:
        return pid in self.procs


def list_pids(proc_root: str) -> list[int]:
    try:
        names = os.listdir(proc_root)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())
