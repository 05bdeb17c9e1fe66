"""The network guard: deny connect() and sendto()/sendmsg() in the kernel with EPERM.

The kernel half is ``bpf/net_guard.bpf.c``: cgroup/connect4, connect6, sendmsg4 and sendmsg6
programs attached as BPF links to the cgroup2 root (links are multi-attach: they coexist with
other programs there), so they see every process and decide by the caller's cgroup2 id.

A ``NetDeny`` entry names a destination — address and port, either of which may be "any" — in one
cgroup or everywhere (scope 0). An ``Isolation`` cuts a cgroup's outgoing connections and
datagrams altogether: the reactive ``isolate`` action. An IPv4 entry also matches the same address
written as IPv4-mapped IPv6 (::ffff:a.b.c.d) on a v6 socket.

The agent (and any protected tgid, and host pid 1, and kernel threads) is never denied.
``enforce=False`` is monitor mode: the call goes through and the decision is reported.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar

from lanner.response.decisions import Decision
from lanner.response.exec_guard import _MAX_U32, _MAX_U64, _SCOPE_KEY, GuardError, _check_int, _Guard
from lanner.sensor import libbpf
from lanner.state.cgroups import find_cgroup2_mount

_NET_KEY = struct.Struct("<HHQ16s")                 # struct net_key after gen: family, port, scope, addr
_NET_REC = struct.Struct("<QQIIIBBBxHH16s16s")       # struct net_decision
_SH_EXACT, _SH_ANY_PORT, _SH_ANY_ADDR, _SH_ANY_ANY = 1, 2, 4, 8
_G_SCOPED = 0x100
_KINDS = {1: "connect", 2: "sendmsg"}
_K_CONNECT, _K_SENDMSG = 1 << 1, 1 << 2  # verdict.kinds: 1 << enum net_kind
_NET_VERDICT = struct.Struct("<IBB2x")                # struct verdict
_ANY = bytes(16)


Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class NetDeny:
    """Deny connect (and/or sendto/sendmsg) to each of `addrs` × `ports` from cgroup `scope`
    (cgroup2 id; 0 = everywhere).

    addrs None or empty: any address; ports None or empty: any port. families: 4/6 (or
    AF_INET/AF_INET6) to which an "any address" entry applies; None = both. An address's own
    family is used for it; an IPv4-mapped IPv6 address is its IPv4 address."""

    rule_id: int
    addrs: Collection[Address] | None = None
    ports: Collection[int] | None = None
    families: Collection[int] | None = None
    scope: int = 0
    enforce: bool = True
    connect: bool = True
    send: bool = True


NetDenyEntry = NetDeny


@dataclass(frozen=True, slots=True)
class Isolation:
    """Cut every outgoing connection and datagram of one cgroup (the `isolate` action)."""

    cgroup_id: int
    rule_id: int
    enforce: bool = True


@dataclass(slots=True)
class NetTable:
    """Everything the network guard enforces; apply() replaces the whole table at once."""

    deny: list[NetDeny] = field(default_factory=list)
    isolate: list[Isolation] = field(default_factory=list)
    """Isolated cgroups (besides those isolate() cut off at run time)."""
    protected_tgids: list[int] = field(default_factory=list)
    """Processes that are never denied (the agent is, always)."""


_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6, socket.AF_INET: socket.AF_INET, socket.AF_INET6: socket.AF_INET6}


def _families(d: NetDeny) -> list[int]:
    if not d.families:
        return [socket.AF_INET, socket.AF_INET6]
    out: list[int] = []
    for f in d.families:
        fam = _FAMILIES.get(f) if isinstance(f, int) and not isinstance(f, bool) else None
        if fam is None:
            raise ValueError(f"rule {d.rule_id}: family {f!r} is not 4, 6, AF_INET or AF_INET6")
        if fam not in out:
            out.append(fam)
    return out


def _address(d: NetDeny, a: Address) -> tuple[int, bytes]:
    """(family, 16-byte key address) of one address; IPv4-mapped IPv6 becomes IPv4."""
    try:
        ip = a if isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address) else ipaddress.ip_address(a)
    except ValueError:
        raise ValueError(f"rule {d.rule_id}: {a!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.packed == bytes(len(ip.packed)):
        raise ValueError(f"rule {d.rule_id}: address {a} is the wildcard: leave addrs out for any address")
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.packed.ljust(16, b"\0")


def _destinations(d: NetDeny) -> list[tuple[int, bytes]]:
    if not d.addrs:
        return [(fam, _ANY) for fam in _families(d)]
    if isinstance(d.addrs, str):
        raise ValueError(f"rule {d.rule_id}: addrs must be a collection of addresses, not the string {d.addrs!r}")
    return [_address(d, a) for a in d.addrs]


def _isolations(table: NetTable, isolated: dict[int, Isolation] | None) -> list[Isolation]:
    return list(table.isolate) + list((isolated or {}).values())


def compile_net_table(table: NetTable, isolated: dict[int, Isolation] | None = None
                      ) -> tuple[dict[str, dict[bytes, bytes]], int]:
    """The table (plus runtime isolations) as map entries (keys without the generation) and the
    generation flags. Raises ValueError naming the bad entry."""
    deny: dict[bytes, tuple[int, bool, int]] = {}
    masks: dict[int, int] = {}

    def put(scope: int, fam: int, port: int, addr: bytes, rule_id: int, enforce: bool, kinds: int) -> None:
        key = _NET_KEY.pack(fam, port, scope, addr)
        prev = deny.get(key)
        if prev is not None:
            # the same destination twice: enforcing wins over monitoring, the calls denied add up
            p_rule, p_enforce, p_kinds = prev
            if p_enforce or not enforce:
                rule_id, enforce = p_rule, p_enforce
            kinds |= p_kinds
        deny[key] = (rule_id, enforce, kinds)
        shape = ((_SH_EXACT if port else _SH_ANY_PORT) if addr != _ANY
                 else (_SH_ANY_ADDR if port else _SH_ANY_ANY))
        masks[scope] = masks.get(scope, 0) | shape

    for d in table.deny:
        _check_int(d.rule_id, "rule id", _MAX_U32)
        _check_int(d.scope, "scope", _MAX_U64)
        kinds = (_K_CONNECT if d.connect else 0) | (_K_SENDMSG if d.send else 0)
        if not kinds:
            raise ValueError(f"rule {d.rule_id}: denies neither connect nor send")
        ports = sorted({_check_int(p, f"rule {d.rule_id}: port", 0xFFFF) for p in d.ports or ()}) or [0]
        for fam, addr in _destinations(d):
            for port in ports:
                put(d.scope, fam, port, addr, d.rule_id, d.enforce, kinds)
    for iso in _isolations(table, isolated):
        _check_int(iso.rule_id, "rule id", _MAX_U32)
        if _check_int(iso.cgroup_id, "isolated cgroup id", _MAX_U64) == 0:
            raise ValueError(f"rule {iso.rule_id}: isolate needs a cgroup id (0 would cut every process)")
        for fam in (socket.AF_INET, socket.AF_INET6):
            put(iso.cgroup_id, fam, 0, _ANY, iso.rule_id, iso.enforce, _K_CONNECT | _K_SENDMSG)

    flags = masks.pop(0, 0)
    if masks:
        flags |= _G_SCOPED
    entries = {
        "deny": {k: _NET_VERDICT.pack(*v) for k, v in deny.items()},
        "scopes": {_SCOPE_KEY.pack(0, cg): struct.pack("<I", m) for cg, m in masks.items()},
    }
    return entries, flags


class NetGuard(_Guard):
    """The loaded network guard. ``load(); attach(); apply(table); isolate(cg, rule); poll()...;
    close(keep)``."""

    OBJECT = "net_guard.bpf.o"
    PIN_NAME = "net-guard"
    GEN_MAPS: ClassVar[dict[str, int]] = {"deny": 32, "scopes": 16}
    PROGRAMS = ("lnr_connect4", "lnr_connect6", "lnr_sendmsg4", "lnr_sendmsg6")

    def __init__(self, *, pin_dir: str | None = None, ring_bytes: int = 256 << 10,
                 cgroup_root: str | None = None) -> None:
        super().__init__(pin_dir=pin_dir, ring_bytes=ring_bytes)
        self.cgroup_root = cgroup_root
        self._table = NetTable()
        self._isolated: dict[int, Isolation] = {}

    def _attach_programs(self, obj: libbpf.BpfObject) -> list[libbpf.Link]:
        root = self.cgroup_root or find_cgroup2_mount()
        if root is None:
            raise GuardError("no cgroup2 hierarchy is mounted: the network guard attaches to its root")
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise GuardError(f"cgroup2 root {root}: {exc.strerror}") from None
        links: list[libbpf.Link] = []
        try:
            for name in self.PROGRAMS:
                links.append(obj.program(name).attach_cgroup(fd))
        except BaseException:
            for link in links:
                link.destroy()
            raise
        finally:
            os.close(fd)
        self.cgroup_root = root
        return links

    def apply(self, table: NetTable) -> None:
        """Replace the enforced policy with `table`, atomically: every connect/sendmsg sees either
        the old policy or the new one. Isolations made with isolate() stay until unisolate(). On
        error (bad entry, policy too large) the old policy stays."""
        entries, flags = compile_net_table(table, self._isolated)
        self._apply(entries, flags, {}, table.protected_tgids)
        self._table = table

    def isolate(self, cgroup_id: int, rule_id: int, enforce: bool = True) -> None:
        """Cut a cgroup's network (outgoing connects and datagrams, IPv4 and IPv6) until
        unisolate(); it survives apply() of new tables."""
        iso = Isolation(cgroup_id, rule_id, enforce)
        isolated = dict(self._isolated)
        isolated[cgroup_id] = iso
        entries, flags = compile_net_table(self._table, isolated)
        self._apply(entries, flags, {}, self._table.protected_tgids)
        self._isolated = isolated

    def unisolate(self, cgroup_id: int) -> None:
        """Undo isolate() for a cgroup (entries of the applied table stay)."""
        if cgroup_id not in self._isolated:
            return
        isolated = {cg: iso for cg, iso in self._isolated.items() if cg != cgroup_id}
        entries, flags = compile_net_table(self._table, isolated)
        self._apply(entries, flags, {}, self._table.protected_tgids)
        self._isolated = isolated

    @property
    def isolated(self) -> list[int]:
        return sorted(self._isolated)

    def _decode(self, raw: bytes) -> Decision | None:
        if len(raw) < _NET_REC.size:
            return None
        ts, cg, tid, tgid, rule_id, kind, enforce, protect, family, port, addr, comm = _NET_REC.unpack_from(raw)
        if family == socket.AF_INET:
            text = socket.inet_ntop(socket.AF_INET, addr[:4])
        elif family == socket.AF_INET6:
            text = socket.inet_ntop(socket.AF_INET6, addr)
        else:
            text = ""
        return Decision(
            mechanism="cgroup-net", kind=_KINDS.get(kind, "connect"), rule_id=rule_id,
            enforced=bool(enforce) and not protect, ts_ns=self._clock.epoch(ts), tid=tid, tgid=tgid,
            cgroup_id=cg, family=family, addr=text, port=port,
            comm=comm.split(b"\0", 1)[0].decode(errors="replace"),
            protected=self._protected(bool(enforce), protect),
        )


__all__ = ["Isolation", "NetDeny", "NetDenyEntry", "NetGuard", "NetTable", "compile_net_table"]
