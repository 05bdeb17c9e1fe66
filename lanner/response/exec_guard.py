"""The exec guard: SIGKILL, in the kernel, a process that execs a forbidden file.

The kernel half is ``bpf/exec_guard.bpf.c`` (a ``tp_btf/sched_process_exec`` program): it matches
the exec'd file by (dev, ino), so symlinks, hard links, relative paths and execveat cannot bypass
it, and kills before the new program's first instruction. Policies, in an ``ExecTable``:

- ``deny``: files killed in one cgroup (its cgroup2 id) or everywhere (scope 0);
- ``allow``: per cgroup, only the listed files may run; anything else is killed;
- ``drift``: per cgroup, a file on an overlayfs upper layer (written or changed after the container
  started) is killed.

Nothing kills host pid 1, kernel threads, a protected tgid (the agent always is) or a protected
file. ``enforce=False`` is monitor mode: the decision is reported, the process lives.

Scripts (``#!``) are matched by their interpreter: at the exec tracepoint the script's own file is
already released. fanotify's FAN_OPEN_EXEC_PERM sees the script itself.

``_Guard`` is the machinery this guard shares with the network guard (net_guard.py): load with
takeover of pinned maps, generation-switched atomic apply, decisions ring, pinning on close.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Self

from lanner.response.decisions import Decision
from lanner.response.safety import file_key, kernel_dev
from lanner.sensor import libbpf
from lanner.sensor.loader import SensorError, object_path
from lanner.sensor.records import Clock

PIN_ROOT = "/sys/fs/bpf/lanner"

_U32 = struct.Struct("<I")
_VERDICT = struct.Struct("<IB3x")            # struct verdict
_SCOPE_KEY = struct.Struct("<IQ")            # struct scope_key after gen: pad, cgroup_id
_PROTECT_AGENT = b"\x01"                      # protected_tgids values: the agent itself...
_PROTECT_TABLE = b"\x02"                      # ...or listed by the table

PROTECT_REASONS = {1: "host pid 1", 2: "kernel thread", 3: "protected process", 4: "protected file"}
_MAX_U32 = (1 << 32) - 1
_MAX_U64 = (1 << 64) - 1


class GuardError(RuntimeError):
    """An enforcement guard cannot load, attach or apply here; the message says why."""


def _check_int(value: int, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ValueError(f"{what} must be an integer from 0 to {limit}, not {value!r}")
    return value




def _fdinfo(fd: int, field_name: str) -> int:
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == field_name:
                return int(value)
    raise GuardError(f"fd {fd} has no {field_name}")


class _Guard:
    """Load / attach / atomic apply / decisions / pin, shared by the exec and network guards.

    Subclasses name their object and maps and turn a table into map entries. Generational maps
    have keys that start with the u32 generation (guard.h)."""

    OBJECT: ClassVar[str]
    PIN_NAME: ClassVar[str]
    LAYOUT: ClassVar[int] = 1
    """Bumped when a map's layout changes: a new agent then does not reuse older pinned maps."""
    GEN_MAPS: ClassVar[dict[str, int]]
    """Generational hash maps: name -> key size."""
    SETS: ClassVar[dict[str, int]] = {}
    """Non-generational protection sets (besides protected_tgids): name -> key size."""
    PROGRAMS: ClassVar[tuple[str, ...]]

    def __init__(self, *, pin_dir: str | None = None, ring_bytes: int = 256 << 10) -> None:
        if ring_bytes < 4096 or ring_bytes & (ring_bytes - 1):
            raise ValueError(f"ring buffer size {ring_bytes} must be a power of two of at least 4096")
        self.pin_dir = pin_dir or f"{PIN_ROOT}/{self.PIN_NAME}"
        self.ring_bytes = ring_bytes
        self.agent_tgid = os.getpid()
        self._obj: libbpf.BpfObject | None = None
        self._maps: dict[str, libbpf.Map] = {}
        self._links: list[libbpf.Link] = []
        self._ring: libbpf.RingBuffer | None = None
        self._raw: list[bytes] = []
        self._clock = Clock()
        self._gen = 0
        self._active: dict[str, set[bytes]] | None = None
        """Keys of the active generation per map, None when unknown (maps taken over from pins)."""
        self._sets: dict[str, set[bytes]] | None = None
        self._table_tgids: set[int] | None = None
        self.took_over = False
        """load() reused maps a previous guard pinned, so its policy stayed in force."""

    # --- life cycle -------------------------------------------------------------------------

    @property
    def _maps_dir(self) -> str:
        return f"{self.pin_dir}/maps_v{self.LAYOUT}"  # bpffs refuses names with a dot

    @property
    def _links_dir(self) -> str:
        return f"{self.pin_dir}/links"

    def _open(self, reuse: bool) -> libbpf.BpfObject:
        try:
            obj = libbpf.BpfObject(str(object_path(self.OBJECT)))
        except (SensorError, libbpf.BpfError) as exc:
            raise GuardError(str(exc)) from exc
        try:
            obj.map("decisions").set_max_entries(self.ring_bytes)
            if reuse:
                for m in obj.maps():
                    pinned = f"{self._maps_dir}/{m.name}"
                    if os.path.exists(pinned):
                        want = m.shape()
                        fd = libbpf.obj_get(pinned)
                        try:
                            m.reuse_fd(fd)  # libbpf dups the fd and adopts the pinned map's shape
                        finally:
                            os.close(fd)
                        if m.shape() != want:
                            raise libbpf.BpfError(errno.EINVAL, f"pinned map {pinned} differs from this guard's")
            obj.load()
        except BaseException:
            obj.close()
            raise
        return obj

    def load(self) -> None:
        """Open and load the BPF object. Maps a previous guard pinned (close(keep=True)) are
        reused, so its policy stays in force until the next apply(); if they do not fit this
        object (another size or layout), fresh maps are made."""
        if self._obj is not None:
            raise GuardError(f"{self.PIN_NAME} is already loaded")
        reuse = os.path.isdir(self._maps_dir)
        try:
            try:
                self._obj = self._open(reuse)
            except libbpf.BpfError:
                if not reuse:
                    raise
                reuse = False
                self._obj = self._open(False)
        except libbpf.BpfError as exc:
            raise GuardError(f"{exc} — see `lanner doctor`") from exc
        try:
            self._adopt(reuse)
        except libbpf.BpfError as exc:
            self._obj.close()
            self._obj = None
            raise GuardError(f"{self.PIN_NAME}: {exc}") from exc

    def _adopt(self, reuse: bool) -> None:
        """Read the loaded maps' state and register the agent as protected."""
        assert self._obj is not None
        self._maps = {m.name: m for m in self._obj.maps()}
        self.took_over = reuse
        state = self._maps["state"]
        self._gen = _U32.unpack(state.lookup(_U32.pack(0), 4))[0] & 1
        if reuse:
            self._active = self._sets = self._table_tgids = None
        else:
            self._active = {name: set() for name in self.GEN_MAPS}
            self._sets = {name: set() for name in self.SETS}
            self._table_tgids = set()
        tgids = self._maps["protected_tgids"]
        for key in tgids.keys(4):  # a previous agent's own entry: its pid may be reused
            with contextlib.suppress(libbpf.BpfError):
                if tgids.lookup(key, 1) == _PROTECT_AGENT:
                    tgids.delete(key)
        tgids.update(_U32.pack(self.agent_tgid), _PROTECT_AGENT)

    def _attach_programs(self, obj: libbpf.BpfObject) -> list[libbpf.Link]:
        raise NotImplementedError

    def attach(self) -> None:
        """Attach the programs, then detach a previous guard's pinned ones (no gap in between),
        and open the decisions ring."""
        obj = self._require()
        if self._links:
            return
        try:
            self._links = self._attach_programs(obj)
        except libbpf.BpfError as exc:
            raise GuardError(f"{exc} — see `lanner doctor`") from exc
        if os.path.isdir(self._links_dir):
            for name in os.listdir(self._links_dir):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self._links_dir}/{name}")  # the last reference: the kernel detaches it
        self._remove_stale_layouts()
        self._ring = libbpf.RingBuffer(self._maps["decisions"].fd, self._raw.append)

    def _remove_stale_layouts(self) -> None:
        if not os.path.isdir(self.pin_dir):
            return
        for name in os.listdir(self.pin_dir):
            if name.startswith("maps_v") and name != os.path.basename(self._maps_dir):
                shutil.rmtree(f"{self.pin_dir}/{name}", ignore_errors=True)

    def _require(self) -> libbpf.BpfObject:
        if self._obj is None:
            raise GuardError(f"{self.PIN_NAME}: load() first")
        return self._obj

    def close(self, keep: bool = False) -> None:
        """Detach and unload. keep=True pins the links and maps under pin_dir first, so the
        enforcement outlives this process (the next guard's load takes it over); keep=False also
        removes whatever is pinned there. A second close() does nothing: the pins may belong to
        a newer guard by then."""
        if self._obj is None:
            return
        error: GuardError | None = None
        if keep:
            try:
                self._pin()
                # the agent's pid will be free once it exits: nothing may inherit its protection
                self._maps["protected_tgids"].delete(_U32.pack(self.agent_tgid))
            except (OSError, libbpf.BpfError) as exc:
                keep = False
                error = GuardError(f"{self.PIN_NAME}: cannot keep the enforcement pinned under {self.pin_dir} "
                                   f"({exc}); it was removed")
        if self._ring is not None:
            self._ring.free()
            self._ring = None
        for link in self._links:
            link.destroy()  # a pinned link survives its fd
        self._links = []
        self._obj.close()
        self._obj = None
        self._maps = {}
        if not keep:
            self._unpin_all()
        if error is not None:
            raise error

    def _pin(self) -> None:
        os.makedirs(self._maps_dir, exist_ok=True)
        os.makedirs(self._links_dir, exist_ok=True)
        for name, m in self._maps.items():
            if name.startswith((".", "sync_")):
                continue  # not state: a new guard makes its own
            path = f"{self._maps_dir}/{name}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            libbpf.obj_pin(m.fd, path)
        for link in self._links:
            path = f"{self._links_dir}/{link.name}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            link.pin(path)

    def _unpin_all(self) -> None:
        if os.path.isdir(self.pin_dir):
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.pin_dir))  # /sys/fs/bpf/lanner when it is empty

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- introspection (tests, doctor) ------------------------------------------------------

    def link_ids(self) -> list[int]:
        return [_fdinfo(link.fd, "link_id") for link in self._links]

    def prog_ids(self) -> list[int]:
        return [_fdinfo(link.fd, "prog_id") for link in self._links]

    @property
    def generation(self) -> int:
        return self._gen

    # --- policy ----------------------------------------------------------------------------

    def _apply(self, entries: dict[str, dict[bytes, bytes]], flags: int, sets: dict[str, set[bytes]],
               tgids: Iterable[int]) -> None:
        """Install a compiled policy atomically. entries: generational map -> key (without the
        generation) -> value; flags: the generation's summary (0 = no policy); sets: protection
        sets (key -> present); tgids: protected tgids besides the agent."""
        self._require()
        maps = self._maps
        old, new = self._gen, 1 - self._gen
        old_p, new_p = _U32.pack(old), _U32.pack(new)
        if self._active is None:  # taken over: learn what the previous guard left
            self._active = {}
            for name, size in self.GEN_MAPS.items():
                found = maps[name].keys(size)
                self._active[name] = {k for k in found if k[:4] == old_p}
                for k in found:
                    if k[:4] == new_p:  # half-written by an apply that died
                        maps[name].delete(k)
        if self._sets is None:
            self._sets = {name: set(maps[name].keys(size)) for name, size in self.SETS.items()}
        if self._table_tgids is None:
            self._table_tgids = {_U32.unpack(k)[0] for k in maps["protected_tgids"].keys(4)} - {self.agent_tgid}

        # Protection grows before the switch and shrinks after it: never less than either policy.
        want_tgids = {_check_int(t, "protected tgid", _MAX_U32) for t in tgids} - {self.agent_tgid}
        added: list[tuple[str, bytes]] = []

        def add(name: str, key: bytes, value: bytes) -> None:
            maps[name].update(key, value)
            added.append((name, key))

        try:
            for name, keys in sets.items():
                for k in keys - self._sets[name]:
                    add(name, k, b"\x01")
            for t in sorted(want_tgids - self._table_tgids):
                add("protected_tgids", _U32.pack(t), _PROTECT_TABLE)
            for name, ents in entries.items():
                for k, v in ents.items():
                    add(name, new_p + k, v)
        except libbpf.BpfError as exc:
            for name, key in added:
                maps[name].delete(key)
            hint = " (the policy is larger than the map)" if exc.errno in (errno.E2BIG, errno.ENOSPC) else ""
            raise GuardError(f"{self.PIN_NAME}: policy not applied, the previous one stays: {exc}{hint}") from exc

        state = maps["state"]
        try:
            state.update(_U32.pack(1 + new), _U32.pack(flags))
            state.update(_U32.pack(0), new_p)  # the switch: one aligned 4-byte store
        except libbpf.BpfError as exc:
            self._active = None  # the next apply() cleans up from what the maps hold
            raise GuardError(f"{self.PIN_NAME}: policy not applied: {exc}") from exc
        self._gen = new
        previous = self._active
        self._active = None  # until the old generation is gone: if this fails, the next apply rescans
        try:
            self._wait_for_programs()  # nothing still reads the old generation once this returns
            for name, keys in previous.items():
                for key in keys:
                    maps[name].delete(key)
            state.update(_U32.pack(1 + old), _U32.pack(0))
            for name, keys in sets.items():
                for k in self._sets[name] - keys:
                    maps[name].delete(k)
            for t in self._table_tgids - want_tgids:
                maps["protected_tgids"].delete(_U32.pack(t))
        except libbpf.BpfError as exc:
            self._sets = self._table_tgids = None
            raise GuardError(f"{self.PIN_NAME}: the new policy is in force, "
                             f"removing the old one failed: {exc}") from exc
        self._active = {name: set() for name in self.GEN_MAPS}
        for name, key in added:
            if name in self._active:
                self._active[name].add(key)
        self._sets = {name: set(keys) for name, keys in sets.items()}
        self._table_tgids = want_tgids

    def _wait_for_programs(self) -> None:
        """Return after every program run that began before the call has finished (guard.h)."""
        inner = self._maps["sync_inner"]
        self._maps["sync_programs"].update(_U32.pack(0), _U32.pack(inner.fd))

    # --- decisions --------------------------------------------------------------------------

    def _decode(self, raw: bytes) -> Decision | None:
        raise NotImplementedError

    def poll(self, timeout_ms: int = 0) -> list[Decision]:
        """Decisions the kernel made since the last poll, waiting up to timeout_ms for one."""
        ring = self._ring
        if ring is None:
            raise GuardError(f"{self.PIN_NAME}: attach() first")
        ring.poll(timeout_ms)
        ring.consume()
        raw, self._raw[:] = list(self._raw), []
        out: list[Decision] = []
        for rec in raw:
            d = self._decode(rec)
            if d is not None:
                out.append(d)
        return out

    def dropped(self) -> int:
        """Decisions lost because the ring buffer was full (the kill itself still happened)."""
        m = self._maps.get("dropped")
        if m is None:
            return 0
        ncpu = libbpf.possible_cpus()
        raw = m.lookup(_U32.pack(0), 8 * ncpu)
        return sum(struct.unpack(f"<{ncpu}Q", raw))

    @staticmethod
    def _protected(enforce: bool, protect: int) -> str:
        """Why an enforcing decision left the process alone ("" when it did not)."""
        return PROTECT_REASONS.get(protect, "protected") if enforce and protect else ""


# --- the exec guard -------------------------------------------------------------------------

_DENY_KEY = struct.Struct("<IQQQ")      # struct deny_key after gen: pad, scope, dev, ino
_ALLOWED_KEY = struct.Struct("<IQQ")     # struct allowed_key after gen: list, dev, ino
_FILE_KEY = struct.Struct("<QQ")         # struct file_key
_SCOPE_VAL = struct.Struct("<IIIIBB2x")  # struct scope_val
_EXEC_REC = struct.Struct("<QQQQIIIBBBxiI16s256s")  # struct exec_decision

_G_GLOBAL_DENY, _G_SCOPED = 1, 2
_S_DENY, _S_ALLOW, _S_DRIFT = 1, 2, 4
EXEC_KINDS = {1: "deny", 2: "allow-list", 3: "drift"}


@dataclass(frozen=True, slots=True)
class ExecDeny:
    """Kill an exec of the file (dev, ino) in cgroup `scope` (cgroup2 id; 0 = everywhere)."""

    rule_id: int
    dev: int
    ino: int
    scope: int = 0
    enforce: bool = True

    @classmethod
    def for_path(cls, path: str | os.PathLike[str], rule_id: int, scope: int = 0, enforce: bool = True) -> ExecDeny:
        dev, ino = file_key(path)
        return cls(rule_id, dev, ino, scope, enforce)


@dataclass(frozen=True, slots=True)
class ExecAllowList:
    """In cgroup `cgroup_id`, only the files (dev, ino) listed may be exec'd."""

    cgroup_id: int
    rule_id: int
    files: frozenset[tuple[int, int]]
    enforce: bool = True


@dataclass(frozen=True, slots=True)
class DriftScope:
    """In cgroup `cgroup_id`, kill an exec of a file on an overlayfs upper layer."""

    cgroup_id: int
    rule_id: int
    enforce: bool = True


@dataclass(slots=True)
class ExecTable:
    """Everything the exec guard enforces; apply() replaces the whole table at once."""

    deny: list[ExecDeny] = field(default_factory=list)
    allow: list[ExecAllowList] = field(default_factory=list)
    drift: list[DriftScope] = field(default_factory=list)
    protected_files: list[tuple[int, int]] = field(default_factory=list)
    """(dev, ino) of programs that are never killed, whatever the policy says."""
    protected_tgids: list[int] = field(default_factory=list)
    """Processes that are never killed (the agent is, always)."""


class _Scope:
    __slots__ = ("allow_enforce", "allow_list", "allow_rule", "drift_enforce", "drift_rule", "flags")

    def __init__(self) -> None:
        self.flags = self.allow_rule = self.allow_list = self.drift_rule = 0
        self.allow_enforce = self.drift_enforce = False

    def pack(self) -> bytes:
        return _SCOPE_VAL.pack(self.flags, self.allow_rule, self.allow_list, self.drift_rule,
                               self.allow_enforce, self.drift_enforce)


def compile_exec_table(table: ExecTable) -> tuple[dict[str, dict[bytes, bytes]], int, dict[str, set[bytes]]]:
    """The table as map entries (keys without the generation), the generation flags and the
    protected-file set. Raises ValueError naming the bad entry."""
    deny: dict[bytes, bytes] = {}
    enforcing: set[bytes] = set()
    scopes: dict[int, _Scope] = {}
    flags = 0

    def scope(cg: int) -> _Scope:
        _check_int(cg, "cgroup id", _MAX_U64)
        if cg == 0:
            raise ValueError("an allow-list or drift scope needs a cgroup id (0 would mean every process)")
        return scopes.setdefault(cg, _Scope())

    for d in table.deny:
        _check_int(d.rule_id, "rule id", _MAX_U32)
        key = _DENY_KEY.pack(0, _check_int(d.scope, "deny scope", _MAX_U64), _check_int(d.dev, "dev", _MAX_U64),
                             _check_int(d.ino, "ino", _MAX_U64))
        if key in enforcing or (key in deny and not d.enforce):
            continue  # the same file twice: an enforcing entry wins over a monitoring one
        deny[key] = _VERDICT.pack(d.rule_id, d.enforce)
        if d.enforce:
            enforcing.add(key)
        if d.scope == 0:
            flags |= _G_GLOBAL_DENY
        else:
            scopes.setdefault(d.scope, _Scope()).flags |= _S_DENY

    allowed: dict[bytes, bytes] = {}
    lists: dict[frozenset[tuple[int, int]], int] = {}
    for a in table.allow:
        s = scope(a.cgroup_id)
        if s.flags & _S_ALLOW:
            raise ValueError(f"cgroup {a.cgroup_id} has two allow-lists (rules {s.allow_rule} and {a.rule_id})")
        files = frozenset(a.files)
        list_id = lists.get(files)
        if list_id is None:
            list_id = lists[files] = len(lists)
            for dev, ino in files:
                key = _ALLOWED_KEY.pack(list_id, _check_int(dev, "dev", _MAX_U64), _check_int(ino, "ino", _MAX_U64))
                allowed[key] = b"\x01"
        s.flags |= _S_ALLOW
        s.allow_rule, s.allow_list, s.allow_enforce = _check_int(a.rule_id, "rule id", _MAX_U32), list_id, a.enforce

    for dr in table.drift:
        s = scope(dr.cgroup_id)
        if s.flags & _S_DRIFT and s.drift_enforce and not dr.enforce:
            continue
        s.flags |= _S_DRIFT
        s.drift_rule, s.drift_enforce = _check_int(dr.rule_id, "rule id", _MAX_U32), dr.enforce

    if scopes:
        flags |= _G_SCOPED
    protected = {_FILE_KEY.pack(_check_int(dev, "dev", _MAX_U64), _check_int(ino, "ino", _MAX_U64))
                 for dev, ino in table.protected_files}
    entries = {
        "deny": deny,
        "allowed": allowed,
        "scopes": {_SCOPE_KEY.pack(0, cg): s.pack() for cg, s in scopes.items()},
    }
    return entries, flags, {"protected_files": protected}


class ExecGuard(_Guard):
    """The loaded exec guard. ``load(); attach(); apply(table); poll()...; close(keep)``."""

    OBJECT = "exec_guard.bpf.o"
    PIN_NAME = "exec-guard"
    GEN_MAPS: ClassVar[dict[str, int]] = {"deny": 32, "allowed": 24, "scopes": 16}
    SETS: ClassVar[dict[str, int]] = {"protected_files": 16}
    PROGRAMS = ("lnr_exec_guard",)

    def _attach_programs(self, obj: libbpf.BpfObject) -> list[libbpf.Link]:
        return [obj.program(name).attach() for name in self.PROGRAMS]

    def apply(self, table: ExecTable) -> None:
        """Replace the enforced policy with `table`, atomically: every exec sees either the old
        policy or the new one. On error (bad entry, policy too large) the old one stays."""
        entries, flags, sets = compile_exec_table(table)
        self._apply(entries, flags, sets, table.protected_tgids)

    def _decode(self, raw: bytes) -> Decision | None:
        if len(raw) < _EXEC_REC.size:
            return None
        (ts, cg, dev, ino, tid, tgid, rule_id, _kind, enforce, protect, rc, _pad, comm,
         path) = _EXEC_REC.unpack_from(raw)
        return Decision(
            mechanism="exec-kill", kind="exec", rule_id=rule_id,
            enforced=bool(enforce) and not protect and rc == 0,
            ts_ns=self._clock.epoch(ts), tid=tid, tgid=tgid, cgroup_id=cg,
            path=path.split(b"\0", 1)[0].decode(errors="replace"), dev=dev, ino=ino,
            comm=comm.split(b"\0", 1)[0].decode(errors="replace"),
            error=f"bpf_send_signal: {os.strerror(-rc)}" if rc < 0 else "",
            protected=self._protected(bool(enforce), protect),
        )


__all__ = ["DriftScope", "ExecAllowList", "ExecDeny", "ExecGuard", "ExecTable", "GuardError", "compile_exec_table",
           "file_key", "kernel_dev"]
