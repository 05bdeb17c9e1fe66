"""The bodies of the suspicious behaviours: each makes the system calls it is named after and returns what a
caller may report (pids, fds, addresses, results), with ``t``, the CLOCK_MONOTONIC time just before the
decisive call (the clock of ``time.monotonic()``), from which ``lanner simulate`` measures detection latency.

Standard library only (see syscalls.py). The callers are scripts run by path in a child process so that the
process a rule sees is the one doing the behaviour: child.py for ``lanner simulate``, and the test suite's
behaviour scripts, which differ only in what they pass (names, tags, programs) and print.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import IO, NamedTuple

from lanner.simulate import syscalls as sc

Address = tuple[str, int]


class Opened(NamedTuple):
    t: float
    fd: int


class Ran(NamedTuple):
    """A child process of this one that has been waited for; `status` as the behaviour defines it."""
    t: float
    pid: int
    status: int


def write_file(path: str, mode: str, data: bytes, perm: int = 0o600) -> Opened:
    """openat(path, O_WRONLY|O_CREAT) with O_TRUNC (mode "trunc") or O_APPEND (mode "append"), write `data`."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "trunc" else os.O_APPEND)
    t = time.monotonic()
    fd = os.open(path, flags, perm)
    os.write(fd, data)
    os.close(fd)
    return Opened(t, fd)


def read_file(path: str, delay: float = 0.0) -> Opened:
    """Sleep `delay` seconds (rules may look at how long the process has run), then openat(path, O_RDONLY) and
    read a few bytes. A failed open raises OSError."""
    time.sleep(delay)
    t = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 64)
    os.close(fd)
    return Opened(t, fd)


def spawn(argv: Sequence[str], stdout: int | IO[bytes] | None = None) -> Ran:
    """Run argv as a child of this process and wait for it; status: its return code."""
    t = time.monotonic()
    child = subprocess.Popen(list(argv), stdout=stdout)
    return Ran(t, child.pid, child.wait())


def run_as(uid: int, gid: int, argv: Sequence[str]) -> Ran:
    """fork; the child drops to uid/gid and execs argv; status: the wait status."""
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            sc.become(uid, gid)
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return Ran(t, pid, status)


def setuid_root(uid: int) -> Ran:
    """fork; the child becomes `uid` and asks for root with setuid(0); status: the errno of that call (0 if it
    succeeded), passed back as the child's exit code 100 + errno."""
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            sc.become(uid, uid)
            res = sc.syscall(sc.SYS_SETUID, 0)
            os._exit(100 + min(max(-res, 0), 100))
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return Ran(t, pid, os.waitstatus_to_exitcode(status) - 100)


class Traced(NamedTuple):
    t: float
    target: int
    res: int


def ptrace_attach(request: str = "attach", settle: float = 0.0) -> Traced:
    """PTRACE_ATTACH (or PTRACE_SEIZE, request "seize") to a sleeping child of our own, `settle` seconds after
    forking it, then detach and kill it. res: the attach's result."""
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    time.sleep(settle)
    t = time.monotonic()
    res = sc.syscall(sc.SYS_PTRACE, sc.PTRACE_SEIZE if request == "seize" else sc.PTRACE_ATTACH, pid, 0, 0)
    if res == 0:
        if request != "seize":
            os.waitpid(pid, 0)  # the SIGSTOP of the attach (a seize stops nothing)
        sc.syscall(sc.SYS_PTRACE, sc.PTRACE_DETACH, pid, 0, 0)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return Traced(t, pid, res)


def ptrace_traceme() -> Ran:
    """A child asks to be traced by its parent (PTRACE_TRACEME, the anti-debugging trick) and exits; status:
    the wait status (0: the request succeeded)."""
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if sc.syscall(sc.SYS_PTRACE, sc.PTRACE_TRACEME, 0, 0, 0) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return Ran(t, pid, status)


class Fileless(NamedTuple):
    t: float
    pid: int
    status: int
    memfd: int


def memfd_exec(name: str, program: str, argv: Sequence[str], how: str = "fexecve") -> Fileless:
    """Copy `program` into a memfd called `name` and run it from there in a child, as argv. how: "fexecve"
    (execveat(memfd, "", AT_EMPTY_PATH)), "procfd" (execve("/proc/self/fd/N")) or "none" (the control: the
    memfd is made all the same, but the child runs `program` from the disk). status: the wait status."""
    mfd = sc.syscall(sc.SYS_MEMFD_CREATE, name.encode(), 0)
    if mfd < 0:
        raise OSError(-mfd, "memfd_create")
    with open(program, "rb") as f:
        os.write(mfd, f.read())
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            if how == "fexecve":
                cargv = (ctypes.c_char_p * (len(argv) + 1))(*(a.encode() for a in argv), None)
                envp = (ctypes.c_char_p * 1)(None)
                sc.syscall(sc.SYS_EXECVEAT, mfd, b"", ctypes.addressof(cargv), ctypes.addressof(envp),
                           sc.AT_EMPTY_PATH)
            else:
                os.execv(f"/proc/self/fd/{mfd}" if how == "procfd" else program, list(argv))
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return Fileless(t, pid, status, mfd)


class Connected(NamedTuple):
    t: float
    local: Address | None
    """The client's end, when this process connected."""
    peer: Address
    """The client's end as the listener accepted it."""
    client_stdout: bytes
    """What the client program printed, when one connected."""


def netns_connect(addr: str, port: int, client: Sequence[str] = ()) -> Connected:
    """In a private network namespace (see syscalls.private_net): a TCP listener on addr:port of our own, and a
    connection to it, made by this process or (if given) by the program `client`, run to its end."""
    sc.private_net(addr)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind((addr, port))
        srv.listen(4)
        t = time.monotonic()
        local: Address | None = None
        out = b""
        if client:
            out = subprocess.run(list(client), check=True, stdout=subprocess.PIPE).stdout
        else:
            with socket.create_connection((addr, port), timeout=5) as cli:
                local = cli.getsockname()
        conn, peer = srv.accept()
        conn.close()
    return Connected(t, local, peer, out)


class Socket(NamedTuple):
    t: float
    fd: int
    local: Address


def connect(addr: str, port: int) -> Socket:
    """TCP connect to addr:port and close."""
    t = time.monotonic()
    with socket.create_connection((addr, port), timeout=5) as s:
        return Socket(t, s.fileno(), s.getsockname())


class Redirected(NamedTuple):
    t: float
    res: int
    local: Address
    remote: Address


def stdio_socket() -> Redirected:
    """A loopback TCP connection to a listener of our own, duplicated onto standard input with dup2 (the core of
    a reverse shell); nothing is read from it. res: the dup2's result."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=5) as cli:
            t = time.monotonic()
            res = sc.syscall(sc.SYS_DUP2, cli.fileno(), 0)
            return Redirected(t, res, cli.getsockname(), srv.getsockname())


def k8s_token(token_dir: str, reader: str, tag: str) -> Ran:
    """In a private mount namespace (see syscalls.private_run, its tmpfs named `tag`): a service-account token in
    `token_dir` (below /run), read by `reader` (e.g. /usr/bin/cat). status: the reader's return code."""
    sc.private_run(tag)
    os.makedirs(token_dir)
    token = os.path.join(token_dir, "token")
    with open(token, "w") as f:
        f.write(f"eyJhbGciOiJSUzI1NiJ9.{tag}.signature\n")
    return spawn([reader, token], stdout=subprocess.DEVNULL)
