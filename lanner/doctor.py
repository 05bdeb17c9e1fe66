"""``lanner doctor``: what this kernel and machine allow, each with a verdict and the reason.

Every BPF program kind Lanner could use is probed by really loading a tiny program of that kind
from ``probes.bpf.o`` (one load per kind), attaching it and, where possible, making it run:
feature probes that only ask the kernel (``bpftool feature probe``) are wrong on some kernels.
The full sensor object is loaded too. Each check catches its own failures, so the doctor always
finishes and reports.

Verdicts: ``ok``; ``missing`` (the kernel or machine does not have it); ``refused`` (it exists but
the kernel refuses it, with the errno); ``not-applicable`` (not probed here, or nothing to probe,
with the reason). A check marked ``required`` is something the agent cannot run without: the
command exits 2 when one of those is missing or refused, and :func:`require_sensor` is the quick
form of the same gate for ``lanner run`` and ``lanner capture``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gzip
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import click

from lanner.response._fanotify_sys import (
    AT_FDCWD,
    FAN_CLASS_CONTENT,
    FAN_CLOEXEC,
    FAN_MARK_ADD,
    FAN_NONBLOCK,
    FAN_OPEN_EXEC_PERM,
    FAN_OPEN_PERM,
    fanotify_init_raw,
    fanotify_mark_raw,
)
from lanner.sensor import libbpf, syscalls
from lanner.sensor.loader import KernelSensor, SensorError, bpf_dir, syscall_tracepoints
from lanner.sensor.syscalls import SYSCALLS

Verdict = Literal["ok", "missing", "refused", "not-applicable"]

BTF_PATH = "/sys/kernel/btf/vmlinux"
TRACEFS = "/sys/kernel/tracing"
TRACEFS_LEGACY = "/sys/kernel/debug/tracing"
SECURITYFS = "/sys/kernel/security"
BPFFS = "/sys/fs/bpf"
SENSOR_OBJECT = "sensor.bpf.o"
PROBES_OBJECT = "probes.bpf.o"
EXEC_GUARD_OBJECT = "exec_guard.bpf.o"
NET_GUARD_OBJECT = "net_guard.bpf.o"
CRI_SOCKETS = (
    ("containerd", "/run/containerd/containerd.sock"),
    ("containerd", "/var/run/containerd/containerd.sock"),
    ("containerd (k3s)", "/run/k3s/containerd/containerd.sock"),
    ("cri-o", "/run/crio/crio.sock"),
    ("cri-o", "/var/run/crio/crio.sock"),
    ("cri-dockerd", "/run/cri-dockerd.sock"),
    ("cri-dockerd", "/var/run/cri-dockerd.sock"),
)
MIN_KERNEL = (5, 17)  # bpf_loop (5.17); ring buffer 5.8, tp_btf 5.5

CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_PERFMON = 38
CAP_BPF = 39

# Slots of the `hits` map in probes.bpf.c.
H_TRACEPOINT, H_RAW_TP, H_TP_BTF, H_TP_BTF_DEV, H_TP_BTF_INO = 0, 1, 2, 3, 4
H_FENTRY, H_LSM, H_CONNECT4, H_ITER, H_KPROBE = 5, 6, 7, 8, 9
H_LOOP, H_RINGBUF, H_SIGNAL, H_SIGNAL_RET = 10, 11, 12, 13


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its verdict, the reason, and what in Lanner needs it."""

    name: str
    verdict: Verdict
    detail: str
    needed_for: tuple[str, ...] = ()
    required: bool = False
    """The agent cannot run without it: missing or refused makes `lanner doctor` exit 2."""

    @property
    def blocking(self) -> bool:
        return self.required and self.verdict in ("missing", "refused")

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail,
                "needed_for": list(self.needed_for), "required": self.required}


class _Result(Exception):
    """Raised inside a check or probe to end it with this verdict and detail."""

    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict: Verdict = verdict
        self.detail = detail


def _errname(err: int) -> str:
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def _errno_verdict(err: int | None) -> Verdict:
    return "refused" if err in (errno.EPERM, errno.EACCES) else "missing"


# ---------------------------------------------------------------------------------------------
# libc through ctypes: mount(2) (fanotify(7): lanner.response._fanotify_sys)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.restype = ctypes.c_int
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts() -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/self/mountinfo (the last mount on a point wins)."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and right:
                out[_unescape(fields[4])] = right.split()[0]
    return out


def _mount(fstype: str, target: str) -> int:
    """mount -t fstype fstype target; 0 or the errno."""
    if _libc.mount(fstype.encode(), target.encode(), fstype.encode(), 0, None) == 0:
        return 0
    return ctypes.get_errno() or errno.EINVAL


def _ensure_mounted(fstype: str, targets: tuple[str, ...], allow_mount: bool) -> tuple[str | None, str]:
    """Where `fstype` is mounted among `targets` (mounting it at the first one if allowed)."""
    table = mounts()
    for t in targets:
        if table.get(t) == fstype:
            return t, f"mounted at {t}"
    if not allow_mount:
        return None, f"not mounted at {targets[0]} (--no-mount: not mounting it)"
    if os.geteuid() != 0:
        return None, f"not mounted at {targets[0]}, and only root can mount it"
    err = _mount(fstype, targets[0])
    if err:
        return None, f"not mounted at {targets[0]}, and mounting it failed: {_errname(err)}"
    return targets[0], f"was not mounted: mounted it at {targets[0]}"


# ---------------------------------------------------------------------------------------------
# Machine facts shared by the checks


def capabilities() -> int:
    """The effective capability set of this process (CapEff)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def kernel_config() -> tuple[dict[str, str], str] | None:
    """CONFIG_* options ("y", "m", a value, or "n" for 'is not set') and where they were read."""
    release = os.uname().release
    for path in ("/proc/config.gz", f"/boot/config-{release}"):
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt") as gz:
                    text = gz.read()
            else:
                text = Path(path).read_text()
        except OSError:
            continue
        opts: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_"):
                name, _, value = line.partition("=")
                opts[name] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                opts[line[2:-len(" is not set")]] = "n"
        return opts, path
    return None


@dataclass
class _Env:
    allow_mount: bool
    root: bool = field(default_factory=lambda: os.geteuid() == 0)
    caps: int = 0
    config: dict[str, str] | None = None
    config_source: str = ""
    libbpf_ok: bool = False
    probes: Path | None = None
    cgroup2: str | None = None
    trampoline_note: str | None = None

    def cap(self, bit: int) -> bool:
        return bool(self.caps >> bit & 1)

    @property
    def can_bpf(self) -> bool:
        return self.root and (self.cap(CAP_SYS_ADMIN) or (self.cap(CAP_BPF) and self.cap(CAP_PERFMON)))

    def option(self, name: str) -> str | None:
        return None if self.config is None else self.config.get(name, "n")


# ---------------------------------------------------------------------------------------------
# Individual checks. Each returns (verdict, detail) or raises _Result.

_CheckFn = Callable[[_Env], tuple[Verdict, str]]


def _check_root(env: _Env) -> tuple[Verdict, str]:
    euid = os.geteuid()
    if euid == 0:
        return "ok", "running as root (euid 0)"
    return "missing", f"not root (euid {euid}): the kernel sensor needs root"


def _check_capabilities(env: _Env) -> tuple[Verdict, str]:
    names = {CAP_BPF: "CAP_BPF", CAP_PERFMON: "CAP_PERFMON", CAP_SYS_ADMIN: "CAP_SYS_ADMIN"}
    have = [n for bit, n in names.items() if env.cap(bit)]
    lacking = [n for bit, n in names.items() if not env.cap(bit)]
    detail = f"CapEff {env.caps:016x}: " + (", ".join(have) if have else "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN")
    if lacking and have:
        detail += f"; lacking {', '.join(lacking)}"
    if not env.cap(CAP_SYS_RESOURCE) and env.caps:
        detail += "; CAP_SYS_RESOURCE absent (harmless: BPF memory is charged to the memory cgroup)"
    enough = env.cap(CAP_SYS_ADMIN) or (env.cap(CAP_BPF) and env.cap(CAP_PERFMON))
    return ("ok" if enough else "missing"), detail


def _check_kernel(env: _Env) -> tuple[Verdict, str]:
    u = os.uname()
    m = re.match(r"(\d+)\.(\d+)", u.release)
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    detail = f"{u.sysname} {u.release} ({u.machine})"
    detail += f"; config from {env.config_source}" if env.config is not None else "; kernel config not readable"
    if version < MIN_KERNEL:
        return "missing", f"{detail}: older than {MIN_KERNEL[0]}.{MIN_KERNEL[1]} (bpf_loop)"
    return "ok", detail


def _check_btf(env: _Env) -> tuple[Verdict, str]:
    try:
        size = os.stat(BTF_PATH).st_size
    except FileNotFoundError:
        return "missing", f"{BTF_PATH} missing: the kernel was built without CONFIG_DEBUG_INFO_BTF"
    except OSError as exc:
        return _errno_verdict(exc.errno), f"{BTF_PATH}: {_errname(exc.errno or errno.EIO)}"
    if not os.access(BTF_PATH, os.R_OK):
        return "refused", f"{BTF_PATH} not readable by this user"
    return "ok", f"{BTF_PATH} ({size / (1 << 20):.1f} MiB)"


def _check_tracefs(env: _Env) -> tuple[Verdict, str]:
    where, detail = _ensure_mounted("tracefs", (TRACEFS, TRACEFS_LEGACY), env.allow_mount)
    if where is None:
        return "missing", detail
    if not os.path.isdir(os.path.join(where, "events", "syscalls")):
        if not env.root:
            return "ok", f"{detail} (its events are readable by root only)"
        return "missing", f"{detail}, but it has no events/syscalls (CONFIG_FTRACE_SYSCALLS off)"
    return "ok", f"{detail}; syscalls tracepoints present"


def _check_bpffs(env: _Env) -> tuple[Verdict, str]:
    where, detail = _ensure_mounted("bpf", (BPFFS,), env.allow_mount)
    return ("ok" if where else "missing"), detail


def _check_securityfs(env: _Env) -> tuple[Verdict, str]:
    where, detail = _ensure_mounted("securityfs", (SECURITYFS,), env.allow_mount)
    return ("ok" if where else "missing"), detail


def _read_security(name: str) -> str:
    path = os.path.join(SECURITYFS, name)
    if mounts().get(SECURITYFS) != "securityfs":
        raise _Result("not-applicable", f"securityfs not mounted: cannot read {path}")
    try:
        return Path(path).read_text().strip()
    except FileNotFoundError:
        raise _Result("missing", f"{path} does not exist") from None
    except OSError as exc:
        raise _Result(_errno_verdict(exc.errno), f"{path}: {_errname(exc.errno or errno.EIO)}") from None


def _check_lsm(env: _Env) -> tuple[Verdict, str]:
    active = _read_security("lsm")
    note = "bpf is listed (whether BPF-LSM programs load: see bpf:lsm)" if "bpf" in active.split(",") \
        else "bpf is not listed: BPF-LSM programs cannot be used"
    return "ok", f"active: {active}; {note}"


def _check_lockdown(env: _Env) -> tuple[Verdict, str]:
    text = _read_security("lockdown")
    m = re.search(r"\[(\w+)\]", text)
    mode = m.group(1) if m else text
    if mode == "confidentiality":
        return "refused", (f"lockdown={mode}: reading kernel memory from BPF (CO-RE reads) is refused, "
                           "the sensor cannot work")
    if mode == "integrity":
        return "ok", f"lockdown={mode}: bpf_probe_write_user refused, kernel reads allowed (Lanner needs only reads)"
    return "ok", f"lockdown={mode}"


def _libbpf_path() -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.basename(parts[5]).startswith("libbpf.so"):
                return parts[5]
    return ctypes.util.find_library("bpf") or "libbpf.so.1"


def _check_libbpf(env: _Env) -> tuple[Verdict, str]:
    try:
        so = libbpf.lib()
    except OSError as exc:
        return "missing", str(exc)
    env.libbpf_ok = True
    so.libbpf_major_version.restype = ctypes.c_uint32
    so.libbpf_minor_version.restype = ctypes.c_uint32
    major, minor = so.libbpf_major_version(), so.libbpf_minor_version()
    detail = f"libbpf {major}.{minor} ({_libbpf_path()})"
    if (major, minor) < (1, 0):
        return "missing", f"{detail}: Lanner needs libbpf 1.x (NULL+errno conventions)"
    return "ok", detail


def _check_clang(env: _Env) -> tuple[Verdict, str]:
    path = shutil.which("clang")
    if path is None:
        return "missing", "clang not on PATH: needed only to build the BPF objects (make setup installs it)"
    real = os.path.realpath(path)
    return "ok", path + (f" -> {real}" if real != path else "")


def _check_bpftool(env: _Env) -> tuple[Verdict, str]:
    path = shutil.which("bpftool")
    if path is None:
        return "missing", "bpftool not on PATH: needed only to generate build/vmlinux.h (make setup installs it)"
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return "ok", f"{path} (version unknown: {exc})"
    lines = [ln.removeprefix(path).strip() for ln in out.splitlines()[:2]]
    return "ok", f"{path} ({', '.join(lines) or 'version unknown'})"


def _check_object(name: str, sources: tuple[str, ...], package: str = "sensor") -> _CheckFn:
    def check(env: _Env) -> tuple[Verdict, str]:
        path = bpf_dir() / name
        if not path.is_file():
            if name == PROBES_OBJECT:
                env.probes = None
            return "missing", f"{path} not built: run `make setup` (or scripts/build-bpf.sh; LANNER_BPF_DIR overrides)"
        if name == PROBES_OBJECT:
            env.probes = path
        src_dir = Path(__file__).resolve().parent / package / "bpf"
        mtime = path.stat().st_mtime
        stale = [s for s in sources if (src_dir / s).is_file() and (src_dir / s).stat().st_mtime > mtime]
        if stale:
            return "ok", f"{path} (older than {', '.join(stale)}: rebuild with `make setup`)"
        return "ok", str(path)
    return check


def _check_cgroup2(env: _Env) -> tuple[Verdict, str]:
    table = mounts()
    v2 = [p for p, t in table.items() if t == "cgroup2"]
    if not v2:
        return "missing", "no cgroup2 mount: container cgroup ids and cgroup-BPF need cgroup v2"
    where = "/sys/fs/cgroup" if "/sys/fs/cgroup" in v2 else sorted(v2, key=len)[0]
    env.cgroup2 = where
    try:
        controllers = Path(where, "cgroup.controllers").read_text().split()
    except OSError:
        controllers = []
    ctl = f"controllers: {' '.join(controllers) or 'none'}"
    v1 = sorted(os.path.basename(p) for p, t in table.items() if t == "cgroup")
    if v1:
        return "ok", f"hybrid: cgroup2 at {where} ({ctl}), v1 hierarchies: {', '.join(v1)}"
    return "ok", f"pure cgroup v2 at {where} ({ctl})"


def _check_fanotify(env: _Env) -> tuple[Verdict, str]:
    if not env.root:
        return "not-applicable", "not probed: fanotify permission events need root"
    fd = fanotify_init_raw(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE)
    if fd < 0:
        err = -fd
        why = " (kernel without CONFIG_FANOTIFY_ACCESS_PERMISSIONS?)" if err == errno.EINVAL else ""
        return _errno_verdict(err), f"fanotify_init(FAN_CLASS_CONTENT): {_errname(err)}{why}"
    tmp_fd, tmp = tempfile.mkstemp(prefix="lanner-doctor-")
    os.close(tmp_fd)
    try:
        # An inode mark on a file nobody opens: no event can ever wait for an answer.
        rc = fanotify_mark_raw(fd, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM, AT_FDCWD, tmp)
        err = -rc
    finally:
        os.close(fd)  # removes the mark
        os.unlink(tmp)
    if rc < 0:
        return _errno_verdict(err), f"fanotify_init ok; FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM mark: {_errname(err)}"
    return "ok", "fanotify_init(FAN_CLASS_CONTENT) and an FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM inode mark accepted"


def _check_seccomp(env: _Env) -> tuple[Verdict, str]:
    path = "/proc/sys/kernel/seccomp/actions_avail"
    try:
        actions = Path(path).read_text().split()
    except FileNotFoundError:
        return "missing", f"{path} missing (CONFIG_SECCOMP_FILTER off)"
    if "user_notif" in actions:
        return "ok", f"user_notif available ({path}: {' '.join(actions)})"
    return "missing", f"no user_notif in {path}: {' '.join(actions)}"


def _check_cri(env: _Env) -> tuple[Verdict, str]:
    seen: set[str] = set()
    live: list[str] = []
    dead: list[str] = []
    for runtime, path in CRI_SOCKETS:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            try:
                s.connect(path)
                live.append(f"{runtime} at {path}")
            except OSError as exc:
                dead.append(f"{path} ({_errname(exc.errno) if exc.errno else exc})")
    if live:
        return "ok", "; ".join(live) + (f"; not answering: {', '.join(dead)}" if dead else "")
    if dead:
        return "missing", f"CRI socket present but not answering: {', '.join(dead)}"
    checked = ", ".join(sorted({p for _, p in CRI_SOCKETS if not p.startswith("/var/run/")}))
    return "not-applicable", (f"no CRI socket ({checked}): no container runtime here; "
                              "container ids still come from cgroup paths")


def _check_sensor(env: _Env) -> tuple[Verdict, str]:
    if not env.can_bpf:
        return "not-applicable", "not loaded: needs root with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
    if not env.libbpf_ok:
        return "not-applicable", "not loaded: libbpf is missing"
    if not (bpf_dir() / SENSOR_OBJECT).is_file():
        return "not-applicable", f"not loaded: {SENSOR_OBJECT} is not built"
    t0 = time.perf_counter()
    # Both modes, each with a few syscalls: loading every per-syscall program would take seconds
    # and verify the same handler again and again.
    sample = syscalls.select({"openat", "connect"})
    try:
        with KernelSensor(sample):
            pass
        with KernelSensor(sample, raw=True):
            pass
    except SensorError as exc:
        cause = exc.__cause__
        err = cause.errno if isinstance(cause, OSError) else None
        return _errno_verdict(err), _shorten(str(exc), 300)
    ms = (time.perf_counter() - t0) * 1000
    missing = sorted(sc.name for sc in SYSCALLS if sc.tracepoint not in syscall_tracepoints())
    note = (f"; no exit tracepoint here for {', '.join(missing)} (captured only with raw_syscalls: true)"
            if missing else "")
    return "ok", (f"{SENSOR_OBJECT} loaded and attached per syscall and in raw mode, then closed ({ms:.0f} ms)"
                  + note)


# ---------------------------------------------------------------------------------------------
# BPF program probes: probes.bpf.o, one program at a time


@dataclass(frozen=True, slots=True)
class _Probe:
    name: str
    program: str
    needed_for: tuple[str, ...]
    run: Callable[[libbpf.BpfObject, libbpf.Program, _Env], str]
    """Attach (and exercise) the loaded program; return the detail, raise _Result otherwise."""
    trampoline: bool = False


def _hits(obj: libbpf.BpfObject, slot: int) -> int:
    value: int = struct.unpack("<q", obj.map("hits").lookup(struct.pack("<I", slot), 8)[:8])[0]
    return value


@contextmanager
def _attached(prog: libbpf.Program) -> Iterator[libbpf.Link]:
    link = prog.attach()
    try:
        yield link
    finally:
        link.destroy()


def _fired(obj: libbpf.BpfObject, slot: int, what: str) -> int:
    n = _hits(obj, slot)
    if n < 1:
        raise _Result("missing", f"loaded and attached, but it never ran on {what}")
    return n


def _run_on_getpid(slot: int) -> Callable[[libbpf.BpfObject, libbpf.Program, _Env], str]:
    def run(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
        with _attached(prog):
            os.getpid()
        _fired(obj, slot, "getpid()")
        return "loaded, attached, ran on getpid()"
    return run


def _run_tp_btf(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    true = shutil.which("true") or "/bin/true"
    with _attached(prog):
        subprocess.run([true], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    _fired(obj, H_TP_BTF, f"an exec of {true}")
    dev, ino = _hits(obj, H_TP_BTF_DEV), _hits(obj, H_TP_BTF_INO)
    st = os.stat(true)
    kdev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
    walk = f"bprm->file->f_inode gave (dev {dev:#x}, ino {ino})"
    if (dev, ino) == (kdev, st.st_ino):
        return f"loaded, attached, ran on exec of {true}; {walk} = stat()"
    return f"loaded, attached, ran on exec of {true}; {walk} but stat() says (dev {kdev:#x}, ino {st.st_ino})"


def _run_fentry(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    with _attached(prog), open("/proc/self/stat", "rb") as f:
        f.read()
    _fired(obj, H_FENTRY, "read()")
    return "loaded, attached, ran on vfs_read"


def _run_lsm(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    with _attached(prog):
        os.close(os.open("/proc/self/stat", os.O_RDONLY))
    _fired(obj, H_LSM, "open()")
    return "loaded, attached, ran on file_open"


def _run_kprobe(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    if env.option("CONFIG_KPROBES") == "n":
        raise _Result("missing", f"CONFIG_KPROBES is not set ({env.config_source}); loads but cannot attach")
    with _attached(prog), suppress(OSError):
        os.unlink(f"/nonexistent-lanner-doctor-{os.getpid()}")
    _fired(obj, H_KPROBE, "unlink()")
    return "loaded, attached, ran on do_unlinkat"


def _run_iter(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    so = libbpf.lib()
    so.bpf_link__fd.restype = ctypes.c_int
    so.bpf_link__fd.argtypes = [ctypes.c_void_p]
    so.bpf_iter_create.restype = ctypes.c_int
    so.bpf_iter_create.argtypes = [ctypes.c_int]
    with _attached(prog) as link:
        fd = so.bpf_iter_create(so.bpf_link__fd(link.ptr))
        if fd < 0:
            err = ctypes.get_errno() or -fd
            raise _Result(_errno_verdict(err), f"attached; bpf_iter_create: {_errname(err)}")
        try:
            while os.read(fd, 4096):
                pass
        finally:
            os.close(fd)
    n = _fired(obj, H_ITER, "a read of the iterator")
    return f"loaded, attached, iterated over {n} tasks"


def _join_cgroup_and_connect(cgroup: str) -> int:
    """Fork a child that joins `cgroup` and connects a UDP socket to 127.0.0.1:9.

    Exit status: 0 connect refused with EPERM, 1 connect succeeded, 2 could not join, 3 other error.
    """
    pid = os.fork()
    if pid == 0:  # child: only system calls, then _exit
        code = 3
        try:
            try:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write("0")
            except OSError:
                code = 2
                raise
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.connect(("127.0.0.1", 9))
                code = 1
            except PermissionError:
                code = 0
            finally:
                s.close()
        except BaseException:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _run_connect4(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    if env.cgroup2 is None:
        raise _Result("missing", "loads, but there is no cgroup2 mount to attach it to")
    cgroup = os.path.join(env.cgroup2, f"lanner-doctor-{os.getpid()}")
    os.mkdir(cgroup)  # our own temporary cgroup: nothing else is ever touched
    try:
        dirfd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            link = prog.attach_cgroup(dirfd)
            try:
                code = _join_cgroup_and_connect(cgroup)
            finally:
                link.destroy()
        finally:
            os.close(dirfd)
    finally:
        os.rmdir(cgroup)
    where = f"a temporary cgroup under {env.cgroup2}"
    if code == 0 and _hits(obj, H_CONNECT4) >= 1:
        return f"loaded, attached to {where}; connect() to port 9 from inside it was denied (EPERM)"
    if code == 1:
        raise _Result("missing", f"attached to {where}, but connect() from inside it was not denied")
    return f"loaded, attached to {where} (enforcement not exercised: test child exit {code})"


def _run_loop(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    with _attached(prog):
        os.getpid()
    _fired(obj, H_LOOP, "getpid()")
    n = _hits(obj, H_LOOP)
    if n != 4:
        raise _Result("missing", f"loaded and ran, but bpf_loop(4) called its callback {n} times")
    return "loaded, ran on getpid(): bpf_loop(4) called its callback 4 times"


def _run_ringbuf(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    records: list[bytes] = []
    ring = libbpf.RingBuffer(obj.map("probe_events").fd, records.append)
    try:
        with _attached(prog):
            os.getpid()
        ring.consume()
    finally:
        ring.free()
    mine = struct.pack("<I", os.getpid())
    if mine not in records:
        raise _Result("missing", f"loaded and attached, but no record arrived ({len(records)} others)")
    return "loaded, ran on getpid(): reserve/query/submit, record read back from user space"


def _run_send_signal(obj: libbpf.BpfObject, prog: libbpf.Program, env: _Env) -> str:
    with _attached(prog):
        os.getpid()
    _fired(obj, H_SIGNAL, "getpid()")
    ret = _hits(obj, H_SIGNAL_RET)
    if ret < 0:
        raise _Result(_errno_verdict(-ret), f"loads and runs, but bpf_send_signal returned {_errname(-ret)}")
    return "loaded, ran on getpid(): bpf_send_signal(0) to the doctor itself returned 0"


_PROBES: tuple[_Probe, ...] = (
    _Probe("bpf:tracepoint", "probe_tracepoint", ("sensor",), _run_on_getpid(H_TRACEPOINT)),
    _Probe("bpf:raw_tracepoint", "probe_raw_tracepoint", (), _run_on_getpid(H_RAW_TP)),
    _Probe("bpf:tp_btf", "probe_tp_btf", ("sensor", "blocking-exec"), _run_tp_btf),
    _Probe("bpf:fentry", "probe_fentry", (), _run_fentry, trampoline=True),
    _Probe("bpf:lsm", "probe_lsm", ("blocking-lsm",), _run_lsm, trampoline=True),
    _Probe("bpf:kprobe", "probe_kprobe", (), _run_kprobe),
    _Probe("bpf:cgroup/connect4", "probe_connect4", ("blocking-network",), _run_connect4),
    _Probe("bpf:iter/task", "probe_iter", ("process-snapshot",), _run_iter),
    _Probe("bpf:bpf_loop", "probe_loop", ("sensor",), _run_loop),
    _Probe("bpf:ringbuf", "probe_ringbuf", ("sensor",), _run_ringbuf),
    _Probe("bpf:bpf_send_signal", "probe_send_signal", ("blocking-exec",), _run_send_signal),
)

PROBE_NAMES: tuple[str, ...] = tuple(p.name for p in _PROBES)


def _shorten(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load_reason(program: str) -> str:
    """The useful part of libbpf's messages about a failed program load."""
    lines = list(libbpf._log_lines)
    for entry in lines:
        if "BEGIN PROG LOAD LOG" in entry and f"'{program}'" in entry:
            body = entry.split("BEGIN PROG LOAD LOG --", 1)[1].split("-- END PROG LOAD LOG", 1)[0]
            useful = [ln.strip() for ln in body.splitlines()
                      if ln.strip() and not ln.startswith(("processed ", "verification time", "stack depth"))]
            return "verifier: " + _shorten(" | ".join(useful[-2:]), 200)
    for entry in lines:
        if f"'{program}'" in entry and "load failed" in entry:
            return "empty verifier log"
    return _shorten("; ".join(ln for ln in lines if ln and "skipped loading" not in ln)[-200:], 200)


def _trampoline_note() -> str:
    """Whether ftrace's function tracer (which shares the trampoline machinery) is refused too."""
    for base in (TRACEFS, TRACEFS_LEGACY):
        path = os.path.join(base, "available_filter_functions")
        if not os.path.exists(path):
            continue
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            return (f"ftrace function tracing is refused too ({path}: {errno.errorcode.get(exc.errno or 0, '?')}): "
                    "the BPF trampoline is likely blocked on this kernel")
        return ""
    return ""


def _probe(probe: _Probe, env: _Env) -> tuple[Verdict, str]:
    if not env.can_bpf:
        return "not-applicable", "not probed: loading BPF needs root with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
    if not env.libbpf_ok:
        return "not-applicable", "not probed: libbpf is missing"
    if env.probes is None:
        return "not-applicable", f"not probed: {PROBES_OBJECT} is not built (make setup)"
    try:
        obj = libbpf.BpfObject(str(env.probes))
    except libbpf.BpfError as exc:
        return "missing", _shorten(f"cannot open {env.probes}: {exc.strerror}")
    try:
        for p in obj.programs():
            p.set_autoload(p.name == probe.program)
        try:
            obj.load()
        except libbpf.BpfError as exc:
            err = exc.errno or errno.EINVAL
            detail = f"BPF_PROG_LOAD: {_errname(err)}, {_load_reason(probe.program)}"
            if probe.trampoline and err == errno.EPERM:
                if env.trampoline_note is None:
                    env.trampoline_note = _trampoline_note()
                if env.trampoline_note:
                    detail += f"; {env.trampoline_note}"
            return _errno_verdict(err), detail
        obj.map("cfg").update(struct.pack("<I", 0), struct.pack("<I", os.getpid()))
        try:
            return "ok", probe.run(obj, obj.program(probe.program), env)
        except OSError as exc:  # attach (BpfError names the call) or the exercise around it
            err = exc.errno or errno.EINVAL
            reason = exc.strerror if isinstance(exc, libbpf.BpfError) else str(exc)
            return _errno_verdict(err), _shorten(f"loads; {reason} [{errno.errorcode.get(err, err)}]")
    finally:
        obj.close()


# ---------------------------------------------------------------------------------------------
# Running the checks


def _guarded(name: str, fn: Callable[[], tuple[Verdict, str]], needed_for: tuple[str, ...],
             required: bool) -> Check:
    try:
        verdict, detail = fn()
    except _Result as res:
        verdict, detail = res.verdict, res.detail
    except Exception as exc:  # a check must never crash the doctor
        err = exc.errno if isinstance(exc, OSError) else None
        verdict = _errno_verdict(err) if err else "missing"
        detail = f"check failed: {type(exc).__name__}: {exc}"
    return Check(name, verdict, _shorten(detail, 400), needed_for, required)


def run_checks(*, mount: bool = True) -> list[Check]:
    """Every check, in a stable order. `mount=False` observes only (no tracefs/securityfs/bpffs mounts)."""
    env = _Env(allow_mount=mount)
    with suppress(OSError):
        env.caps = capabilities()
    with suppress(OSError, EOFError):
        cfg = kernel_config()
        if cfg is not None:
            env.config, env.config_source = cfg

    plan: list[tuple[str, _CheckFn, tuple[str, ...], bool]] = [
        ("root", _check_root, ("sensor",), True),
        ("capabilities", _check_capabilities, ("sensor",), True),
        ("kernel", _check_kernel, ("sensor",), False),
        ("btf", _check_btf, ("sensor",), True),
        ("tracefs", _check_tracefs, ("sensor",), True),
        ("bpffs", _check_bpffs, ("pinning",), False),
        ("securityfs", _check_securityfs, ("lsm", "lockdown"), False),
        ("lsm", _check_lsm, ("blocking-lsm",), False),
        ("lockdown", _check_lockdown, ("sensor",), True),
        ("libbpf", _check_libbpf, ("sensor",), True),
        ("clang", _check_clang, ("build",), False),
        ("bpftool", _check_bpftool, ("build",), False),
        (f"object:{SENSOR_OBJECT}", _check_object(SENSOR_OBJECT, ("sensor.bpf.c", "sensor.h")), ("sensor",), True),
        (f"object:{PROBES_OBJECT}", _check_object(PROBES_OBJECT, ("probes.bpf.c",)), ("doctor",), False),
        ("cgroup2", _check_cgroup2, ("containers", "blocking-network"), False),
        (f"object:{EXEC_GUARD_OBJECT}", _check_object(EXEC_GUARD_OBJECT, ("exec_guard.bpf.c", "guard.h"), "response"),
         ("blocking-exec",), False),
        (f"object:{NET_GUARD_OBJECT}", _check_object(NET_GUARD_OBJECT, ("net_guard.bpf.c", "guard.h"), "response"),
         ("blocking-network",), False),
    ]
    checks = [_guarded(name, partial(fn, env), nf, req) for name, fn, nf, req in plan]
    checks += [_guarded(p.name, partial(_probe, p, env), p.needed_for, False) for p in _PROBES]
    tail: list[tuple[str, _CheckFn, tuple[str, ...], bool]] = [
        ("sensor", _check_sensor, ("sensor",), True),
        ("fanotify", _check_fanotify, ("blocking-open", "blocking-exec"), False),
        ("seccomp", _check_seccomp, ("seccomp-notify",), False),
        ("cri", _check_cri, ("containers",), False),
    ]
    checks += [_guarded(name, partial(fn, env), nf, req) for name, fn, nf, req in tail]
    return checks


def blocking(checks: list[Check]) -> list[Check]:
    """The required checks that failed: the agent cannot run while any is left."""
    return [c for c in checks if c.blocking]


def require_sensor() -> None:
    """Raise SensorError naming the first thing the kernel sensor lacks; quick (no BPF loads).

    Mounts tracefs when it is missing (as `make setup` would). Called by `lanner run` and
    `lanner capture` before they start.
    """
    euid = os.geteuid()
    if euid != 0:
        raise SensorError(f"not root (euid {euid}): the kernel sensor needs root — run it as root "
                          "(`lanner doctor` lists what this machine allows)")
    caps = capabilities()
    if not (caps >> CAP_SYS_ADMIN & 1 or (caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1)):
        raise SensorError(f"root without CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): CapEff {caps:016x} "
                          "— run with those capabilities (privileged container or host root)")
    if not os.path.exists(BTF_PATH):
        raise SensorError(f"{BTF_PATH} missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF), "
                          "which the CO-RE sensor needs")
    where, detail = _ensure_mounted("tracefs", (TRACEFS, TRACEFS_LEGACY), True)
    if where is None:
        raise SensorError(f"tracefs not mounted and cannot be mounted: {detail}")
    path = bpf_dir() / SENSOR_OBJECT
    if not path.is_file():
        raise SensorError(f"BPF objects not built ({path} missing): run `make setup`")
    try:
        libbpf.lib()
    except OSError as exc:
        raise SensorError(f"libbpf cannot be loaded: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# The command


def _table(checks: list[Check]) -> str:
    w_name = max(len(c.name) for c in checks)
    w_verdict = max(len(c.verdict) for c in checks)
    w_need = max(len(", ".join(c.needed_for) or "-") for c in checks)
    head = f"{'CHECK':<{w_name}}  {'VERDICT':<{w_verdict}}  {'NEEDED FOR':<{w_need}}  DETAIL"
    rows = [head]
    for c in checks:
        need = ", ".join(c.needed_for) or "-"
        rows.append(f"{c.name:<{w_name}}  {c.verdict:<{w_verdict}}  {need:<{w_need}}  {c.detail}")
    return "\n".join(rows)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok": bool, "checks": [...]}.')
@click.option("--no-mount", is_flag=True,
              help="Only observe: do not mount tracefs, securityfs or bpffs when they are missing.")
def doctor_command(as_json: bool, no_mount: bool) -> None:
    """What this kernel and machine allow: each check with a verdict and the reason.

    Exit codes: 0 the sensor can run here, 2 something the agent needs is missing (named on stderr).
    """
    checks = run_checks(mount=not no_mount)
    failed = blocking(checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        click.echo(_table(checks))
    if failed:
        names = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        click.echo(f"lanner doctor: the sensor cannot run here: {names}", err=True)
        sys.exit(2)
    if not as_json:
        click.echo("\nThe sensor can run here.")
