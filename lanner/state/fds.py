"""File descriptor tables: what each process's fds are, as Falco's ``fd.*`` fields see them.

One ``FdTable`` per process (bounded, least recently used evicted), built from the events that
create fds (open family, socket, accept, dup, memfd_create, bpf, userfaultfd) and corrected from
the kernel's description of the fd (``FdDesc``) whenever an event uses one: a cached entry is
trusted only while its identity (device and inode for files, the kernel socket address for
sockets) matches what the kernel reports.

``FdInfo`` objects are never changed once an event may point at them; an update stores a new
object (events waiting to be evaluated keep describing the fd as it was).

Name formats follow FIELDS.md §8.2. The helpers here work on the raw ``FD_DESC`` tuple
(``lanner.sensor.records.FD_DESC.unpack``) to avoid building a dataclass per event.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, Final

from lanner.events import FdInfo

# Indexes into the FD_DESC tuple (see records.FdDesc for the field meanings).
D_FD, D_MODE, D_DEV, D_MAGIC, D_INO, D_FLAGS, D_FAMILY, D_SOTYPE, D_PROTO = range(9)
D_LPORT, D_RPORT, D_STATE, D_LADDR, D_RADDR, D_SK, D_PEER = range(9, 16)

FdDescTuple = tuple[Any, ...]
"""A raw ``FD_DESC.unpack`` result."""

S_IFMT: Final = 0o170000
S_IFSOCK: Final = 0o140000
S_IFREG: Final = 0o100000
S_IFDIR: Final = 0o040000
S_IFIFO: Final = 0o010000
S_IFCHR: Final = 0o020000
S_IFBLK: Final = 0o060000

TMPFS_MAGIC: Final = 0x01021994
HUGETLBFS_MAGIC: Final = 0x958458F6

AF_UNIX: Final = socket.AF_UNIX
AF_INET: Final = socket.AF_INET
AF_INET6: Final = socket.AF_INET6
AF_NETLINK: Final = 16

SOCK_STREAM: Final = 1
SOCK_DGRAM: Final = 2
SOCK_RAW: Final = 3
IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_ICMPV6: Final = 58
IPPROTO_RAW: Final = 255

TCP_ESTABLISHED: Final = 1

_V4_MAPPED: Final = b"\0" * 10 + b"\xff\xff"

DEFAULT_FDS_PER_PROCESS: Final = 1024


# --- addresses and names -----------------------------------------------------------------------

def l4proto_of(sotype: int, proto: int) -> str | None:
    """libs add_socket: the L4 protocol of an IP socket from its type and protocol."""
    st = sotype & 0xFF
    if proto == IPPROTO_TCP:
        return "raw" if st == SOCK_RAW else "tcp"
    if proto == IPPROTO_UDP:
        return "raw" if st == SOCK_RAW else "udp"
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return "raw" if st == SOCK_RAW else "icmp"
    if proto == IPPROTO_RAW or st == SOCK_RAW:
        return "raw"
    if st == SOCK_STREAM:
        return "tcp"
    if st == SOCK_DGRAM:
        return "udp"
    return None


def socket_type(family: int) -> str:
    """fd.type of a socket of this address family (libs add_socket)."""
    if family == AF_INET:
        return "ipv4"
    if family == AF_INET6:
        return "ipv6"
    if family == AF_UNIX:
        return "unix"
    if family == AF_NETLINK:
        return "netlink"
    return "unknown"


def ip_text(family: int, raw: bytes) -> str:
    if family == AF_INET:
        return socket.inet_ntop(AF_INET, raw[:4])
    return socket.inet_ntop(AF_INET6, raw[:16])


def is_v4_mapped(raw: bytes) -> bool:
    return raw[:12] == _V4_MAPPED


def tuple_name(l4proto: str | None, cip: str, cport: int, sip: str, sport: int) -> str:
    """``cip:cport->sip:sport``; ICMP and raw sockets have no ports (libs sockinfo_to_str)."""
    if l4proto in ("icmp", "raw"):
        return f"{cip}->{sip}"
    return f"{cip}:{cport}->{sip}:{sport}"


def addr_name(ip: str, port: int) -> str:
    """A bound or destination address, as Falco renders a SOCKADDR: ``ip:port``."""
    return f"{ip}:{port}"


def unix_name(src: int, dst: int, path: str) -> str:
    """A connected unix socket: ``<src hex>-><dst hex> <path>``."""
    return f"{src:x}->{dst:x} {path}"


def ends(d: FdDescTuple) -> tuple[str, str, str, int, int] | None:
    """(fd type, local ip, remote ip, local port, remote port) of an IP socket, with IPv4-mapped
    IPv6 addresses shown as IPv4 (as libs does); None for other sockets."""
    fam = d[D_FAMILY]
    laddr: bytes = d[D_LADDR]
    raddr: bytes = d[D_RADDR]
    lport = int(d[D_LPORT])
    rport = int(d[D_RPORT])
    if fam == AF_INET:
        return "ipv4", ip_text(AF_INET, laddr), ip_text(AF_INET, raddr), lport, rport
    if fam == AF_INET6:
        if is_v4_mapped(laddr) and is_v4_mapped(raddr):
            return ("ipv4", socket.inet_ntop(AF_INET, laddr[12:16]), socket.inet_ntop(AF_INET, raddr[12:16]),
                    lport, rport)
        return "ipv6", ip_text(AF_INET6, laddr), ip_text(AF_INET6, raddr), lport, rport
    return None


def identity(d: FdDescTuple) -> int:
    """What makes an open file description this one: the kernel socket for sockets, otherwise
    the device and inode."""
    mode = int(d[D_MODE])
    if mode & S_IFMT == S_IFSOCK:
        return int(d[D_SK])
    return (int(d[D_DEV]) << 64) | int(d[D_INO])


def from_desc(num: int, d: FdDescTuple, path: str | None) -> FdInfo:
    """An fd the tables did not know (or knew wrongly), rebuilt from the kernel's description.

    Files and directories take their name from the kernel path (``FDPATH``); sockets take their
    addresses from the socket itself, with a role guessed when it is connected (a peer port
    lower than ours is taken as the server's).
    """
    mode = int(d[D_MODE])
    fmt = mode & S_IFMT
    dev = int(d[D_DEV])
    ino = int(d[D_INO])
    if fmt == S_IFSOCK:
        return _socket_from_desc(num, d)
    if fmt == S_IFDIR:
        name = path or ""
        return FdInfo(num=num, type="directory", name=name, dev=dev, ino=ino)
    if fmt == S_IFIFO:
        return FdInfo(num=num, type="pipe", name="", ino=ino)
    if fmt in (S_IFREG, S_IFCHR, S_IFBLK):
        name = path or ""
        magic = d[D_MAGIC]
        if name.startswith("/memfd:") and magic in (TMPFS_MAGIC, HUGETLBFS_MAGIC):
            return FdInfo(num=num, type="memfd", name=name[7:], dev=dev, ino=ino)
        return FdInfo(num=num, type="file", name=name, dev=dev, ino=ino)
    # Anonymous inodes (eventfd, epoll, bpf objects...) cannot be told apart from the description.
    return FdInfo(num=num, type="unknown")


def _socket_from_desc(num: int, d: FdDescTuple) -> FdInfo:
    fam = int(d[D_FAMILY])
    e = ends(d)
    if e is None:
        return FdInfo(num=num, type=socket_type(fam))
    typ, lip, rip, lport, rport = e
    l4 = l4proto_of(int(d[D_SOTYPE]), int(d[D_PROTO]))
    if d[D_STATE] == TCP_ESTABLISHED and rport:
        if rport < lport:
            return FdInfo(num=num, type=typ, name=tuple_name(l4, lip, lport, rip, rport), l4proto=l4,
                          role="client", cip=lip, cport=lport, sip=rip, sport=rport, connected=True)
        return FdInfo(num=num, type=typ, name=tuple_name(l4, rip, rport, lip, lport), l4proto=l4,
                      role="server", cip=rip, cport=rport, sip=lip, sport=lport, connected=True)
    if d[D_STATE] == 10 and lport:  # TCP_LISTEN
        return FdInfo(num=num, type=typ, name=addr_name(lip, lport), l4proto=l4, role="listen",
                      sip=lip, sport=lport)
    return FdInfo(num=num, type=typ, l4proto=l4)


def with_num(fi: FdInfo, num: int) -> FdInfo:
    """A copy of ``fi`` under another fd number (dup)."""
    return FdInfo(num, fi.type, fi.name, fi.nameraw, fi.l4proto, fi.role, fi.cip, fi.cport, fi.sip, fi.sport,
                  fi.connected, False, fi.dev, fi.ino)


# --- tables ------------------------------------------------------------------------------------

class FdTable:
    """One process's fds: number -> FdInfo, plus the identity each entry was built for.

    Bounded: past ``limit`` entries the least recently used one goes (plain dict order, moved to
    the end on creation and use).
    """

    __slots__ = ("_fds", "_ids", "limit")

    def __init__(self, limit: int = DEFAULT_FDS_PER_PROCESS) -> None:
        self._fds: dict[int, FdInfo] = {}
        self._ids: dict[int, int] = {}
        self.limit = limit

    def get(self, fd: int) -> FdInfo | None:
        """The entry for ``fd`` (marked as recently used), or None."""
        fds = self._fds
        fi = fds.pop(fd, None)
        if fi is not None:
            fds[fd] = fi
        return fi

    def peek(self, fd: int) -> FdInfo | None:
        """The entry without touching the use order."""
        return self._fds.get(fd)

    def ident(self, fd: int) -> int | None:
        return self._ids.get(fd)

    def put(self, fd: int, info: FdInfo, ident: int | None) -> None:
        fds = self._fds
        fds.pop(fd, None)
        fds[fd] = info
        if ident is None:
            self._ids.pop(fd, None)
        else:
            self._ids[fd] = ident
        if len(fds) > self.limit:
            old = next(iter(fds))
            del fds[old]
            self._ids.pop(old, None)

    def remove(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self._ids.pop(fd, None)

    def copy(self) -> FdTable:
        t = FdTable(self.limit)
        t._fds = dict(self._fds)
        t._ids = dict(self._ids)
        return t

    def __len__(self) -> int:
        return len(self._fds)

    def __iter__(self) -> Iterator[int]:
        return iter(self._fds)


class FdTables:
    """Every process's fd table, by pid."""

    def __init__(self, per_process: int = DEFAULT_FDS_PER_PROCESS) -> None:
        self.per_process = per_process
        self._tables: dict[int, FdTable] = {}

    def table(self, pid: int) -> FdTable:
        t = self._tables.get(pid)
        if t is None:
            t = self._tables[pid] = FdTable(self.per_process)
        return t

    def find(self, pid: int) -> FdTable | None:
        return self._tables.get(pid)

    def fork(self, parent: int, child: int) -> None:
        """The child starts with a copy of the parent's table (FdInfo objects are shared: they are
        never changed in place)."""
        t = self._tables.get(parent)
        if t is None or not len(t):
            self._tables.pop(child, None)
        else:
            self._tables[child] = t.copy()

    def drop(self, pid: int) -> None:
        self._tables.pop(pid, None)

    def __len__(self) -> int:
        return len(self._tables)

    def total(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def pids(self) -> list[int]:
        return list(self._tables)
