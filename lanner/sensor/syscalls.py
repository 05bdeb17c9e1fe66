"""The syscalls the sensor can capture (x86_64) and what the kernel program copies for each.

This table is the single place that says, per syscall, which argument is a path (and which dirfd
it is relative to), which is a user string, a sockaddr, or an fd to describe. It is written into
the kernel's `specs` map, so adding a syscall needs no C change.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

# enum spec_flags in bpf/sensor.h
S_ENABLED = 1 << 0
S_FD_RET = 1 << 1
S_FD_ARG = 1 << 2
S_FD_PATH = 1 << 3
S_SOCKADDR = 1 << 4
S_MSGHDR = 1 << 5
S_EXEC = 1 << 6
S_CWD = 1 << 7
S_PREFILTER = 1 << 8
S_SKIP_TCP = 1 << 9
FLAGS_FROM_OPEN_HOW = 7

SPEC = struct.Struct("<HBB2B2B2BBxI")
MAX_SYSCALLS = 512


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    nr: int
    event: str
    """Falco's event type for this syscall's exit."""
    fd_ret: bool = False
    """The return value is a new fd."""
    fd_arg: int | None = None
    """Index of the argument holding the fd the call uses."""
    fd_path: bool = False
    """Walk the used fd's path in the kernel (files and directories)."""
    paths: tuple[tuple[int, int | None], ...] = ()
    """(path argument, its dirfd argument or None for the cwd)."""
    strs: tuple[int, ...] = ()
    """Other user-string arguments, in blob order STR0, STR1."""
    addr: int | None = None
    """Argument holding a user buffer (sockaddr, open_how) whose length is the next argument."""
    msghdr: bool = False
    """`addr` is a struct msghdr; copy its msg_name."""
    exec: bool = False
    cwd: bool = False
    """Report the working directory after the call."""
    open_flags: int | None = None
    """Argument holding the open flags (FLAGS_FROM_OPEN_HOW: in openat2's struct open_how)."""
    tp: str | None = None
    """The kernel's name for it in its exit tracepoint, when that differs from `name`."""

    @property
    def tracepoint(self) -> str:
        return self.tp or self.name

    def spec(self, prefilter_flags: int | None = None, skip_tcp: bool = False) -> bytes:
        """The kernel's sc_spec; `prefilter_flags` (the open flags always sent) turns the open
        prefilter on, `skip_tcp` drops calls on TCP sockets."""
        flags = S_ENABLED
        if skip_tcp:
            flags |= S_SKIP_TCP
        if self.fd_ret:
            flags |= S_FD_RET
        if self.fd_arg is not None:
            flags |= S_FD_ARG
        if self.fd_path:
            flags |= S_FD_PATH
        if self.addr is not None:
            flags |= S_MSGHDR if self.msghdr else S_SOCKADDR
        if self.exec:
            flags |= S_EXEC
        if self.cwd:
            flags |= S_CWD
        if prefilter_flags is not None:
            if self.open_flags is None:
                raise ValueError(f"{self.name} cannot be prefiltered")
            flags |= S_PREFILTER
        flags_arg = 0 if self.open_flags is None else (
            self.open_flags if self.open_flags == FLAGS_FROM_OPEN_HOW else self.open_flags + 1)
        paths = [(a + 1, 0 if d is None else d + 1) for a, d in self.paths] + [(0, 0)] * (2 - len(self.paths))
        strs = [a + 1 for a in self.strs] + [0] * (2 - len(self.strs))
        return SPEC.pack(flags, 0 if self.fd_arg is None else self.fd_arg + 1,
                         0 if self.addr is None else self.addr + 1,
                         paths[0][0], paths[1][0], paths[0][1], paths[1][1], strs[0], strs[1],
                         flags_arg, prefilter_flags or 0)


def _sc(name: str, nr: int, event: str | None = None, **kw: object) -> Syscall:
    return Syscall(name, nr, event or name, **kw)  # type: ignore[arg-type]


SYSCALLS: tuple[Syscall, ...] = (
    _sc("open", 2, paths=((0, None),), fd_ret=True, open_flags=1),
    _sc("openat", 257, paths=((1, 0),), fd_ret=True, open_flags=2),
    _sc("openat2", 437, paths=((1, 0),), fd_ret=True, addr=2, open_flags=FLAGS_FROM_OPEN_HOW),
    _sc("creat", 85, paths=((0, None),), fd_ret=True),
    _sc("execve", 59, paths=((0, None),), exec=True),
    _sc("execveat", 322, paths=((1, 0),), exec=True),
    _sc("clone", 56), _sc("fork", 57), _sc("vfork", 58), _sc("clone3", 435),
    _sc("connect", 42, fd_arg=0, addr=1),
    _sc("accept", 43, fd_ret=True),
    _sc("accept4", 288, fd_ret=True),
    _sc("bind", 49, fd_arg=0, addr=1),
    _sc("listen", 50, fd_arg=0),
    _sc("socket", 41, fd_ret=True),
    _sc("sendto", 44, fd_arg=0, addr=4),
    _sc("sendmsg", 46, fd_arg=0, addr=1, msghdr=True),
    _sc("recvfrom", 45, fd_arg=0),
    _sc("recvmsg", 47, fd_arg=0),
    _sc("setuid", 105), _sc("setgid", 106), _sc("setreuid", 113), _sc("setregid", 114),
    _sc("setresuid", 117), _sc("setresgid", 119),
    _sc("ptrace", 101),
    _sc("unshare", 272),
    _sc("setns", 308, fd_arg=0, fd_path=True),
    _sc("mount", 165, paths=((1, None),), strs=(0, 2)),
    _sc("umount2", 166, paths=((0, None),), tp="umount"),
    _sc("chmod", 90, paths=((0, None),)),
    _sc("fchmod", 91, fd_arg=0, fd_path=True),
    _sc("fchmodat", 268, paths=((1, 0),), fd_arg=0, fd_path=True),
    _sc("fchmodat2", 452, "fchmodat", paths=((1, 0),), fd_arg=0, fd_path=True),
    _sc("rename", 82, paths=((0, None), (1, None))),
    _sc("renameat", 264, paths=((1, 0), (3, 2))),
    _sc("renameat2", 316, paths=((1, 0), (3, 2))),
    _sc("unlink", 87, paths=((0, None),)),
    _sc("unlinkat", 263, paths=((1, 0),), fd_arg=0, fd_path=True),
    _sc("link", 86, paths=((0, None), (1, None))),
    _sc("linkat", 265, paths=((1, 0), (3, 2))),
    _sc("symlink", 88, paths=((1, None),), strs=(0,)),
    _sc("symlinkat", 266, paths=((2, 1),), strs=(0,), fd_arg=1, fd_path=True),
    _sc("mkdir", 83, paths=((0, None),)),
    _sc("mkdirat", 258, paths=((1, 0),), fd_arg=0, fd_path=True),
    _sc("rmdir", 84, paths=((0, None),)),
    _sc("memfd_create", 319, strs=(0,), fd_ret=True),
    _sc("init_module", 175, strs=(2,)),
    _sc("finit_module", 313, fd_arg=0, fd_path=True, strs=(1,)),
    _sc("bpf", 321, fd_ret=True),
    _sc("dup", 32, fd_ret=True),
    _sc("dup2", 33, fd_ret=True),
    _sc("dup3", 292, fd_ret=True),
    _sc("userfaultfd", 323, fd_ret=True),
    _sc("chdir", 80, paths=((0, None),), cwd=True),
    _sc("fchdir", 81, fd_arg=0, fd_path=True, cwd=True),
    _sc("kill", 62),
    _sc("capset", 126),
    _sc("prctl", 157),
)

BY_NR: dict[int, Syscall] = {s.nr: s for s in SYSCALLS}
BY_EVENT: dict[str, list[Syscall]] = {}
for _s in SYSCALLS:
    BY_EVENT.setdefault(_s.event, []).append(_s)

# Captured whatever the rules say: they keep the process table and the cwd right.
STATE_SYSCALLS: frozenset[str] = frozenset({"execve", "execveat", "chdir", "fchdir"})


def select(event_types: Iterable[str] | None) -> list[Syscall]:
    """The syscalls to enable for rules that look at `event_types` (None: every event type)."""
    if event_types is None:
        return list(SYSCALLS)
    wanted = set(event_types)
    if "execve" in wanted:
        wanted.add("execveat")  # a successful execveat is reported as execve
    out = [s for s in SYSCALLS if s.event in wanted or s.name in STATE_SYSCALLS]
    return out


def supported_events() -> frozenset[str]:
    return frozenset(BY_EVENT)
