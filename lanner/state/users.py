"""User and group names: uid -> user name, gid -> group name, from /etc/passwd and /etc/group.

Falco resolves names in the database of the process's own root: the host's files for host
processes, the container's for a containerised one (FIELDS.md §7 ``user.name``). ``NameDb`` reads
the two files of one root directory, re-reading them when their mtime changes; ``UserDirectory``
picks the database for a process by comparing its root (``/proc/<pid>/root``) with the host's.
Unknown ids give None: the field layer applies Falco's fallbacks (``root`` for 0, else ``<NA>``).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Final, Protocol

from lanner.events import Process

_RECHECK_S: Final = 1.0
"""How often (at most) a database looks at its files' mtimes."""


class NameSource(Protocol):
    """What the tracker needs from a user database."""

    def user(self, uid: int) -> str | None: ...

    def group(self, gid: int) -> str | None: ...


def _parse(path: str, limit: int) -> dict[int, str]:
    """``name:x:id:...`` lines -> {id: name}; the first entry for an id wins (like getpwuid)."""
    out: dict[int, str] = {}
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if len(out) >= limit:
                    break
                parts = raw.split(b":", 3)
                if len(parts) < 3 or not parts[0] or parts[0].startswith(b"#"):
                    continue
                try:
                    ident = int(parts[2])
                except ValueError:
                    continue
                if ident not in out:
                    out[ident] = parts[0].decode("utf-8", "replace").strip()
    except OSError:
        return {}
    return out


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class NameDb:
    """The passwd and group files under one root directory, cached, re-read on mtime change."""

    def __init__(self, root: str, *, max_entries: int = 65536, recheck_s: float = _RECHECK_S) -> None:
        self.root = root.rstrip("/")
        self.max_entries = max_entries
        self.recheck_s = recheck_s
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self._passwd_mtime: int | None = None
        self._group_mtime: int | None = None
        self._checked = -1e18
        self.loads = 0
        """How many times a file was (re)read, for tests and metrics."""

    @property
    def passwd_path(self) -> str:
        return self.root + "/etc/passwd"

    @property
    def group_path(self) -> str:
        return self.root + "/etc/group"

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        m = _mtime(self.passwd_path)
        if m != self._passwd_mtime:
            self._passwd_mtime = m
            self._users = _parse(self.passwd_path, self.max_entries) if m is not None else {}
            self.loads += 1
        m = _mtime(self.group_path)
        if m != self._group_mtime:
            self._group_mtime = m
            self._groups = _parse(self.group_path, self.max_entries) if m is not None else {}
            self.loads += 1

    def user(self, uid: int) -> str | None:
        self._refresh()
        return self._users.get(uid)

    def group(self, gid: int) -> str | None:
        self._refresh()
        return self._groups.get(gid)


class UserDirectory:
    """Name databases by root filesystem: the host's, and one per container root seen."""

    def __init__(self, *, proc_root: str = "/proc", host_root: str = "/", max_roots: int = 256,
                 max_entries: int = 65536) -> None:
        self.proc_root = proc_root.rstrip("/") or "/"
        self.host_root = host_root
        self.max_roots = max_roots
        self.max_entries = max_entries
        self.host = NameDb(host_root, max_entries=max_entries)
        self._host_id = self._root_id(host_root)
        self._roots: OrderedDict[tuple[int, int], NameDb] = OrderedDict()

    @staticmethod
    def _root_id(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def db_for(self, pid: int) -> NameSource:
        """The database of the root directory process ``pid`` sees (the host's when unknown)."""
        root = f"{self.proc_root}/{pid}/root"
        rid = self._root_id(root)
        if rid is None or rid == self._host_id:
            return self.host
        db = self._roots.get(rid)
        if db is None:
            db = NameDb(root, max_entries=self.max_entries)
            self._roots[rid] = db
            if len(self._roots) > self.max_roots:
                self._roots.popitem(last=False)
        else:
            # Read through a live process of that root: the one that made the database may be gone.
            db.root = root
            self._roots.move_to_end(rid)
        return db

    def resolve(self, p: Process, db: NameSource | None = None) -> None:
        """Fill the process's user, group and login names (None where the database has none)."""
        if db is None:
            db = self.db_for(p.pid)
        p.user_name = db.user(p.uid)
        p.group_name = db.group(p.gid)
        lu = p.loginuid
        p.loginname = None if lu < 0 else (p.user_name if lu == p.uid else db.user(lu))

    def __len__(self) -> int:
        return 1 + len(self._roots)
