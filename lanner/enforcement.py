"""The agent's enforcement: the enforcer (block rules in the kernel) and the responder (kill, stop,
isolate) wired to the agent's state, alerts and metrics.

The agent hands it new containers, the alerts of reactive rules and, each loop, the time to
collect the mechanisms' decisions; it hands back alerts through ``deliver``, which throttles and
sends them like any other. Every decision — blocked, killed, allowed in monitor mode, protected,
failed — becomes an alert of the rule that asked for it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lanner.alert import Alert, hostname
from lanner.config import Config
from lanner.engine import Engine
from lanner.events import Container, Event, Process
from lanner.response.decisions import Decision, as_event
from lanner.response.enforcer import EnforcementError, Enforcer
from lanner.response.plan import effective_mode
from lanner.response.reactive import Responder
from lanner.response.safety import Protection
from lanner.rules.policy import REACTIVE_ACTIONS, ExecAllow, ExecDeny, ExecDrift, Policy
from lanner.rules.ruleset import Rule, Ruleset
from lanner.state.cgroups import CgroupResolver, container_id_from_proc
from lanner.state.containers import ContainerDirectory
from lanner.state.tracker import StateTracker

if TYPE_CHECKING:
    from lanner.cri import CriClient
    from lanner.metrics import AgentMetrics

LOST_DECISIONS_RULE = "Lanner internal: enforcement decisions lost"
PRUNE_S = 60
REACTIVE_ID_BASE = 1 << 24  # kernel rule ids of reactive rules (isolate), above any block policy's

Deliver = Callable[[Alert, str, int], None]
"""deliver(alert, container id for throttling, event time ns): throttle, time and send an alert."""


def reactive_actions(rules: list[Rule]) -> set[str]:
    return {r.action for r in rules if r.action in REACTIVE_ACTIONS}


class Enforcement:
    def __init__(self, cfg: Config, ruleset: Ruleset, policies: list[Policy], reactive: set[str], *,
                 directory: ContainerDirectory | None, cri: CriClient | None, metrics: AgentMetrics,
                 render: Callable[[Rule, Event], Alert], deliver: Deliver, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.ruleset = ruleset
        self.policies = policies
        self.directory = directory
        self.metrics = metrics
        self.render = render
        self.deliver = deliver
        self.log = log
        self.seen: dict[str, int] = {}
        """Containers already handed to the enforcer → when (epoch ns) their policies were in place."""
        self._early = self._early_engine(ruleset, policies)
        self._reactive_ids: dict[str, int] = {}
        self._lost_reported = 0
        self._lost_alerted = -1e9
        self._next_prune_ns = 0
        settings = cfg.enforcement
        protection = Protection(os.getpid(), settings.protected_programs)
        for path in protection.missing:
            log(f"enforcement: protected program {path} does not exist")
        self.enforcer = Enforcer(policies, settings, protection, log)
        try:
            self.enforcer.start(net="isolate" in reactive)
        except EnforcementError:
            self.enforcer.close()
            raise
        enforcer = self.enforcer
        self.responder = Responder(protection, stopper=cri, isolate=enforcer.isolate,
                                   cgroup_of=lambda pid, cid: enforcer.cgroup_of_container(cid, pid))
        log(f"enforcement: {len(policies)} block rules, reactive actions {sorted(reactive) or 'none'}; "
            f"default mode {'monitor (monitor_only)' if settings.monitor_only else settings.mode}")

    @property
    def watches_containers(self) -> bool:
        return self.enforcer.watches_containers

    def replace(self, ruleset: Ruleset, policies: list[Policy]) -> None:
        """A reload: every mechanism swaps its whole table at once; running containers are matched
        against the new scopes (each keeps the time it was first covered)."""
        self.enforcer.replace(policies)
        self.ruleset, self.policies = ruleset, policies
        self._early = self._early_engine(ruleset, policies)
        self.enroll_running()  # the new scopes may cover containers the old ones did not

    # --- containers ------------------------------------------------------------------------------

    def enroll_running(self) -> None:
        """Containers already running at start: they may not exec anything soon, and their open and
        network policies must hold anyway."""
        if not self.watches_containers or self.directory is None:
            return
        first_pid: dict[str, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                cid = container_id_from_proc(int(name))
                if cid and cid not in first_pid:
                    first_pid[cid] = int(name)
        for cid, pid in first_pid.items():
            container = self.directory.wait(cid, self.cfg.container_metadata_wait_s)
            if container is not None and self.enforcer.add_container(container, pid):
                self.seen.setdefault(cid, time.time_ns())

    def new_container(self, evt: Event) -> None:
        """The first event of a container with its metadata (asked again until its process is alive:
        a runtime's short-lived set-up process may come first)."""
        assert evt.container is not None
        if evt.proc is not None and self.enforcer.add_container(evt.container, evt.proc.pid):
            self.seen.setdefault(evt.container.id, time.time_ns())

    @staticmethod
    def _early_engine(ruleset: Ruleset, policies: list[Policy]) -> Engine | None:
        """The exec block rules, evaluated only for execs a container made before its policies were in
        place (the start-up race): such an exec was not stopped, and says so in an alert."""
        names = {p.rule for p in policies if isinstance(p.target, ExecDeny | ExecAllow | ExecDrift)}
        if not names:
            return None
        rules = {n: r for n, r in ruleset.rules.items() if n in names}
        return Engine(Ruleset(rules=rules, tests=ruleset.tests), rule_matching="all")

    def check_early(self, evt: Event) -> None:
        """An exec of a container from before its policies were in place: judged by the exec block
        rules, each match an alert with result failed (it ran), never silence."""
        assert evt.container is not None and self._early is not None
        enrolled = self.seen.get(evt.container.id)
        if enrolled is None or evt.ts >= enrolled or (evt.res is not None and evt.res < 0):
            return
        for rule in self._early.match(evt):
            ns = evt.container.pod_namespace
            mode = effective_mode(rule.mode, ns, self.cfg.enforcement)
            result = "allowed" if mode == "monitor" else "failed"
            alert = self.render(rule, evt)
            self.metrics.enforcement[(rule.name, "block", mode, result)] += 1
            alert.lanner = {"action": "block", "mode": mode, "result": result, "mechanism": "none"}
            if result == "failed":
                alert.lanner["error"] = "it ran before the container's policies were in place (container start)"
            self.deliver(alert, evt.container.id, evt.ts)

    @property
    def checks_early_execs(self) -> bool:
        return self._early is not None

    # --- reactive actions --------------------------------------------------------------------------

    def react(self, rule: Rule, alert: Alert, evt: Event) -> None:
        """kill / stop / isolate for an alert of a reactive rule; the alert says what happened."""
        ns = evt.container.pod_namespace if evt.container is not None else None
        mode = effective_mode(rule.mode, ns, self.cfg.enforcement)
        cid = evt.proc.container_id if evt.proc is not None else ""

        def done(result: str, error: str) -> None:
            self.metrics.enforcement[(rule.name, rule.action, mode, result)] += 1
            alert.lanner = {"action": rule.action, "mode": mode, "result": result, "mechanism": "reactive"}
            if error:
                alert.lanner["error"] = error
            self.deliver(alert, cid, evt.ts)

        outcome = self.responder.act(rule.action, mode == "enforce", rule.name, self._reactive_id(rule.name), evt,
                                     done)
        if outcome is not None:
            done(*outcome)

    def _reactive_id(self, rule: str) -> int:
        """Ids for the reactive rules' kernel entries (isolate), apart from the block policies' ids."""
        rid = self._reactive_ids.get(rule)
        if rid is None:
            rid = self._reactive_ids[rule] = REACTIVE_ID_BASE + len(self._reactive_ids)
        return rid

    # --- decisions ---------------------------------------------------------------------------------

    def collect(self, tracker: StateTracker | None, cgroups: CgroupResolver | None) -> None:
        """Each kernel decision becomes an alert of its rule, rendered with the rule's output."""
        decisions = self.enforcer.poll()
        if not decisions:
            return
        me = os.getpid()
        isolations = {rid: name for name, rid in self._reactive_ids.items()}
        for d in decisions:
            if d.tgid == me:
                continue  # the agent's own actions (its outputs' connects...) are exempt, and no news
            if 0 <= d.rule_id < len(self.policies):
                name, action = self.policies[d.rule_id].rule, "block"
            elif d.rule_id in isolations:
                name, action = isolations[d.rule_id], "isolate"  # a connect from an isolated container
            else:
                continue
            rule = self.ruleset.rules.get(name)
            if rule is None:
                continue
            caller = tracker.process(d.tgid) if tracker is not None else None
            container = self.enforcer.container_of(d.cgroup_id) or self._container_of(d, caller, cgroups)
            alert = self.render(rule, as_event(d, caller, container))
            mode = "enforce" if d.enforced else "monitor"
            self.metrics.enforcement[(rule.name, action, mode, d.result)] += 1
            alert.lanner = {"action": action, "mode": mode, "result": d.result, "mechanism": d.mechanism}
            if d.error or d.protected:
                alert.lanner["error"] = d.error or f"not enforced: {d.protected}"
            self.deliver(alert, container.id if container is not None else "", d.ts_ns)

    def _container_of(self, d: Decision, caller: Process | None, cgroups: CgroupResolver | None) -> Container | None:
        """The container of a decision the enforcer has no workload for (an isolated container...):
        from the decision's cgroup, else from what the state knows of the process."""
        if self.directory is None:
            return None
        cid = ""
        if d.cgroup_id and cgroups is not None:
            cid = cgroups.container_of(d.cgroup_id, d.tgid)
        if not cid and caller is not None:
            cid = caller.container_id
        return self.directory.get(cid) if cid and cid != "host" else None

    def tick(self) -> Alert | None:
        """Once a second: the enforcer's look-ups, and an alert when decisions were lost (counted in
        metrics too; at most one per drop_alert_interval_s)."""
        self.enforcer.tick()
        now_ns = time.time_ns()
        if now_ns >= self._next_prune_ns:
            self._next_prune_ns = now_ns + PRUNE_S * 1_000_000_000
            self._prune_seen()
        lost = sum(self.enforcer.lost().values())
        now = time.monotonic()
        if lost <= self._lost_reported or now - self._lost_alerted < self.cfg.drop_alert_interval_s:
            return None
        new, self._lost_reported, self._lost_alerted = lost - self._lost_reported, lost, now
        message = (f"{LOST_DECISIONS_RULE}: {new} enforcement decisions could not be reported since the last "
                   f"report ({lost} in all); the actions were still decided")
        return Alert(rule=LOST_DECISIONS_RULE, priority="Critical", message=message,
                     output_fields={"lanner.decisions.lost": new, "lanner.decisions.lost_total": lost},
                     time_ns=time.time_ns(), tags=("lanner", "internal"), source="internal",
                     hostname=hostname())

    def _prune_seen(self) -> None:
        """Forget containers that have no process left (bounded memory under container churn)."""
        if not self.seen:
            return
        running = {container_id_from_proc(int(n)) for n in os.listdir("/proc") if n.isdigit()}
        for cid in [c for c in self.seen if c not in running]:
            del self.seen[cid]

    def snapshot(self) -> dict[str, Any]:
        return {**self.enforcer.stats(), "lost": self.enforcer.lost()}

    def close(self, tracker: StateTracker | None, cgroups: CgroupResolver | None) -> None:
        """Report the last decisions, then remove the enforcement (or keep it, keep_on_exit)."""
        self.collect(tracker, cgroups)
        self.enforcer.close()
        self.responder.close()
