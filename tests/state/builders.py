"""Synthetic kernel records for the state tests, packed with the sensor's own struct layouts."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from lanner.events import Event
from lanner.rules.fields import lookup
from lanner.sensor.records import EXEC_INFO, FD_DESC, Blob, Clock, Kind, Record
from lanner.sensor.syscalls import SYSCALLS
from lanner.state import StateTracker, UserDirectory

NR = {s.name: s.nr for s in SYSCALLS}
U32 = 0xFFFFFFFF
AT_FDCWD = 0xFFFFFF9C  # -100 as the register holds it
EPOCH = 1_700_000_000_000_000_000
"""Clock offset used by the tests: monotonic ns + EPOCH = epoch ns."""

S_IFREG, S_IFDIR, S_IFSOCK, S_IFIFO = 0o100000, 0o040000, 0o140000, 0o010000
SOCKFS_MAGIC, EXT4_MAGIC, TMPFS_MAGIC = 0x534F434B, 0xEF53, 0x01021994


def fixed_clock() -> Clock:
    c = Clock()
    c.offset = EPOCH
    return c


def x(name: str, ev: Event, arg: str | None = None) -> Any:
    """What a rule sees for ``name[arg]`` on this event."""
    f = lookup(name)
    assert f is not None, name
    return f.extract(ev, arg)


def _ip_bytes(ip: str) -> bytes:
    if ":" in ip:
        return socket.inet_pton(socket.AF_INET6, ip)
    return socket.inet_pton(socket.AF_INET, ip).ljust(16, b"\0")


def fd_desc(fd: int, *, mode: int = S_IFREG | 0o644, dev: int = 0xFE00, ino: int = 1, magic: int = EXT4_MAGIC,
            flags: int = 0, family: int = 0, sotype: int = 0, proto: int = 0, local: tuple[str, int] | None = None,
            remote: tuple[str, int] | None = None, state: int = 0, sk: int = 0, peer: int = 0) -> bytes:
    lip, lport = local or ("0.0.0.0" if family != socket.AF_INET6 else "::", 0)
    rip, rport = remote or ("0.0.0.0" if family != socket.AF_INET6 else "::", 0)
    laddr = _ip_bytes(lip) if family in (socket.AF_INET, socket.AF_INET6) else b"\0" * 16
    raddr = _ip_bytes(rip) if family in (socket.AF_INET, socket.AF_INET6) else b"\0" * 16
    return FD_DESC.pack(fd, mode, dev, magic, ino, flags, family, sotype, proto, lport, rport, state, laddr, raddr,
                        sk, peer)


def sock_desc(fd: int, family: int, sotype: int = socket.SOCK_STREAM, proto: int = 6, *, ino: int = 1000,
              **kw: Any) -> bytes:
    return fd_desc(fd, mode=S_IFSOCK | 0o777, dev=9, ino=ino, magic=SOCKFS_MAGIC, flags=2, family=family,
                   sotype=sotype, proto=proto, **kw)


def exec_info(*, tty: int = 0, sid: int = 0, vpgid: int = 0, exe_mode: int = S_IFREG | 0o755, exe_uid: int = 0,
              exe_gid: int = 0, exe_dev: int = 0xFE00, exe_magic: int = EXT4_MAGIC, exe_ino: int = 4242,
              exe_ctime: int = 0, exe_mtime: int = 0, cap_inheritable: int = 0, cap_permitted: int = 0,
              cap_effective: int = 0, start_time: int = 0, exe_nlink: int = 1) -> bytes:
    return EXEC_INFO.pack(tty, sid, vpgid, exe_mode, exe_uid, exe_gid, exe_dev, exe_magic, exe_ino, exe_ctime,
                          exe_mtime, cap_inheritable, cap_permitted, cap_effective, start_time, exe_nlink, 0)


def sockaddr_in(ip: str, port: int) -> bytes:
    if ":" in ip:
        return (socket.AF_INET6.to_bytes(2, "little") + port.to_bytes(2, "big") + b"\0" * 4
                + socket.inet_pton(socket.AF_INET6, ip) + b"\0" * 4)
    return socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + socket.inet_pton(
        socket.AF_INET, ip) + b"\0" * 8


def sockaddr_un(path: str) -> bytes:
    return socket.AF_UNIX.to_bytes(2, "little") + path.encode() + b"\0"


def blobs(**kw: bytes | str) -> dict[int, bytes]:
    return {int(Blob[k.upper()]): v.encode() if isinstance(v, str) else v for k, v in kw.items()}


class World:
    """A tracker over a fake /proc and a fake host root, and helpers that speak records."""

    def __init__(self, tmp: Path, passwd: str = "", group: str = "") -> None:
        self.proc = tmp / "proc"
        self.proc.mkdir(exist_ok=True)
        self.root = tmp / "root"
        (self.root / "etc").mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "passwd").write_text(
            passwd or "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
                      "www-data:x:33:33::/var/www:/usr/sbin/nologin\n")
        (self.root / "etc" / "group").write_text(group or "root:x:0:\nalice:x:1000:\nwww-data:x:33:\n")
        self.clock = fixed_clock()
        self.tracker = StateTracker(self.clock, proc_root=str(self.proc),
                                    users=UserDirectory(proc_root=str(self.proc), host_root=str(self.root)))
        self.now = 1_000_000_000
        self.events: list[Event] = []
        self.ppid: dict[int, int] = {}
        self.comm: dict[int, str] = {}
        self.uid: dict[int, int] = {}

    def _tick(self) -> int:
        self.now += 1000
        return self.now

    def record(self, kind: Kind, pid: int, nr: int, ret: int, args: tuple[int, ...] = (),
               bl: dict[int, bytes] | None = None, *, tid: int | None = None, uid: int | None = None,
               gid: int | None = None, loginuid: int = U32, comm: str | None = None, ppid: int | None = None,
               vpid: int | None = None, ts: int | None = None) -> Record:
        a = tuple(args) + (0,) * (6 - len(args))
        u = self.uid.get(pid, 0) if uid is None else uid
        return Record(kind, self._tick() if ts is None else ts, 0, tid or pid, pid,
                      self.ppid.get(pid, 1) if ppid is None else ppid, tid or pid, pid if vpid is None else vpid,
                      u, u if gid is None else gid, loginuid, nr, ret, a,
                      (comm if comm is not None else self.comm.get(pid, "proc")).encode().ljust(16, b"\0"), bl or {})

    def feed(self, rec: Record) -> Event | None:
        ev = self.tracker.handle(rec)
        if ev is not None:
            self.events.append(ev)
            ev.num = len(self.events)
        return ev

    def syscall(self, pid: int, name: str, ret: int, args: tuple[int, ...] = (), **kw: Any) -> Event:
        bl = kw.pop("bl", None)
        ev = self.feed(self.record(Kind.SYSCALL, pid, NR[name], ret, args, bl, **kw))
        assert ev is not None
        return ev

    def fork(self, parent: int, child: int, *, vpid: int | None = None, start: int = 5_000_000_000,
             real_parent: int | None = None) -> None:
        rp = parent if real_parent is None else real_parent
        self.ppid[child] = rp
        self.comm[child] = self.comm.get(parent, "proc")
        self.uid[child] = self.uid.get(parent, 0)
        assert self.feed(self.record(Kind.FORK, parent, -1, child, (start, vpid or child, rp))) is None

    def exec(self, pid: int, argv: list[str], exepath: str, *, cwd: str = "/", comm: str | None = None,
             env: list[str] | None = None, filename: str | None = None, info: bytes | None = None,
             uid: int | None = None, loginuid: int = U32) -> Event:
        self.comm[pid] = comm or Path(argv[0]).name[:15]
        if uid is not None:
            self.uid[pid] = uid
        bl = blobs(argv="\0".join(argv) + "\0", env="\0".join(env or ["PATH=/usr/bin"]) + "\0", exepath=exepath,
                   cwd=cwd, filename=filename if filename is not None else exepath, exec=info or exec_info())
        return self.syscall(pid, "execve", 0, bl=bl, loginuid=loginuid)

    def spawn(self, parent: int, child: int, argv: list[str], exepath: str, **kw: Any) -> Event:
        self.fork(parent, child)
        return self.exec(child, argv, exepath, **kw)

    def exit(self, pid: int, status: int = 0) -> Event:
        ev = self.feed(self.record(Kind.EXIT, pid, -1, status))
        assert ev is not None
        return ev

    def openat(self, pid: int, path: str, ret: int, *, flags: int = 0, mode: int = 0, dirfd: int = AT_FDCWD,
               base: str | None = None, ino: int = 77, dev: int = 0xFE00, fmt: int = S_IFREG) -> Event:
        bl = blobs(path0=path)
        if base is not None:
            bl[Blob.BASE0] = base.encode()
        if ret >= 0:
            bl[Blob.FD] = fd_desc(ret, mode=fmt | 0o644, dev=dev, ino=ino, flags=flags)
        return self.syscall(pid, "openat", ret, (dirfd, 0x7FFF0000, flags, mode), bl=bl)

    def init(self, pid: int = 1, name: str = "systemd", exepath: str = "/usr/lib/systemd/systemd") -> None:
        """A first process, met through a record (not in the fake /proc), then given a program."""
        self.ppid[pid] = 0
        self.comm[pid] = name
        self.exec(pid, ["/sbin/init"], exepath, comm=name)
