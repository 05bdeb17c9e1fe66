"""Syscall actions performed by a child process for the live kernel tests.

    python3 tests/kernel/actions.py ACTION [ARG...]

Each action makes the exact syscalls it is named after (through libc's syscall(), so glibc
cannot substitute another call) and prints what the test needs to know (fds, ports) as JSON.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
AT_FDCWD = -100


def sc(nr: int, *args: object) -> int:
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) if isinstance(a, int) else a
            for a in args]
    ret = libc.syscall(ctypes.c_long(nr), *conv)
    return ret if ret >= 0 else -ctypes.get_errno()


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def files(d: str) -> None:
    """open/openat/openat2/creat with absolute, relative and dirfd-relative paths."""
    os.chdir(d)
    fd1 = sc(2, b"rel-open.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)      # open, relative
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    fd2 = sc(257, dfd, b"sub/../at-open.txt", os.O_RDWR | os.O_CREAT, 0o600)       # openat, dirfd
    how = (ctypes.c_uint64 * 3)(os.O_RDONLY, 0, 0)
    fd3 = sc(437, AT_FDCWD, b"/etc/hostname", ctypes.byref(how), 24)                # openat2, absolute
    fd4 = sc(85, os.path.join(d, "creat.txt").encode(), 0o644)                      # creat
    fd5 = sc(257, AT_FDCWD, b"link-to-hostname", os.O_RDONLY, 0)                    # via a symlink
    bad = sc(257, AT_FDCWD, b"/nonexistent/x", os.O_RDONLY, 0)
    say(fds=[fd1, fd2, fd3, fd4, fd5], dirfd=dfd, bad=bad)


def fsops(d: str) -> None:
    """chmod family, rename/link/symlink/unlink and their *at forms, mkdir/rmdir."""
    os.chdir(d)
    for name in ("a", "b", "c"):
        open(name, "w").close()
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    sc(90, b"a", 0o4755)                                  # chmod
    fd = os.open("b", os.O_RDONLY)
    sc(91, fd, 0o600)                                     # fchmod
    sc(268, dfd, b"c", 0o640)                             # fchmodat
    sc(82, b"a", b"a2")                                   # rename
    sc(264, dfd, b"b", AT_FDCWD, b"b2")                   # renameat
    sc(316, AT_FDCWD, b"c", dfd, b"c2", 0)                # renameat2
    sc(86, b"a2", b"hard1")                               # link
    sc(265, AT_FDCWD, b"b2", dfd, b"hard2", 0)            # linkat
    sc(88, b"/etc/shadow", b"sym1")                       # symlink
    sc(266, b"/etc/passwd", dfd, b"sym2")                 # symlinkat
    sc(83, b"dir1", 0o755)                                # mkdir
    sc(258, dfd, b"dir2", 0o700)                          # mkdirat
    sc(84, b"dir1")                                       # rmdir
    sc(87, b"hard1")                                      # unlink
    sc(263, dfd, b"hard2", 0)                             # unlinkat
    sc(263, dfd, b"dir2", 0x200)                          # unlinkat AT_REMOVEDIR
    say(fd=fd, dirfd=dfd)


def net(port_tcp: str, port_udp: str) -> None:
    """socket/bind/listen/connect/accept4 on loopback TCP, sendto/sendmsg on UDP, IPv6 connect."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port_tcp)))
    srv.listen(8)
    cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    cli.connect(("127.0.0.1", int(port_tcp)))
    conn, _peer = srv.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.sendto(b"ping", ("127.0.0.1", int(port_udp)))
    udp.sendmsg([b"pong"], [], 0, ("127.0.0.1", int(port_udp) + 1))
    srv6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv6.bind(("::1", 0))
    srv6.listen(1)
    c6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    c6.connect(("::1", srv6.getsockname()[1]))
    say(listen=srv.fileno(), client=cli.fileno(), client_port=cli.getsockname()[1], accepted=conn.fileno(),
        udp=udp.fileno(), v6_port=srv6.getsockname()[1], v6_client=c6.fileno(), v6_client_port=c6.getsockname()[1])


def creds() -> None:
    """setgid/setresgid/setresuid/setuid down to nobody."""
    sc(106, 65534)                       # setgid
    sc(119, 65534, 65534, 65534)         # setresgid
    sc(117, 65534, 65534, 0)             # setresuid (saved uid 0)
    sc(105, 65534)                       # setuid
    sc(2, b"/etc/hostname", os.O_RDONLY, 0)   # an event made as nobody


def ptrace() -> None:
    """PTRACE_ATTACH to a sleeping child, then PTRACE_TRACEME in another."""
    pid = os.fork()
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    time.sleep(0.1)
    res = sc(101, 16, pid, 0, 0)         # PTRACE_ATTACH
    os.waitpid(pid, 0)
    sc(101, 17, pid, 0, 0)               # PTRACE_DETACH
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    child = os.fork()
    if child == 0:
        sc(101, 0, 0, 0, 0)              # PTRACE_TRACEME
        os._exit(0)
    os.waitpid(child, 0)
    say(target=pid, res=res)


def namespaces() -> None:
    """unshare(CLONE_NEWUTS), setns into our own uts namespace file."""
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    sc(272, 0x04000000)                  # unshare CLONE_NEWUTS
    sc(308, fd, 0x04000000)              # setns
    say(fd=fd)


def mounts(d: str) -> None:
    """mount a tmpfs and unmount it, in a private mount namespace."""
    sc(272, 0x00020000)                  # unshare CLONE_NEWNS
    sc(165, b"none", b"/", 0, 0x4000 | 0x40000, 0)   # make / rprivate (MS_REC|MS_PRIVATE)
    res = sc(165, b"lanner-test", d.encode(), b"tmpfs", 0, 0)
    res2 = sc(166, d.encode(), 0)
    say(mount=res, umount=res2)


def fds() -> None:
    """memfd_create, dup/dup2/dup3 of a socket onto stdio, userfaultfd, bpf map, finit/init_module."""
    mfd = sc(319, b"lanner-memfd", 1)   # MFD_CLOEXEC
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", 9))
    d1 = sc(32, s.fileno())
    saved = os.dup(2)
    d2 = sc(33, s.fileno(), 2)           # a socket onto stderr
    d3 = sc(292, s.fileno(), 40, os.O_CLOEXEC)
    os.dup2(saved, 2)
    uffd = sc(323, os.O_CLOEXEC)
    attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)   # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
    bfd = sc(321, 0, ctypes.byref(attr), ctypes.sizeof(attr))   # BPF_MAP_CREATE
    img = ctypes.create_string_buffer(b"\x7fELF", 64)
    im = sc(175, img, 64, b"")           # init_module (ENOSYS without CONFIG_MODULES)
    kfd = os.open("/etc/hostname", os.O_RDONLY)
    fim = sc(313, kfd, b"", 0)           # finit_module
    say(memfd=mfd, sock=s.fileno(), dup=d1, dup2=d2, dup3=d3, uffd=uffd, bpf=bfd, init=im, finit=fim, kfd=kfd)


def memfd_exec() -> None:
    """Fileless execution: copy /usr/bin/true into a memfd and fexecve it (execveat AT_EMPTY_PATH)."""
    mfd = sc(319, b"lanner-fileless", 0)
    with open("/usr/bin/true", "rb") as f:
        os.write(mfd, f.read())
    argv = (ctypes.c_char_p * 3)(b"fileless", b"arg1", None)
    envp = (ctypes.c_char_p * 2)(b"LANNER=1", None)
    sc(322, mfd, b"", argv, envp, 0x1000)  # execveat(fd, "", ..., AT_EMPTY_PATH)
    sys.exit(1)  # only reached if the exec failed


ACTIONS = {f.__name__: f for f in (files, fsops, net, creds, ptrace, namespaces, mounts, fds, memfd_exec)}

if __name__ == "__main__":
    ACTIONS[sys.argv[1]](*sys.argv[2:])
