"""cgroups → containers: which container (if any) a process belongs to.

Container runtimes put every container in a cgroup named after its 64-hex id; Kubernetes puts the
pod's containers under a cgroup named after the pod uid. ``container_id_from_cgroup`` and
``pod_uid_from_cgroup`` read those ids from a cgroup path (docs/containers.md lists every form).

The sensor reports a process's cgroup as the **cgroup2 id** (``bpf_get_current_cgroup_id``): the
inode number of the cgroup's directory in the cgroup2 mount — ``/sys/fs/cgroup/unified`` on hybrid
hosts, ``/sys/fs/cgroup`` on pure-v2 hosts; the root cgroup is 1. ``CgroupResolver`` maps such an
id back to its path, and ``CgroupResolver.container_of(cgroup_id, pid)`` — the state tracker's
``cgroup_container`` callback — names the container, computed once per cgroup id.

id → path, in order: the cache; ``open_by_handle_at`` with the id as a kernfs file handle (one
syscall, needs CAP_DAC_READ_SEARCH); the path in ``/proc/<pid>/cgroup`` when its inode is the id
(one read, one stat); a walk of the cgroup2 tree that looks first in the directories where
containers were found before and stops at the first match.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = [
    "HOST",
    "CgroupResolver",
    "container_id_from_cgroup",
    "container_id_from_proc",
    "find_cgroup2_mount",
    "has_cgroup_v1",
    "pod_uid_from_cgroup",
    "proc_cgroup_paths",
]

HOST: Final = ""
"""The container id of host processes."""

ROOT_CGROUP_ID: Final = 1

# One path component naming a container: the bare id (cgroupfs driver: /kubepods/.../<id>,
# /k8s.io/<id>, /docker/<id>), ``<runtime>-<id>`` with an optional ``.scope`` (systemd driver:
# cri-containerd-, crio-, docker-, libpod-; CRI-O's cgroupfs driver: crio-<id>), or the OCI
# ``slice:prefix:id`` cgroupsPath form of the systemd driver.
_COMPONENT: Final = re.compile(r"(?:(?P<prefix>[A-Za-z0-9_.:-]*?)[-:])?(?P<id>[0-9a-f]{64})(?:\.scope)?")
# conmon (CRI-O's and podman's container monitor) runs in a cgroup named after the container it
# watches (crio-conmon-<id>.scope, libpod-conmon-<id>.scope), but it is a host process: started by
# the runtime in the host's namespaces, outside the container.
_NOT_CONTAINER_SUFFIX: Final = "conmon"

_UUID: Final = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# pod<uid> (cgroupfs) or kubepods[-<qos>]-pod<uid with _>.slice (systemd). Static (mirror) pods have
# a 32-hex uid (a hash of the manifest) instead of a UUID.
_SEPARATORS: Final = re.compile(r"[/:]")
_POD_COMPONENT: Final = re.compile(rf"(?:^|-)pod(?P<uid>{_UUID}|[0-9a-f]{{32}})(?:\.slice)?$")


def _component_id(component: str) -> str | None:
    m = _COMPONENT.fullmatch(component)
    if m is None:
        return None
    prefix = m.group("prefix")
    if prefix is not None and prefix.endswith(_NOT_CONTAINER_SUFFIX):
        return None
    return m.group("id")


def container_id_from_cgroup(path: str) -> str:
    """The full (64-hex) container id named by a cgroup path; "" for host cgroups.

    The deepest component that names a container wins, so a cgroup a container made inside its
    own (``.../<id>/init.scope``, nested runtimes) still belongs to that container. A pod's own
    cgroup (``.../pod<uid>``) and conmon's cgroup (``crio-conmon-<id>.scope``) are the host's.
    """
    if len(path) < 64:
        return HOST
    for component in reversed(path.split("/")):
        if len(component) >= 64:
            cid = _component_id(component)
            if cid is not None:
                return cid
    return HOST


def pod_uid_from_cgroup(path: str) -> str | None:
    """The Kubernetes pod uid in a cgroup path (``_`` of the systemd form turned back into ``-``);
    None when the path has no pod component."""
    for component in reversed(_SEPARATORS.split(path)):
        if "pod" in component:
            m = _POD_COMPONENT.search(component)
            if m is not None:
                return m.group("uid").replace("_", "-")
    return None


def proc_cgroup_paths(pid: int, proc_root: str = "/proc") -> list[str]:
    """The cgroup paths of a process: the cgroup2 (``0::``) path first, then the v1 ones; [] when
    the process is gone."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", "rb") as f:
            raw = f.read(16384)
    except OSError:
        return []
    v2: list[str] = []
    v1: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        (v2 if parts[0] == "0" and parts[1] == "" else v1).append(parts[2])
    return v2 + v1


def container_id_from_proc(pid: int, proc_root: str = "/proc") -> str:
    """The container of a process from ``/proc/<pid>/cgroup``: the ``0::`` line, else any v1
    hierarchy (on hybrid hosts a runtime may have placed the process in v1 hierarchies only)."""
    for path in proc_cgroup_paths(pid, proc_root):
        cid = container_id_from_cgroup(path)
        if cid:
            return cid
    return HOST


def find_cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup2 hierarchy is mounted: ``/sys/fs/cgroup`` on pure-v2 hosts,
    ``/sys/fs/cgroup/unified`` on hybrid ones; mounts of the whole hierarchy (root ``/``) are
    preferred, and ``/sys/fs/cgroup*`` over other places. None without cgroup2."""
    found: list[tuple[int, str]] = []
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                if not sep or not right.startswith("cgroup2 "):
                    continue
                fields = left.split()
                if len(fields) < 5:
                    continue
                root, point = fields[3], _unescape(fields[4])
                rank = (0 if root == "/" else 2) + (0 if point.startswith("/sys/fs/cgroup") else 1)
                found.append((rank, point))
    except OSError:
        return None
    return min(found)[1] if found else None


def has_cgroup_v1(mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether cgroup v1 hierarchies are mounted (hybrid or pure-v1 host)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            return any(line.partition(" - ")[2].startswith("cgroup ") for line in f)
    except OSError:
        return False


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    if "\\" not in text:
        return text
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


# --- open_by_handle_at: cgroup id -> directory, one syscall -----------------------------------------

FILEID_KERNFS: Final = 0xFE
"""The file handle type of kernfs (cgroupfs); its 8 handle bytes are the cgroup id."""


class _HandleOpener:
    """``open_by_handle_at(mount_fd, {8, FILEID_KERNFS, id})`` then ``readlink /proc/self/fd/N``."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.open_by_handle_at
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_int
        self._fn = fn
        self._buf = ctypes.create_string_buffer(16)
        self._mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._lock = threading.Lock()

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path relative to the mount ("/" for the root); None when no cgroup has
        that id (any more). Raises PermissionError when handles are not allowed."""
        with self._lock:
            struct.pack_into("=IiQ", self._buf, 0, 8, FILEID_KERNFS, cgroup_id)
            fd = self._fn(self._mount_fd, ctypes.addressof(self._buf),
                          os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            if fd < 0:
                err = ctypes.get_errno()
                if err in (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
                    raise PermissionError(err, os.strerror(err))
                return None  # ESTALE (removed), ENOTDIR...
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)
        if target.endswith(" (deleted)"):
            return None
        mount = self.mount
        if target == mount:
            return "/"
        if target.startswith(mount) and target[len(mount)] == "/":
            return target[len(mount):]
        if mount == "/":
            return target
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._mount_fd)


# --- the resolver --------------------------------------------------------------------------------------

DEFAULT_MAX_CGROUPS: Final = 16384


class CgroupResolver:
    """cgroup2 id → cgroup path → container id, cached and bounded.

    ``root`` is the cgroup2 mount (auto-detected when None). ``use_handles=False`` disables the
    ``open_by_handle_at`` fast path (it is disabled by itself when the kernel refuses it).
    ``v1``: whether cgroup v1 hierarchies are mounted (auto-detected when None); then a process in
    the cgroup2 root may still be in a container's v1 cgroups (a runtime that ignores cgroup2), so
    its ``/proc/<pid>/cgroup`` is read, uncached. Thread-safe.
    """

    def __init__(self, root: str | None = None, *, proc_root: str = "/proc",
                 max_entries: int = DEFAULT_MAX_CGROUPS, use_handles: bool = True, v1: bool | None = None) -> None:
        detected = root if root is not None else find_cgroup2_mount()
        self.root: str | None = (detected.rstrip("/") or "/") if detected is not None else None
        """The cgroup2 mount point (None: no cgroup2; every id is then meaningless and /proc decides)."""
        self.v1 = has_cgroup_v1() if v1 is None else v1
        self.proc_root = proc_root.rstrip("/") or "/"
        self.max_entries = max(16, max_entries)
        self._lock = threading.RLock()
        self._paths: dict[int, str] = {ROOT_CGROUP_ID: "/"}
        """cgroup id -> path relative to the mount."""
        self._containers: dict[int, str] = {}
        """cgroup id -> container id (container_of's answers)."""
        self._hot: dict[str, None] = {}
        """Directories where container cgroups were found: looked at first by a walk."""
        self._handles: _HandleOpener | None = None
        if use_handles and self.root is not None:
            try:
                self._handles = _HandleOpener(self.root)
            except (OSError, AttributeError):
                self._handles = None
        self.counters: dict[str, int] = {
            "hits": 0, "handle": 0, "hint": 0, "walks": 0, "walked_dirs": 0, "proc_fallback": 0,
            "unresolved": 0, "evicted": 0,
        }

    # --- public API ----------------------------------------------------------------------------------

    def container_of(self, cgroup_id: int, pid: int) -> str:
        """The full container id of a process in cgroup ``cgroup_id`` ("" for the host).

        The id is resolved to its path first; when it cannot be (id 0 = unknown, or the cgroup is
        gone), ``/proc/<pid>/cgroup`` decides. The answer is cached per cgroup id — except for the
        cgroup2 root on hosts with v1 hierarchies, and on hosts without cgroup2, where only
        ``/proc/<pid>/cgroup`` can tell."""
        if cgroup_id > 0 and self.root is not None and not (cgroup_id == ROOT_CGROUP_ID and self.v1):
            cid = self._containers.get(cgroup_id)
            if cid is not None:
                self.counters["hits"] += 1
                return cid
            path = self.path_of(cgroup_id, pid=pid)
            if path is not None:
                cid = container_id_from_cgroup(path)
                if cid:
                    self._mark_hot(path)
            else:
                self.counters["proc_fallback"] += 1
                cid = container_id_from_proc(pid, self.proc_root) if pid > 0 else HOST
            with self._lock:
                self._put(self._containers, cgroup_id, cid)
            return cid
        self.counters["proc_fallback"] += 1
        return container_id_from_proc(pid, self.proc_root) if pid > 0 else HOST

    def path_of(self, cgroup_id: int, *, pid: int = 0, hint: str | None = None) -> str | None:
        """The path (relative to the cgroup2 mount, "/" for the root) of the cgroup with this id;
        None when there is none. ``pid``/``hint``: a process or path likely in that cgroup."""
        path = self._paths.get(cgroup_id)
        if path is not None:
            return path
        if cgroup_id <= 0 or self.root is None:
            return None
        path = self._by_handle(cgroup_id)
        if path is None:
            path = self._by_hint(cgroup_id, pid, hint)
        if path is None and self._handles is None:
            path = self._walk(cgroup_id)
        if path is None:
            self.counters["unresolved"] += 1
            return None
        with self._lock:
            self._put(self._paths, cgroup_id, path)
        return path

    def forget(self, cgroup_id: int) -> None:
        """Drop what is cached about one cgroup (e.g. on its removal)."""
        if cgroup_id == ROOT_CGROUP_ID:
            return
        with self._lock:
            self._paths.pop(cgroup_id, None)
            self._containers.pop(cgroup_id, None)

    def __len__(self) -> int:
        return len(self._containers)

    def stats(self) -> dict[str, int]:
        return {**self.counters, "paths": len(self._paths), "containers": len(self._containers),
                "handles": 1 if self._handles is not None else 0}

    def close(self) -> None:
        if self._handles is not None:
            self._handles.close()
            self._handles = None

    # --- internals -----------------------------------------------------------------------------------

    def _put(self, table: dict[int, str], key: int, value: str) -> None:
        """Insert under the lock, evicting the oldest entries past the bound (never the root)."""
        table[key] = value
        excess = len(table) - self.max_entries
        if excess > 0:
            victims = [k for k in itertools.islice(table, excess + 1) if k != ROOT_CGROUP_ID][:excess]
            for k in victims:
                del table[k]
            self.counters["evicted"] += len(victims)

    def _mark_hot(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0] or "/"
        hot = self._hot
        if parent in hot:
            return
        with self._lock:
            hot[parent] = None
            grand = parent.rsplit("/", 1)[0] or "/"
            if grand != "/":  # a new pod's cgroup appears beside the known ones
                hot[grand] = None
            while len(hot) > 256:
                del hot[next(iter(hot))]

    def _by_handle(self, cgroup_id: int) -> str | None:
        h = self._handles
        if h is None:
            return None
        try:
            path = h.path(cgroup_id)
        except PermissionError:
            self._handles = None
            h.close()
            return None
        if path is not None:
            self.counters["handle"] += 1
        return path

    def _full(self, path: str) -> str:
        root = self.root or ""
        return root if path == "/" else (root + path if root != "/" else path)

    def _by_hint(self, cgroup_id: int, pid: int, hint: str | None) -> str | None:
        candidates = [hint] if hint else []
        if pid > 0:
            candidates += proc_cgroup_paths(pid, self.proc_root)[:1]
        for path in candidates:
            try:
                if os.stat(self._full(path)).st_ino == cgroup_id:
                    self.counters["hint"] += 1
                    return path
            except OSError:
                continue
        return None

    def _walk(self, cgroup_id: int) -> str | None:
        """Look for the id: two levels under the directories where containers were found first (a
        new container beside known ones, a new pod beside known pods), then the whole tree.
        Directory ids come from getdents (no stat per directory); every directory seen is cached,
        so one walk also answers the next misses."""
        self.counters["walks"] += 1
        with self._lock:
            hot = list(reversed(self._hot))
        for start, depth in [*((h, 2) for h in hot), ("/", 1 << 30)]:
            for path, ino in self._scan(start, depth):
                if ino == cgroup_id:
                    return path
        return None

    def _scan(self, start: str, depth: int) -> Iterator[tuple[str, int]]:
        """(path, id) of the directories under ``start``, at most ``depth`` levels down; each is
        recorded in the path cache."""
        stack = [(start, 1)]
        paths = self._paths
        while stack:
            d, level = stack.pop()
            self.counters["walked_dirs"] += 1
            try:
                with os.scandir(self._full(d)) as it:
                    children = [(e.name, e.inode()) for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            base = "" if d == "/" else d
            for name, ino in children:
                child = f"{base}/{name}"
                if paths.get(ino) != child:
                    with self._lock:
                        self._put(paths, ino, child)
                yield child, ino
                if level < depth:
                    stack.append((child, level + 1))


CGROUP_FS: Final = Path("/sys/fs/cgroup")


def cgroup_hierarchies(root: Path = CGROUP_FS) -> list[Path]:
    """Every mounted cgroup hierarchy under `root`: just `root` on pure cgroup v2; each v1
    controller, name=systemd and the unified mount in hybrid mode (links to one hierarchy once)."""
    if (root / "cgroup.controllers").exists():
        return [root]
    seen: set[Path] = set()
    out = []
    for entry in sorted(root.iterdir()):
        real = entry.resolve()
        if real not in seen and (real / "cgroup.procs").exists():
            seen.add(real)
            out.append(real)
    return out


def cgroup_dirs(cgroup_path: str, root: Path = CGROUP_FS) -> list[Path]:
    """The folders of one cgroup path (e.g. /kubepods/besteffort/pod<uid>) in every hierarchy."""
    return [h / cgroup_path.lstrip("/") for h in cgroup_hierarchies(root)]


def rmdir_cgroup(path: Path, timeout_s: float = 5.0) -> str | None:
    """rmdir an empty cgroup, retrying while its last tasks exit; an error text, or None once gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            path.rmdir()
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if time.monotonic() > deadline:
                return f"{path}: {exc.strerror}"
            time.sleep(0.02)


def remove_cgroup(cgroup_path: str, timeout_s: float = 5.0) -> list[str]:
    """Remove one (empty) cgroup path from every hierarchy, e.g. a pod's folder that runc leaves
    behind (kubelet normally removes it); the errors."""
    return [err for d in cgroup_dirs(cgroup_path) if (err := rmdir_cgroup(d, timeout_s))]
