"""Which rules the kernel can enforce, and what exactly it enforces for them (lanner.response applies it).

A rule with ``action: block`` is not evaluated by the engine: it is compiled into a policy that a
kernel mechanism applies before the system call completes. That is only honest when the mechanism
can decide exactly what the condition says, so the condition must be a conjunction of clauses of
the forms below; any other clause makes the rule invalid, with the clause and the reason — never a
silent downgrade to an alert.

- the system calls: ``evt.type = x`` / ``evt.type in (...)`` — one family: exec (execve,
  execveat), open (open, openat, openat2, creat) or network (connect, sendto, sendmsg);
- exec targets: ``proc.exepath = / in`` (a deny set), ``not proc.exepath in (...)`` alone (an
  allow-list: only the listed programs may run in the scope), ``proc.is_exe_upper_layer = true``
  (drift: programs written or changed after the container started);
- open targets: ``fd.name startswith /dir/`` or ``fd.name pmatch (/dir1, /dir2)``, with
  ``evt.is_open_write = true`` and/or ``evt.is_open_read = true``;
- network targets: ``fd.sip`` / ``fd.rip`` (addresses), ``fd.sport`` / ``fd.rport`` (ports),
  ``fd.snet`` / ``fd.rnet`` host-sized networks, ``fd.type`` / ``fd.typechar`` (ipv4, ipv6);
- the scope: ``container`` (``container.id != host``), ``container.id = host``, ``container.id``,
  ``container.image.repository``, ``k8s.ns.name``, ``k8s.pod.label[key]`` / ``k8s.pod.label.key``;
- outcome clauses the kernel acts before (``fd.num >= 0``, ``evt.res = SUCCESS``...): they hold
  for every attempt that would have succeeded, so they do not narrow what is blocked.

``or`` is accepted between alternatives of one field (``fd.name startswith /a/ or fd.name
startswith /b/``); anything else is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from lanner.events import Container
from lanner.rules.ast import And, Compare, Expr, FieldRef, Identifier, ListValue, Literal, Not, Or, to_text
from lanner.rules.ruleset import LoadMessage, Rule, Ruleset

MODES = ("monitor", "enforce")
REACTIVE_ACTIONS = frozenset({"kill", "stop", "isolate"})

EXEC_TYPES = frozenset({"execve", "execveat"})
OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat"})
CONNECT_TYPES = frozenset({"connect"})
SEND_TYPES = frozenset({"sendto", "sendmsg"})

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Clauses about the call's result: the mechanism decides before there is one.
_OUTCOME = {
    ("fd.num", ">=", "0"), ("fd.num", ">", "-1"), ("fd.num", "!=", "-1"),
    ("evt.rawres", ">=", "0"), ("evt.rawres", "=", "0"), ("evt.res", "=", "SUCCESS"),
    ("evt.failed", "=", "false"), ("evt.arg.res", "=", "0"),
}
_FALSE_WHY = {
    "proc.name": "proc.name is the command name, which any program can be renamed to or set for itself; "
                 "name the files with proc.exepath",
    "proc.exe": "proc.exe is the first argument the caller passed, not the file that runs; "
                "use proc.exepath",
    "proc.cmdline": "the command line is chosen by the caller; the kernel mechanisms decide by file",
    "fd.l4proto": "the network guard decides by address and port for every protocol; drop the clause or "
                  "use action alert",
    "fd.directory": "fd.directory matches one directory, not what is below it; use fd.name startswith /dir/",
}


class NotEnforceable(Exception):
    """A clause of a block rule that no kernel mechanism here can decide exactly."""

    def __init__(self, why: str, clause: Expr | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.clause = clause

    def __str__(self) -> str:
        if self.clause is None:
            return self.why
        return f"clause '{to_text(self.clause)}' cannot be enforced: {self.why}"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which workloads a policy covers; every part that is set must hold (AND)."""

    images: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    container_ids: frozenset[str] | None = None
    containers_only: bool = False
    host_only: bool = False

    @property
    def everywhere(self) -> bool:
        return self == Scope()

    @property
    def names_workloads(self) -> bool:
        """Whether the scope picks particular containers (an allow-list needs one)."""
        return bool(self.images or self.namespaces or self.labels or self.container_ids)

    def matches(self, container: Container | None) -> bool:
        """Whether a process in this container (None: on the host) is covered."""
        if container is None:
            return (not self.containers_only and not self.images and not self.namespaces
                    and not self.labels and (self.container_ids is None or "host" in self.container_ids))
        if self.host_only:
            return False
        if self.container_ids is not None and not any(
                container.id == c or (len(c) >= 12 and container.id.startswith(c)) for c in self.container_ids):
            return False
        if self.images is not None and container.image_repository not in self.images:
            return False
        if self.namespaces is not None and (container.pod_namespace or "") not in self.namespaces:
            return False
        return all(container.pod_labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True, slots=True)
class ExecDeny:
    """These programs may not run."""

    paths: frozenset[str]


@dataclass(frozen=True, slots=True)
class ExecAllow:
    """Only these programs may run."""

    paths: frozenset[str]


@dataclass(frozen=True, slots=True)
class ExecDrift:
    """Programs written or changed after the container started (overlayfs upper layer) may not run."""


@dataclass(frozen=True, slots=True)
class OpenDeny:
    """No open below these directories, for writing and/or reading."""

    dirs: frozenset[str]
    write: bool
    read: bool


@dataclass(frozen=True, slots=True)
class NetDeny:
    """No connect/send to these addresses and ports (None: any)."""

    connect: bool
    send: bool
    addrs: frozenset[IpAddress] | None
    ports: frozenset[int] | None
    families: frozenset[int] = frozenset({4, 6})


Target = ExecDeny | ExecAllow | ExecDrift | OpenDeny | NetDeny


@dataclass(frozen=True, slots=True)
class Policy:
    """One block rule compiled for the kernel."""

    rule: str
    target: Target
    scope: Scope
    mode: str | None
    """The rule's own ``mode:``; None leaves it to the configuration."""

    @property
    def mechanism(self) -> str:
        if isinstance(self.target, ExecDeny | OpenDeny):
            return "fanotify"
        if isinstance(self.target, NetDeny):
            return "cgroup-net"
        return "exec-kill"


@dataclass
class _Clauses:
    evtypes: set[str] | None = None
    exec_in: set[str] = field(default_factory=set)
    exec_not_in: set[str] = field(default_factory=set)
    drift: bool = False
    dirs: set[str] = field(default_factory=set)
    write: bool = False
    read: bool = False
    addrs: set[IpAddress] | None = None
    ports: set[int] | None = None
    families: set[int] | None = None
    images: set[str] | None = None
    namespaces: set[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    container_ids: set[str] | None = None
    containers_only: bool = False
    host_only: bool = False
    # Which family each target clause belongs to, to refuse e.g. fd.name in an exec block.
    used: dict[str, Expr] = field(default_factory=dict)


def _values(c: Compare) -> list[str]:
    if isinstance(c.rhs, Literal):
        return [c.rhs.value]
    if isinstance(c.rhs, ListValue):
        return list(c.rhs.items)
    raise NotEnforceable("the value must be a literal or a list of literals", c)


def _intersect(old: set[str] | None, new: Iterable[str]) -> set[str]:
    return set(new) if old is None else old & set(new)


def _set_op(c: Compare) -> list[str]:
    if c.op not in ("=", "in") or c.modifier:
        raise NotEnforceable(f"use = or in with {value_name(c)}", c)
    return _values(c)


def value_name(c: Compare) -> str:
    lhs = c.lhs
    if not isinstance(lhs, FieldRef):
        return to_text(c)
    return lhs.name + (f"[{lhs.arg}]" if lhs.arg is not None else "")


def _flatten(node: Expr) -> list[Expr]:
    if isinstance(node, And):
        out: list[Expr] = []
        for item in node.items:
            out.extend(_flatten(item))
        return out
    return [node]


def _merge_or(node: Or) -> Compare:
    """``f = a or f in (b, c)`` → ``f in (a, b, c)``; prefix tests likewise into ``pmatch``."""
    compares = [i for i in node.items if isinstance(i, Compare) and isinstance(i.lhs, FieldRef)]
    if len(compares) != len(node.items) or len({value_name(c) for c in compares}) != 1:
        raise NotEnforceable("'or' between different fields cannot be enforced exactly; write one rule per "
                             "alternative", node)
    ops = {c.op for c in compares}
    items: list[str] = []
    for c in compares:
        items.extend(_values(c))
    first = compares[0]
    if ops <= {"=", "in"}:
        return Compare(first.lhs, "in", ListValue(tuple(items)), pos=first.pos)
    if ops <= {"startswith", "pmatch"}:
        return Compare(first.lhs, "pmatch", ListValue(tuple(items)), pos=first.pos)
    raise NotEnforceable("'or' of these comparisons cannot be enforced exactly", node)


def _address(text: str, clause: Expr) -> IpAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise NotEnforceable(f"'{text}' is not an IP address", clause) from None


def _clause(acc: _Clauses, node: Expr) -> None:
    if isinstance(node, Or):
        node = _merge_or(node)
    if isinstance(node, Not):
        inner = node.item
        if isinstance(inner, Compare) and isinstance(inner.lhs, FieldRef):
            name = value_name(inner)
            if name == "proc.exepath" and inner.op in ("=", "in"):
                acc.exec_not_in.update(_values(inner))
                acc.used.setdefault("exec", node)
                return
            if name == "container.id" and inner.op == "=" and _values(inner) == ["host"]:
                acc.containers_only = True
                return
        raise NotEnforceable("only 'not proc.exepath in (...)' (an allow-list or exceptions to a deny "
                             "set) can be negated", node)
    if isinstance(node, Identifier):
        raise NotEnforceable(f"'{node.name}' is not a defined macro", node)
    if not isinstance(node, Compare):  # And was flattened by the caller
        raise NotEnforceable("unexpected clause", node)
    if not isinstance(node.lhs, FieldRef):
        raise NotEnforceable("transformers are not evaluated by the kernel mechanisms", node)
    name = value_name(node)
    key = (name, node.op, _values(node)[0] if isinstance(node.rhs, Literal) else "")
    if key in _OUTCOME or (key[0] == "evt.res" and key[2].upper() == "SUCCESS"):
        return
    if name == "evt.type":
        acc.evtypes = _intersect(acc.evtypes, _set_op(node))
    elif name == "evt.dir":
        return
    elif name == "proc.exepath":
        if node.op == "!=":
            acc.exec_not_in.update(_values(node))
        else:
            acc.exec_in.update(_set_op(node))
        acc.used.setdefault("exec", node)
    elif name == "proc.is_exe_upper_layer":
        if node.op != "=" or _values(node)[0].lower() != "true":
            raise NotEnforceable("only proc.is_exe_upper_layer = true (drift) can be enforced", node)
        acc.drift = True
        acc.used.setdefault("exec", node)
    elif name == "fd.name":
        if node.op not in ("startswith", "pmatch"):
            raise NotEnforceable("the open guard protects directories: write fd.name startswith /dir/ "
                                 "or fd.name pmatch (/dir1, /dir2)", node)
        for d in _values(node):
            if not d.startswith("/"):
                raise NotEnforceable(f"'{d}' is not an absolute path", node)
            if node.op == "startswith" and not d.endswith("/"):
                raise NotEnforceable(f"startswith '{d}' also matches siblings such as '{d}-old'; end the "
                                     "directory with '/'", node)
            acc.dirs.add(d.rstrip("/") or "/")
        acc.used.setdefault("open", node)
    elif name in ("evt.is_open_write", "evt.is_open_read"):
        if node.op != "=" or _values(node)[0].lower() != "true":
            raise NotEnforceable(f"only {name} = true can be enforced", node)
        if name == "evt.is_open_write":
            acc.write = True
        else:
            acc.read = True
        acc.used.setdefault("open", node)
    elif name in ("fd.typechar", "fd.type"):
        value = _values(node)[0] if node.op == "=" else ""
        if value in ("f", "file"):
            acc.used.setdefault("open", node)
            return
        fam = {"4": 4, "ipv4": 4, "6": 6, "ipv6": 6}.get(value)
        if fam is None:
            raise NotEnforceable("only regular files (f) or IPv4/IPv6 sockets can be told apart", node)
        acc.families = (acc.families or {4, 6}) & {fam}
        acc.used.setdefault("net", node)
    elif name in ("fd.sip", "fd.rip"):
        new = {_address(v, node) for v in _set_op(node)}
        acc.addrs = new if acc.addrs is None else acc.addrs & new
        acc.used.setdefault("net", node)
    elif name in ("fd.snet", "fd.rnet"):
        if node.op != "in" and node.op != "=":
            raise NotEnforceable(f"use = or in with {name}", node)
        hosts: set[IpAddress] = set()
        for text in _values(node):
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise NotEnforceable(f"'{text}' is not a network", node) from None
            if net.num_addresses != 1:
                raise NotEnforceable(f"the network guard matches single addresses; '{text}' has "
                                     f"{net.num_addresses}", node)
            hosts.add(net.network_address)
        acc.addrs = hosts if acc.addrs is None else acc.addrs & hosts
        acc.used.setdefault("net", node)
    elif name in ("fd.sport", "fd.rport"):
        try:
            ports = {int(v) for v in _set_op(node)}
        except ValueError:
            raise NotEnforceable("ports must be numbers", node) from None
        if any(not 0 < p < 65536 for p in ports):
            raise NotEnforceable("ports are 1 to 65535", node)
        acc.ports = ports if acc.ports is None else acc.ports & ports
        acc.used.setdefault("net", node)
    elif name == "container.id":
        values = _values(node)
        if node.op == "!=" and values == ["host"]:
            acc.containers_only = True
        elif node.op == "=" and values == ["host"]:
            acc.host_only = True
        else:
            ids = _set_op(node)
            acc.container_ids = _intersect(acc.container_ids, ids)
    elif name == "container.image.repository":
        acc.images = _intersect(acc.images, _set_op(node))
    elif name == "k8s.ns.name":
        acc.namespaces = _intersect(acc.namespaces, _set_op(node))
    elif name.startswith("k8s.pod.label"):
        label = node.lhs.arg if node.lhs.arg is not None else name.removeprefix("k8s.pod.label.")
        if not label or label == name or node.op != "=":
            raise NotEnforceable("write k8s.pod.label[key] = value", node)
        acc.labels[label] = _values(node)[0]
    else:
        why = _FALSE_WHY.get(name, f"{name} is not something the kernel mechanisms decide on (they decide by "
                                   "file, directory, address, port and workload)")
        raise NotEnforceable(why, node)


def _family(types: set[str] | None) -> str:
    if types is None:
        raise NotEnforceable("name the system calls to block with evt.type (execve, openat, connect...)")
    if not types:
        raise NotEnforceable("the evt.type clauses leave no system call")
    for fam, members in (("exec", EXEC_TYPES), ("open", OPEN_TYPES), ("net", CONNECT_TYPES | SEND_TYPES)):
        if types <= members:
            return fam
    raise NotEnforceable(f"evt.type mixes system calls of different kinds ({', '.join(sorted(types))}); "
                         "write one rule per kind")


def compile_rule(rule: Rule) -> Policy:
    """The policy of a block rule; raises NotEnforceable naming the clause the kernel cannot decide."""
    acc = _Clauses()
    for clause in _flatten(rule.condition):
        _clause(acc, clause)
    family = _family(acc.evtypes)
    for other, clause in acc.used.items():
        if other != family:
            raise NotEnforceable(f"this clause belongs to an {other} block, but the rule blocks {family}", clause)
    scope = Scope(
        images=frozenset(acc.images) if acc.images is not None else None,
        namespaces=frozenset(acc.namespaces) if acc.namespaces is not None else None,
        labels=tuple(sorted(acc.labels.items())),
        container_ids=frozenset(acc.container_ids) if acc.container_ids is not None else None,
        containers_only=acc.containers_only, host_only=acc.host_only)
    target: Target
    if family == "exec":
        if acc.drift:
            if acc.exec_in or acc.exec_not_in:
                raise NotEnforceable("drift cannot be combined with a list of programs; write two rules")
            if scope.host_only:
                raise NotEnforceable("drift is about containers (their overlayfs upper layer)")
            target = ExecDrift()
        elif acc.exec_in:
            paths = acc.exec_in - acc.exec_not_in
            if not paths:
                raise NotEnforceable("the exceptions remove every program from the deny set")
            target = ExecDeny(frozenset(paths))
        elif acc.exec_not_in:
            if not scope.names_workloads:
                raise NotEnforceable("an allow-list must name its workloads (container.image.repository, "
                                     "k8s.ns.name, k8s.pod.label or container.id): on the whole host it would "
                                     "stop every program not listed")
            target = ExecAllow(frozenset(acc.exec_not_in))
        else:
            raise NotEnforceable("name the programs: proc.exepath in (...), not proc.exepath in (...) "
                                 "(allow-list) or proc.is_exe_upper_layer = true (drift)")
    elif family == "open":
        if not acc.dirs:
            raise NotEnforceable("name the directories: fd.name startswith /dir/")
        write, read = (acc.write, acc.read) if (acc.write or acc.read) else (True, True)
        target = OpenDeny(frozenset(acc.dirs), write=write, read=read)
    else:
        types = acc.evtypes or set()
        if acc.addrs is None and acc.ports is None:
            raise NotEnforceable("name the addresses (fd.sip) or ports (fd.sport); to cut a workload's whole "
                                 "network use action isolate")
        if acc.addrs is not None and not acc.addrs:
            raise NotEnforceable("the address clauses leave no address")
        if acc.ports is not None and not acc.ports:
            raise NotEnforceable("the port clauses leave no port")
        families = frozenset(acc.families or {4, 6})
        if acc.addrs is not None:
            families &= frozenset({a.version for a in acc.addrs})
        target = NetDeny(connect=bool(types & CONNECT_TYPES), send=bool(types & SEND_TYPES),
                         addrs=frozenset(acc.addrs) if acc.addrs is not None else None,
                         ports=frozenset(acc.ports) if acc.ports is not None else None, families=families)
    return Policy(rule=rule.name, target=target, scope=scope, mode=rule.mode)


def check(ruleset: Ruleset) -> list[Policy]:
    """The policies of the ruleset's block rules; each block rule that cannot be enforced adds an
    error to ``ruleset.errors`` (the agent refuses such rules, ``rules validate`` reports them)."""
    policies, errors = compile_ruleset(ruleset)
    ruleset.errors.extend(errors)
    return policies


def compile_ruleset(ruleset: Ruleset) -> tuple[list[Policy], list[LoadMessage]]:
    """The policies of the enabled block rules, and an error for each block rule that cannot be enforced."""
    policies: list[Policy] = []
    errors: list[LoadMessage] = []
    for rule in ruleset.enabled_rules():
        if rule.action != "block":
            continue
        try:
            policies.append(compile_rule(rule))
        except NotEnforceable as e:
            errors.append(LoadMessage("LOAD_ERR_VALIDATE", f"action block: {e}", "rule",
                                      rule.name, rule.location))
    return policies, errors
