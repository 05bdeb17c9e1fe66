"""Behaviours that Falco's stable rules look for, performed for real by a child process.

    <python3 or a renamed copy of it> tests/kernel/scenarios/behave.py ACTION [ARG...]

Used by tests/kernel/test_live_rules.py. The program that runs this script is the process the rule
sees (its proc.name is the basename of the interpreter copy, e.g. ``nginx``); each action makes the
syscalls it is named after (the bodies are those of ``lanner simulate``, lanner/simulate/behaviours.py)
and prints what the test needs as one JSON line. Nothing here touches a system file other than by reading
it; every file it creates is the caller's temporary file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    # Run by path by a bare interpreter: the repository's root makes the lanner package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from lanner.simulate import behaviours


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def open_read(path: str, delay: str = "0") -> None:
    """Sleep `delay` seconds, then openat(path, O_RDONLY) and read; a failed open is reported, not raised."""
    try:
        opened = behaviours.read_file(path, float(delay))
    except OSError as exc:
        say(fd=-1, errno=exc.errno)
        return
    say(fd=opened.fd)


def open_write(path: str, mode: str) -> None:
    """openat(path, O_WRONLY|O_CREAT|O_TRUNC) (mode "trunc") or O_WRONLY|O_CREAT|O_APPEND (mode "append")."""
    say(fd=behaviours.write_file(path, mode, b"", 0o640).fd)


def spawn(*argv: str) -> None:
    """Run argv as a child of this process and wait for it."""
    say(returncode=behaviours.spawn(argv).status)


def as_user(uid: str, gid: str, *argv: str) -> None:
    """fork; the child drops to uid/gid (setgroups, setgid, setuid) and execs argv; wait for it."""
    ran = behaviours.run_as(int(uid), int(gid), argv)
    say(child=ran.pid, status=ran.status)


def ptrace_attach(request: str) -> None:
    """PTRACE_ATTACH (or PTRACE_SEIZE) to a sleeping child, then detach and kill it."""
    traced = behaviours.ptrace_attach(request, settle=0.05)
    say(target=traced.target, res=traced.res)


def ptrace_traceme() -> None:
    """A child asks to be traced by its parent (PTRACE_TRACEME, the anti-debug trick), then exits."""
    ran = behaviours.ptrace_traceme()
    say(child=ran.pid, status=ran.status)


def memfd_exec(how: str) -> None:
    """Copy /usr/bin/cat into a memfd and run it from there as `cat /proc/self/comm`, in a child.

    how = "fexecve" (execveat(fd, "", AT_EMPTY_PATH)), "procfd" (execve("/proc/self/fd/N")) or "none"
    (the memfd is made the same way but the child execs /usr/bin/cat on disk: the control). The child
    prints its kernel comm (proc.name) on the first line of stdout.
    """
    ran = behaviours.memfd_exec("lanner-live", "/usr/bin/cat", ["lanner-fileless", "/proc/self/comm"], how)
    say(child=ran.pid, status=ran.status, memfd=ran.memfd)


def ssh_netns(addr: str, port: str, client: str) -> None:
    """In a new network namespace of this process: lo up with `addr`, a TCP listener on addr:port, and
    `client` (a python3 copy named ssh, or not) connecting to it. Nothing leaves the namespace."""
    conn = behaviours.netns_connect(addr, int(port), [client, os.path.abspath(__file__), "connect", addr, port])
    say(client=json.loads(conn.client_stdout.decode().splitlines()[-1]), peer=list(conn.peer))


def connect(addr: str, port: str) -> None:
    """TCP connect to addr:port and close."""
    sock = behaviours.connect(addr, int(port))
    say(fd=sock.fd, local=list(sock.local))


ACTIONS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (open_read, open_write, spawn, as_user, ptrace_attach, ptrace_traceme, memfd_exec,
                            ssh_netns, connect)
}

if __name__ == "__main__":
    ACTIONS[sys.argv[1]](*sys.argv[2:])
