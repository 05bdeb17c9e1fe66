"""The process that performs a simulated behaviour, run by ``lanner simulate`` in a child interpreter.

    <python3, or a copy of it under a server-like name> child.py BEHAVIOUR [ARG...]

Standard library only: it is run by path (not imported), often by a copy of the interpreter named ``nginx``
or ``sshd`` so that the kernel's process name is the one a rule looks for. Each behaviour prints one JSON
line; ``t`` is the CLOCK_MONOTONIC time just before the decisive system call (the same clock as the parent's
``time.monotonic()``), from which the parent measures the detection latency. Files touched are the
caller's (temporary) files; network addresses and mounts live in private namespaces of this process.
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

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SYS_DUP2 = 33
SYS_PTRACE = 101
SYS_SETUID = 105
SYS_MEMFD_CREATE = 319
SYS_EXECVEAT = 322
PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_DETACH = 0, 16, 17
AT_EMPTY_PATH = 0x1000
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
IP = "/usr/sbin/ip"


def _sc(nr: int, *args: int | bytes | None) -> int:
    """A raw system call; -errno on failure."""
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a or 0) for a in args]
    ret: int = _libc.syscall(ctypes.c_long(nr), *conv)
    return ret if ret >= 0 else -ctypes.get_errno()


def _say(t: float, **kw: object) -> None:
    print(json.dumps({"t": t, "pid": os.getpid(), **kw}), flush=True)


def write(path: str, mode: str) -> None:
    """openat(path, O_WRONLY|O_CREAT|O_TRUNC) (mode "trunc") or O_APPEND (mode "append") and write a line."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "trunc" else os.O_APPEND)
    t = time.monotonic()
    fd = os.open(path, flags, 0o600)
    os.write(fd, b"lanner simulate\n")
    os.close(fd)
    _say(t)


def read(path: str, delay: str = "0") -> None:
    """Sleep `delay` seconds, then openat(path, O_RDONLY) and read a few bytes."""
    time.sleep(float(delay))
    t = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 64)
    os.close(fd)
    _say(t)


def spawn(*argv: str) -> None:
    """Run argv as a child of this process and wait for it."""
    t = time.monotonic()
    rc = subprocess.run(list(argv), check=False, stdout=subprocess.DEVNULL).returncode
    _say(t, returncode=rc)


def as_user(uid: str, *argv: str) -> None:
    """fork; the child drops to uid (setgroups, setgid, setuid) and execs argv."""
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(int(uid))
            os.setuid(int(uid))
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    _say(t, status=status)


def setuid_root(uid: str) -> None:
    """fork; the child becomes `uid` and asks for root with setuid(0), which fails with EPERM."""
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(int(uid))
            os.setuid(int(uid))
            res = _sc(SYS_SETUID, 0)
            os._exit(0 if res < 0 else 3)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    _say(t, status=status)


def ptrace_attach() -> None:
    """PTRACE_ATTACH to a sleeping child of our own, then detach and kill it."""
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    t = time.monotonic()
    res = _sc(SYS_PTRACE, PTRACE_ATTACH, pid, 0, 0)
    if res == 0:
        os.waitpid(pid, 0)  # the SIGSTOP of the attach
        _sc(SYS_PTRACE, PTRACE_DETACH, pid, 0, 0)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    _say(t, res=res)


def ptrace_traceme() -> None:
    """A child asks to be traced by its parent (PTRACE_TRACEME, the anti-debugging trick) and exits."""
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _sc(SYS_PTRACE, PTRACE_TRACEME, 0, 0, 0) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    _say(t, status=status)


def memfd_exec(name: str) -> None:
    """Copy /usr/bin/true into a memfd called `name` and run it from there (execveat AT_EMPTY_PATH) in a child."""
    mfd = _sc(SYS_MEMFD_CREATE, name.encode(), 0)
    if mfd < 0:
        raise OSError(-mfd, "memfd_create")
    with open("/usr/bin/true", "rb") as f:
        os.write(mfd, f.read())
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            argv = (ctypes.c_char_p * 3)(b"lanner-fileless", name.encode(), None)
            envp = (ctypes.c_char_p * 1)(None)
            _sc(SYS_EXECVEAT, mfd, b"", ctypes.addressof(argv), ctypes.addressof(envp), AT_EMPTY_PATH)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    _say(t, status=status)


def _private_net(addr: str) -> None:
    """This process into a new network namespace with lo up and `addr` on it: nothing can leave it."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run([IP, "link", "set", "lo", "up"], check=True)
    subprocess.run([IP, "addr", "add", f"{addr}/32", "dev", "lo"], check=True)


def netns_connect(addr: str, port: str, client: str = "") -> None:
    """In a private network namespace: a TCP listener on addr:port of our own, and a connection to it, made by
    this process or (if given) by `client`, an interpreter copy running this script's `connect`."""
    _private_net(addr)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind((addr, int(port)))
        srv.listen(4)
        t = time.monotonic()
        if client:
            subprocess.run([client, os.path.abspath(__file__), "connect", addr, port], check=True,
                           stdout=subprocess.DEVNULL)
        else:
            socket.create_connection((addr, int(port)), timeout=5).close()
        conn, _ = srv.accept()
        conn.close()
    _say(t)


def connect(addr: str, port: str) -> None:
    """TCP connect to addr:port and close."""
    t = time.monotonic()
    socket.create_connection((addr, int(port)), timeout=5).close()
    _say(t)


def stdio_socket() -> None:
    """A loopback TCP connection to a listener of our own, duplicated onto standard input with dup2 (the core of
    a reverse shell); nothing is read from it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=5) as cli:
            t = time.monotonic()
            res = _sc(SYS_DUP2, cli.fileno(), 0)
    _say(t, res=res)


def k8s_token(token_dir: str, reader: str) -> None:
    """In a private mount namespace with a tmpfs over /run: a service-account token in `token_dir`, read by
    `reader` (e.g. /usr/bin/cat). Nothing appears on the host's /run."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if _libc.mount(b"lanner-simulate", b"/run", b"tmpfs", 0, b"mode=0755") != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs /run")
    os.makedirs(token_dir)
    token = os.path.join(token_dir, "token")
    with open(token, "w") as f:
        f.write("eyJhbGciOiJSUzI1NiJ9.lanner-simulate.signature\n")
    t = time.monotonic()
    rc = subprocess.run([reader, token], stdout=subprocess.DEVNULL, check=False).returncode
    _say(t, returncode=rc)


BEHAVIOURS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (write, read, spawn, as_user, setuid_root, ptrace_attach, ptrace_traceme, memfd_exec,
                            netns_connect, connect, stdio_socket, k8s_token)
}

if __name__ == "__main__":
    BEHAVIOURS[sys.argv[1]](*sys.argv[2:])
