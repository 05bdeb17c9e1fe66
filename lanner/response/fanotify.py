"""fanotify permission events: deny exec of a set of files and opens below a set of directories
with EPERM, before the syscall returns.

``FanotifyGuard`` owns a responder thread that answers every permission event of its groups and a
watcher thread that keeps protected subtrees marked as directories appear. Its policy is a
``FanotifyTable`` of ``ExecDenyEntry`` and ``OpenDenyEntry`` entries; ``apply()`` replaces it atomically.

**Exec deny** puts a ``FAN_OPEN_EXEC_PERM`` inode mark on each file and decides by the event
file's (dev, ino): a symlink, a hard link, a relative path, ``execveat`` and a container's view of
the file (``/proc/<pid>/root/<path>``, resolved inside that root) reach the same inode.

**Open deny** puts ``FAN_OPEN_PERM | FAN_EVENT_ON_CHILD`` (``| FAN_ONDIR`` for read-deny, so
listing a directory is a read) inode marks on every directory of each protected subtree. fanotify
does not report an open's flags, so they are read from the blocked thread: the group reports
thread ids (``FAN_REPORT_TID``) and ``/proc/<tid>/syscall`` names the syscall and its arguments
(``_fanotify_sys.open_access``). A file is below a protected root when its real path (readlink of
the event fd) is below the root's real path as the guard resolved it when the policy was applied,
on a device of that subtree — so ``..``, symlinks and relative paths change nothing. An event from
a marked directory whose path is not below any root (a bind mount of the directory, a directory
moved out of the tree, another mount namespace's view) is judged by the roots on the file's device.

New directories are marked by a second, notification group (``FAN_REPORT_DFID_NAME``) watching
``FAN_CREATE | FAN_MOVED_TO | FAN_ONDIR`` on every protected directory; a new directory's whole
subtree is walked and marked. **Window:** between a directory's creation and the watcher's mark
(typically well under a millisecond, longer under load) an open of a file in it is not seen — a
process that creates a directory and immediately opens a new file in it can win that race. Only
opens are guarded: unlink, rename, mkdir, truncate(2) by path, chmod and link(2) are not opens; a
hard link to a protected file made outside the tree is opened through an unmarked directory; and
``O_CREAT`` has created the (empty) file when the open is denied.

**Safety:** the guard's own process, pid 1, any tgid in ``protected_tgids``, kernel threads and
any process whose ``/proc/<pid>/exe`` is one of ``protected_files`` are never denied. The
responder always answers: an internal error allows (and is counted), and it touches only procfs,
a stat in the cgroup2 mount and the event fd. Policy directories on procfs are refused (the
responder reads procfs itself). The responder is a Python thread: while another thread of the
process holds the GIL, an answer can wait for the interpreter's switch interval (5 ms by default).
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import select
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from lanner.response import _fanotify_sys as sys_
from lanner.response.decisions import Decision
from lanner.response.safety import kernel_dev
from lanner.state.cgroups import find_cgroup2_mount

__all__ = ["DEFAULT_MAX_DIRS", "ExecDenyEntry", "FanotifyGuard", "FanotifyTable", "OpenDenyEntry"]

DEFAULT_MAX_DIRS: Final = 20_000
"""Directories one policy may mark (each is an inode mark in two groups)."""

_PERM_INIT: Final = (sys_.FAN_CLASS_CONTENT | sys_.FAN_CLOEXEC | sys_.FAN_NONBLOCK | sys_.FAN_REPORT_TID
                     | sys_.FAN_UNLIMITED_QUEUE | sys_.FAN_UNLIMITED_MARKS)
_NOTIFY_INIT: Final = (sys_.FAN_CLASS_NOTIF | sys_.FAN_CLOEXEC | sys_.FAN_NONBLOCK | sys_.FAN_REPORT_DFID_NAME
                       | sys_.FAN_UNLIMITED_QUEUE | sys_.FAN_UNLIMITED_MARKS)
# Event fds are opened by the kernel in our process: never inherited, never blocking.
_EVENT_F_FLAGS: Final = os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC
_NOTIFY_MASK: Final = sys_.FAN_CREATE | sys_.FAN_MOVED_TO | sys_.FAN_ONDIR
# A read of at most this many bytes holds at most ~170 event fds open at once.
_READ_SIZE: Final = 4096
_BENEATH: Final = sys_.RESOLVE_BENEATH | sys_.RESOLVE_NO_SYMLINKS
_PROC_ROOT: Final = re.compile(r"^/proc/(\d+)/root(/.*)?$")
_CGROUP_TTL_NS: Final = 1_000_000_000
_CGROUP_CACHE_MAX: Final = 4096
_DELETED: Final = " (deleted)"


# --- the policy ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ExecDenyEntry:
    """Deny execve/execveat of these files."""

    rule_id: int
    enforce: bool
    """False: monitor mode — allow, but report the decision with enforced=False."""
    paths: tuple[str, ...]
    """Host paths, or ``/proc/<pid>/root/<path>`` for a file as a container sees it."""
    scope: frozenset[int] | None = None
    """cgroup2 ids the entry applies to (a container's cgroup); None = every process."""


@dataclass(frozen=True, slots=True)
class OpenDenyEntry:
    """Deny opens for write and/or read of files below these directories (and of the directories
    themselves, for read)."""

    rule_id: int
    enforce: bool
    directories: tuple[str, ...]
    """Host paths, or ``/proc/<pid>/root/<path>`` for a directory as a container sees it. The
    guard keeps an O_PATH fd of each (the anchor for new sub-directories) until the next apply()."""
    write: bool = True
    """O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, creat(2)."""
    read: bool = False
    """O_RDONLY, O_RDWR (an execve's open of the program or its interpreter is a read)."""
    scope: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class FanotifyTable:
    """A whole fanotify policy (any sequence is kept as a tuple)."""

    exec_deny: Sequence[ExecDenyEntry] = ()
    open_deny: Sequence[OpenDenyEntry] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exec_deny", tuple(self.exec_deny))
        object.__setattr__(self, "open_deny", tuple(self.open_deny))


# --- the compiled policy ---------------------------------------------------------------------------------

@dataclass(eq=False, slots=True)
class _Root:
    """One protected directory of one OpenDenyEntry, as resolved at apply() time."""

    entry: OpenDenyEntry
    path: str
    """The directory's real path as this process sees it (readlink of its fd)."""
    prefix: str
    fd: int
    """O_PATH fd of the directory: the anchor new sub-directories are opened beneath."""
    mask: int
    devs: set[int] = field(default_factory=set)
    """st_dev of every marked directory of the subtree (mount points below it included)."""


@dataclass(eq=False, slots=True)
class _Generation:
    """What one apply() built: its two groups, the decision tables and the mark bookkeeping."""

    perm_fd: int
    notify_fd: int
    exec_by_inode: dict[tuple[int, int], list[ExecDenyEntry]] = field(default_factory=dict)
    roots: list[_Root] = field(default_factory=list)
    dirs: dict[tuple[int, int], int] = field(default_factory=dict)
    """(dev, ino) of each marked directory -> the mask it carries."""
    handles: dict[bytes, list[tuple[_Root, str, tuple[int, int]]]] = field(default_factory=dict)
    """fanotify's directory id -> (root, path relative to it, (dev, ino)) for new-directory events."""
    max_dirs: int = DEFAULT_MAX_DIRS

    def match(self, path: str, dev: int, alias_ok: bool) -> list[_Root]:
        """The roots (enforcing first) that cover a file, by its real path and device."""
        if path.endswith(_DELETED):  # O_TMPFILE, or unlinked meanwhile: "<dir>/#<ino> (deleted)"
            path = path[:-len(_DELETED)]
        hits = [r for r in self.roots if dev in r.devs and (path == r.path or path.startswith(r.prefix))]
        if not hits and alias_ok:
            hits = [r for r in self.roots if dev in r.devs]
        return hits


def _enforce_first(entry: ExecDenyEntry | OpenDenyEntry) -> bool:
    return not entry.enforce


# --- the fd loops --------------------------------------------------------------------------------------

class _FdLoop:
    """A thread that reads a changing set of fanotify fds and hands each read to ``handle``. Only
    this thread closes those fds, so a number it reads from is never a reused one."""

    def __init__(self, name: str, handle: Callable[[int, bytes], None]) -> None:
        self._handle = handle
        self._lock = threading.Lock()
        self._fds: set[int] = set()
        self._retire: list[tuple[int, threading.Event]] = []
        self._stop = False
        self.errors = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, fd: int) -> None:
        with self._lock:
            self._fds.add(fd)
        self._wake()

    def retire(self, fd: int, wait_s: float = 0.0) -> None:
        """Stop reading ``fd`` and close it (a permission group's close allows its pending events
        and drops its marks)."""
        done = threading.Event()
        with self._lock:
            self._retire.append((fd, done))
        self._wake()
        if wait_s > 0:
            done.wait(wait_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._stop = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            # Stuck (a bug): closing the groups from here frees every process waiting on them,
            # which matters more than the thread's later use of a stale fd number.
            self._close_groups()
            return
        with contextlib.suppress(OSError):
            os.close(self._wake_r)
        with contextlib.suppress(OSError):
            os.close(self._wake_w)

    def _close_groups(self) -> None:
        """Close every group this loop serves: the kernel allows whatever waits on them."""
        with self._lock:
            fds, self._fds = self._fds, set()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe already wakes the loop
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        watched: set[int] = set()
        while True:
            with self._lock:
                retire, self._retire = self._retire, []
                stop = self._stop
                for fd, _ in retire:
                    self._fds.discard(fd)
                wanted = set() if stop else set(self._fds)
            for fd in watched - wanted:
                poller.unregister(fd)
            for fd in wanted - watched:
                poller.register(fd, select.POLLIN)
            watched = wanted
            for fd, done in retire:
                with contextlib.suppress(OSError):
                    os.close(fd)
                done.set()
            if stop:
                self._close_groups()
                return
            for fd, _ in poller.poll(1000):
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    continue
                if fd not in watched:
                    continue
                while True:
                    try:
                        buf = os.read(fd, _READ_SIZE)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    if not buf:
                        break
                    try:
                        self._handle(fd, buf)
                    except Exception:  # the handlers count their own errors; the loop must live on
                        self.errors += 1


# --- the guard -----------------------------------------------------------------------------------------

class FanotifyGuard:
    """fanotify permission-event enforcement: see the module docstring.

    ``protected_tgids``: processes never denied, besides this process and pid 1.
    ``protected_files``: programs whose processes are never denied (matched by (dev, ino), dev in the
    kernel's encoding as lanner.response.safety.file_key gives it, of
    ``/proc/<pid>/exe``), as paths or (dev, ino) pairs (a mapping's keys).
    ``max_dirs``: the most directories one policy may mark.
    ``max_queue``: decisions kept for ``poll()``; more are dropped and counted.
    """

    def __init__(self, protected_tgids: Iterable[int] = (),
                 protected_files: Iterable[str | tuple[int, int]] = (), *, max_dirs: int = DEFAULT_MAX_DIRS,
                 max_queue: int = 10_000) -> None:
        self.protected_tgids: frozenset[int] = frozenset({1, os.getpid(), *protected_tgids})
        inodes: set[tuple[int, int]] = set()
        for path in protected_files:
            if isinstance(path, tuple):
                inodes.add(path)
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise ValueError(f"protected file {path!r} does not exist") from None
            inodes.add((kernel_dev(st.st_dev), st.st_ino))
        self.protected_inodes: frozenset[tuple[int, int]] = frozenset(inodes)
        self.max_dirs = max_dirs
        self._decisions: queue.Queue[Decision] = queue.Queue(max_queue)
        self._gen: _Generation | None = None
        self._apply_lock = threading.Lock()
        self._responder: _FdLoop | None = None
        self._watcher: _FdLoop | None = None
        self._cg_mount = find_cgroup2_mount()
        self._cg_cache: dict[str, tuple[int, int]] = {}
        """cgroup path -> (id, when cached in monotonic ns)."""
        self._event_cgroup: tuple[int, int] | None = None
        self._counts: dict[str, int] = dict.fromkeys(
            ("events", "exec_events", "open_events", "denied", "monitored", "exempt", "errors",
             "unknown_access", "dropped", "new_dirs", "rewalks", "dirs_over_cap", "watch_errors", "unwatched_dirs"),
            0)

    # --- API ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the responder and the watcher (apply() starts them when needed)."""
        if self._responder is None:
            self._responder = _FdLoop("lanner-fanotify", self._on_perm)
            self._watcher = _FdLoop("lanner-fanotify-dirs", self._on_notify)

    def apply(self, table: FanotifyTable) -> None:
        """Install ``table`` in place of the current policy, atomically: the new groups and marks
        are made first (their events judged by the old table meanwhile), then the table is swapped,
        then the old groups are closed. On any error the old policy stays in force.
        Raises ValueError for a missing path, a file where a directory is needed (or the
        reverse), a directory on procfs, or more than ``max_dirs`` directories."""
        for entry in table.open_deny:
            if not (entry.read or entry.write):
                raise ValueError(f"rule {entry.rule_id}: an open deny needs read or write")
            if isinstance(entry.directories, str):
                raise ValueError(f"rule {entry.rule_id}: directories must be a sequence of paths, not one string")
        for xentry in table.exec_deny:
            if isinstance(xentry.paths, str):
                raise ValueError(f"rule {xentry.rule_id}: paths must be a sequence of paths, not one string")
        with self._apply_lock:
            self.start()
            assert self._responder is not None and self._watcher is not None
            perm_fd = sys_.fanotify_init(_PERM_INIT, _EVENT_F_FLAGS)
            # Registered before the first mark: an event is answered from the moment it can exist.
            self._responder.add(perm_fd)
            notify_fd = -1
            gen = _Generation(perm_fd, notify_fd, max_dirs=self.max_dirs)
            try:
                if table.open_deny:
                    gen.notify_fd = notify_fd = sys_.fanotify_init(_NOTIFY_INIT, os.O_RDONLY | os.O_CLOEXEC)
                    self._watcher.add(notify_fd)
                self._build(gen, table)
            except BaseException:
                self._responder.retire(perm_fd)
                if notify_fd >= 0:
                    self._watcher.retire(notify_fd)
                _close_roots(gen)
                raise
            old, self._gen = self._gen, gen
            if old is not None:
                self._retire(old)

    def poll(self, timeout_s: float = 0.0) -> list[Decision]:
        """The decisions made since the last poll; waits up to ``timeout_s`` for the first."""
        out: list[Decision] = []
        try:
            out.append(self._decisions.get(timeout=timeout_s) if timeout_s > 0 else self._decisions.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._decisions.get_nowait())
            except queue.Empty:
                return out

    def stats(self) -> dict[str, int]:
        gen = self._gen
        loop_errors = sum(loop.errors for loop in (self._responder, self._watcher) if loop is not None)
        return {**self._counts, "loop_errors": loop_errors,
                "dirs": len(gen.dirs) if gen else 0,
                "files": len(gen.exec_by_inode) if gen else 0}

    def close(self) -> None:
        """Close the groups (pending events are allowed, every mark goes) and stop the threads."""
        with self._apply_lock:
            gen, self._gen = self._gen, None
            loops = (self._watcher, self._responder)
            self._responder = self._watcher = None
        # Outside the lock: the watcher may be waiting for it. Each loop closes its fds as it stops.
        for loop in loops:
            if loop is not None:
                loop.stop()
        if gen is not None:
            _close_roots(gen)

    def __enter__(self) -> FanotifyGuard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- building a generation -------------------------------------------------------------------

    def _retire(self, gen: _Generation) -> None:
        assert self._responder is not None and self._watcher is not None
        self._responder.retire(gen.perm_fd, wait_s=2.0)
        if gen.notify_fd >= 0:
            # No wait: the watcher may be waiting for the apply lock we hold.
            self._watcher.retire(gen.notify_fd)
        _close_roots(gen)

    def _build(self, gen: _Generation, table: FanotifyTable) -> None:
        for xentry in sorted(table.exec_deny, key=_enforce_first):
            for path in xentry.paths:
                fd = _resolve(path, directory=False)
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        raise ValueError(f"rule {xentry.rule_id}: {path!r} is not a regular file")
                    sys_.fanotify_mark(gen.perm_fd, sys_.FAN_MARK_ADD, sys_.FAN_OPEN_EXEC_PERM, sys_.AT_FDCWD,
                                       f"/proc/self/fd/{fd}")
                finally:
                    os.close(fd)
                entries = gen.exec_by_inode.setdefault((st.st_dev, st.st_ino), [])
                if xentry not in entries:
                    entries.append(xentry)
        for oentry in sorted(table.open_deny, key=_enforce_first):
            mask = sys_.FAN_OPEN_PERM | sys_.FAN_EVENT_ON_CHILD | (sys_.FAN_ONDIR if oentry.read else 0)
            for path in oentry.directories:
                fd = _resolve(path, directory=True)
                try:
                    real = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    os.close(fd)
                    raise
                root = _Root(oentry, real, real if real.endswith("/") else real + "/", fd, mask)
                gen.roots.append(root)  # before the walk: a failure closes its fd with the others
                self._walk(gen, root, root.fd, "", strict=True)
        # Longest root first among equals, so the most specific entry reports.
        gen.roots.sort(key=lambda r: (not r.entry.enforce, -len(r.path)))

    def _walk(self, gen: _Generation, root: _Root, start_fd: int, start_rel: str, *, strict: bool) -> None:
        """Mark every directory from ``start_fd`` (``start_rel`` below the root) down. Each
        directory is marked before it is listed, so a sub-directory created after the listing
        raises a create event. ``strict``: raise ValueError past ``max_dirs`` (apply); else count
        and stop (the watcher)."""
        stack: list[str] = [start_rel]
        first = True
        while stack:
            rel = stack.pop()
            if first:
                fd = os.open(f"/proc/self/fd/{start_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                first = False
            else:
                try:
                    fd = sys_.openat2(root.fd, rel, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, _BENEATH)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EACCES):
                        continue  # gone or replaced meanwhile
                    raise
            try:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                if st.st_dev not in root.devs and sys_.fs_type(fd) == sys_.PROC_SUPER_MAGIC:
                    if strict and not rel:
                        raise ValueError(f"rule {root.entry.rule_id}: {root.path!r} is on procfs")
                    continue  # the responder reads procfs: marking it could make it wait for itself
                have = gen.dirs.get(key)
                if have is None and len(gen.dirs) >= gen.max_dirs:
                    if strict:
                        raise ValueError(f"rule {root.entry.rule_id}: more than {gen.max_dirs} directories below "
                                         f"{root.path!r}; protect a narrower directory or raise max_dirs")
                    self._counts["dirs_over_cap"] += 1
                    return
                if have is None or have | root.mask != have:
                    sys_.fanotify_mark(gen.perm_fd, sys_.FAN_MARK_ADD, root.mask, fd)
                    if have is None:
                        try:
                            sys_.fanotify_mark(gen.notify_fd, sys_.FAN_MARK_ADD, _NOTIFY_MASK, fd)
                        except OSError as exc:
                            # A filesystem without file handles cannot report names: its existing
                            # directories are guarded, new ones are not (counted).
                            if exc.errno not in (errno.EOPNOTSUPP, errno.ENODEV, errno.EXDEV):
                                raise
                            self._counts["unwatched_dirs"] += 1
                    gen.dirs[key] = (have or 0) | root.mask
                root.devs.add(st.st_dev)
                hkey = sys_.handle_key(fd)
                if hkey is not None:
                    refs = gen.handles.setdefault(hkey, [])
                    ref = (root, rel, key)
                    refs[:] = [r for r in refs if r[0] is not root]
                    refs.append(ref)
                dir_mount = sys_.mount_id(fd)
                with os.scandir(fd) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(f"{rel}/{e.name}" if rel else e.name)
                        elif e.is_file(follow_symlinks=False):
                            self._mark_mounted_file(gen, root, fd, e, dir_mount)
            finally:
                os.close(fd)

    @staticmethod
    def _mark_mounted_file(gen: _Generation, root: _Root, dir_fd: int, e: os.DirEntry[str], dir_mount: int) -> None:
        """A file mounted over an entry of the directory (a runtime's /etc/hosts, /etc/resolv.conf): its
        parent is elsewhere, so the directory's mark does not see its opens; mark the file itself."""
        if dir_mount < 0 or sys_.mount_id(dir_fd, e.name) in (dir_mount, -1):
            return
        try:
            est = e.stat(follow_symlinks=False)
        except OSError:
            return
        key = (est.st_dev, est.st_ino)
        mask = root.mask & ~(sys_.FAN_EVENT_ON_CHILD | sys_.FAN_ONDIR)
        have = gen.dirs.get(key)
        if have is None or have | mask != have:
            sys_.fanotify_mark(gen.perm_fd, sys_.FAN_MARK_ADD | sys_.FAN_MARK_DONT_FOLLOW, mask, dir_fd, e.name)
            gen.dirs[key] = (have or 0) | mask
        root.devs.add(est.st_dev)

    # --- the watcher -------------------------------------------------------------------------------

    def _on_notify(self, nfd: int, buf: bytes) -> None:
        with self._apply_lock:
            gen = self._gen
            if gen is None or gen.notify_fd != nfd:
                return  # a retired generation: the current one's walk saw this directory
            off = 0
            while off + sys_.METADATA.size <= len(buf):
                ev_len, _, _, mlen, mask, fd, _ = sys_.METADATA.unpack_from(buf, off)
                if ev_len < sys_.METADATA.size:
                    return
                try:
                    if fd >= 0:
                        os.close(fd)
                    if mask & sys_.FAN_ONDIR:
                        rec = sys_.dfid_name(buf, off + mlen, off + ev_len)
                        if rec is not None:
                            self._new_dir(gen, *rec)
                except Exception:
                    self._counts["watch_errors"] += 1
                off += ev_len

    def _new_dir(self, gen: _Generation, parent: bytes, name: str) -> None:
        for root, rel, key in list(gen.handles.get(parent, ())):
            child = f"{rel}/{name}" if rel else name
            try:
                pfd = sys_.openat2(root.fd, rel or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, _BENEATH)
            except OSError:
                pfd = -1
            try:
                st = os.fstat(pfd) if pfd >= 0 else None
                if st is None or (st.st_dev, st.st_ino) != key:
                    # The parent was renamed or replaced since it was walked: walk the root again
                    # (marks are idempotent).
                    self._counts["rewalks"] += 1
                    self._walk(gen, root, root.fd, "", strict=False)
                    continue
                try:
                    cfd = sys_.openat2(pfd, name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, _BENEATH)
                except OSError:
                    continue  # gone again, or not a directory (a moved-in symlink)
                try:
                    self._counts["new_dirs"] += 1
                    self._walk(gen, root, cfd, child, strict=False)
                finally:
                    os.close(cfd)
            finally:
                if pfd >= 0:
                    os.close(pfd)

    # --- the responder -----------------------------------------------------------------------------

    def _on_perm(self, gfd: int, buf: bytes) -> None:
        off = 0
        while off + sys_.METADATA.size <= len(buf):
            ev_len, _, _, _, mask, fd, tid = sys_.METADATA.unpack_from(buf, off)
            if ev_len < sys_.METADATA.size:
                return
            off += ev_len
            if fd < 0:
                continue  # no file, nothing to answer (queue overflow cannot happen: unlimited queue)
            verdict = sys_.FAN_ALLOW
            try:
                self._counts["events"] += 1
                verdict = self._decide(gfd, mask, fd, tid)
            except Exception:
                self._counts["errors"] += 1
            finally:
                # ENOENT: the process was killed while waiting, nothing waits for the answer
                with contextlib.suppress(OSError):
                    os.write(gfd, sys_.RESPONSE.pack(fd, verdict))
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _decide(self, gfd: int, mask: int, fd: int, tid: int) -> int:
        self._event_cgroup = None
        gen = self._gen
        if gen is None:
            return sys_.FAN_ALLOW
        if mask & sys_.FAN_OPEN_EXEC_PERM:
            self._counts["exec_events"] += 1
            st = os.fstat(fd)
            entries = gen.exec_by_inode.get((st.st_dev, st.st_ino))
            if entries:
                for entry in entries:
                    if entry.scope is None or self._cgroup_id(tid) in entry.scope:
                        return self._verdict("exec", entry, fd, tid, st, None, 0)
            if not mask & sys_.FAN_OPEN_PERM:
                return sys_.FAN_ALLOW
        if not mask & sys_.FAN_OPEN_PERM or not gen.roots:
            return sys_.FAN_ALLOW
        self._counts["open_events"] += 1
        path = os.readlink(f"/proc/self/fd/{fd}")
        st = os.fstat(fd)
        roots = gen.match(path, st.st_dev, alias_ok=gfd == gen.perm_fd)
        access = 0
        flags = 0
        for root in roots:
            oentry = root.entry
            if oentry.scope is not None and self._cgroup_id(tid) not in oentry.scope:
                continue
            if not (oentry.read and oentry.write):
                if not access:  # only now: the syscall read is the costly part
                    access, flags = sys_.open_access(tid)
                    if access == sys_.ACCESS_UNKNOWN:
                        self._counts["unknown_access"] += 1
                wanted = (sys_.ACCESS_READ if oentry.read else 0) | (sys_.ACCESS_WRITE if oentry.write else 0)
                if not access & wanted:
                    continue
            return self._verdict("open", oentry, fd, tid, st, path, flags)
        return sys_.FAN_ALLOW

    def _verdict(self, kind: str, entry: ExecDenyEntry | OpenDenyEntry, fd: int, tid: int, st: os.stat_result,
                 path: str | None, flags: int) -> int:
        """A rule matched: exempt the protected, report, deny if enforcing."""
        tgid, comm, kthread = _task_status(tid)
        if tgid == 0:
            return sys_.FAN_ALLOW  # gone: nobody waits for the answer
        if kthread or tgid in self.protected_tgids or self._protected_exe(tgid):
            self._counts["exempt"] += 1
            return sys_.FAN_ALLOW
        if path is None:
            path = os.readlink(f"/proc/self/fd/{fd}")
        decision = Decision(
            mechanism="fanotify", kind=kind, rule_id=entry.rule_id, enforced=entry.enforce, ts_ns=time.time_ns(),
            tid=tid, tgid=tgid, cgroup_id=self._cgroup_id(tid), path=path, dev=kernel_dev(st.st_dev),
            ino=st.st_ino, flags=flags, comm=comm)
        try:
            self._decisions.put_nowait(decision)
        except queue.Full:
            self._counts["dropped"] += 1
        if entry.enforce:
            self._counts["denied"] += 1
            return sys_.FAN_DENY
        self._counts["monitored"] += 1
        return sys_.FAN_ALLOW

    def _protected_exe(self, tgid: int) -> bool:
        if not self.protected_inodes:
            return False
        try:
            st = os.stat(f"/proc/{tgid}/exe")
        except OSError:
            return False
        return (kernel_dev(st.st_dev), st.st_ino) in self.protected_inodes

    def _cgroup_id(self, tid: int) -> int:
        """The cgroup2 id (inode of its directory) of a thread; 0 when unknown. Read once per event
        (a scope check and the decision both want it)."""
        memo = self._event_cgroup
        if memo is not None and memo[0] == tid:
            return memo[1]
        cid = self._read_cgroup_id(tid)
        self._event_cgroup = (tid, cid)
        return cid

    def _read_cgroup_id(self, tid: int) -> int:
        if self._cg_mount is None:
            return 0
        try:
            with open(f"/proc/{tid}/cgroup", "rb", buffering=0) as f:
                raw = f.read(8192)
        except OSError:
            return 0
        start = raw.find(b"0::")
        if start < 0:
            return 0
        if start > 0 and raw[start - 1:start] != b"\n":
            start = raw.find(b"\n0::")
            if start < 0:
                return 0
            start += 1
        end = raw.find(b"\n", start)
        cpath = raw[start + 3:end if end >= 0 else len(raw)].decode("utf-8", "replace")
        now = time.monotonic_ns()
        hit = self._cg_cache.get(cpath)
        # A short lifetime: a cgroup removed and made again under the same path has a new id.
        if hit is not None and now - hit[1] < _CGROUP_TTL_NS:
            return hit[0]
        try:
            cid = os.stat(self._cg_mount + cpath if cpath != "/" else self._cg_mount).st_ino
        except OSError:
            return 0
        if len(self._cg_cache) >= _CGROUP_CACHE_MAX:
            self._cg_cache.clear()
        self._cg_cache[cpath] = (cid, now)
        return cid


def _resolve(path: str, *, directory: bool) -> int:
    """An O_PATH fd of a policy path. ``/proc/<pid>/root/<p>`` is resolved inside that root
    (RESOLVE_IN_ROOT): the container's own absolute symlinks cannot lead outside it."""
    flags = os.O_PATH | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    m = _PROC_ROOT.match(path)
    try:
        if m is None:
            return os.open(os.path.abspath(path), flags)
        base = os.open(f"/proc/{m.group(1)}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return sys_.openat2(base, m.group(2) or "/", flags, sys_.RESOLVE_IN_ROOT | sys_.RESOLVE_NO_MAGICLINKS)
        finally:
            os.close(base)
    except FileNotFoundError:
        raise ValueError(f"{path!r} does not exist") from None
    except NotADirectoryError:
        raise ValueError(f"{path!r} is not a directory") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise ValueError(f"{path!r} is not a directory") from None
        if exc.errno == errno.ENOENT:
            raise ValueError(f"{path!r} does not exist") from None
        raise


def _task_status(tid: int) -> tuple[int, str, bool]:
    """(tgid, comm, kernel thread) from /proc/<tid>/status; tgid 0 when the thread is gone."""
    try:
        with open(f"/proc/{tid}/status", "rb", buffering=0) as f:
            raw = f.read(4096)
    except OSError:
        return 0, "", False
    # find() over the few fields needed: a line-by-line parse costs more than the read itself
    name = raw.find(b"Name:\t")
    comm = raw[name + 6:raw.find(b"\n", name)].decode("utf-8", "replace") if name >= 0 else ""
    at = raw.find(b"\nTgid:\t")
    if at < 0:
        return 0, "", False
    tgid = int(raw[at + 7:raw.find(b"\n", at + 7)])
    kthread = raw.find(b"\nKthread:\t1") >= 0
    return tgid, comm, kthread


def _close_roots(gen: _Generation) -> None:
    for root in gen.roots:
        if root.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(root.fd)
            root.fd = -1
