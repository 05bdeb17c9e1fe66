"""The Event record: one system event with the context the sensor knew when it happened.

The live sensor and the replay reader both produce these objects, so rules, outputs and
responders never know where an event came from. Context objects (process, fd, container) are
shared by reference: the state tables own them and an event points at the current ones.

Argument values in ``Event.args`` are *raw*: integers as the kernel returned them (Linux flag
bits, modes, fds) and paths as the caller passed them. Rendering them the way Falco prints them
(``O_WRONLY|O_CREAT``, resolved fds, ``AT_FDCWD``) is the job of the field layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Process:
    """One process (thread group) as the state tracker knows it."""

    pid: int = -1
    """Host pid (tgid)."""
    ppid: int = 0
    vpid: int = -1
    """Pid inside the process's own pid namespace (1 for a container's init)."""
    sid: int = 0
    vpgid: int = 0
    name: str = ""
    """The kernel comm (at most 15 bytes)."""
    exe: str = ""
    """argv[0] as passed to execve."""
    exepath: str = ""
    """The kernel's canonical path of the executable."""
    args: list[str] = field(default_factory=list)
    """argv[1:]."""
    cwd: str = "/"
    """Always ends in '/'."""
    env: list[str] = field(default_factory=list)
    tty: int = 0
    uid: int = 0
    gid: int = 0
    loginuid: int = -1
    user_name: str | None = None
    """Resolved by the state layer; None means unknown (the field layer applies Falco's fallbacks)."""
    group_name: str | None = None
    loginname: str | None = None
    cap_effective: int = 0
    cap_permitted: int = 0
    cap_inheritable: int = 0
    start_ts: int = 0
    """Clone time, ns since the epoch; 0 when unknown."""
    exe_writable: bool = False
    exe_upper_layer: bool = False
    exe_lower_layer: bool = False
    exe_from_memfd: bool = False
    exe_ino: int = 0
    exe_ino_ctime: int = 0
    exe_ino_mtime: int = 0
    container_id: str = ""
    """Full container id; "" for host processes."""
    pidns_start_ts: int = 0
    parent: Process | None = None


@dataclass(slots=True, eq=False)
class FdInfo:
    """What the process's fd table knows about one file descriptor."""

    num: int
    type: str = "file"
    """file, directory, ipv4, ipv6, unix, pipe, event, signalfd, eventpoll, inotify, timerfd,
    netlink, bpf, userfaultfd, io_uring, memfd, pidfd."""
    name: str = ""
    nameraw: str = ""
    l4proto: str | None = None
    """tcp, udp, icmp, raw; None while the socket has no role."""
    role: str | None = None
    """client (connect), server (accept), listen (bind with a port); None otherwise."""
    cip: str | None = None
    cport: int | None = None
    sip: str | None = None
    sport: int | None = None
    connected: bool = False
    name_changed: bool = False
    dev: int = 0
    ino: int = 0


@dataclass(slots=True, eq=False)
class Mount:
    source: str
    dest: str
    mode: str = ""
    rw: bool = True
    propagation: str = "private"


@dataclass(slots=True, eq=False)
class Container:
    """Container and pod metadata from the container runtime (CRI)."""

    id: str
    """Full container id."""
    name: str = ""
    image: str = ""
    """The image reference the runtime reports."""
    image_repository: str = ""
    image_tag: str = ""
    image_digest: str = ""
    privileged: bool = False
    mounts: list[Mount] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None
    pod_ip: str | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    start_ts: int = 0


@dataclass(slots=True, eq=False)
class Event:
    """One syscall exit (or meta) event."""

    type: str
    """The syscall name (``openat``, ``execve``...) or a meta event name (``procexit``)."""
    ts: int = 0
    """ns since the epoch."""
    tid: int = 0
    res: int | None = None
    """The raw return value (fd, byte count, 0 or -errno); None for events without one."""
    args: dict[str, Any] = field(default_factory=dict)
    """Raw parameter values by Falco's parameter name (see EVENT_PARAMS)."""
    proc: Process | None = None
    fd: FdInfo | None = None
    container: Container | None = None
    """None on the host, or while the container's metadata is unknown."""
    num: int = 0
    """Sequence number, from 1."""
    data: bytes | None = None
    """The data buffer of sendto/sendmsg/init_module... when captured."""
    dirs: dict[int, str] | None = None
    """Names of the directory fds the parameters refer to (dirfd, olddirfd...) other than `fd`, as
    the fd table knew them: what Falco's thread table resolves `<UNKNOWN>` bases with."""
    target: Process | None = None
    """The process a PID parameter names (ptrace, kill), when it is known."""


# Parameter names and kinds of each exit event, in Falco's order (libs driver/event_table.c).
# Kind names: FD, ERRNO, PID, FSPATH, FSRELPATH:<dirfd param>, CHARBUF, UID, GID,
# FLAGS:<table>, ENUM:<table>, MODE, OCT, HEX, DEC, SOCKTUPLE, SOCKADDR, BYTEBUF.
EVENT_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "open": (("fd", "FD"), ("name", "FSPATH"), ("flags", "FLAGS:file_flags"), ("mode", "OCT"),
             ("dev", "HEX"), ("ino", "DEC")),
    "openat": (("fd", "FD"), ("dirfd", "FD"), ("name", "FSRELPATH:dirfd"), ("flags", "FLAGS:file_flags"),
               ("mode", "OCT"), ("dev", "HEX"), ("ino", "DEC")),
    "openat2": (("fd", "FD"), ("dirfd", "FD"), ("name", "FSRELPATH:dirfd"), ("flags", "FLAGS:file_flags"),
                ("mode", "OCT"), ("resolve", "FLAGS:openat2_flags"), ("dev", "HEX"), ("ino", "DEC")),
    "creat": (("fd", "FD"), ("name", "FSPATH"), ("mode", "OCT"), ("dev", "HEX"), ("ino", "DEC")),
    "execve": (("res", "ERRNO"), ("exe", "CHARBUF"), ("args", "BYTEBUF"), ("tid", "PID"), ("pid", "PID"),
               ("ptid", "PID"), ("cwd", "CHARBUF"), ("comm", "CHARBUF"), ("env", "BYTEBUF"),
               ("tty", "DEC"), ("loginuid", "UID"), ("flags", "FLAGS:execve_flags"), ("uid", "UID"),
               ("gid", "GID"), ("trusted_exepath", "FSPATH"), ("filename", "FSPATH")),
    "execveat": (("res", "ERRNO"), ("exe", "CHARBUF"), ("args", "BYTEBUF"), ("tid", "PID"), ("pid", "PID"),
                 ("ptid", "PID"), ("cwd", "CHARBUF"), ("comm", "CHARBUF"), ("env", "BYTEBUF"),
                 ("tty", "DEC"), ("loginuid", "UID"), ("flags", "FLAGS:execve_flags"), ("uid", "UID"),
                 ("gid", "GID"), ("trusted_exepath", "FSPATH")),
    "clone": (("res", "PID"), ("exe", "CHARBUF"), ("args", "BYTEBUF"), ("tid", "PID"), ("pid", "PID"),
              ("ptid", "PID"), ("cwd", "CHARBUF"), ("comm", "CHARBUF"), ("flags", "FLAGS:clone_flags"),
              ("uid", "UID"), ("gid", "GID")),
    "fork": (("res", "PID"), ("exe", "CHARBUF"), ("tid", "PID"), ("pid", "PID"), ("ptid", "PID"),
             ("comm", "CHARBUF")),
    "vfork": (("res", "PID"), ("exe", "CHARBUF"), ("tid", "PID"), ("pid", "PID"), ("ptid", "PID"),
              ("comm", "CHARBUF")),
    "clone3": (("res", "PID"), ("exe", "CHARBUF"), ("tid", "PID"), ("pid", "PID"), ("ptid", "PID"),
               ("comm", "CHARBUF"), ("flags", "FLAGS:clone_flags")),
    "procexit": (("status", "DEC"), ("ret", "DEC"), ("sig", "DEC"), ("core", "DEC")),
    "close": (("res", "ERRNO"), ("fd", "FD")),
    "connect": (("res", "ERRNO"), ("tuple", "SOCKTUPLE"), ("fd", "FD"), ("addr", "SOCKADDR")),
    "accept": (("fd", "FD"), ("tuple", "SOCKTUPLE"), ("queuepct", "DEC"), ("queuelen", "DEC"),
               ("queuemax", "DEC")),
    "accept4": (("fd", "FD"), ("tuple", "SOCKTUPLE"), ("queuepct", "DEC"), ("queuelen", "DEC"),
                ("queuemax", "DEC"), ("flags", "HEX")),
    "bind": (("res", "ERRNO"), ("addr", "SOCKADDR"), ("fd", "FD")),
    "listen": (("res", "ERRNO"), ("fd", "FD"), ("backlog", "DEC")),
    "socket": (("fd", "FD"), ("domain", "ENUM:socket_families"), ("type", "DEC"), ("proto", "DEC"),
               ("flags", "FLAGS:file_flags")),
    "sendto": (("res", "ERRNO"), ("data", "BYTEBUF"), ("fd", "FD"), ("size", "DEC"), ("tuple", "SOCKTUPLE")),
    "sendmsg": (("res", "ERRNO"), ("data", "BYTEBUF"), ("fd", "FD"), ("size", "DEC"), ("tuple", "SOCKTUPLE")),
    "recvfrom": (("res", "ERRNO"), ("data", "BYTEBUF"), ("tuple", "SOCKTUPLE"), ("fd", "FD"), ("size", "DEC")),
    "recvmsg": (("res", "ERRNO"), ("size", "DEC"), ("data", "BYTEBUF"), ("tuple", "SOCKTUPLE"),
                ("msgcontrol", "BYTEBUF"), ("fd", "FD")),
    "ptrace": (("res", "ERRNO"), ("request", "ENUM:ptrace_requests"), ("pid", "PID"), ("addr", "HEX"),
               ("data", "HEX")),
    "setuid": (("res", "ERRNO"), ("uid", "UID")),
    "setgid": (("res", "ERRNO"), ("gid", "GID")),
    "setresuid": (("res", "ERRNO"), ("ruid", "UID"), ("euid", "UID"), ("suid", "UID")),
    "setresgid": (("res", "ERRNO"), ("rgid", "GID"), ("egid", "GID"), ("sgid", "GID")),
    "setreuid": (("res", "ERRNO"), ("ruid", "UID"), ("euid", "UID")),
    "setregid": (("res", "ERRNO"), ("rgid", "GID"), ("egid", "GID")),
    "setns": (("res", "ERRNO"), ("fd", "FD"), ("nstype", "FLAGS:clone_flags")),
    "unshare": (("res", "ERRNO"), ("flags", "FLAGS:clone_flags")),
    "mount": (("res", "ERRNO"), ("dev", "CHARBUF"), ("dir", "FSPATH"), ("type", "CHARBUF"),
              ("flags", "FLAGS:mount_flags")),
    "umount": (("res", "ERRNO"), ("name", "FSPATH")),
    "umount2": (("res", "ERRNO"), ("name", "FSPATH"), ("flags", "FLAGS:umount_flags")),
    "chmod": (("res", "ERRNO"), ("filename", "FSPATH"), ("mode", "MODE")),
    "fchmod": (("res", "ERRNO"), ("fd", "FD"), ("mode", "MODE")),
    "fchmodat": (("res", "ERRNO"), ("dirfd", "FD"), ("filename", "FSRELPATH:dirfd"), ("mode", "MODE")),
    "rename": (("res", "ERRNO"), ("oldpath", "FSPATH"), ("newpath", "FSPATH")),
    "renameat": (("res", "ERRNO"), ("olddirfd", "FD"), ("oldpath", "FSRELPATH:olddirfd"),
                 ("newdirfd", "FD"), ("newpath", "FSRELPATH:newdirfd")),
    "renameat2": (("res", "ERRNO"), ("olddirfd", "FD"), ("oldpath", "FSRELPATH:olddirfd"),
                  ("newdirfd", "FD"), ("newpath", "FSRELPATH:newdirfd"), ("flags", "FLAGS:renameat2_flags")),
    "unlink": (("res", "ERRNO"), ("path", "FSPATH")),
    "unlinkat": (("res", "ERRNO"), ("dirfd", "FD"), ("name", "FSRELPATH:dirfd"),
                 ("flags", "FLAGS:unlinkat_flags")),
    "link": (("res", "ERRNO"), ("oldpath", "FSPATH"), ("newpath", "FSPATH")),
    "linkat": (("res", "ERRNO"), ("olddir", "FD"), ("oldpath", "FSRELPATH:olddir"), ("newdir", "FD"),
               ("newpath", "FSRELPATH:newdir"), ("flags", "FLAGS:linkat_flags")),
    "symlink": (("res", "ERRNO"), ("target", "CHARBUF"), ("linkpath", "FSPATH")),
    "symlinkat": (("res", "ERRNO"), ("target", "CHARBUF"), ("linkdirfd", "FD"),
                  ("linkpath", "FSRELPATH:linkdirfd")),
    "mkdir": (("res", "ERRNO"), ("path", "FSPATH"), ("mode", "HEX")),
    "mkdirat": (("res", "ERRNO"), ("dirfd", "FD"), ("path", "FSRELPATH:dirfd"), ("mode", "HEX")),
    "rmdir": (("res", "ERRNO"), ("path", "FSPATH")),
    "init_module": (("res", "ERRNO"), ("img", "BYTEBUF"), ("length", "DEC"), ("uargs", "CHARBUF")),
    "finit_module": (("res", "ERRNO"), ("fd", "FD"), ("uargs", "CHARBUF"), ("flags", "FLAGS:finit_module_flags")),
    "bpf": (("fd", "FD"), ("cmd", "ENUM:bpf_commands")),
    "dup": (("res", "FD"), ("oldfd", "FD")),
    "dup2": (("res", "FD"), ("oldfd", "FD"), ("newfd", "FD")),
    "dup3": (("res", "FD"), ("oldfd", "FD"), ("newfd", "FD"), ("flags", "FLAGS:file_flags")),
    "userfaultfd": (("res", "ERRNO"), ("flags", "FLAGS:file_flags")),
    "memfd_create": (("fd", "FD"), ("name", "CHARBUF"), ("flags", "FLAGS:memfd_create_flags")),
    "chdir": (("res", "ERRNO"), ("path", "CHARBUF")),
    "fchdir": (("res", "ERRNO"), ("fd", "FD")),
    "pipe": (("res", "ERRNO"), ("fd1", "FD"), ("fd2", "FD"), ("ino", "DEC")),
    "pipe2": (("res", "ERRNO"), ("fd1", "FD"), ("fd2", "FD"), ("ino", "DEC"), ("flags", "FLAGS:file_flags")),
    "read": (("res", "ERRNO"), ("data", "BYTEBUF"), ("fd", "FD"), ("size", "DEC")),
    "write": (("res", "ERRNO"), ("data", "BYTEBUF"), ("fd", "FD"), ("size", "DEC")),
    "kill": (("res", "ERRNO"), ("pid", "PID"), ("sig", "DEC")),
    "capset": (("res", "ERRNO"), ("cap_inheritable", "HEX"), ("cap_permitted", "HEX"),
               ("cap_effective", "HEX")),
    "prctl": (("res", "ERRNO"), ("option", "DEC"), ("arg2_str", "CHARBUF"), ("arg2_int", "DEC")),
}
"""Exit-event parameters, by event type."""

EVENT_TYPES: frozenset[str] = frozenset(EVENT_PARAMS)

# Events whose fd.* fields refer to a file descriptor: "C" when the event creates it (the new fd
# is the result or the 'fd' parameter), otherwise the name of the parameter that holds the fd used.
EVENT_FD: dict[str, str] = {
    "open": "C", "openat": "C", "openat2": "C", "creat": "C", "accept": "C", "accept4": "C",
    "socket": "C", "bpf": "C", "userfaultfd": "C", "memfd_create": "C",
    "dup": "C", "dup2": "C", "dup3": "C",
    "connect": "fd", "bind": "fd", "listen": "fd", "sendto": "fd", "sendmsg": "fd", "recvfrom": "fd",
    "recvmsg": "fd", "setns": "fd", "fchmod": "fd", "finit_module": "fd", "read": "fd", "write": "fd",
    "close": "fd", "fchdir": "fd",
    "fchmodat": "dirfd", "unlinkat": "dirfd", "mkdirat": "dirfd", "symlinkat": "linkdirfd",
}
