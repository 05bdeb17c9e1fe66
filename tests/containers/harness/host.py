"""Host-side facts and clean-up for the private containerd: processes, cgroups, mounts, links.

Each helper touches only what it is pointed at (a pid, a cgroup parent, a folder of ours, a link
name of ours); nothing here removes a non-empty folder outside the instance's own folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


def path_env() -> str:
    """PATH with the sbin folders (runc, ip) even when the caller's PATH lacks them."""
    parts = [p for p in os.environ.get("PATH", "").split(":") if p]
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if d not in parts:
            parts.append(d)
    return ":".join(parts)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), to tell a pid from its reuse."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, started: int) -> bool:
    """Whether pid is still the process that started at `started` (and is not a zombie)."""
    fields = _stat_fields(pid)
    return fields is not None and int(fields[19]) == started and fields[0] != "Z"


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def children(ppid: int) -> list[int]:
    out = []
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields and int(fields[1]) == ppid:
            out.append(pid)
    return out


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains text (a folder of ours), pid -> command line."""
    out = {}
    needle = text.encode()
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            out[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def force_delete_runc_containers(runc_root: Path) -> None:
    """`runc delete --force` every container in a runc state folder of ours (kills its processes)."""
    if not runc_root.is_dir():
        return
    runc = shutil.which("runc", path=path_env()) or "runc"
    for entry in sorted(runc_root.iterdir()):
        if entry.is_dir():
            subprocess.run([runc, "--root", str(runc_root), "delete", "--force", entry.name],
                           capture_output=True, timeout=30, check=False)


def mounts_under(base: Path) -> list[str]:
    """Mount points at or below base, as listed in /proc/self/mountinfo."""
    prefix = str(base).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(base):
                out.append(point)
    return out


def unmount_under(base: Path) -> list[str]:
    """Lazily unmount everything at or below base, deepest first; the mount points still there."""
    for point in sorted(mounts_under(base), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return mounts_under(base)


def link_exists(name: str) -> bool:
    return bool(name) and Path("/sys/class/net", name).exists()


def delete_link(name: str) -> str | None:
    if not link_exists(name):
        return None
    res = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True, check=False,
                         env=dict(os.environ, PATH=path_env()))
    return None if res.returncode == 0 else f"ip link del {name}: {res.stderr.strip()}"


def rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
