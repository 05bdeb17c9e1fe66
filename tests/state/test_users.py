"""User and group names from the process's own root (host or container)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lanner.events import Process
from lanner.state.users import NameDb, UserDirectory


def _root(path: Path, passwd: str, group: str = "") -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "passwd").write_text(passwd)
    (path / "etc" / "group").write_text(group)
    return path


def test_namedb_reads_passwd_and_group(tmp_path: Path) -> None:
    root = _root(tmp_path / "r", "# comment\nroot:x:0:0::/root:/bin/sh\nbad line\nbob:x:1001:1001::/:/bin/sh\n"
                                  "bob2:x:1001:1001::/:/bin/sh\nweird:x:notanumber:0::/:/bin/sh\n",
                 "root:x:0:\nstaff:x:50:bob\n")
    db = NameDb(str(root))
    assert db.user(0) == "root" and db.user(1001) == "bob"  # the first entry for an id wins
    assert db.user(4242) is None
    assert db.group(50) == "staff" and db.group(1) is None


def test_namedb_rereads_when_the_file_changes(tmp_path: Path) -> None:
    root = _root(tmp_path / "r", "a:x:1:1::/:/bin/sh\n")
    db = NameDb(str(root), recheck_s=0.0)
    assert db.user(1) == "a" and db.user(2) is None
    loads = db.loads
    assert db.user(1) == "a" and db.loads == loads  # unchanged file: not read again
    p = root / "etc" / "passwd"
    p.write_text("a:x:1:1::/:/bin/sh\nnew:x:2:2::/:/bin/sh\n")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert db.user(2) == "new" and db.loads == loads + 1


def test_namedb_recheck_is_throttled(tmp_path: Path) -> None:
    root = _root(tmp_path / "r", "a:x:1:1::/:/bin/sh\n")
    db = NameDb(str(root), recheck_s=3600.0)
    assert db.user(1) == "a"
    (root / "etc" / "passwd").write_text("b:x:1:1::/:/bin/sh\n")
    os.utime(root / "etc" / "passwd", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert db.user(1) == "a"  # within the recheck interval


def test_missing_files_resolve_nothing(tmp_path: Path) -> None:
    db = NameDb(str(tmp_path / "nothing"))
    assert db.user(0) is None and db.group(0) is None


def test_container_processes_use_their_own_root(tmp_path: Path) -> None:
    host = _root(tmp_path / "host", "root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n", "alice:x:1000:\n")
    ctr = _root(tmp_path / "ctr", "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n", "app:x:1000:\n")
    proc = tmp_path / "proc"
    (proc / "10").mkdir(parents=True)
    (proc / "20").mkdir()
    (proc / "21").mkdir()
    os.symlink(host, proc / "10" / "root")
    os.symlink(ctr, proc / "20" / "root")
    os.symlink(ctr, proc / "21" / "root")
    users = UserDirectory(proc_root=str(proc), host_root=str(host))
    hp = Process(pid=10, uid=1000, gid=1000, loginuid=1000)
    cp = Process(pid=20, uid=1000, gid=1000, loginuid=-1)
    unknown = Process(pid=99, uid=1000, gid=1000)
    users.resolve(hp)
    users.resolve(cp)
    users.resolve(unknown)
    assert (hp.user_name, hp.group_name, hp.loginname) == ("alice", "alice", "alice")
    assert (cp.user_name, cp.group_name, cp.loginname) == ("app", "app", None)
    assert unknown.user_name == "alice"  # no /proc entry: the host database
    # Another process of the same container shares the database.
    assert users.db_for(21) is users.db_for(20)
    assert len(users) == 2


def test_root_databases_are_bounded(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    users = UserDirectory(proc_root=str(proc), host_root=str(_root(tmp_path / "host", "")), max_roots=2)
    for pid in range(3):
        r = _root(tmp_path / f"c{pid}", f"u{pid}:x:5:5::/:/bin/sh\n")
        (proc / str(pid)).mkdir(parents=True)
        os.symlink(r, proc / str(pid) / "root")
        assert users.db_for(pid).user(5) == f"u{pid}"
    assert len(users) == 3  # the host's plus the two most recent roots
