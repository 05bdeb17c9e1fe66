"""Behaviours the default rules look for, performed for real by a child process of the end-to-end test.

    <python3, or a renamed copy of it> tests/kernel/e2e/act.py ACTION [ARG...]

Used by tests/kernel/test_agent_e2e.py. The process running this script (or the program it starts) is the
process the rule sees. Each action makes the system calls it is named after and prints what the test needs
(pids, fds, ports, return values) as one JSON line on stdout. Files are only the caller's temporary files;
mounts and network addresses live in private namespaces of this process and vanish with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYS_DUP2 = 33
SYS_PTRACE = 101
SYS_SETUID = 105
SYS_INIT_MODULE = 175
SYS_FINIT_MODULE = 313
SYS_MEMFD_CREATE = 319
SYS_EXECVEAT = 322
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
AT_EMPTY_PATH = 0x1000
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18


def sc(nr: int, *args: int | bytes | None) -> int:
    """A raw system call (glibc cannot substitute another one); -errno on failure."""
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a or 0) for a in args]
    ret: int = libc.syscall(ctypes.c_long(nr), *conv)
    return ret if ret >= 0 else -ctypes.get_errno()


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def write(path: str, mode: str) -> None:
    """openat(path, O_WRONLY|O_CREAT) with O_TRUNC (mode "trunc") or O_APPEND (mode "append"), write a line."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "trunc" else os.O_APPEND)
    fd = os.open(path, flags, 0o600)
    os.write(fd, b"lanner e2e\n")
    os.close(fd)
    say(pid=os.getpid(), fd=fd)


def read(path: str) -> None:
    """openat(path, O_RDONLY) and read a few bytes."""
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 64)
    os.close(fd)
    say(pid=os.getpid(), fd=fd)


def spawn(*argv: str) -> None:
    """Run argv as a child of this process and wait for it."""
    child = subprocess.Popen(list(argv))
    say(pid=os.getpid(), child=child.pid, returncode=child.wait())


def setuid_root(uid: str) -> None:
    """fork; the child becomes `uid` (setgroups, setgid, setuid) and then asks for root: setuid(0) fails."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(int(uid))
            os.setuid(int(uid))
            res = sc(SYS_SETUID, 0)
            os._exit(100 + min(-res, 100) if res < 0 else 0)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    say(pid=os.getpid(), child=pid, errno=os.waitstatus_to_exitcode(status) - 100)


def ptrace_attach() -> None:
    """PTRACE_ATTACH to a sleeping child, then detach and kill it."""
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    res = sc(SYS_PTRACE, PTRACE_ATTACH, pid, 0, 0)
    if res == 0:
        os.waitpid(pid, 0)  # the SIGSTOP of the attach
        sc(SYS_PTRACE, PTRACE_DETACH, pid, 0, 0)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    say(pid=os.getpid(), target=pid, res=res)


def memfd_exec(name: str) -> None:
    """Copy /usr/bin/true into a memfd called `name` and run it from there (execveat AT_EMPTY_PATH) in a child."""
    mfd = sc(SYS_MEMFD_CREATE, name.encode(), 0)
    assert mfd >= 0, mfd
    with open("/usr/bin/true", "rb") as f:
        os.write(mfd, f.read())
    pid = os.fork()
    if pid == 0:
        try:
            argv = (ctypes.c_char_p * 3)(b"fileless", name.encode(), None)
            envp = (ctypes.c_char_p * 1)(None)
            sc(SYS_EXECVEAT, mfd, b"", ctypes.addressof(argv), ctypes.addressof(envp), AT_EMPTY_PATH)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    say(pid=os.getpid(), child=pid, status=status)


def netns_connect(addr: str, port: str) -> None:
    """In a new network namespace: lo up with `addr`, a TCP listener on addr:port and a connection to it."""
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["/usr/sbin/ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["/usr/sbin/ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind((addr, int(port)))
        srv.listen(4)
        with socket.create_connection((addr, int(port)), timeout=5) as cli:
            local = cli.getsockname()
        say(pid=os.getpid(), local=list(local))


def stdio_socket() -> None:
    """A loopback TCP connection duplicated onto standard input with dup2 (what a reverse shell does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=5) as cli:
            res = sc(SYS_DUP2, cli.fileno(), 0)
            say(pid=os.getpid(), res=res, local=list(cli.getsockname()), remote=list(srv.getsockname()))


def k8s_token(token_dir: str, reader: str) -> None:
    """In a private mount namespace with a tmpfs over /run: a service-account token in `token_dir`, read by
    `reader` (a file tool, e.g. /usr/bin/cat). Nothing appears on the host's /run."""
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(b"lanner-e2e", b"/run", b"tmpfs", 0, b"mode=0755") != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs /run")
    os.makedirs(token_dir)
    token = os.path.join(token_dir, "token")
    with open(token, "w") as f:
        f.write("eyJhbGciOiJSUzI1NiJ9.lanner-e2e.signature\n")
    child = subprocess.Popen([reader, token], stdout=subprocess.DEVNULL)
    say(pid=os.getpid(), child=child.pid, returncode=child.wait())


def load_module(path: str) -> None:
    """finit_module on `path` and init_module on a bogus image: the attempts, whatever the kernel answers."""
    fd = os.open(path, os.O_RDONLY)
    fres = sc(SYS_FINIT_MODULE, fd, b"lanner_e2e=1", 0)
    os.close(fd)
    image = ctypes.create_string_buffer(b"\x7fELF" + bytes(60))
    ires = sc(SYS_INIT_MODULE, ctypes.addressof(image), 64, b"lanner_e2e=1")
    say(pid=os.getpid(), finit_module=fres, init_module=ires)


ACTIONS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (write, read, spawn, setuid_root, ptrace_attach, memfd_exec, netns_connect,
                            stdio_socket, k8s_token, load_module)
}

if __name__ == "__main__":
    ACTIONS[sys.argv[1]](*sys.argv[2:])
