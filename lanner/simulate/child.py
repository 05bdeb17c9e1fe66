"""The process that performs a simulated behaviour, run by ``lanner simulate`` in a child interpreter.

    <python3, or a copy of it under a server-like name> child.py BEHAVIOUR [ARG...]

Standard library only: it is run by path (not imported), often by a copy of the interpreter named ``nginx``
or ``sshd`` so that the kernel's process name is the one a rule looks for. The behaviours themselves are
behaviours.py's; each prints one JSON line, whose ``t`` (the time just before the decisive system call) the
parent measures the detection latency from. Files touched are the caller's (temporary) files; network
addresses and mounts live in private namespaces of this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    # Run by path, Python puts this directory first on sys.path; the package's root instead lets the shared
    # modules be imported as what they are, whether from a checkout or an installed package.
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from lanner.simulate import behaviours

TAG = "lanner-simulate"


def _say(t: float, **kw: object) -> None:
    print(json.dumps({"t": t, "pid": os.getpid(), **kw}), flush=True)


def write(path: str, mode: str) -> None:
    """openat(path, O_WRONLY|O_CREAT|O_TRUNC) (mode "trunc") or O_APPEND (mode "append") and write a line."""
    _say(behaviours.write_file(path, mode, b"lanner simulate\n").t)


def read(path: str, delay: str = "0") -> None:
    """Sleep `delay` seconds, then openat(path, O_RDONLY) and read a few bytes."""
    _say(behaviours.read_file(path, float(delay)).t)


def spawn(*argv: str) -> None:
    """Run argv as a child of this process and wait for it."""
    ran = behaviours.spawn(argv, stdout=subprocess.DEVNULL)
    _say(ran.t, returncode=ran.status)


def as_user(uid: str, *argv: str) -> None:
    """fork; the child drops to uid (setgroups, setgid, setuid) and execs argv."""
    ran = behaviours.run_as(int(uid), int(uid), argv)
    _say(ran.t, status=ran.status)


def setuid_root(uid: str) -> None:
    """fork; the child becomes `uid` and asks for root with setuid(0), which fails with EPERM."""
    ran = behaviours.setuid_root(int(uid))
    _say(ran.t, errno=ran.status)


def ptrace_attach() -> None:
    """PTRACE_ATTACH to a sleeping child of our own, then detach and kill it."""
    traced = behaviours.ptrace_attach()
    _say(traced.t, res=traced.res)


def ptrace_traceme() -> None:
    """A child asks to be traced by its parent (PTRACE_TRACEME, the anti-debugging trick) and exits."""
    ran = behaviours.ptrace_traceme()
    _say(ran.t, status=ran.status)


def memfd_exec(name: str) -> None:
    """Copy /usr/bin/true into a memfd called `name` and run it from there (execveat AT_EMPTY_PATH) in a child."""
    ran = behaviours.memfd_exec(name, "/usr/bin/true", ["lanner-fileless", name])
    _say(ran.t, status=ran.status)


def netns_connect(addr: str, port: str, client: str = "") -> None:
    """In a private network namespace: a TCP listener on addr:port of our own, and a connection to it, made by
    this process or (if given) by `client`, an interpreter copy running this script's `connect`."""
    argv = [client, os.path.abspath(__file__), "connect", addr, port] if client else []
    _say(behaviours.netns_connect(addr, int(port), argv).t)


def connect(addr: str, port: str) -> None:
    """TCP connect to addr:port and close."""
    _say(behaviours.connect(addr, int(port)).t)


def stdio_socket() -> None:
    """A loopback TCP connection to a listener of our own, duplicated onto standard input with dup2 (the core of
    a reverse shell); nothing is read from it."""
    redirected = behaviours.stdio_socket()
    _say(redirected.t, res=redirected.res)


def k8s_token(token_dir: str, reader: str) -> None:
    """In a private mount namespace with a tmpfs over /run: a service-account token in `token_dir`, read by
    `reader` (e.g. /usr/bin/cat). Nothing appears on the host's /run."""
    ran = behaviours.k8s_token(token_dir, reader, TAG)
    _say(ran.t, returncode=ran.status)


BEHAVIOURS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (write, read, spawn, as_user, setuid_root, ptrace_attach, ptrace_traceme, memfd_exec,
                            netns_connect, connect, stdio_socket, k8s_token)
}

if __name__ == "__main__":
    BEHAVIOURS[sys.argv[1]](*sys.argv[2:])
