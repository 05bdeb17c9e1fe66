"""The enforcer: keeps the kernel mechanisms holding what the block policies say, for the host and
every container a policy covers, and collects their decisions.

It learns of containers from the agent (the first event of each container, once its metadata is
known), so a container's very first exec can run before its policy is in place: the window is the
container-metadata latency (docs/enforcement.md). Paths are looked up again every few seconds, so
a program installed after start-up is covered too.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import replace

from lanner.config import Enforcement
from lanner.events import Container
from lanner.response import plan as P
from lanner.response.decisions import Decision
from lanner.response.exec_guard import DriftScope, ExecAllowList, ExecGuard, ExecTable, GuardError
from lanner.response.exec_guard import ExecDeny as KillEntry
from lanner.response.fanotify import ExecDenyEntry, FanotifyGuard, FanotifyTable, OpenDenyEntry
from lanner.response.net_guard import NetDenyEntry, NetGuard, NetTable
from lanner.response.safety import Protection, file_key
from lanner.rules.policy import ExecAllow, ExecDeny, ExecDrift, NetDeny, OpenDeny, Policy
from lanner.state.cgroups import CgroupResolver, find_cgroup2_mount
from lanner.state.processes import cgroup_id

REFRESH_S = 5.0
_PROC_ROOT = re.compile(r"^/proc/\d+/root(?=/)")


def _inside(path: str) -> str:
    """A workload's path as the workload sees it (without the /proc/<pid>/root the agent went through)."""
    return _PROC_ROOT.sub("", path, count=1)


def _inodes(plan: P.Plan) -> tuple[tuple[int, int], ...]:
    out = []
    for path in [r.path for r in plan.exec_deny] + [p for a in plan.allow for p in a.paths] + \
            [r.path for r in plan.open_deny]:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0))
        else:
            out.append((st.st_dev, st.st_ino))
    return tuple(out)


class EnforcementError(RuntimeError):
    """A mechanism the policies need cannot start here; the message says which and why."""


class Enforcer:
    def __init__(self, policies: list[Policy], settings: Enforcement, protection: Protection,
                 log: Callable[[str], None]) -> None:
        self.policies = policies
        self.settings = settings
        self.protection = protection
        self.log = log
        self.cgroup_mount = find_cgroup2_mount() or "/sys/fs/cgroup/unified"
        self.cgroups = CgroupResolver(self.cgroup_mount)
        self.workloads: dict[int, P.Workload] = {0: P.HOST}
        self.fanotify: FanotifyGuard | None = None
        self.exec_guard: ExecGuard | None = None
        self.net_guard: NetGuard | None = None
        self._applied: tuple[P.Plan, tuple[tuple[int, int], ...]] | None = None
        self._next_refresh = 0.0
        self._skipped: set[str] = set()
        self._exec_names: dict[tuple[int, int], str] = {}
        self._last_error = ""

    # --- which mechanisms ---------------------------------------------------------------------------

    def _needs(self, policies: list[Policy]) -> set[str]:
        kinds: set[str] = set()
        for p in policies:
            t = p.target
            if isinstance(t, OpenDeny) or (isinstance(t, ExecDeny) and self.settings.exec_deny == "fanotify"):
                kinds.add("fanotify")
            elif isinstance(t, ExecDeny | ExecAllow | ExecDrift):
                kinds.add("exec")
            elif isinstance(t, NetDeny):
                kinds.add("net")
        return kinds

    @property
    def watches_containers(self) -> bool:
        """Whether some policy can cover a container (the agent then reports new containers)."""
        return any(not p.scope.host_only for p in self.policies)

    def start(self, *, net: bool = False) -> None:
        """Start the mechanisms the policies need (``net``: the network guard even without a network
        policy, for the isolate action) and apply the policies."""
        self._start_backends(self._needs(self.policies) | ({"net"} if net else set()))
        self.apply()

    def _start_backends(self, kinds: set[str]) -> None:
        agent = [self.protection_tgid]
        try:
            if "fanotify" in kinds and self.fanotify is None:
                self.fanotify = FanotifyGuard(protected_tgids=agent, protected_files=self.protection.files)
                self.fanotify.start()
            if "exec" in kinds and self.exec_guard is None:
                self.exec_guard = ExecGuard()
                self.exec_guard.load()
                self.exec_guard.attach()
            if "net" in kinds and self.net_guard is None:
                self.net_guard = NetGuard()
                self.net_guard.load()
                self.net_guard.attach()
        except (OSError, ValueError, GuardError) as e:
            raise EnforcementError(f"enforcement cannot start: {e}") from None

    @property
    def protection_tgid(self) -> int:
        return os.getpid()

    # --- workloads ---------------------------------------------------------------------------------

    def add_container(self, container: Container, pid: int) -> bool:
        """A container's process was seen with its metadata: put the policies that cover it in place.
        False when the process is already gone (a runtime's short-lived set-up process): ask again
        with a later process of the container."""
        if not any(p.scope.matches(container) for p in self.policies):
            return True
        cg = cgroup_id("/proc", pid, self.cgroup_mount)
        if not cg:
            return False
        if cg not in self.workloads:
            self.workloads[cg] = P.Workload(cg, container, pid)
            self._apply_logged()
        return True

    def cgroup_of_container(self, container_id: str, pid: int = 0) -> int:
        """The cgroup2 id of a container: known when a policy covers it, else its directory (named
        after its id by every runtime), else the cgroup of one of its processes; 0 when not found."""
        for cg, w in self.workloads.items():
            if w.container is not None and w.container.id == container_id:
                return cg
        for root, dirs, _files in os.walk(self.cgroup_mount):
            for d in dirs:
                if container_id in d:
                    try:
                        return os.stat(os.path.join(root, d)).st_ino
                    except OSError:
                        break
        return cgroup_id("/proc", pid, self.cgroup_mount) if pid else 0

    def _prune(self) -> bool:
        """Forget containers whose processes are gone (another of their processes takes over)."""
        changed = False
        for cg, w in list(self.workloads.items()):
            if w.container is None or os.path.exists(f"/proc/{w.pid}"):
                continue
            pid = self._pid_in(w)
            if pid:
                self.workloads[cg] = P.Workload(cg, w.container, pid)
            else:
                del self.workloads[cg]
                if self.net_guard is not None and cg in self.net_guard.isolated:
                    self.net_guard.unisolate(cg)
            changed = True
        return changed

    def _pid_in(self, w: P.Workload) -> int:
        """A process still in the workload's cgroup, 0 when none is."""
        path = self.cgroups.path_of(w.cgroup_id)
        if path is None:
            return 0
        try:
            with open(f"{self.cgroup_mount}{path.rstrip('/')}/cgroup.procs", encoding="ascii") as f:
                first = f.readline().strip()
        except OSError:
            return 0
        return int(first) if first else 0

    # --- applying --------------------------------------------------------------------------------

    def replace(self, policies: list[Policy]) -> None:
        """New policies (a reload): start what they need, then swap every table at once."""
        self._start_backends(self._needs(policies))
        old, self.policies = self.policies, policies
        try:
            self.apply()
        except EnforcementError:
            self.policies = old  # the guards kept the old tables
            raise

    def apply(self) -> None:
        plan = P.build(self.policies, list(self.workloads.values()), self.settings)
        for line in plan.skipped:
            if line not in self._skipped:
                self._skipped.add(line)
                self.log(f"enforcement: {line} (nothing to block there)")
        state = (plan, _inodes(plan))  # same paths, but a program replaced by a new file must be marked anew
        if state == self._applied:
            return
        try:
            if self.fanotify is not None:
                self.fanotify.apply(self._fanotify_table(plan))
            if self.exec_guard is not None:
                self.exec_guard.apply(self._exec_table(plan))
            if self.net_guard is not None:
                self.net_guard.apply(self._net_table(plan))
        except (OSError, ValueError, GuardError) as e:  # each guard keeps its previous table
            raise EnforcementError(f"enforcement: the policies cannot be applied: {self._named(str(e))}") from None
        self._applied = state

    def _named(self, message: str) -> str:
        """A mechanism's message with its rule ids written as the rules' names."""
        def name(m: re.Match[str]) -> str:
            i = int(m[1])
            return f"rule '{self.policies[i].rule}'" if i < len(self.policies) else m[0]

        return re.sub(r"\brule (\d+)\b", name, message)

    def tick(self) -> None:
        """Every few seconds: drop gone containers and look the paths up again."""
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + REFRESH_S
        self._prune()
        self._apply_logged()

    def _apply_logged(self) -> None:
        """Apply while running (a container came or went, a path changed): a failure keeps the
        previous policy in force and is said in the log, never the end of the agent."""
        try:
            self.apply()
        except EnforcementError as e:
            if str(e) != self._last_error:
                self.log(f"{e}; the previous policy stays in force")
            self._last_error = str(e)
        else:
            self._last_error = ""

    def _fanotify_table(self, plan: P.Plan) -> FanotifyTable:
        execs = [] if self.settings.exec_deny != "fanotify" else plan.exec_deny
        return FanotifyTable(
            exec_deny=[ExecDenyEntry(rule_id=r.rule_id, enforce=r.enforce, paths=(r.path,),
                                     scope=None if r.cgroup_id == 0 else frozenset({r.cgroup_id}))
                       for r in execs],
            open_deny=[OpenDenyEntry(rule_id=r.rule_id, enforce=r.enforce, directories=(r.path,), write=r.write,
                                     read=r.read, scope=None if r.cgroup_id == 0 else frozenset({r.cgroup_id}))
                       for r in plan.open_deny])

    def _exec_table(self, plan: P.Plan) -> ExecTable:
        deny = []
        if self.settings.exec_deny == "kill":
            for r in plan.exec_deny:
                try:
                    dev, ino = file_key(r.path)
                except ValueError:
                    continue
                deny.append(KillEntry(r.rule_id, dev, ino, r.cgroup_id, r.enforce))
                self._exec_names[(dev, ino)] = _inside(r.path)
        allow = []
        self._exec_names = {k: v for k, v in self._exec_names.items() if k in {(d.dev, d.ino) for d in deny}}
        for a in plan.allow:
            files = set()
            for p in a.paths:
                try:
                    files.add(file_key(p))
                except ValueError:
                    continue
            allow.append(ExecAllowList(a.cgroup_id, a.rule_id, frozenset(files), a.enforce))
        return ExecTable(deny=deny, allow=allow,
                         drift=[DriftScope(d.cgroup_id, d.rule_id, d.enforce) for d in plan.drift],
                         protected_files=sorted(self.protection.files), protected_tgids=[self.protection_tgid])

    def _net_table(self, plan: P.Plan) -> NetTable:
        return NetTable(deny=[NetDenyEntry(rule_id=r.rule_id, enforce=r.enforce, scope=r.cgroup_id, addrs=r.addrs,
                                           ports=r.ports, families=r.families)
                              for r in plan.net],
                        protected_tgids=[self.protection_tgid])

    # --- reactive isolate --------------------------------------------------------------------------

    def isolate(self, cgroup_id: int, rule_id: int) -> str:
        """Cut a container's network (the isolate action) until it is gone: "" when done, else why not.
        The network guard keeps the isolation across every later apply()."""
        try:
            self._start_backends({"net"})
            assert self.net_guard is not None
            self.net_guard.isolate(cgroup_id, rule_id)
        except (EnforcementError, OSError, ValueError, GuardError) as e:
            return str(e)
        return ""

    # --- decisions ---------------------------------------------------------------------------------

    def poll(self) -> list[Decision]:
        out: list[Decision] = []
        for backend in (self.fanotify, self.exec_guard, self.net_guard):
            if backend is not None:
                out.extend(backend.poll(0))
        if self.exec_guard is not None and self._exec_names:
            # The exec guard sees the name the caller passed (./x, /dev/fd/3/x); a listed program is
            # reported by the path the policy named it by.
            names = self._exec_names
            out = [replace(d, path=names[(d.dev, d.ino)]) if d.mechanism == "exec-kill" and (d.dev, d.ino) in names
                   else d for d in out]
        return out

    def lost(self) -> dict[str, int]:
        """Decisions each mechanism could not hand over (its queue or ring buffer was full)."""
        out: dict[str, int] = {}
        if self.exec_guard is not None:
            out["exec-kill"] = self.exec_guard.dropped()
        if self.net_guard is not None:
            out["cgroup-net"] = self.net_guard.dropped()
        if self.fanotify is not None:
            out["fanotify"] = self.fanotify.stats().get("dropped", 0)
        return out

    def container_of(self, cgroup_id: int) -> Container | None:
        w = self.workloads.get(cgroup_id)
        return w.container if w is not None else None

    def stats(self) -> dict[str, int]:
        isolated = len(self.net_guard.isolated) if self.net_guard is not None else 0
        return {"workloads": len(self.workloads) - 1, "isolated": isolated}

    def close(self) -> None:
        """Remove every enforcement (or leave the BPF guards pinned with keep_on_exit)."""
        keep = self.settings.keep_on_exit
        self.cgroups.close()
        if self.fanotify is not None:
            self.fanotify.close()  # a fanotify group lives only as long as its process
            self.fanotify = None
        for name in ("exec_guard", "net_guard"):
            backend = getattr(self, name)
            if backend is not None:
                backend.close(keep=keep)
                setattr(self, name, None)
