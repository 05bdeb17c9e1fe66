"""What the kernel mechanisms must hold, worked out from the policies and the workloads running.

A policy names files and directories by path, and workloads by image, namespace and labels; the
mechanisms decide by inode and cgroup. The plan joins the two: for the host and for each container
a policy covers, the paths as the agent reaches them (``/proc/<pid>/root/...`` inside a container),
the cgroup to scope to, and whether to enforce or only report (the mode for that workload).
Building it touches no kernel object, so it is tested without root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lanner.config import Enforcement
from lanner.events import Container
from lanner.response.safety import host_root
from lanner.rules.policy import ExecAllow, ExecDeny, ExecDrift, IpAddress, NetDeny, OpenDeny, Policy


@dataclass(frozen=True, slots=True)
class Workload:
    """The host (container None, cgroup 0) or one container, reached through one of its processes."""

    cgroup_id: int
    container: Container | None
    pid: int

    @property
    def root(self) -> str:
        if self.container is None:
            return host_root()
        return f"/proc/{self.pid}/root"

    def path(self, inside: str) -> str:
        """A workload's path as the agent can open it."""
        root = self.root
        return inside if root == "/" else root + inside


HOST = Workload(0, None, 1)




@dataclass(frozen=True, slots=True)
class FileRule:
    rule_id: int
    enforce: bool
    path: str
    """The file as the agent opens it."""
    cgroup_id: int
    """0: wherever the file is executed."""


@dataclass(frozen=True, slots=True)
class DirRule:
    rule_id: int
    enforce: bool
    path: str
    write: bool
    read: bool
    cgroup_id: int


@dataclass(frozen=True, slots=True)
class AllowRule:
    rule_id: int
    enforce: bool
    cgroup_id: int
    paths: tuple[str, ...]
    """The allowed programs that exist in this container, as the agent opens them."""


@dataclass(frozen=True, slots=True)
class DriftRule:
    rule_id: int
    enforce: bool
    cgroup_id: int


@dataclass(frozen=True, slots=True)
class NetRule:
    rule_id: int
    enforce: bool
    cgroup_id: int
    addrs: frozenset[IpAddress] | None
    ports: frozenset[int] | None
    families: frozenset[int]
    connect: bool
    send: bool


@dataclass(slots=True)
class Plan:
    exec_deny: list[FileRule] = field(default_factory=list)
    open_deny: list[DirRule] = field(default_factory=list)
    allow: list[AllowRule] = field(default_factory=list)
    drift: list[DriftRule] = field(default_factory=list)
    net: list[NetRule] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """What could not be placed (a path missing in a workload), for the log."""


def effective_mode(rule_mode: str | None, namespace: str | None, settings: Enforcement) -> str:
    """monitor_only overrides everything; then a ``monitor`` from the rule or the workload's namespace
    wins over an ``enforce``; with neither set, the global mode applies."""
    if settings.monitor_only:
        return "monitor"
    said = [m for m in (rule_mode, settings.namespaces.get(namespace or "") if namespace else None) if m]
    if "monitor" in said:
        return "monitor"
    if said:
        return "enforce"
    return settings.mode


def _exists(path: str) -> bool:
    return os.path.exists(path)


def build(policies: list[Policy], workloads: list[Workload], settings: Enforcement) -> Plan:
    """The plan for these policies (rule id = index in ``policies``) over the host and containers."""
    plan = Plan()
    for rule_id, pol in enumerate(policies):
        for w in workloads:
            if not pol.scope.matches(w.container):
                continue
            ns = w.container.pod_namespace if w.container is not None else None
            enforce = effective_mode(pol.mode, ns, settings) == "enforce"
            target = pol.target
            if isinstance(target, ExecDeny):
                for p in sorted(target.paths):
                    full = w.path(p)
                    if _exists(full):
                        plan.exec_deny.append(FileRule(rule_id, enforce, full, w.cgroup_id))
                    else:
                        plan.skipped.append(f"{pol.rule}: {p} does not exist in {_name(w)}")
            elif isinstance(target, OpenDeny):
                for d in sorted(target.dirs):
                    full = w.path(d)
                    if os.path.isdir(full):
                        plan.open_deny.append(DirRule(rule_id, enforce, full, target.write, target.read,
                                                      w.cgroup_id))
                    else:
                        plan.skipped.append(f"{pol.rule}: directory {d} does not exist in {_name(w)}")
            elif isinstance(target, ExecAllow):
                if w.container is None:
                    continue  # an allow-list names workloads (policy.py); never the host
                paths = tuple(w.path(p) for p in sorted(target.paths) if _exists(w.path(p)))
                plan.allow.append(AllowRule(rule_id, enforce, w.cgroup_id, paths))
            elif isinstance(target, ExecDrift):
                if w.container is not None:
                    plan.drift.append(DriftRule(rule_id, enforce, w.cgroup_id))
            elif isinstance(target, NetDeny):
                plan.net.append(NetRule(rule_id, enforce, w.cgroup_id, target.addrs, target.ports, target.families,
                                        target.connect, target.send))
    return plan


def _name(w: Workload) -> str:
    if w.container is None:
        return "the host"
    c = w.container
    return f"container {c.name or c.id[:12]} ({c.image_repository})"
