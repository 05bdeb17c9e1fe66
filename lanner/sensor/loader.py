"""Loading and running the kernel half: sensor.bpf.o, configured for the syscalls the rules need.

`KernelSensor` opens the object, writes its settings (the agent's own tgid, the ring size, the
syscall table), loads and attaches it, then hands each ring-buffer record to a callback.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lanner.sensor import libbpf
from lanner.sensor.prefilter import MAX_PATH, OpenNeed, Prefilter
from lanner.sensor.syscalls import MAX_SYSCALLS, SPEC, Syscall

_RODATA = struct.Struct("<I4xQ")  # agent_tgid, wakeup_bytes (const volatile globals, C layout)
_STATS = ("sent", "dropped", "truncated", "filtered")
_PATH_KEY = struct.Struct(f"<I{MAX_PATH + 1}s")  # struct path_key


class SensorError(RuntimeError):
    """The kernel sensor cannot start here; the message names what is missing."""


def bpf_dir() -> Path:
    """Where the built BPF objects are: $LANNER_BPF_DIR, else the checkout's build/bpf."""
    env = os.environ.get("LANNER_BPF_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "bpf"


def object_path(name: str) -> Path:
    path = bpf_dir() / name
    if not path.is_file():
        raise SensorError(f"BPF object {path} not found: run `make setup` to build it "
                          "(or set LANNER_BPF_DIR)")
    return path


@dataclass(slots=True)
class Counters:
    sent: int = 0
    dropped: int = 0
    truncated: int = 0
    filtered: int = 0
    """Opens no rule could match, dropped in the kernel on purpose (see prefilter.py)."""


BASE_PROGRAMS = ("on_enter_execve", "on_enter_execveat", "on_fork", "on_exit")
"""Attached in every mode: the exec filename stash and the process tree."""
RAW_PROGRAM = "on_sys_exit"


def syscall_tracepoints() -> frozenset[str]:
    """The syscalls this kernel has exit tracepoints for (tracefs)."""
    for d in ("/sys/kernel/tracing/events/syscalls", "/sys/kernel/debug/tracing/events/syscalls"):
        try:
            return frozenset(n[len("sys_exit_"):] for n in os.listdir(d) if n.startswith("sys_exit_"))
        except OSError:
            continue
    return frozenset()


def exit_program(sc: Syscall) -> str:
    return f"exit_{sc.tracepoint}"


class Programs:
    """Which programs to load and attach for a syscall set.

    Tracepoint mode (the default) attaches a program to the exit tracepoint of each selected
    syscall only, so other syscalls cost nothing; only those programs are loaded (each is verified
    on its own, about 50 ms). A reload that needs more loads them from a second copy of the object
    sharing the first one's maps. Raw mode attaches one program to every syscall's exit: it also
    sees syscalls without a tracepoint, at a cost on all syscalls of the machine."""

    def __init__(self, obj: libbpf.BpfObject, raw: bool, syscalls: Iterable[Syscall]) -> None:
        self.obj = obj
        self.raw = raw
        self.tracepoints = syscall_tracepoints()
        self.links: dict[str, libbpf.Link] = {}
        self.extra: list[libbpf.BpfObject] = []
        self.loaded: dict[str, libbpf.Program] = {}
        for prog in obj.programs():
            prog.set_autoload(prog.name in self._wanted(syscalls))

    def _wanted(self, syscalls: Iterable[Syscall]) -> set[str]:
        wanted = set(BASE_PROGRAMS)
        if self.raw:
            wanted.add(RAW_PROGRAM)
        else:
            wanted |= {exit_program(sc) for sc in syscalls if sc.tracepoint in self.tracepoints}
        return wanted

    def uncaptured(self, syscalls: Iterable[Syscall]) -> list[str]:
        """Selected syscalls this mode cannot see on this kernel."""
        return [] if self.raw else sorted(sc.name for sc in syscalls if sc.tracepoint not in self.tracepoints)

    def _program(self, name: str) -> libbpf.Program:
        prog = self.loaded.get(name)
        if prog is None:
            prog = self.loaded[name] = self.obj.program(name)
        return prog

    def _load_more(self, names: set[str]) -> None:
        """Load programs the first load skipped, in a copy of the object that reuses its maps."""
        more = libbpf.BpfObject(self.obj.path)
        try:
            shared = {m.name: m for m in self.obj.maps()}
            for m in more.maps():
                m.reuse_fd(shared[m.name].fd)
            for prog in more.programs():
                prog.set_autoload(prog.name in names)
            more.load()
        except BaseException:
            more.close()
            raise
        self.extra.append(more)
        for name in names:
            self.loaded[name] = more.program(name)

    def attach(self, syscalls: Iterable[Syscall]) -> None:
        wanted = self._wanted(syscalls)
        if not self.loaded:  # the first load: programs of the main object
            self.loaded = {p.name: p for p in self.obj.programs() if p.name in wanted}
        missing = wanted - set(self.loaded)
        if missing:
            self._load_more(missing)
        for name in sorted(wanted - set(self.links)):
            self.links[name] = self.loaded[name].attach()
        for name in sorted(set(self.links) - wanted):
            self.links.pop(name).destroy()

    def detach(self) -> None:
        for link in self.links.values():
            link.destroy()
        self.links.clear()
        for obj in self.extra:
            obj.close()
        self.extra.clear()


class KernelSensor:
    """The loaded, attached capture program. Use as a context manager; close() detaches."""

    def __init__(self, syscalls: Iterable[Syscall], *, ring_bytes: int = 16 << 20,
                 wakeup_bytes: int = 64 << 10, exclude_tgid: int | None = None,
                 prefilter: Prefilter | None = None, raw: bool = False, obj_name: str = "sensor.bpf.o") -> None:
        if ring_bytes < 4096 or ring_bytes & (ring_bytes - 1):
            raise SensorError(f"ring buffer size {ring_bytes} must be a power of two of at least 4096")
        self.syscalls = list(syscalls)
        self.prefilter = Prefilter({}) if prefilter is None else prefilter
        path = object_path(obj_name)
        try:
            self._obj = libbpf.BpfObject(str(path))
        except libbpf.BpfError as exc:
            raise SensorError(str(exc)) from exc
        self._ring: libbpf.RingBuffer | None = None
        try:
            self.programs = Programs(self._obj, raw, self.syscalls)
            self._configure(ring_bytes, wakeup_bytes, os.getpid() if exclude_tgid is None else exclude_tgid)
            self._obj.load()
            self._write_specs()
        except libbpf.BpfError as exc:
            self.programs.detach()
            self._obj.close()
            raise SensorError(f"{exc} — see `lanner doctor`") from exc

    @property
    def uncaptured(self) -> list[str]:
        """Selected syscalls this kernel gives no way to see in the current mode."""
        return self.programs.uncaptured(self.syscalls)

    def _configure(self, ring_bytes: int, wakeup_bytes: int, agent_tgid: int) -> None:
        obj = self._obj
        obj.map("events").set_max_entries(ring_bytes)
        obj.map("scratch_map").set_max_entries(libbpf.possible_cpus())
        rodata = obj.map(".rodata")
        current = rodata.initial_value()
        rodata.set_initial_value(_RODATA.pack(agent_tgid, wakeup_bytes) + current[_RODATA.size:])

    def _write_specs(self) -> None:
        self._paths: set[bytes] = set()
        self._enabled: set[int] = set()
        self.reconfigure(self.syscalls, self.prefilter)

    def reconfigure(self, syscalls: Iterable[Syscall], prefilter: Prefilter | None) -> None:
        """Switch to another syscall set and prefilter without detaching (rules reload). New trie
        paths go in before the specs that use them and old ones come out after, so for a moment the
        kernel sends more, never less."""
        self.syscalls = list(syscalls)
        self.prefilter = Prefilter({}) if prefilter is None else prefilter
        specs = self._obj.map("specs")
        paths = self._obj.map("prefilter_paths")
        wanted: set[bytes] = set()
        for sc in self.syscalls:
            need = self.prefilter.opens.get(sc.event)
            if need is not None and sc.open_flags is not None:
                wanted.update(_path_keys(need))
        for key in wanted - self._paths:
            paths.update(key, b"\x01")
        enabled: set[int] = set()
        for sc in self.syscalls:
            if not 0 <= sc.nr < MAX_SYSCALLS:
                continue
            need = self.prefilter.opens.get(sc.event)
            if need is not None and sc.open_flags is not None:
                spec = sc.spec(prefilter_flags=need.flags_any)
            else:
                spec = sc.spec(skip_tcp=sc.event in self.prefilter.tcp_sends)
            specs.update(struct.pack("<I", sc.nr), spec)
            enabled.add(sc.nr)
        off = bytes(SPEC.size)
        for nr in self._enabled - enabled:
            specs.update(struct.pack("<I", nr), off)
        self.programs.attach(self.syscalls)  # after the specs, so a new program never sees a stale one
        for key in self._paths - wanted:
            paths.delete(key)
        self._paths = wanted
        self._enabled = enabled

    def open_ring(self, callback: Callable[[bytes], None]) -> None:
        self._ring = libbpf.RingBuffer(self._obj.map("events").fd, callback)

    def poll(self, timeout_ms: int = 2) -> int:
        """Wait up to timeout_ms for a wake-up, then drain what was submitted without one."""
        ring = self._ring
        if ring is None:
            raise SensorError("open_ring() first")
        return ring.poll(timeout_ms) + ring.consume()

    def counters(self) -> Counters:
        """Totals over all CPUs of records sent, dropped (ring full) and truncated (long paths)."""
        stats = self._obj.map("stats")
        ncpu = libbpf.possible_cpus()
        out = Counters()
        for i, name in enumerate(_STATS):
            raw = stats.lookup(struct.pack("<I", i), 8 * ncpu)
            setattr(out, name, sum(struct.unpack(f"<{ncpu}Q", raw)))
        return out

    def close(self) -> None:
        if self._ring is not None:
            self._ring.free()
            self._ring = None
        self.programs.detach()
        self._obj.close()

    def __enter__(self) -> KernelSensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _path_keys(need: OpenNeed) -> list[bytes]:
    """Trie keys: an exact path with its terminating NUL (so only the whole path matches), a prefix
    without it."""
    out = []
    for path, exact in [(p, True) for p in need.exact] + [(p, False) for p in need.prefixes]:
        data = path.encode() + (b"\0" if exact else b"")
        if len(data) > MAX_PATH + 1:
            raise SensorError(f"prefilter path too long: {path}")
        out.append(_PATH_KEY.pack(len(data) * 8, data))
    return out
