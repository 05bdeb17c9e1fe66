"""Behaviours the default rules look for, performed for real by a child process of the end-to-end test.

    <python3, or a renamed copy of it> tests/kernel/e2e/act.py ACTION [ARG...]

Used by tests/kernel/test_agent_e2e.py. The process running this script (or the program it starts) is the
process the rule sees. Each action makes the system calls it is named after (the bodies are those of
``lanner simulate``, lanner/simulate/behaviours.py) and prints what the test needs (pids, fds, ports, return
values) as one JSON line on stdout. Files are only the caller's temporary files; mounts and network addresses
live in private namespaces of this process and vanish with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    # Run by path by a bare interpreter: the repository's root makes the lanner package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from lanner.simulate import behaviours
from lanner.simulate.syscalls import syscall

TAG = "lanner-e2e"
SYS_INIT_MODULE = 175
SYS_FINIT_MODULE = 313


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def write(path: str, mode: str) -> None:
    """openat(path, O_WRONLY|O_CREAT) with O_TRUNC (mode "trunc") or O_APPEND (mode "append"), write a line."""
    say(pid=os.getpid(), fd=behaviours.write_file(path, mode, b"lanner e2e\n").fd)


def read(path: str) -> None:
    """openat(path, O_RDONLY) and read a few bytes."""
    say(pid=os.getpid(), fd=behaviours.read_file(path).fd)


def spawn(*argv: str) -> None:
    """Run argv as a child of this process and wait for it."""
    ran = behaviours.spawn(argv)
    say(pid=os.getpid(), child=ran.pid, returncode=ran.status)


def setuid_root(uid: str) -> None:
    """fork; the child becomes `uid` (setgroups, setgid, setuid) and then asks for root: setuid(0) fails."""
    ran = behaviours.setuid_root(int(uid))
    say(pid=os.getpid(), child=ran.pid, errno=ran.status)


def ptrace_attach() -> None:
    """PTRACE_ATTACH to a sleeping child, then detach and kill it."""
    traced = behaviours.ptrace_attach()
    say(pid=os.getpid(), target=traced.target, res=traced.res)


def memfd_exec(name: str) -> None:
    """Copy /usr/bin/true into a memfd called `name` and run it from there (execveat AT_EMPTY_PATH) in a child."""
    ran = behaviours.memfd_exec(name, "/usr/bin/true", ["fileless", name])
    say(pid=os.getpid(), child=ran.pid, status=ran.status)


def netns_connect(addr: str, port: str) -> None:
    """In a new network namespace: lo up with `addr`, a TCP listener on addr:port and a connection to it."""
    conn = behaviours.netns_connect(addr, int(port))
    say(pid=os.getpid(), local=list(conn.local or ()))


def stdio_socket() -> None:
    """A loopback TCP connection duplicated onto standard input with dup2 (what a reverse shell does)."""
    redirected = behaviours.stdio_socket()
    say(pid=os.getpid(), res=redirected.res, local=list(redirected.local), remote=list(redirected.remote))


def k8s_token(token_dir: str, reader: str) -> None:
    """In a private mount namespace with a tmpfs over /run: a service-account token in `token_dir`, read by
    `reader` (a file tool, e.g. /usr/bin/cat). Nothing appears on the host's /run."""
    ran = behaviours.k8s_token(token_dir, reader, TAG)
    say(pid=os.getpid(), child=ran.pid, returncode=ran.status)


def load_module(path: str) -> None:
    """finit_module on `path` and init_module on a bogus image: the attempts, whatever the kernel answers."""
    fd = os.open(path, os.O_RDONLY)
    fres = syscall(SYS_FINIT_MODULE, fd, b"lanner_e2e=1", 0)
    os.close(fd)
    image = ctypes.create_string_buffer(b"\x7fELF" + bytes(60))
    ires = syscall(SYS_INIT_MODULE, ctypes.addressof(image), 64, b"lanner_e2e=1")
    say(pid=os.getpid(), finit_module=fres, init_module=ires)


ACTIONS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (write, read, spawn, setuid_root, ptrace_attach, memfd_exec, netns_connect,
                            stdio_socket, k8s_token, load_module)
}

if __name__ == "__main__":
    ACTIONS[sys.argv[1]](*sys.argv[2:])
