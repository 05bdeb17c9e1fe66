"""Decoding of the kernel's records (layout in bpf/sensor.h) into plain Python objects.

A record is a fixed header followed by tagged blobs. Decoding here is only structural: bytes to
numbers and strings. What the values mean for Falco's fields is the state layer's job.
"""

from __future__ import annotations

import enum
import socket
import struct
from dataclasses import dataclass, field

HEADER = struct.Struct("<QQIIIIIIIIIIiIq6Q16s")
BLOB = struct.Struct("<HHI")
FD_DESC = struct.Struct("<iIIIQIHHHHHH16s16sQQ")
EXEC_INFO = struct.Struct("<8I7Q2I")
assert HEADER.size == 136 and FD_DESC.size == 88 and EXEC_INFO.size == 96


class Kind(enum.IntEnum):
    SYSCALL = 1
    FORK = 2
    EXIT = 3


class Blob(enum.IntEnum):
    PATH0 = 1
    PATH1 = 2
    BASE0 = 3
    BASE1 = 4
    STR0 = 5
    STR1 = 6
    SOCKADDR = 7
    FD = 8
    FDPATH = 9
    EXEPATH = 10
    CWD = 11
    ARGV = 12
    ENV = 13
    FILENAME = 14
    EXEC = 15
    DATA = 16


class RecordError(ValueError):
    """A record that does not parse: the kernel and user-space layouts disagree."""


@dataclass(slots=True)
class FdDesc:
    """What the kernel said about the event's fd at the time of the event."""

    fd: int
    mode: int
    dev: int
    magic: int
    ino: int
    flags: int
    family: int
    sotype: int
    proto: int
    lport: int
    rport: int
    sk_state: int
    laddr: bytes
    raddr: bytes
    sk: int
    peer: int

    @property
    def fmt(self) -> int:
        return self.mode & 0o170000

    def local_ip(self) -> str:
        return _ip(self.family, self.laddr)

    def remote_ip(self) -> str:
        return _ip(self.family, self.raddr)


@dataclass(slots=True)
class ExecInfo:
    tty: int
    sid: int
    vpgid: int
    exe_mode: int
    exe_uid: int
    exe_gid: int
    exe_dev: int
    exe_magic: int
    exe_ino: int
    exe_ctime: int
    exe_mtime: int
    cap_inheritable: int
    cap_permitted: int
    cap_effective: int
    start_time: int
    """CLOCK_MONOTONIC ns."""
    exe_nlink: int
    ovl: int
    """overlayfs: 1 the executable is in the upper layer, 2 only in a lower one, 0 not overlayfs."""


@dataclass(slots=True)
class Record:
    kind: Kind
    ts: int
    """CLOCK_MONOTONIC ns (convert with Clock)."""
    cgroup_id: int
    tid: int
    pid: int
    ppid: int
    vtid: int
    vpid: int
    uid: int
    gid: int
    loginuid: int
    nr: int
    ret: int
    args: tuple[int, ...]
    comm_raw: bytes
    """The task's comm as the kernel stores it (NUL-padded); `comm` decodes it when needed."""
    blobs: dict[int, bytes] = field(default_factory=dict)

    @property
    def comm(self) -> str:
        return self.comm_raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def text(self, tag: int) -> str | None:
        raw = self.blobs.get(tag)
        return None if raw is None else raw.decode("utf-8", "surrogateescape")

    def strings(self, tag: int) -> list[str]:
        """A NUL-separated blob (argv, environment) as a list."""
        return split_nul(self.blobs.get(tag))

    def fd_desc(self) -> FdDesc | None:
        raw = self.blobs.get(Blob.FD)
        if raw is None or len(raw) < FD_DESC.size:
            return None
        return FdDesc(*FD_DESC.unpack_from(raw))

    def exec_info(self) -> ExecInfo | None:
        raw = self.blobs.get(Blob.EXEC)
        if raw is None or len(raw) < EXEC_INFO.size:
            return None
        v = EXEC_INFO.unpack_from(raw)
        return ExecInfo(*v)


def split_nul(raw: bytes | None) -> list[str]:
    """NUL-separated strings (argv, environ, as the kernel and /proc keep them) as a list."""
    if not raw:
        return []
    parts = raw.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "surrogateescape") for p in parts]


def decode(buf: bytes) -> Record:
    """One ring-buffer record. Raises RecordError when it does not parse."""
    if len(buf) < HEADER.size:
        raise RecordError(f"record of {len(buf)} bytes is shorter than the header")
    (ts, cgid, kind, length, tid, pid, ppid, vtid, vpid, uid, gid, loginuid, nr, nblobs, ret,
     a0, a1, a2, a3, a4, a5, comm) = HEADER.unpack_from(buf)
    blobs: dict[int, bytes] = {}
    off = HEADER.size
    end = min(length, len(buf))
    unpack_blob = BLOB.unpack_from
    for _ in range(nblobs):
        start = off + 8
        if start > end:
            raise RecordError(f"blob header at {off} past the record end {end}")
        tag, blen, _pad = unpack_blob(buf, off)
        stop = start + blen
        if stop > end:
            raise RecordError(f"blob {tag} of {blen} bytes at {start} past the record end {end}")
        blobs[tag] = buf[start:stop]
        off = (stop + 7) & ~7
    k = _KINDS.get(kind)
    if k is None:
        raise RecordError(f"unknown record kind {kind}")
    return Record(k, ts, cgid, tid, pid, ppid, vtid, vpid, uid, gid, loginuid, nr, ret,
                  (a0, a1, a2, a3, a4, a5), comm, blobs)


_KINDS: dict[int, Kind] = {k.value: k for k in Kind}


def _ip(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return ""


@dataclass(slots=True, frozen=True)
class SockAddr:
    family: int
    ip: str = ""
    port: int = 0
    path: str = ""
    """AF_UNIX: the socket path (abstract names start with '@')."""


def parse_sockaddr(raw: bytes | None) -> SockAddr | None:
    """A user-space struct sockaddr as copied by the kernel program."""
    if not raw or len(raw) < 2:
        return None
    family = int.from_bytes(raw[:2], "little")
    if family == socket.AF_INET and len(raw) >= 8:
        return SockAddr(family, socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big"))
    if family == socket.AF_INET6 and len(raw) >= 24:
        return SockAddr(family, socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big"))
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return SockAddr(family, path="@" + path[1:].split(b"\0", 1)[0].decode("utf-8", "replace"))
        return SockAddr(family, path=path.split(b"\0", 1)[0].decode("utf-8", "replace"))
    return SockAddr(family)


class Clock:
    """Converts the kernel's CLOCK_MONOTONIC stamps to ns since the epoch."""

    def __init__(self) -> None:
        import time

        self.offset = time.time_ns() - time.monotonic_ns()

    def epoch(self, mono_ns: int) -> int:
        return mono_ns + self.offset
