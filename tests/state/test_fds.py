"""Fd tables: what fd.* shows for files, sockets, dup, memfd... (FIELDS.md §8)."""

from __future__ import annotations

import posixpath
import re
import socket
from pathlib import Path

import pytest

from lanner.events import FdInfo
from lanner.paths import collapse_slashes, concatenate, normalize
from lanner.rules.fieldtypes import MISSING
from lanner.sensor.records import Blob
from lanner.state.fds import FdTable

from .builders import AT_FDCWD, S_IFDIR, TMPFS_MAGIC, World, blobs, fd_desc, sock_desc, sockaddr_in, sockaddr_un, x

O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_DIRECTORY, O_CLOEXEC = 0o1, 0o2, 0o100, 0o1000, 0o200000, 0o2000000
INET, INET6, UNIX = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.init()
    world.spawn(1, 100, ["bash"], "/usr/bin/bash", cwd="/root")
    world.fork(100, 200)
    world.exec(200, ["app"], "/opt/app/bin/app", cwd="/var/www/html")
    return world


# --- files -------------------------------------------------------------------------------------

def test_absolute_open(w: World) -> None:
    ev = w.openat(200, "/etc//shadow", 3, flags=O_CLOEXEC, ino=555, dev=0x801)
    assert x("fd.num", ev) == 3
    assert x("fd.name", ev) == "/etc/shadow"
    assert x("fd.nameraw", ev) == "/etc/shadow"
    assert x("fd.directory", ev) == "/etc"
    assert x("fd.filename", ev) == "shadow"
    assert x("fd.typechar", ev) == "f" and x("fd.type", ev) == "file"
    assert x("fd.ino", ev) == 555 and x("fd.dev", ev) == 0x801
    assert x("evt.is_open_read", ev) is True and x("evt.is_open_write", ev) is False
    assert x("evt.arg.name", ev) == "/etc//shadow"  # as passed
    assert x("evt.arg.fd", ev) == "<f>/etc/shadow"
    assert x("evt.arg.dirfd", ev) == "AT_FDCWD"
    assert x("evt.arg.flags", ev) == "O_RDONLY|O_CLOEXEC"
    assert x("evt.arg.mode", ev) == "0"
    assert x("evt.arg.ino", ev) == "555" and x("evt.arg.dev", ev) == "801"
    assert x("fd.l4proto", ev) == "<NA>"
    assert w.tracker.fd(200, 3) is ev.fd


def test_relative_open_uses_the_kernel_base_and_keeps_nameraw(w: World) -> None:
    ev = w.openat(200, "../../../etc/./passwd", 4, base="/var/www/html")
    assert x("fd.name", ev) == "/etc/passwd"
    assert x("fd.nameraw", ev) == "../../../etc/./passwd"
    assert x("fd.directory", ev) == "/etc"
    ev = w.openat(200, "logs//a.log", 5, flags=O_WRONLY | O_CREAT | O_TRUNC, mode=0o640, base="/var/www/html")
    assert x("fd.name", ev) == "/var/www/html/logs/a.log"
    assert x("fd.nameraw", ev) == "logs/a.log"
    assert x("evt.is_open_write", ev) is True
    assert x("evt.arg.flags", ev) == "O_TRUNC|O_CREAT|O_WRONLY"
    assert x("evt.arg.mode", ev) == "0640"
    assert x("evt.arg.name", ev) == "/var/www/html/logs/a.log"


def test_open_relative_to_a_dirfd(w: World) -> None:
    w.openat(200, "/srv/data", 6, flags=O_DIRECTORY, fmt=S_IFDIR)
    ev = w.openat(200, "sub/f.txt", 7, dirfd=6, base="/srv/data")
    assert x("fd.name", ev) == "/srv/data/sub/f.txt"
    assert x("evt.arg.dirfd", ev) == "<d>/srv/data"  # Falco resolves an fd known to the thread
    assert x("evt.arg.name", ev) == "/srv/data/sub/f.txt"
    assert x("proc.cwd", ev) == "/var/www/html/"  # a dirfd base is not the cwd


def test_directory_open(w: World) -> None:
    ev = w.openat(200, "/etc/", 3, flags=O_DIRECTORY, fmt=S_IFDIR)
    assert x("fd.typechar", ev) == "d" and x("fd.type", ev) == "directory"
    assert x("fd.name", ev) == "/etc"
    assert x("fd.directory", ev) == "/etc"
    assert x("fd.filename", ev) is MISSING
    # A directory opened without O_DIRECTORY is typed as a file (Falco does the same).
    ev = w.openat(200, "/tmp", 4, fmt=S_IFDIR)
    assert x("fd.typechar", ev) == "f"


def test_mode_is_reported_only_with_o_creat(w: World) -> None:
    ev = w.openat(200, "/etc/hosts", 3, mode=0o777)  # whatever was left in the register
    assert x("evt.arg.mode", ev) == "0" and x("evt.is_open_exec", ev) is False
    ev = w.openat(200, "/tmp/x.sh", 4, flags=O_WRONLY | O_CREAT, mode=0o100755)
    assert x("evt.arg.mode", ev) == "0755" and x("evt.is_open_exec", ev) is True


def test_relative_open_catches_up_the_cwd(w: World) -> None:
    ev = w.openat(200, "notes.txt", 3, base="/home/alice")
    assert x("proc.cwd", ev) == "/home/alice/"
    assert x("fd.name", ev) == "/home/alice/notes.txt"
    assert x("evt.arg.name", ev) == "/home/alice/notes.txt"


def test_failed_open_has_no_fdinfo(w: World) -> None:
    ev = w.openat(200, "/etc/shadow", -13)
    assert ev.fd is None
    assert x("fd.num", ev) == -1
    assert x("fd.typechar", ev) == "f"
    assert x("fd.name", ev) == "/etc/shadow"
    assert x("fd.filename", ev) is MISSING
    assert x("evt.res", ev) == "EACCES"
    assert x("evt.arg.fd", ev) == "EACCES"
    assert w.tracker.fd(200, -13) is None


def test_open_and_creat_events(w: World) -> None:
    ev = w.syscall(200, "open", 3, (0, O_RDWR | O_CREAT, 0o100755), bl=blobs(path0="run.sh", base0="/tmp",
                                                                             fd=fd_desc(3, ino=9)))
    assert ev.type == "open"
    assert x("fd.name", ev) == "/tmp/run.sh" and x("fd.nameraw", ev) == "run.sh"
    assert x("evt.is_open_exec", ev) is True
    assert x("evt.arg.mode", ev) == "0755"
    ev = w.syscall(200, "creat", 4, (0, 0o600), bl=blobs(path0="/tmp/k", fd=fd_desc(4, ino=10)))
    assert ev.type == "creat" and ev.args["mode"] == 0o600
    assert x("fd.name", ev) == "/tmp/k" and x("fd.typechar", ev) == "f"
    assert x("evt.is_open_exec", ev) is False


def test_openat2_reads_open_how(w: World) -> None:
    how = (O_WRONLY | O_CREAT).to_bytes(8, "little") + (0o644).to_bytes(8, "little") + (0x04).to_bytes(8, "little")
    ev = w.syscall(200, "openat2", 3, (AT_FDCWD, 0, 0, 24),
                   bl=blobs(path0="/etc/cron.d/x", sockaddr=how, fd=fd_desc(3)))
    assert ev.type == "openat2"
    assert x("evt.arg.flags", ev) == "O_CREAT|O_WRONLY"
    assert x("evt.arg.mode", ev) == "0644"
    assert x("evt.arg.resolve", ev) == "RESOLVE_NO_SYMLINKS"
    assert x("fd.name", ev) == "/etc/cron.d/x"


def _reference(base: str, path: str) -> str:
    """Lexical joining as libs does it, written the slow, obvious way."""
    joined = path if path.startswith("/") else base + "/" + path
    return posixpath.normpath(re.sub("/+", "/", joined)) if joined.startswith("/") else \
        posixpath.normpath(joined)


def test_paths_join_lexically() -> None:
    cases = [("/a/b", "c"), ("/a/b/", "../c"), ("/", "x"), ("/a", "./b/./c/"), ("/a", "../../../x"),
             ("/a", "/abs//x/"), ("/a/b", ""), ("/a", "..."), ("/a", ".hidden/x"), ("/a//b/", "c/")]
    for base, path in cases:
        assert concatenate(base, path) == _reference(base, path), (base, path)
    assert concatenate("<UNKNOWN>", "f") == "<UNKNOWN>/f"
    assert normalize("/") == "/" and normalize("/a/b/") == "/a/b" and normalize("//a//b") == "/a/b"
    assert collapse_slashes("a///b//c") == "a/b/c"


def test_fd_using_event_trusts_the_cache_only_while_identity_matches(w: World) -> None:
    w.openat(200, "/etc/app.conf", 3, ino=11)
    ev = w.syscall(200, "fchmod", 0, (3, 0o4755), bl=blobs(fd=fd_desc(3, ino=11), fdpath="/etc/renamed.conf"))
    assert x("fd.name", ev) == "/etc/app.conf"  # same file: the cached name (Falco keeps it too)
    assert x("evt.arg.mode", ev) == "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
    assert x("evt.arg.fd", ev) == "<f>/etc/app.conf"
    # fd 3 was closed and reused for another file without us seeing it: rebuilt from the kernel.
    ev = w.syscall(200, "fchmod", 0, (3, 0o644), bl=blobs(fd=fd_desc(3, ino=12), fdpath="/var/lib/x.db"))
    assert x("fd.name", ev) == "/var/lib/x.db"
    assert x("fd.typechar", ev) == "f" and x("fd.ino", ev) == 12
    assert w.tracker.fd(200, 3) is ev.fd


def test_unknown_fd_is_rebuilt_from_the_kernel_description(w: World) -> None:
    ev = w.syscall(200, "finit_module", 0, (8, 0, 0), bl=blobs(fd=fd_desc(8, ino=3), fdpath="/tmp/rk.ko",
                                                                str0="debug=1"))
    assert x("fd.name", ev) == "/tmp/rk.ko" and x("fd.num", ev) == 8
    assert x("evt.arg.uargs", ev) == "debug=1"
    ev = w.syscall(200, "mkdirat", 0, (9, 0, 0o755), bl=blobs(path0="d", base0="/srv",
                                                              fd=fd_desc(9, mode=S_IFDIR | 0o755, ino=4),
                                                              fdpath="/srv"))
    assert x("fd.typechar", ev) == "d" and x("fd.name", ev) == "/srv"
    assert x("evt.arg.path", ev) == "/srv/d"
    assert x("evt.arg.mode", ev) == "1ED"
    ev = w.syscall(200, "setns", 0, (10, 0x40000000), bl=blobs(fd=fd_desc(10, mode=0o100444, ino=4026531840),
                                                               fdpath="/net:[4026531840]"))
    assert x("fd.num", ev) == 10 and x("evt.arg.nstype", ev) == "CLONE_NEWNET"


def test_at_fdcwd_has_no_fd_info(w: World) -> None:
    ev = w.syscall(200, "unlinkat", 0, (AT_FDCWD, 0, 0x200), bl=blobs(path0="old"))
    assert ev.fd is None
    assert x("fd.num", ev) == -100
    assert x("fd.name", ev) == ""
    assert x("fd.typechar", ev) == "o"
    assert x("evt.arg.flags", ev) == "AT_REMOVEDIR"
    assert x("evt.arg.name", ev) == "/var/www/html/old"


def test_memfd_bpf_userfaultfd(w: World) -> None:
    ev = w.syscall(200, "memfd_create", 3, (0, 1), bl=blobs(str0="payload", fd=fd_desc(3, magic=TMPFS_MAGIC,
                                                                                          dev=1, ino=35)))
    assert x("fd.type", ev) == "memfd" and x("fd.typechar", ev) == "m"
    assert x("fd.name", ev) == "payload"
    assert x("evt.arg.name", ev) == "payload" and x("evt.arg.flags", ev) == "MFD_CLOEXEC"
    ev = w.syscall(200, "bpf", 4, (5, 0, 0), bl=blobs(fd=fd_desc(4, mode=0o600, ino=7)))
    assert x("fd.type", ev) == "bpf" and x("evt.arg.cmd", ev) == "BPF_PROG_LOAD"
    ev = w.syscall(200, "bpf", 0, (2, 0, 0))  # BPF_MAP_UPDATE_ELEM: no fd
    assert ev.fd is None and w.tracker.fd(200, 0) is None
    ev = w.syscall(200, "userfaultfd", 5, (O_CLOEXEC,), bl=blobs(fd=fd_desc(5, mode=0o600, ino=8)))
    assert x("fd.type", ev) == "userfaultfd" and x("fd.typechar", ev) == "u"
    # A memfd met through an fd-using event is recognised from its kernel path.
    ev = w.syscall(200, "fchmod", 0, (6, 0o755), bl=blobs(fd=fd_desc(6, magic=TMPFS_MAGIC, ino=36),
                                                          fdpath="/memfd:other"))
    assert x("fd.type", ev) == "memfd" and x("fd.name", ev) == "other"


def test_dup_copies_the_old_fd(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 1, 0), bl=blobs(fd=sock_desc(3, INET, sk=0xAA)))
    desc = sock_desc(3, INET, sk=0xAA, local=("10.0.0.5", 40000), remote=("1.2.3.4", 4444), state=1)
    w.syscall(200, "connect", 0, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("1.2.3.4", 4444), fd=desc))
    ev = w.syscall(200, "dup2", 0, (3, 0), bl=blobs(fd=desc))
    assert x("fd.num", ev) == 0 and x("evt.rawres", ev) == 0
    assert x("fd.type", ev) == "ipv4"
    assert x("fd.name", ev) == "10.0.0.5:40000->1.2.3.4:4444"
    assert x("evt.arg.res", ev) == "<4t>10.0.0.5:40000->1.2.3.4:4444"
    assert x("evt.arg.oldfd", ev) == "3"
    assert w.tracker.fd(200, 3) is not None and w.tracker.fd(200, 3) is not ev.fd
    # The cached old fd is stale (fd 3 now holds another socket): the kernel's description wins.
    w.syscall(200, "socket", 8, (UNIX, 1, 0), bl=blobs(fd=sock_desc(8, UNIX, 1, 0, sk=0xCC)))
    ev = w.syscall(200, "dup", 9, (8,), bl=blobs(fd=sock_desc(9, INET, sk=0xCD)))
    assert x("fd.type", ev) == "ipv4" and x("fd.name", ev) == ""
    # The old fd unknown: the kernel's description of the new fd gives the type.
    ev = w.syscall(200, "dup3", 7, (40, 7, O_CLOEXEC), bl=blobs(fd=sock_desc(7, INET6, sk=0xBB)))
    assert x("fd.type", ev) == "ipv6" and x("evt.arg.flags", ev) == "O_RDONLY|O_CLOEXEC"
    # A failed dup describes the old fd.
    ev = w.syscall(200, "dup", -24, (3,))
    assert ev.fd is w.tracker.fd(200, 3)


def test_fds_are_inherited_by_fork_and_dropped_on_exit(w: World) -> None:
    w.openat(200, "/etc/hosts", 3)
    w.fork(200, 201)
    ev = w.syscall(201, "fchmod", 0, (3, 0o600), bl=blobs(fd=fd_desc(3, ino=77)))
    assert x("fd.name", ev) == "/etc/hosts"
    w.exit(201)
    assert w.tracker.fd(201, 3) is None and w.tracker.fd(200, 3) is not None


def test_table_is_bounded_lru() -> None:
    t = FdTable(limit=3)
    for n in range(3):
        t.put(n, FdInfo(num=n), n)
    assert t.get(0) is not None  # 0 becomes the most recently used
    t.put(3, FdInfo(num=3), 3)
    assert list(t) == [2, 0, 3]
    assert t.peek(1) is None and t.ident(1) is None
    assert len(t) == 3


def test_fd_table_per_process_limit_in_tracker(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.tracker.fds.per_process = 8
    world.init()
    world.spawn(1, 100, ["x"], "/x")
    for n in range(3, 20):
        world.openat(100, f"/data/{n}", n, ino=n)
    t = world.tracker.fds.find(100)
    assert t is not None and len(t) == 8
    assert world.tracker.fd(100, 19) is not None and world.tracker.fd(100, 3) is None


# --- sockets -----------------------------------------------------------------------------------

def test_socket_then_tcp_connect(w: World) -> None:
    ev = w.syscall(200, "socket", 3, (INET, 0x80001, 0), bl=blobs(fd=sock_desc(3, INET, sk=0x10)))
    assert x("fd.typechar", ev) == "4" and x("fd.type", ev) == "ipv4"
    assert x("fd.name", ev) == ""
    assert x("fd.l4proto", ev) == "<NA>"  # no role yet
    assert x("fd.sip", ev) is MISSING
    assert x("evt.arg.domain", ev) == "AF_INET"
    assert x("evt.arg.fd", ev) == "<4t>"
    socket_ev = ev
    desc = sock_desc(3, INET, sk=0x10, local=("192.168.1.20", 51734), remote=("203.0.113.7", 22), state=2)
    ev = w.syscall(200, "connect", -115, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("203.0.113.7", 22), fd=desc))
    assert x("fd.name", ev) == "192.168.1.20:51734->203.0.113.7:22"
    assert str(x("fd.sip", ev)) == "203.0.113.7" and x("fd.sport", ev) == 22
    assert str(x("fd.cip", ev)) == "192.168.1.20" and x("fd.cport", ev) == 51734
    assert str(x("fd.rip", ev)) == "203.0.113.7" and x("fd.lport", ev) == 51734
    assert x("fd.l4proto", ev) == "tcp" and x("fd.connected", ev) is True
    assert x("fd.sockfamily", ev) == "ip"
    assert x("evt.arg.tuple", ev) == "192.168.1.20:51734->203.0.113.7:22"
    assert x("evt.arg.addr", ev) == "203.0.113.7:22"
    assert x("evt.res", ev) == "EINPROGRESS"
    assert x("fd.name", socket_ev) == ""  # the earlier event still sees the fresh socket


def test_connect_without_a_kernel_peer_uses_the_address_passed(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 1, 0), bl=blobs(fd=sock_desc(3, INET, sk=0x12)))
    desc = sock_desc(3, INET, sk=0x12, local=("10.0.0.5", 40001), state=2)  # SYN not sent yet
    ev = w.syscall(200, "connect", -115, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("169.254.169.254", 80),
                                                              fd=desc))
    assert x("fd.name", ev) == "10.0.0.5:40001->169.254.169.254:80"
    assert str(x("fd.sip", ev)) == "169.254.169.254" and x("fd.sport", ev) == 80


def test_failed_connect_changes_nothing(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 1, 0), bl=blobs(fd=sock_desc(3, INET, sk=0x11)))
    desc = sock_desc(3, INET, sk=0x11, remote=("127.0.0.1", 9))
    ev = w.syscall(200, "connect", -111, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("127.0.0.1", 9), fd=desc))
    assert x("fd.name", ev) == "" and x("fd.sip", ev) is MISSING and x("fd.connected", ev) is False
    assert x("evt.arg.tuple", ev) == "NULL"
    assert x("evt.arg.addr", ev) == "127.0.0.1:9"


def test_accept_ipv4_and_mapped_ipv6(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 1, 0), bl=blobs(fd=sock_desc(3, INET, sk=0x20)))
    ev = w.syscall(200, "bind", 0, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("0.0.0.0", 8080),
                                                         fd=sock_desc(3, INET, sk=0x20)))
    assert x("fd.name", ev) == "0.0.0.0:8080"
    assert str(x("fd.sip", ev)) == "0.0.0.0" and x("fd.sport", ev) == 8080
    assert x("fd.cip", ev) is MISSING and x("fd.l4proto", ev) == "tcp"
    assert x("fd.name_changed", ev) is True
    desc = sock_desc(4, INET, sk=0x21, ino=1001, local=("10.0.0.2", 8080), remote=("198.51.100.9", 60000), state=1)
    ev = w.syscall(200, "accept4", 4, (3, 0, 0, 0x80000), bl=blobs(fd=desc))
    assert x("fd.name", ev) == "198.51.100.9:60000->10.0.0.2:8080"
    assert str(x("fd.cip", ev)) == "198.51.100.9" and x("fd.cport", ev) == 60000
    assert str(x("fd.sip", ev)) == "10.0.0.2" and x("fd.sport", ev) == 8080
    assert str(x("fd.lip", ev)) == "10.0.0.2" and x("fd.rport", ev) == 60000
    assert x("fd.connected", ev) is True and x("fd.typechar", ev) == "4"
    assert x("evt.arg.tuple", ev) == "198.51.100.9:60000->10.0.0.2:8080"
    assert x("evt.arg.flags", ev) == "80000"
    mapped = sock_desc(5, INET6, sk=0x22, ino=1002, local=("::ffff:10.0.0.2", 8443),
                       remote=("::ffff:198.51.100.9", 60001), state=1)
    ev = w.syscall(200, "accept", 5, (3,), bl=blobs(fd=mapped))
    assert x("fd.type", ev) == "ipv4"
    assert x("fd.name", ev) == "198.51.100.9:60001->10.0.0.2:8443"


def test_ipv6_connect_has_no_brackets(w: World) -> None:
    w.syscall(200, "socket", 3, (INET6, 1, 0), bl=blobs(fd=sock_desc(3, INET6, sk=0x30)))
    desc = sock_desc(3, INET6, sk=0x30, local=("::1", 40000), remote=("::1", 80), state=1)
    ev = w.syscall(200, "connect", 0, (3, 0, 28), bl=blobs(sockaddr=sockaddr_in("::1", 80), fd=desc))
    assert x("fd.name", ev) == "::1:40000->::1:80"
    assert x("fd.typechar", ev) == "6" and x("evt.arg.fd", ev) == "<6t>::1:40000->::1:80"


def test_unconnected_udp_sendto_rewrites_the_tuple(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 2, 0), bl=blobs(fd=sock_desc(3, INET, 2, 17, sk=0x40)))
    desc = sock_desc(3, INET, 2, 17, sk=0x40, local=("0.0.0.0", 50163), state=7)
    ev = w.syscall(200, "sendto", 2, (3, 0, 2, 0, 0, 16), bl=blobs(sockaddr=sockaddr_in("8.8.8.8", 53), fd=desc))
    assert x("fd.name", ev) == "0.0.0.0:50163->8.8.8.8:53"
    assert x("fd.l4proto", ev) == "udp" and x("fd.connected", ev) is False
    assert x("fd.name_changed", ev) is True
    assert str(x("fd.sip", ev)) == "8.8.8.8" and x("fd.sport", ev) == 53
    assert x("evt.arg.size", ev) == "2" and x("evt.arg.tuple", ev) == "0.0.0.0:50163->8.8.8.8:53"
    # The same destination again: no change; the previous event keeps its flag.
    ev2 = w.syscall(200, "sendto", 2, (3, 0, 2, 0, 0, 16), bl=blobs(sockaddr=sockaddr_in("8.8.8.8", 53), fd=desc))
    assert x("fd.name_changed", ev2) is False and x("fd.name_changed", ev) is True
    ev3 = w.syscall(200, "sendmsg", 2, (3, 0, 0), bl=blobs(sockaddr=sockaddr_in("1.1.1.1", 53), fd=desc))
    assert x("fd.name", ev3) == "0.0.0.0:50163->1.1.1.1:53" and x("fd.name_changed", ev3) is True
    ev4 = w.syscall(200, "recvfrom", 10, (3, 0, 512), bl=blobs(fd=desc))
    assert x("fd.name", ev4) == "0.0.0.0:50163->1.1.1.1:53" and x("evt.arg.size", ev4) == "512"
    assert x("fd.name_changed", ev4) is False and x("fd.name_changed", ev3) is True


def test_icmp_raw_and_netlink_sockets(w: World) -> None:
    ping = sock_desc(3, INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP, sk=0x80)
    w.syscall(200, "socket", 3, (INET, 2, 1), bl=blobs(fd=ping))
    desc = sock_desc(3, INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP, sk=0x80, local=("10.0.0.5", 7),
                     remote=("8.8.8.8", 0), state=1)
    ev = w.syscall(200, "connect", 0, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("8.8.8.8", 0), fd=desc))
    assert x("fd.l4proto", ev) == "icmp" and x("fd.name", ev) == "10.0.0.5->8.8.8.8"
    assert x("evt.arg.fd", ev) == "<4i>10.0.0.5->8.8.8.8"
    raw = sock_desc(4, INET, socket.SOCK_RAW, socket.IPPROTO_TCP, sk=0x81)
    ev = w.syscall(200, "socket", 4, (INET, 3, 6), bl=blobs(fd=raw))
    assert ev.fd is not None and ev.fd.l4proto == "raw" and x("evt.arg.fd", ev) == "<4r>"
    nl = sock_desc(5, 16, socket.SOCK_RAW, 0, sk=0x82)
    ev = w.syscall(200, "socket", 5, (16, 3, 0), bl=blobs(fd=nl))
    assert x("fd.type", ev) == "netlink" and x("fd.typechar", ev) == "n" and x("fd.l4proto", ev) == "<NA>"
    assert x("evt.arg.domain", ev) == "AF_ROUTE|AF_NETLINK"
    pkt = sock_desc(6, 17, socket.SOCK_RAW, 0x0300, sk=0x83)
    ev = w.syscall(200, "socket", 6, (17, 3, 0x0300), bl=blobs(fd=pkt))
    assert x("fd.type", ev) == "<NA>" and x("fd.typechar", ev) == "o" and x("evt.arg.domain", ev) == "AF_PACKET"


def test_unix_sockets(w: World) -> None:
    w.syscall(200, "socket", 3, (UNIX, 1, 0), bl=blobs(fd=sock_desc(3, UNIX, 1, 0, sk=0xFFFF8D2B1C3E4400)))
    ev = w.syscall(200, "bind", 0, (3, 0, 20), bl=blobs(sockaddr=sockaddr_un("/run/app.sock"),
                                                         fd=sock_desc(3, UNIX, 1, 0, sk=0xFFFF8D2B1C3E4400)))
    assert x("fd.name", ev) == "/run/app.sock" and x("fd.typechar", ev) == "u"
    assert x("fd.sockfamily", ev) == "unix"
    listen = w.syscall(200, "listen", 0, (3, 128), bl=blobs(fd=sock_desc(3, UNIX, 1, 0, sk=0xFFFF8D2B1C3E4400)))
    assert x("evt.arg.backlog", listen) == "128"
    acc = sock_desc(4, UNIX, 1, 0, sk=0xFFFF8D2B1C3E4800, peer=0xFFFF8D2B1C3E4C00, ino=2001)
    ev = w.syscall(200, "accept", 4, (3,), bl=blobs(fd=acc))
    assert x("fd.name", ev) == "ffff8d2b1c3e4800->ffff8d2b1c3e4c00 /run/app.sock"
    w.syscall(200, "socket", 5, (UNIX, 1, 0), bl=blobs(fd=sock_desc(5, UNIX, 1, 0, sk=0xFFFF8D2B1C3E5000)))
    desc = sock_desc(5, UNIX, 1, 0, sk=0xFFFF8D2B1C3E5000, peer=0xFFFF8D2B1C3E5400)
    ev = w.syscall(200, "connect", 0, (5, 0, 20), bl=blobs(sockaddr=sockaddr_un("/var/run/docker.sock"), fd=desc))
    assert x("fd.name", ev) == "ffff8d2b1c3e5400->ffff8d2b1c3e5000 /var/run/docker.sock"
    assert x("evt.arg.addr", ev) == "/var/run/docker.sock"
    assert x("fd.l4proto", ev) == "<NA>" and x("fd.sip", ev) is MISSING


def test_listen_after_bind_to_port_zero_learns_the_port(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 1, 0), bl=blobs(fd=sock_desc(3, INET, sk=0x50)))
    ev = w.syscall(200, "bind", 0, (3, 0, 16), bl=blobs(sockaddr=sockaddr_in("127.0.0.1", 0),
                                                         fd=sock_desc(3, INET, sk=0x50)))
    assert x("fd.name", ev) == "127.0.0.1:0" and x("fd.sport", ev) is MISSING
    desc = sock_desc(3, INET, sk=0x50, local=("127.0.0.1", 55795), state=10)
    ev = w.syscall(200, "listen", 0, (3, 5), bl=blobs(fd=desc))
    assert x("fd.name", ev) == "127.0.0.1:55795" and x("fd.sport", ev) == 55795


def test_inherited_connected_socket_is_rebuilt_with_a_role(w: World) -> None:
    desc = sock_desc(0, INET, sk=0x60, local=("10.0.0.5", 41000), remote=("10.9.9.9", 443), state=1)
    ev = w.syscall(200, "sendto", 5, (0, 0, 5, 0, 0, 0), bl=blobs(fd=desc))
    assert x("fd.name", ev) == "10.0.0.5:41000->10.9.9.9:443"
    assert str(x("fd.rip", ev)) == "10.9.9.9" and x("fd.l4proto", ev) == "tcp"
    desc = sock_desc(1, INET, sk=0x61, local=("10.0.0.5", 22), remote=("10.9.9.9", 51000), state=1)
    ev = w.syscall(200, "recvfrom", 5, (1, 0, 64), bl=blobs(fd=desc))
    assert str(x("fd.cip", ev)) == "10.9.9.9" and x("fd.sport", ev) == 22


def test_socket_identity_change_rebuilds(w: World) -> None:
    w.syscall(200, "socket", 3, (INET, 1, 0), bl=blobs(fd=sock_desc(3, INET, sk=0x70)))
    other = sock_desc(3, UNIX, 1, 0, sk=0x71)
    ev = w.syscall(200, "listen", 0, (3, 1), bl=blobs(fd=other))
    assert x("fd.type", ev) == "unix"


def test_blob_tags_are_the_sensor_ones() -> None:
    assert blobs(path0="a")[Blob.PATH0] == b"a" and int(Blob.FD) == 8
