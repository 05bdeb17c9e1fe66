"""Behaviours that Falco's stable rules look for, performed for real by a child process.

    <python3 or a renamed copy of it> tests/kernel/scenarios/behave.py ACTION [ARG...]

Used by tests/kernel/test_live_rules.py. The program that runs this script is the process the rule
sees (its proc.name is the basename of the interpreter copy, e.g. ``nginx``); each action makes the
syscalls it is named after and prints what the test needs as one JSON line. Nothing here touches a
system file other than by reading it; every file it creates is the caller's temporary file.
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

SYS_PTRACE = 101
SYS_MEMFD_CREATE = 319
SYS_EXECVEAT = 322
PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SEIZE = 0, 16, 17, 0x4206
AT_EMPTY_PATH = 0x1000
CLONE_NEWNET = 0x40000000


def sc(nr: int, *args: int | bytes | None) -> int:
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a or 0) for a in args]
    ret: int = libc.syscall(ctypes.c_long(nr), *conv)
    return ret if ret >= 0 else -ctypes.get_errno()


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def open_read(path: str, delay: str = "0") -> None:
    """Sleep `delay` seconds, then openat(path, O_RDONLY) and read; a failed open is reported, not raised."""
    time.sleep(float(delay))
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        say(fd=-1, errno=exc.errno)
        return
    os.read(fd, 64)
    os.close(fd)
    say(fd=fd)


def open_write(path: str, mode: str) -> None:
    """openat(path, O_WRONLY|O_CREAT|O_TRUNC) (mode "trunc") or O_WRONLY|O_CREAT|O_APPEND (mode "append")."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "trunc" else os.O_APPEND)
    fd = os.open(path, flags, 0o640)
    os.write(fd, b"")
    os.close(fd)
    say(fd=fd)


def spawn(*argv: str) -> None:
    """Run argv as a child of this process and wait for it."""
    res = subprocess.run(list(argv), check=False)
    say(returncode=res.returncode)


def as_user(uid: str, gid: str, *argv: str) -> None:
    """fork; the child drops to uid/gid (setgroups, setgid, setuid) and execs argv; wait for it."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(int(gid))
            os.setuid(int(uid))
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    say(child=pid, status=status)


def ptrace_attach(request: str) -> None:
    """PTRACE_ATTACH (or PTRACE_SEIZE) to a sleeping child, then detach and kill it."""
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    time.sleep(0.05)
    if request == "seize":
        res = sc(SYS_PTRACE, PTRACE_SEIZE, pid, 0, 0)
    else:
        res = sc(SYS_PTRACE, PTRACE_ATTACH, pid, 0, 0)
        os.waitpid(pid, 0)  # the SIGSTOP of the attach
    sc(SYS_PTRACE, PTRACE_DETACH, pid, 0, 0)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    say(target=pid, res=res)


def ptrace_traceme() -> None:
    """A child asks to be traced by its parent (PTRACE_TRACEME, the anti-debug trick), then exits."""
    pid = os.fork()
    if pid == 0:
        res = sc(SYS_PTRACE, PTRACE_TRACEME, 0, 0, 0)
        os._exit(0 if res == 0 else 1)
    _, status = os.waitpid(pid, 0)
    say(child=pid, status=status)


def memfd_exec(how: str) -> None:
    """Copy /usr/bin/cat into a memfd and run it from there as `cat /proc/self/comm`, in a child.

    how = "fexecve" (execveat(fd, "", AT_EMPTY_PATH)), "procfd" (execve("/proc/self/fd/N")) or "none"
    (the memfd is made the same way but the child execs /usr/bin/cat on disk: the control). The child
    prints its kernel comm (proc.name) on the first line of stdout.
    """
    mfd = sc(SYS_MEMFD_CREATE, b"lanner-live", 0)
    assert mfd >= 0, mfd
    with open("/usr/bin/cat", "rb") as f:
        os.write(mfd, f.read())
    pid = os.fork()
    if pid == 0:
        try:
            argv = (ctypes.c_char_p * 3)(b"lanner-fileless", b"/proc/self/comm", None)
            envp = (ctypes.c_char_p * 1)(None)
            if how == "fexecve":
                sc(SYS_EXECVEAT, mfd, b"", ctypes.addressof(argv), ctypes.addressof(envp), AT_EMPTY_PATH)
            elif how == "procfd":
                os.execv(f"/proc/self/fd/{mfd}", ["lanner-fileless", "/proc/self/comm"])
            else:
                os.execv("/usr/bin/cat", ["lanner-fileless", "/proc/self/comm"])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    say(child=pid, status=status, memfd=mfd)


def ssh_netns(addr: str, port: str, client: str) -> None:
    """In a new network namespace of this process: lo up with `addr`, a TCP listener on addr:port, and
    `client` (a python3 copy named ssh, or not) connecting to it. Nothing leaves the namespace."""
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["/usr/sbin/ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["/usr/sbin/ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((addr, int(port)))
    srv.listen(4)
    res = subprocess.run([client, os.path.abspath(__file__), "connect", addr, port], check=True,
                         stdout=subprocess.PIPE)
    conn, peer = srv.accept()
    conn.close()
    srv.close()
    say(client=json.loads(res.stdout.decode().splitlines()[-1]), peer=list(peer))


def connect(addr: str, port: str) -> None:
    """TCP connect to addr:port and close."""
    with socket.create_connection((addr, int(port)), timeout=5) as s:
        say(fd=s.fileno(), local=list(s.getsockname()))


ACTIONS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (open_read, open_write, spawn, as_user, ptrace_attach, ptrace_traceme, memfd_exec,
                            ssh_netns, connect)
}

if __name__ == "__main__":
    ACTIONS[sys.argv[1]](*sys.argv[2:])
