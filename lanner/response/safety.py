"""Who is never blocked or killed: the agent, pid 1, kernel threads and the protected programs."""

from __future__ import annotations

import os
from collections.abc import Iterable

PF_KTHREAD = 0x00200000


def kernel_dev(st_dev: int) -> int:
    """A device number in the kernel's own encoding (``MAJOR << 20 | MINOR``, as ``i_sb->s_dev``)."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def file_key(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(dev, ino) of a program as the mechanisms match it, following symlinks. Stat the file as the
    workload sees it (inside a container: /proc/PID/root/...), which on overlayfs is the overlay's
    device, not the layer's. ValueError names a missing path or one that is not a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc.strerror}") from None
    if not (st.st_mode & 0o170000) == 0o100000:
        raise ValueError(f"{os.fspath(path)}: not a regular file")
    return kernel_dev(st.st_dev), st.st_ino


_host_pid: int | None = None


def _same(a: str, b: str) -> bool | None:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return None
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def host_root() -> str:
    """Where the host's files are for the agent: "/" on the host; through a host process's root when
    the agent runs in a container (the DaemonSet, with hostPID), so host paths name the node's files.

    That is pid 1's root, or — where pid 1 refuses to be inspected (a sandbox's init) — the root of
    the oldest host process that allows it; checked again if that process exits."""
    global _host_pid
    if _host_pid is not None and os.path.exists(f"/proc/{_host_pid}"):
        return "/" if _host_pid == 0 else f"/proc/{_host_pid}/root"
    _host_pid = _find_host_pid()
    return "/" if _host_pid == 0 else f"/proc/{_host_pid}/root"


def _find_host_pid() -> int:
    same = _same("/", "/proc/1/root")
    if same is not None:
        return 0 if same else 1
    # pid 1 cannot be inspected: the oldest other process of the host (not a kernel thread, not in a
    # container) stands for it; if its root is ours, the agent runs on the host.
    from lanner.state.cgroups import container_id_from_proc

    me = os.getpid()
    for pid in sorted(int(n) for n in os.listdir("/proc") if n.isdigit()):
        if pid == me or is_kernel_thread(pid) or container_id_from_proc(pid):
            continue
        same = _same("/", f"/proc/{pid}/root")
        if same is not None:
            return 0 if same else pid
    return 0


def on_host(path: str) -> str:
    """A host path as the agent can open it (see host_root)."""
    root = host_root()
    return path if root == "/" else root + path


def is_kernel_thread(pid: int, proc_root: str = "/proc") -> bool:
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # comm may contain spaces and parentheses: the fields after it start after the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    return len(fields) > 6 and int(fields[6]) & PF_KTHREAD != 0


class Protection:
    """The processes no policy may touch. ``missing`` lists protected programs that do not exist."""

    def __init__(self, agent_tgid: int, programs: Iterable[str] = (), proc_root: str = "/proc") -> None:
        self.tgids = frozenset({agent_tgid, 1})
        self.proc_root = proc_root
        files: dict[tuple[int, int], str] = {}
        self.missing: list[str] = []
        for path in programs:
            try:
                files[file_key(on_host(path))] = path
            except ValueError:
                self.missing.append(path)
        self.files = files

    def why_protected(self, pid: int) -> str:
        """Why this process may not be blocked or killed; "" when it may."""
        if pid == 1:
            return "pid 1"
        if pid in self.tgids:
            return "the agent itself"
        if pid == 2 or is_kernel_thread(pid, self.proc_root):
            return "a kernel thread"
        if self.files:
            try:
                key = file_key(f"{self.proc_root}/{pid}/exe")
            except ValueError:
                return ""
            if key in self.files:
                return f"protected program {self.files[key]}"
        return ""
