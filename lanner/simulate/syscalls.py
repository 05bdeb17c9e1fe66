"""System calls the simulated behaviours make that the standard library does not offer, and the private
namespaces that keep their effects away from the host.

Standard library only: it is imported by scripts that a bare interpreter (often a renamed copy of it) runs by
path, child.py here and the test suite's behaviour scripts. x86-64 system call numbers.
"""

from __future__ import annotations

import ctypes
import os
import subprocess

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYS_DUP2 = 33
SYS_PTRACE = 101
SYS_SETUID = 105
SYS_MEMFD_CREATE = 319
SYS_EXECVEAT = 322
PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SEIZE = 0, 16, 17, 0x4206
AT_EMPTY_PATH = 0x1000
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
IP = "/usr/sbin/ip"


def syscall(nr: int, *args: int | bytes | None) -> int:
    """A raw system call, so that the kernel sees exactly this one (glibc may substitute another, e.g. dup3
    for dup2); -errno on failure."""
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a or 0) for a in args]
    ret: int = libc.syscall(ctypes.c_long(nr), *conv)
    return ret if ret >= 0 else -ctypes.get_errno()


def _check(ret: int, what: str) -> None:
    if ret != 0:
        raise OSError(ctypes.get_errno(), what)


def private_net(addr: str) -> None:
    """This process into a new network namespace with lo up and `addr` on it: nothing can leave it."""
    _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    subprocess.run([IP, "link", "set", "lo", "up"], check=True)
    subprocess.run([IP, "addr", "add", f"{addr}/32", "dev", "lo"], check=True)


def private_run(tag: str) -> None:
    """This process into a new mount namespace, with a tmpfs (its source named `tag`) over /run: what is written
    below /run then never appears on the host's."""
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Without making / private first, the tmpfs mount would propagate back to the host's mount namespace.
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    _check(libc.mount(tag.encode(), b"/run", b"tmpfs", 0, b"mode=0755"), "mount tmpfs /run")


def become(uid: int, gid: int) -> None:
    """Drop to uid/gid for good: supplementary groups first, the uid last (after it, nothing else may change)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
