"""The state tracker: kernel records in, Falco exit events (with their context) out.

``StateTracker.handle(record)`` applies one record to the process and fd tables, then returns the
``Event`` rules are evaluated on: the event type Falco uses, its parameters by Falco's names with
raw values (Linux flag bits, paths as passed, socket tuples as text), the process *after* the call
and the fd the event created or used (FIELDS.md §0.2: state is updated before rules run).

Context objects are never changed in place once an event may point at them: an update stores a
new ``Process``/``FdInfo`` (see processes.clone), so a batch of events waiting for evaluation keeps
describing the world as each event saw it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from lanner.events import Event, FdInfo, Process
from lanner.paths import collapse_slashes, concatenate, normalize
from lanner.sensor.records import EXEC_INFO, FD_DESC, Clock, Kind, Record, SockAddr, parse_sockaddr, split_nul
from lanner.sensor.syscalls import SYSCALLS, Syscall

from . import fds as F
from .fds import FdTable, FdTables
from .processes import (
    DEFAULT_MAX_PROCESSES,
    ProcessTable,
    boot_epoch_ns,
    cgroup_id,
    clone,
    cwd_text,
    exe_flags,
    exe_writable,
    list_pids,
    memfd_exepath,
    read_proc,
)
from .users import UserDirectory

# Blob tags (records.Blob), as plain ints: cheaper dict keys than the IntEnum.
PATH0, PATH1, BASE0, BASE1, STR0, STR1, SOCKADDR, FD, FDPATH, EXEPATH, CWD, ARGV, ENV, FILENAME, EXEC, DATA = (
    range(1, 17))

AT_FDCWD: Final = -100
U32: Final = 0xFFFFFFFF
EINPROGRESS: Final = 115

O_WRONLY: Final = 0o1
O_CREAT: Final = 0o100
O_TRUNC: Final = 0o1000
O_NONBLOCK: Final = 0o4000
O_DIRECTORY: Final = 0o200000
O_CLOEXEC: Final = 0o2000000
O_TMPFILE: Final = 0o20200000
CLONE_NEWUSER: Final = 0x10000000
ALL_CAPS: Final = (1 << 41) - 1
"""Every capability up to CAP_CHECKPOINT_RESTORE (libs sets them all on entering a user namespace)."""

# bpf(2) commands whose result is a new fd.
BPF_FD_COMMANDS: Final = frozenset({
    0,   # BPF_MAP_CREATE
    5,   # BPF_PROG_LOAD
    7,   # BPF_OBJ_GET
    13,  # BPF_PROG_GET_FD_BY_ID
    14,  # BPF_MAP_GET_FD_BY_ID
    17,  # BPF_RAW_TRACEPOINT_OPEN
    18,  # BPF_BTF_LOAD
    19,  # BPF_BTF_GET_FD_BY_ID
    28,  # BPF_LINK_CREATE
    30,  # BPF_LINK_GET_FD_BY_ID
    33,  # BPF_ITER_CREATE
    36,  # BPF_TOKEN_CREATE
})

_OPEN_HOW = struct.Struct("<QQQ")

Handler = Callable[[Record, Syscall, Process], Event]


def _s32(v: int) -> int:
    """A register holding a C int (fd, dirfd, pid) as a signed value."""
    v &= U32
    return v - 0x100000000 if v & 0x80000000 else v


def _txt(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def _sockaddr_text(sa: SockAddr | None) -> str | None:
    """A SOCKADDR parameter as Falco renders it: ``ip:port`` or the unix path."""
    if sa is None:
        return None
    if sa.family in (F.AF_INET, F.AF_INET6):
        return F.addr_name(_unmap(sa.ip), sa.port)
    if sa.family == F.AF_UNIX:
        return sa.path
    return None


def _unmap(ip: str) -> str:
    """An IPv4-mapped IPv6 address as IPv4 (libs reports such sockets as IPv4)."""
    if ip.startswith("::ffff:") and "." in ip:
        return ip[7:]
    return ip


def _is_ip(fi: FdInfo | None) -> bool:
    return fi is not None and fi.type in ("ipv4", "ipv6")


def _wait_status(status: int) -> tuple[int, int, int]:
    """(exit code, terminating signal, core dumped) of a wait status."""
    sig = status & 0x7F
    signaled = sig != 0 and sig != 0x7F
    return (status >> 8) & 0xFF, sig if signaled else 0, 1 if status & 0x80 else 0


class StateTracker:
    """Process, fd and user tables kept from the sensor's records; turns records into Events.

    ``cgroup_container(cgroup_id, pid)`` names the container of a process ("" for the host);
    it is asked when a process is seeded, appears, or executes a new program.
    """

    def __init__(self, clock: Clock, *, proc_root: str = "/proc",
                 cgroup_container: Callable[[int, int], str] | None = None,
                 host_root: str = "/", cgroup_root: str = "/sys/fs/cgroup",
                 max_processes: int = DEFAULT_MAX_PROCESSES, fds_per_process: int = F.DEFAULT_FDS_PER_PROCESS,
                 users: UserDirectory | None = None) -> None:
        self.clock = clock
        self.proc_root = proc_root.rstrip("/") or "/"
        self.cgroup_root = cgroup_root
        self._container = cgroup_container
        self._cgroups: dict[int, int] = {}
        """Last cgroup id seen per pid, to notice a process moving into a container's cgroup."""
        self.procs = ProcessTable(proc_root=self.proc_root, max_processes=max_processes)
        self.fds = FdTables(fds_per_process)
        self.users = users if users is not None else UserDirectory(proc_root=self.proc_root, host_root=host_root)
        self._boot_ns = boot_epoch_ns()
        self.unknown_pids = 0
        """Processes first met in a record (not seeded, fork not seen)."""
        self.unknown_syscalls = 0
        handlers = self._handlers()
        self._dispatch: dict[int, tuple[Syscall, Handler]] = {
            sc.nr: (sc, handlers.get(sc.name) or handlers.get(sc.event) or self._on_generic) for sc in SYSCALLS
        }

    # --- public API ------------------------------------------------------------------------------

    def seed(self) -> int:
        """Read every process in /proc into the table (processes already known are kept).
        Returns how many were added."""
        self._boot_ns = boot_epoch_ns()
        procs = self.procs
        added: list[Process] = []
        for pid in list_pids(self.proc_root):
            if pid in procs:
                continue
            p = read_proc(self.proc_root, pid, self._boot_ns)
            if p is None:
                continue
            if self._container is not None:
                p.container_id = self._container(cgroup_id(self.proc_root, pid, self.cgroup_root), pid)
            self.users.resolve(p)
            self._drop_fds(procs.put(p))
            added.append(p)
        table = procs.procs
        for p in added:
            p.parent = table.get(p.ppid) if p.ppid != p.pid else None
        return len(added)

    def handle(self, rec: Record) -> Event | None:
        """Apply one record; the exit event to evaluate (None for fork records)."""
        kind = rec.kind
        if kind == Kind.SYSCALL:
            entry = self._dispatch.get(rec.nr)
            if entry is None:
                self.unknown_syscalls += 1
                return None
            sc, fn = entry
            evt = fn(rec, sc, self._current(rec))
            if sc.paths and (BASE0 in rec.blobs or BASE1 in rec.blobs):
                self._add_dirs(evt, rec, sc)
            return evt
        if kind == Kind.FORK:
            self._on_fork(rec)
            return None
        if kind == Kind.EXIT:
            return self._on_exit(rec)
        return None

    @staticmethod
    def _add_dirs(evt: Event | None, rec: Record, sc: Syscall) -> None:
        """The kernel walked the dirfd of a relative path: keep its name for evt.arg rendering."""
        if evt is None:
            return
        for (_, dirfd_arg), tag in zip(sc.paths, (BASE0, BASE1), strict=False):
            if dirfd_arg is None:
                continue
            dirfd = _s32(rec.args[dirfd_arg])
            base = rec.blobs.get(tag)
            if dirfd == AT_FDCWD or base is None:
                continue
            if evt.dirs is None:
                evt.dirs = {}
            evt.dirs[dirfd] = base.decode("utf-8", "surrogateescape")

    def process(self, pid: int) -> Process | None:
        """The current context of a process, if known."""
        return self.procs.get(pid)

    def fd(self, pid: int, fd: int) -> FdInfo | None:
        t = self.fds.find(pid)
        return None if t is None else t.peek(fd)

    def stats(self) -> dict[str, int]:
        """Table sizes and counters, for metrics."""
        return {
            "processes": len(self.procs),
            "fd_tables": len(self.fds),
            "fds": self.fds.total(),
            "user_databases": len(self.users),
            "unknown_processes": self.unknown_pids,
            "evicted_processes": self.procs.evicted,
            "unknown_syscalls": self.unknown_syscalls,
        }

    # --- processes -------------------------------------------------------------------------------

    def _current(self, rec: Record) -> Process:
        """The record's process, with the header's credentials and parent applied."""
        procs = self.procs.procs
        p = procs.get(rec.pid)
        if p is None:
            return self._unknown(rec)
        lu = rec.loginuid
        if lu == U32:
            lu = -1
        ppid = rec.ppid
        if (p.uid != rec.uid or p.gid != rec.gid or p.loginuid != lu or p.ppid != ppid
                or p.parent is not procs.get(ppid)):
            p = self._refresh(p, rec, lu)
        if self._container is not None and rec.cgroup_id and self._cgroups.get(rec.pid) != rec.cgroup_id:
            # first record of the process, or it moved (runc puts a container's init in its cgroup)
            self._cgroups[rec.pid] = rec.cgroup_id
            cid = self._container(rec.cgroup_id, rec.pid)
            if cid != p.container_id:
                p = self._replace(p, container_id=cid)
        return p

    def _refresh(self, p: Process, rec: Record, lu: int) -> Process:
        q = clone(p)
        ids = q.uid != rec.uid or q.gid != rec.gid or q.loginuid != lu
        q.uid, q.gid, q.loginuid = rec.uid, rec.gid, lu
        q.ppid = rec.ppid
        q.parent = self.procs.procs.get(rec.ppid)
        if ids:
            self.users.resolve(q)
        self.procs.replace(q)
        return q

    def _header_process(self, rec: Record) -> Process:
        lu = rec.loginuid
        return Process(pid=rec.pid, ppid=rec.ppid, vpid=rec.vpid, name=rec.comm, uid=rec.uid, gid=rec.gid,
                       loginuid=-1 if lu == U32 else lu)

    def _unknown(self, rec: Record) -> Process:
        """A process met for the first time: /proc if it can still be read, else the header."""
        self.unknown_pids += 1
        p = read_proc(self.proc_root, rec.pid, self._boot_ns)
        if p is None:
            p = self._header_process(rec)
        else:
            lu = rec.loginuid
            p.uid, p.gid, p.loginuid = rec.uid, rec.gid, -1 if lu == U32 else lu
            p.ppid = rec.ppid
        p.parent = self.procs.procs.get(rec.ppid)
        p.container_id = self._container_of(rec.cgroup_id, rec.pid)
        self.users.resolve(p)
        self._drop_fds(self.procs.put(p))
        return p

    def _container_of(self, cgid: int, pid: int) -> str:
        return "" if self._container is None else self._container(cgid, pid)

    def _drop_fds(self, pids: list[int]) -> None:
        for pid in pids:
            self.fds.drop(pid)

    def _replace(self, p: Process, **changes: Any) -> Process:
        q = clone(p)
        for k, v in changes.items():
            setattr(q, k, v)
        self.procs.replace(q)
        return q

    def _on_fork(self, rec: Record) -> None:
        parent = self._current(rec)
        child_pid = rec.ret
        if child_pid <= 0:
            return
        a = rec.args
        c = clone(parent)
        c.pid = child_pid
        c.vpid = a[1] or child_pid
        c.ppid = a[2] or parent.pid
        c.parent = parent if c.ppid == parent.pid else self.procs.procs.get(c.ppid)
        c.start_ts = self.clock.epoch(a[0]) if a[0] else 0
        self._drop_fds(self.procs.put(c))
        self.fds.fork(parent.pid, child_pid)

    def _on_exit(self, rec: Record) -> Event:
        self._cgroups.pop(rec.pid, None)
        p = self.procs.remove(rec.pid)
        if p is None:
            p = self._header_process(rec)  # never read /proc for a dying process
        self.fds.drop(rec.pid)
        status = rec.ret & U32
        ret, sig, core = _wait_status(status)
        return Event("procexit", self.clock.epoch(rec.ts), rec.tid, None,
                     {"status": status, "ret": ret, "sig": sig, "core": core}, p)

    def _set_cwd(self, p: Process, cwd: str) -> Process:
        return p if cwd == p.cwd else self._replace(p, cwd=cwd)

    def _cwd_hint(self, p: Process, rec: Record, dirfd: int) -> Process:
        """A path relative to the cwd came with the kernel's walk of the cwd: keep proc.cwd right."""
        if dirfd != AT_FDCWD:
            return p
        base = rec.blobs.get(BASE0)
        if base is None:
            return p
        cwd = base.decode("utf-8", "surrogateescape")
        cwd = cwd if cwd.endswith("/") else cwd + "/"
        return p if cwd == p.cwd else self._replace(p, cwd=cwd)

    # --- fds -------------------------------------------------------------------------------------

    def _used_fd(self, tbl: FdTable, fd: int, d: tuple[Any, ...] | None, path: str | None) -> FdInfo | None:
        """The fd an event uses: the cached entry while the kernel's description matches it,
        otherwise rebuilt from that description."""
        if fd < 0:
            return None
        fi = tbl.get(fd)
        if d is None:
            return fi
        ident = F.identity(d)
        if fi is not None and tbl.ident(fd) == ident:
            if fi.name_changed:
                fi = F.with_num(fi, fd)
                tbl.put(fd, fi, ident)
            return fi
        fi = F.from_desc(fd, d, path)
        tbl.put(fd, fi, ident)
        return fi

    @staticmethod
    def _desc(rec: Record) -> tuple[Any, ...] | None:
        raw = rec.blobs.get(FD)
        if raw is None or len(raw) < FD_DESC.size:
            return None
        return FD_DESC.unpack_from(raw)

    def _event(self, etype: str, rec: Record, args: dict[str, Any], p: Process, fi: FdInfo | None = None) -> Event:
        return Event(etype, self.clock.epoch(rec.ts), rec.tid, rec.ret, args, p, fi)

    # --- handlers --------------------------------------------------------------------------------

    def _handlers(self) -> dict[str, Handler]:
        h: dict[str, Handler] = {
            "open": self._on_open, "openat": self._on_open, "openat2": self._on_open, "creat": self._on_open,
            "execve": self._on_exec, "execveat": self._on_exec,
            "clone": self._on_clone, "clone3": self._on_clone, "fork": self._on_clone, "vfork": self._on_clone,
            "socket": self._on_socket, "connect": self._on_connect, "accept": self._on_accept,
            "accept4": self._on_accept, "bind": self._on_bind, "listen": self._on_listen,
            "sendto": self._on_send, "sendmsg": self._on_send, "recvfrom": self._on_recv, "recvmsg": self._on_recv,
            "dup": self._on_dup, "dup2": self._on_dup, "dup3": self._on_dup,
            "memfd_create": self._on_memfd, "bpf": self._on_bpf, "userfaultfd": self._on_userfaultfd,
            "chdir": self._on_chdir, "fchdir": self._on_fchdir,
            "setns": self._on_setns, "unshare": self._on_unshare,
            "fchmod": self._on_fchmod, "finit_module": self._on_finit_module,
            "fchmodat": self._on_at_fd, "unlinkat": self._on_at_fd, "mkdirat": self._on_at_fd,
            "symlinkat": self._on_at_fd,
            "mkdir": self._on_path, "rmdir": self._on_path, "unlink": self._on_path, "chmod": self._on_path,
            "rename": self._on_path, "renameat": self._on_path, "renameat2": self._on_path,
            "link": self._on_path, "linkat": self._on_path, "symlink": self._on_path,
            "mount": self._on_path, "umount2": self._on_path, "init_module": self._on_init_module,
            "setuid": self._on_ids, "setgid": self._on_ids, "setreuid": self._on_ids, "setregid": self._on_ids,
            "setresuid": self._on_ids, "setresgid": self._on_ids,
            "ptrace": self._on_ptrace, "kill": self._on_kill, "capset": self._on_capset, "prctl": self._on_prctl,
        }
        return h

    def _on_generic(self, rec: Record, sc: Syscall, p: Process) -> Event:
        return self._event(sc.event, rec, {"res": rec.ret}, p)

    def _on_open(self, rec: Record, sc: Syscall, p: Process) -> Event:
        a = rec.args
        blobs = rec.blobs
        ret = rec.ret
        raw = blobs.get(PATH0)
        path = None if raw is None else raw.decode("utf-8", "surrogateescape")
        etype = sc.event
        resolve = 0
        if etype == "openat":
            dirfd = _s32(a[0])
            flags = a[2] & U32
            mode = a[3]
        elif etype == "openat2":
            dirfd = _s32(a[0])
            how = blobs.get(SOCKADDR)
            if how is not None and len(how) >= _OPEN_HOW.size:
                flags, mode, resolve = _OPEN_HOW.unpack_from(how)
                flags &= U32
            else:
                flags = mode = 0
        elif etype == "open":
            dirfd = AT_FDCWD
            flags = a[1] & U32
            mode = a[2]
        else:  # creat
            dirfd = AT_FDCWD
            flags = O_CREAT | O_WRONLY | O_TRUNC
            mode = a[1]
        mode = mode & 0o7777 if flags & (O_CREAT | O_TMPFILE) else 0
        base_raw = blobs.get(BASE0)
        if base_raw is not None and dirfd == AT_FDCWD:
            p = self._cwd_hint(p, rec, dirfd)
        dev = ino = 0
        fi = None
        if ret >= 0:
            draw = blobs.get(FD)
            ident = None
            if draw is not None and len(draw) >= FD_DESC.size:
                d = FD_DESC.unpack_from(draw)
                dev = d[2]
                ino = d[4]
                ident = (dev << 64) | ino
            if path is None:
                name = nameraw = ""
            else:
                if path.startswith("/"):
                    name = normalize(path)
                else:
                    if base_raw is not None:
                        base = base_raw.decode("utf-8", "surrogateescape")
                    elif dirfd == AT_FDCWD:
                        base = p.cwd
                    else:
                        dfi = self.fds.table(p.pid).peek(dirfd)
                        base = dfi.name if dfi is not None else "<UNKNOWN>"
                    name = concatenate(base, path)
                nameraw = collapse_slashes(path) if "//" in path else path
            fi = FdInfo(ret, "directory" if flags & O_DIRECTORY else "file", name, nameraw, dev=dev, ino=ino)
            self.fds.table(p.pid).put(ret, fi, ident)
        if etype == "openat":
            args = {"fd": ret, "dirfd": dirfd, "name": path, "flags": flags, "mode": mode, "dev": dev, "ino": ino}
        elif etype == "openat2":
            args = {"fd": ret, "dirfd": dirfd, "name": path, "flags": flags, "mode": mode, "resolve": resolve,
                    "dev": dev, "ino": ino}
        elif etype == "open":
            args = {"fd": ret, "name": path, "flags": flags, "mode": mode, "dev": dev, "ino": ino}
        else:
            args = {"fd": ret, "name": path, "mode": mode, "dev": dev, "ino": ino}
        return Event(etype, self.clock.epoch(rec.ts), rec.tid, ret, args, p, fi)

    def _exec_args(self, p: Process, rec: Record, cwd: str, exepath: str) -> dict[str, Any]:
        return {"res": rec.ret, "exe": p.exe, "args": p.args, "tid": rec.tid, "pid": rec.pid, "ptid": p.ppid,
                "cwd": cwd, "comm": p.name, "env": p.env, "tty": p.tty, "loginuid": rec.loginuid,
                "flags": exe_flags(p), "uid": rec.uid, "gid": rec.gid, "trusted_exepath": exepath}

    def _on_exec(self, rec: Record, sc: Syscall, p: Process) -> Event:
        blobs = rec.blobs
        if rec.ret != 0:
            # A failed exec changes nothing: the parameters describe the caller (the old program).
            p = self._cwd_hint(p, rec, AT_FDCWD if sc.name == "execve" else _s32(rec.args[0]))
            cwd = p.cwd[:-1] if len(p.cwd) > 1 and p.cwd.endswith("/") else p.cwd
            args = self._exec_args(p, rec, cwd, p.exepath)
            if sc.event == "execve":
                args["filename"] = _txt(blobs.get(PATH0))
            return self._event(sc.event, rec, args, p)
        q = self._exec_process(p, rec)
        cwd_raw = _txt(blobs.get(CWD))
        args = self._exec_args(q, rec, cwd_raw if cwd_raw is not None else q.cwd.rstrip("/") or "/",
                               _txt(blobs.get(EXEPATH)) or q.exepath)
        args["filename"] = _txt(blobs.get(FILENAME))
        return self._event("execve", rec, args, q)

    def _exec_process(self, old: Process, rec: Record) -> Process:
        """The new program, as a new Process object (events of the old one keep the old object)."""
        blobs = rec.blobs
        argv = split_nul(blobs.get(ARGV))
        lu = rec.loginuid
        q = Process(pid=rec.pid, ppid=rec.ppid, vpid=rec.vpid, sid=old.sid, vpgid=old.vpgid, name=rec.comm,
                    exe=argv[0] if argv else "", exepath=old.exepath, args=argv[1:], cwd=old.cwd,
                    env=split_nul(blobs.get(ENV)), tty=old.tty, uid=rec.uid,
                    gid=rec.gid, loginuid=-1 if lu == U32 else lu, cap_effective=old.cap_effective,
                    cap_permitted=old.cap_permitted, cap_inheritable=old.cap_inheritable, start_ts=old.start_ts,
                    pidns_start_ts=old.pidns_start_ts, parent=self.procs.procs.get(rec.ppid))
        exepath = _txt(blobs.get(EXEPATH))
        xraw = blobs.get(EXEC)
        if xraw is not None and len(xraw) >= EXEC_INFO.size:
            (tty, sid, vpgid, emode, euid, egid, _edev, _emagic, eino, ectime, emtime, capi, capp, cape,
             start, nlink, ovl) = EXEC_INFO.unpack_from(xraw)
            q.exe_upper_layer, q.exe_lower_layer = ovl == 1, ovl == 2
            q.tty, q.sid, q.vpgid = tty, sid, vpgid
            q.cap_inheritable, q.cap_permitted, q.cap_effective = capi, capp, cape
            q.exe_ino, q.exe_ino_ctime, q.exe_ino_mtime = eino, ectime, emtime
            q.exe_writable = exe_writable(emode, euid, egid, rec.uid, rec.gid)
            if start:
                q.start_ts = self.clock.epoch(start)
            if exepath is not None:
                memfd = memfd_exepath(exepath, nlink)
                if memfd is not None:
                    q.exepath = memfd
                    q.exe_from_memfd = True
                else:
                    q.exepath = exepath
        elif exepath is not None:
            q.exepath = exepath
        cwd = blobs.get(CWD)
        if cwd is not None:
            q.cwd = cwd_text(cwd.decode("utf-8", "surrogateescape"))
        q.container_id = self._container_of(rec.cgroup_id, rec.pid) if self._container is not None \
            else old.container_id
        self.users.resolve(q)
        self.procs.replace(q)
        return q

    def _on_clone(self, rec: Record, sc: Syscall, p: Process) -> Event:
        etype = sc.event
        head: dict[str, Any] = {"res": rec.ret, "exe": p.exe}
        ids: dict[str, Any] = {"tid": rec.tid, "pid": rec.pid, "ptid": p.ppid}
        if etype == "clone":
            args = {**head, "args": p.args, **ids, "cwd": p.cwd[:-1] if len(p.cwd) > 1 else p.cwd,
                    "comm": p.name, "flags": rec.args[0] & U32, "uid": rec.uid, "gid": rec.gid}
        elif etype == "clone3":
            # The flags are in user memory (struct clone_args), which the record does not carry.
            args = {**head, **ids, "comm": p.name, "flags": 0}
        else:
            args = {**head, **ids, "comm": p.name}
        return self._event(etype, rec, args, p)

    def _on_socket(self, rec: Record, sc: Syscall, p: Process) -> Event:
        a = rec.args
        ret = rec.ret
        domain, stype, proto = a[0] & U32, a[1] & U32, a[2] & U32
        fi = None
        if ret >= 0:
            d = self._desc(rec)
            if d is not None:
                fam, l4 = d[F.D_FAMILY], F.l4proto_of(d[F.D_SOTYPE], d[F.D_PROTO])
                ident: int | None = d[F.D_SK]
            else:
                fam, l4, ident = domain, F.l4proto_of(stype, proto), None
            typ = F.socket_type(fam)
            fi = FdInfo(ret, typ, "", l4proto=l4 if typ in ("ipv4", "ipv6") else None)
            self.fds.table(p.pid).put(ret, fi, ident)
        args = {"fd": ret, "domain": domain, "type": stype, "proto": proto,
                "flags": stype & (O_NONBLOCK | O_CLOEXEC)}
        return self._event("socket", rec, args, p, fi)

    def _on_connect(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        fd = _s32(rec.args[0])
        sa = parse_sockaddr(rec.blobs.get(SOCKADDR))
        tbl = self.fds.table(p.pid)
        d = self._desc(rec)
        fi = self._used_fd(tbl, fd, d, None)
        tup = None
        if (ret == 0 or ret == -EINPROGRESS) and fi is not None and d is not None:
            new = self._connected(fd, fi, d, sa)
            if new is not None:
                tbl.put(fd, new, F.identity(d))
                fi = new
                tup = new.name
        args = {"res": ret, "tuple": tup, "fd": fd, "addr": _sockaddr_text(sa)}
        return self._event("connect", rec, args, p, fi)

    @staticmethod
    def _connected(fd: int, fi: FdInfo, d: tuple[Any, ...], sa: SockAddr | None) -> FdInfo | None:
        """The client side of a connect: local end = client, remote end = server."""
        fam = d[F.D_FAMILY]
        if fam == F.AF_UNIX:
            path = sa.path if sa is not None and sa.family == F.AF_UNIX else ""
            name = F.unix_name(d[F.D_PEER], d[F.D_SK], path)
            return FdInfo(fd, "unix", name, role="client", connected=True, name_changed=name != fi.name)
        e = F.ends(d)
        if e is None:
            return None
        typ, lip, rip, lport, rport = e
        if sa is not None and sa.family in (F.AF_INET, F.AF_INET6) and (not rport or rip in ("0.0.0.0", "::")):
            rip, rport = _unmap(sa.ip), sa.port
        l4 = F.l4proto_of(d[F.D_SOTYPE], d[F.D_PROTO]) or fi.l4proto
        name = F.tuple_name(l4, lip, lport, rip, rport)
        return FdInfo(fd, typ, name, l4proto=l4, role="client", cip=lip, cport=lport, sip=rip, sport=rport,
                      connected=True, name_changed=name != fi.name)

    def _on_accept(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        tbl = self.fds.table(p.pid)
        fi = None
        if ret >= 0:
            d = self._desc(rec)
            if d is not None:
                fam = d[F.D_FAMILY]
                e = F.ends(d)
                if e is not None:
                    typ, lip, rip, lport, rport = e
                    l4 = F.l4proto_of(d[F.D_SOTYPE], d[F.D_PROTO]) or "tcp"
                    fi = FdInfo(ret, typ, F.tuple_name(l4, rip, rport, lip, lport), l4proto=l4, role="server",
                                cip=rip, cport=rport, sip=lip, sport=lport, connected=True)
                elif fam == F.AF_UNIX:
                    lfi = tbl.peek(_s32(rec.args[0]))
                    path = lfi.name if lfi is not None and lfi.type == "unix" and "->" not in lfi.name else ""
                    fi = FdInfo(ret, "unix", F.unix_name(d[F.D_SK], d[F.D_PEER], path), role="server",
                                connected=True)
                else:
                    fi = F.from_desc(ret, d, None)
                tbl.put(ret, fi, F.identity(d))
        args: dict[str, Any] = {"fd": ret, "tuple": fi.name if fi is not None and fi.name else None,
                                "queuepct": 0, "queuelen": 0, "queuemax": 0}
        if sc.event == "accept4":
            args["flags"] = rec.args[3] & U32
        return self._event(sc.event, rec, args, p, fi)

    def _on_bind(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        fd = _s32(rec.args[0])
        sa = parse_sockaddr(rec.blobs.get(SOCKADDR))
        tbl = self.fds.table(p.pid)
        d = self._desc(rec)
        fi = self._used_fd(tbl, fd, d, None)
        if ret == 0 and fi is not None and sa is not None:
            new: FdInfo | None = None
            if sa.family in (F.AF_INET, F.AF_INET6):
                ip = _unmap(sa.ip)
                typ = "ipv4" if sa.family == F.AF_INET or ip != sa.ip else "ipv6"
                name = F.addr_name(ip, sa.port)
                if sa.port > 0:
                    new = FdInfo(fd, typ, name, l4proto=fi.l4proto, role="listen", sip=ip, sport=sa.port,
                                 name_changed=name != fi.name)
                else:
                    new = FdInfo(fd, fi.type, name, l4proto=fi.l4proto, name_changed=name != fi.name)
            elif sa.family == F.AF_UNIX:
                new = FdInfo(fd, "unix", sa.path, name_changed=sa.path != fi.name)
            if new is not None:
                tbl.put(fd, new, tbl.ident(fd))
                fi = new
        return self._event("bind", rec, {"res": ret, "addr": _sockaddr_text(sa), "fd": fd}, p, fi)

    def _on_listen(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        fd = _s32(rec.args[0])
        tbl = self.fds.table(p.pid)
        d = self._desc(rec)
        fi = self._used_fd(tbl, fd, d, None)
        if ret == 0 and d is not None and fi is not None and _is_ip(fi) and fi.role is None:
            e = F.ends(d)
            if e is not None and e[3]:
                typ, lip, _rip, lport, _rport = e
                name = fi.name if fi.name and not fi.name.endswith(":0") else F.addr_name(lip, lport)
                fi = FdInfo(fd, typ, name, l4proto=fi.l4proto, role="listen", sip=lip, sport=lport,
                            name_changed=name != fi.name)
                tbl.put(fd, fi, F.identity(d))
        return self._event("listen", rec, {"res": ret, "fd": fd, "backlog": rec.args[1] & U32}, p, fi)

    @staticmethod
    def _tuple_of(fi: FdInfo | None) -> str | None:
        if fi is None or not fi.name:
            return None
        if fi.type == "unix" or (_is_ip(fi) and fi.role in ("client", "server")):
            return fi.name
        return None

    def _on_send(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        a = rec.args
        fd = _s32(a[0])
        tbl = self.fds.table(p.pid)
        d = self._desc(rec)
        fi = self._used_fd(tbl, fd, d, None)
        raw_sa = rec.blobs.get(SOCKADDR)
        if ret >= 0 and raw_sa is not None and d is not None and _is_ip(fi) and d[F.D_STATE] != F.TCP_ESTABLISHED:
            assert fi is not None
            sa = parse_sockaddr(raw_sa)
            e = F.ends(d)
            if sa is not None and e is not None and sa.family in (F.AF_INET, F.AF_INET6) and fi.l4proto != "tcp":
                typ, lip, _rip, lport, _rport = e
                l4 = fi.l4proto or "udp"
                sip = _unmap(sa.ip)
                name = F.tuple_name(l4, lip, lport, sip, sa.port)
                fi = FdInfo(fd, typ, name, l4proto=l4, role="client", cip=lip, cport=lport, sip=sip,
                            sport=sa.port, connected=False, name_changed=name != fi.name)
                tbl.put(fd, fi, F.identity(d))
        size = a[2] & U32 if sc.event == "sendto" else max(ret, 0)
        data = rec.blobs.get(DATA)
        args = {"res": ret, "data": data, "fd": fd, "size": size, "tuple": self._tuple_of(fi)}
        ev = self._event(sc.event, rec, args, p, fi)
        ev.data = data
        return ev

    def _on_recv(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        a = rec.args
        fd = _s32(a[0])
        fi = self._used_fd(self.fds.table(p.pid), fd, self._desc(rec), None)
        if sc.event == "recvfrom":
            args: dict[str, Any] = {"res": ret, "data": None, "tuple": self._tuple_of(fi), "fd": fd,
                                    "size": a[2] & U32}
        else:
            args = {"res": ret, "size": max(ret, 0), "data": None, "tuple": self._tuple_of(fi),
                    "msgcontrol": None, "fd": fd}
        return self._event(sc.event, rec, args, p, fi)

    def _on_dup(self, rec: Record, sc: Syscall, p: Process) -> Event:
        ret = rec.ret
        a = rec.args
        old = _s32(a[0])
        tbl = self.fds.table(p.pid)
        fi: FdInfo | None
        if ret >= 0:
            src = tbl.peek(old)
            d = self._desc(rec)  # describes the new fd: the same open file
            ident = F.identity(d) if d is not None else tbl.ident(old)
            if src is not None and (d is None or tbl.ident(old) == ident):
                fi = F.with_num(src, ret)
            elif d is not None:
                fi = F.from_desc(ret, d, None)
            else:
                fi = None
            if fi is not None:
                tbl.put(ret, fi, ident)
            else:
                tbl.remove(ret)
        else:
            fi = tbl.peek(old)  # a failed dup describes the old fd
        args: dict[str, Any] = {"res": ret, "oldfd": old}
        if sc.event != "dup":
            args["newfd"] = _s32(a[1])
        if sc.event == "dup3":
            args["flags"] = a[2] & U32
        return self._event(sc.event, rec, args, p, fi)

    def _new_fd(self, rec: Record, p: Process, typ: str, name: str) -> FdInfo | None:
        ret = rec.ret
        if ret < 0:
            return None
        d = self._desc(rec)
        dev = ino = 0
        ident = None
        if d is not None:
            ident = F.identity(d)
            if typ == "memfd":
                dev, ino = d[F.D_DEV], d[F.D_INO]
        fi = FdInfo(ret, typ, name, dev=dev, ino=ino)
        self.fds.table(p.pid).put(ret, fi, ident)
        return fi

    def _on_memfd(self, rec: Record, sc: Syscall, p: Process) -> Event:
        name = _txt(rec.blobs.get(STR0))
        fi = self._new_fd(rec, p, "memfd", name or "")
        return self._event("memfd_create", rec, {"fd": rec.ret, "name": name, "flags": rec.args[1] & U32}, p, fi)

    def _on_bpf(self, rec: Record, sc: Syscall, p: Process) -> Event:
        cmd = rec.args[0] & U32
        fi = self._new_fd(rec, p, "bpf", "") if cmd in BPF_FD_COMMANDS else None
        return self._event("bpf", rec, {"fd": rec.ret, "cmd": cmd}, p, fi)

    def _on_userfaultfd(self, rec: Record, sc: Syscall, p: Process) -> Event:
        fi = self._new_fd(rec, p, "userfaultfd", "")
        return self._event("userfaultfd", rec, {"res": rec.ret, "flags": rec.args[0] & U32}, p, fi)

    def _on_chdir(self, rec: Record, sc: Syscall, p: Process) -> Event:
        cwd = _txt(rec.blobs.get(CWD))
        if rec.ret == 0 and cwd is not None:
            p = self._set_cwd(p, cwd_text(cwd))
        path = _txt(rec.blobs.get(PATH0))
        if path is None and rec.ret == 0:
            path = cwd
        return self._event("chdir", rec, {"res": rec.ret, "path": path}, p)

    def _on_fchdir(self, rec: Record, sc: Syscall, p: Process) -> Event:
        fd = _s32(rec.args[0])
        tbl = self.fds.table(p.pid)
        fi = self._used_fd(tbl, fd, self._desc(rec), _txt(rec.blobs.get(FDPATH)))
        cwd = _txt(rec.blobs.get(CWD))
        if rec.ret == 0 and cwd is not None:
            p = self._set_cwd(p, cwd_text(cwd))
        return self._event("fchdir", rec, {"res": rec.ret, "fd": fd}, p, fi)

    def _fd_arg(self, rec: Record, p: Process, fd: int) -> FdInfo | None:
        if fd == AT_FDCWD:
            return None
        return self._used_fd(self.fds.table(p.pid), fd, self._desc(rec), _txt(rec.blobs.get(FDPATH)))

    def _all_caps(self, p: Process) -> Process:
        return self._replace(p, cap_inheritable=ALL_CAPS, cap_permitted=ALL_CAPS, cap_effective=ALL_CAPS)

    def _on_setns(self, rec: Record, sc: Syscall, p: Process) -> Event:
        fd = _s32(rec.args[0])
        nstype = rec.args[1] & U32
        fi = self._fd_arg(rec, p, fd)
        if rec.ret == 0 and nstype & CLONE_NEWUSER:
            p = self._all_caps(p)
        return self._event("setns", rec, {"res": rec.ret, "fd": fd, "nstype": nstype}, p, fi)

    def _on_unshare(self, rec: Record, sc: Syscall, p: Process) -> Event:
        flags = rec.args[0] & U32
        if rec.ret == 0 and flags & CLONE_NEWUSER:
            p = self._all_caps(p)
        return self._event("unshare", rec, {"res": rec.ret, "flags": flags}, p)

    def _on_fchmod(self, rec: Record, sc: Syscall, p: Process) -> Event:
        fd = _s32(rec.args[0])
        fi = self._fd_arg(rec, p, fd)
        return self._event("fchmod", rec, {"res": rec.ret, "fd": fd, "mode": rec.args[1] & 0o7777}, p, fi)

    def _on_finit_module(self, rec: Record, sc: Syscall, p: Process) -> Event:
        fd = _s32(rec.args[0])
        fi = self._fd_arg(rec, p, fd)
        args = {"res": rec.ret, "fd": fd, "uargs": _txt(rec.blobs.get(STR0)), "flags": rec.args[2] & U32}
        return self._event("finit_module", rec, args, p, fi)

    def _on_init_module(self, rec: Record, sc: Syscall, p: Process) -> Event:
        args = {"res": rec.ret, "img": None, "length": rec.args[1], "uargs": _txt(rec.blobs.get(STR0))}
        return self._event("init_module", rec, args, p)

    def _on_at_fd(self, rec: Record, sc: Syscall, p: Process) -> Event:
        """*at calls whose fd fields describe their dirfd (fchmodat, unlinkat, mkdirat, symlinkat)."""
        a = rec.args
        blobs = rec.blobs
        path = _txt(blobs.get(PATH0))
        etype = sc.event
        if etype == "symlinkat":
            dirfd = _s32(a[1])
            args: dict[str, Any] = {"res": rec.ret, "target": _txt(blobs.get(STR0)), "linkdirfd": dirfd,
                                    "linkpath": path}
        else:
            dirfd = _s32(a[0])
            if etype == "fchmodat":
                args = {"res": rec.ret, "dirfd": dirfd, "filename": path, "mode": a[2] & 0o7777}
            elif etype == "unlinkat":
                args = {"res": rec.ret, "dirfd": dirfd, "name": path, "flags": a[2] & U32}
            else:  # mkdirat
                args = {"res": rec.ret, "dirfd": dirfd, "path": path, "mode": a[2] & U32}
        p = self._cwd_hint(p, rec, dirfd)
        return self._event(etype, rec, args, p, self._fd_arg(rec, p, dirfd))

    def _on_path(self, rec: Record, sc: Syscall, p: Process) -> Event:
        """Path calls without fd fields."""
        a = rec.args
        blobs = rec.blobs
        path = _txt(blobs.get(PATH0))
        etype = sc.event
        dirfd = AT_FDCWD
        args: dict[str, Any]
        if etype in ("mkdir", "chmod"):
            args = {"res": rec.ret, "filename" if etype == "chmod" else "path": path,
                    "mode": a[1] & (0o7777 if etype == "chmod" else U32)}
        elif etype in ("rmdir", "unlink"):
            args = {"res": rec.ret, "path": path}
        elif etype in ("rename", "link"):
            args = {"res": rec.ret, "oldpath": path, "newpath": _txt(blobs.get(PATH1))}
        elif etype in ("renameat", "renameat2", "linkat"):
            dirfd = _s32(a[0])
            old_key, new_key = ("olddir", "newdir") if etype == "linkat" else ("olddirfd", "newdirfd")
            args = {"res": rec.ret, old_key: dirfd, "oldpath": path, new_key: _s32(a[2]),
                    "newpath": _txt(blobs.get(PATH1))}
            if etype != "renameat":
                args["flags"] = a[4] & U32
        elif etype == "symlink":
            args = {"res": rec.ret, "target": _txt(blobs.get(STR0)), "linkpath": path}
        elif etype == "mount":
            args = {"res": rec.ret, "dev": _txt(blobs.get(STR0)), "dir": path, "type": _txt(blobs.get(STR1)),
                    "flags": a[3] & U32}
        else:  # umount2
            args = {"res": rec.ret, "name": path, "flags": a[1] & U32}
        p = self._cwd_hint(p, rec, dirfd)
        return self._event(etype, rec, args, p)

    def _on_ids(self, rec: Record, sc: Syscall, p: Process) -> Event:
        # The header already carries the credentials after the call (applied by _current).
        a = rec.args
        etype = sc.event
        if etype in ("setuid", "setgid"):
            args: dict[str, Any] = {"res": rec.ret, "uid" if etype == "setuid" else "gid": a[0] & U32}
        elif etype in ("setresuid", "setresgid"):
            k = "uid" if etype == "setresuid" else "gid"
            args = {"res": rec.ret, "r" + k: a[0] & U32, "e" + k: a[1] & U32, "s" + k: a[2] & U32}
        else:
            k = "uid" if etype == "setreuid" else "gid"
            args = {"res": rec.ret, "r" + k: a[0] & U32, "e" + k: a[1] & U32}
        return self._event(etype, rec, args, p)

    def _on_ptrace(self, rec: Record, sc: Syscall, p: Process) -> Event:
        a = rec.args
        args = {"res": rec.ret, "request": a[0] & U32, "pid": _s32(a[1]), "addr": a[2], "data": a[3]}
        evt = self._event("ptrace", rec, args, p)
        evt.target = self.procs.get(args["pid"])
        return evt

    def _on_kill(self, rec: Record, sc: Syscall, p: Process) -> Event:
        evt = self._event("kill", rec, {"res": rec.ret, "pid": _s32(rec.args[0]), "sig": rec.args[1] & U32}, p)
        evt.target = self.procs.get(evt.args["pid"])
        return evt

    def _on_capset(self, rec: Record, sc: Syscall, p: Process) -> Event:
        # The record does not carry the new sets: report the ones known.
        args = {"res": rec.ret, "cap_inheritable": p.cap_inheritable, "cap_permitted": p.cap_permitted,
                "cap_effective": p.cap_effective}
        return self._event("capset", rec, args, p)

    def _on_prctl(self, rec: Record, sc: Syscall, p: Process) -> Event:
        a = rec.args
        args = {"res": rec.ret, "option": a[0] & U32, "arg2_str": _txt(rec.blobs.get(STR0)), "arg2_int": a[1]}
        return self._event("prctl", rec, args, p)
