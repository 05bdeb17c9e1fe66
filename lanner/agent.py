"""The agent: live sensor → state → engine → throttling → outputs, with metrics, reload and a
clean stop.

One thread runs the event path. Signals only set flags that the loop acts on between polls:
SIGHUP reloads the rules (after validating them; a bad file keeps the old rules) and reopens
file outputs; SIGTERM/SIGINT stop the loop, drain what the kernel already queued and flush every
output before exit, so no accepted alert is lost on a clean stop.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from lanner.alert import Alert
from lanner.config import Config
from lanner.engine import Engine
from lanner.events import EVENT_TYPES, Container, Event, Process
from lanner.metrics import AgentMetrics, MetricsServer
from lanner.outputs import OutputSet, build_outputs
from lanner.response.decisions import Decision, as_event
from lanner.response.enforcer import EnforcementError, Enforcer
from lanner.response.plan import effective_mode
from lanner.response.reactive import Responder
from lanner.response.safety import Protection
from lanner.rules import load
from lanner.rules.policy import REACTIVE_ACTIONS, Policy, check
from lanner.rules.ruleset import Rule, Ruleset
from lanner.sensor.drops import DropMonitor
from lanner.sensor.prefilter import Prefilter, for_conditions
from lanner.sensor.source import LiveSource
from lanner.state.cgroups import CgroupResolver, container_id_from_proc
from lanner.state.containers import ContainerDirectory
from lanner.throttle import AlertThrottle

if TYPE_CHECKING:
    from lanner.cri import CriClient


LOST_DECISIONS_RULE = "Lanner internal: enforcement decisions lost"
REACTIVE_ID_BASE = 1 << 24  # kernel rule ids of reactive rules (isolate), above any block policy's


class RulesError(ValueError):
    """Rules files that do not load; the message lists every error with its location."""


def load_rules(files: list[str]) -> tuple[Ruleset, list[Policy]]:
    """The rules, and the kernel policies of their block rules (rule id = index)."""
    rs = load(list(files))
    policies = check(rs) if rs.ok else []  # a block rule the kernel cannot enforce exactly is an error
    if not rs.ok:
        raise RulesError("\n".join(f"ERROR {m}" for m in rs.errors))
    return rs, policies


class Agent:
    def __init__(self, cfg: Config, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.log = log or (lambda msg: print(f"lanner: {msg}", file=sys.stderr, flush=True))
        self.ruleset, self.policies = load_rules(cfg.rules_files)
        self.engine = self._engine(self.ruleset)
        self.enforcer: Enforcer | None = None
        self.responder: Responder | None = None
        self.outputs: OutputSet = build_outputs(cfg.outputs)
        self.throttle = AlertThrottle(cfg.throttle_rule, cfg.throttle_container)
        self.metrics = AgentMetrics(self.snapshot)
        self.drops = DropMonitor(cfg.drop_alert_interval_s)
        self.source: LiveSource | None = None
        self.directory: ContainerDirectory | None = None
        self.server: MetricsServer | None = None
        self._stop = False
        self._reload = False
        self._containers_seen: set[str] = set()
        self._reactive_ids: dict[str, int] = {}
        self._lost_reported = 0
        self._lost_alerted = -1e9
        self.cri: CriClient | None = None

    def _engine(self, rs: Ruleset) -> Engine:
        engine = Engine(rs, rule_matching=self.cfg.rule_matching, min_priority=self.cfg.min_priority,
                        skip_actions=frozenset({"block"}))  # block rules are compiled for the kernel
        engine.warm(engine.event_types() or EVENT_TYPES)
        return engine

    def _event_types(self) -> set[str] | None:
        """What the sensor captures: the engine's types, plus execs when the enforcer must hear of new
        containers."""
        types = self.engine.event_types()
        if types is not None and self.enforcer is not None and self.enforcer.watches_containers:
            types = types | {"execve", "execveat"}
        return types

    def _prefilter(self, engine: Engine) -> Prefilter | None:
        return for_conditions(r.condition for r in engine.rules) if self.cfg.prefilter else None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Attach the sensor and start outputs and metrics (root)."""
        self.outputs.start()
        if self.cfg.metrics_listen:
            self.server = MetricsServer(self.metrics, self.cfg.metrics_listen)
            self.server.start()
        cgroups, self.directory = self._containers()
        self._start_enforcement()
        self.source = LiveSource(self._event_types(), ring_bytes=self.cfg.ring_buffer_mb << 20,
                                 prefilter=self._prefilter(self.engine), raw=self.cfg.raw_syscalls,
                                 cgroups=cgroups, containers=self.directory,
                                 metadata_wait_s=self.cfg.container_metadata_wait_s)
        if self.directory is not None:
            self.directory.prefetch()
            self._enroll_running_containers()
        missing = self.source.kernel.uncaptured
        if missing:
            self.log(f"this kernel has no exit tracepoint for {', '.join(missing)}: not captured "
                     "(raw_syscalls: true captures them, at a cost on every syscall)")
        where = f", metrics on http://{self.server.address}/metrics" if self.server else ""
        kernel = f" (and {len(self.policies)} block rules in the kernel)" if self.policies else ""
        self.log(f"running {len(self.engine.rules)} rules{kernel} from {', '.join(self.cfg.rules_files)}; "
                 f"{len(self.source.syscalls)} syscalls captured{where}")

    def _start_enforcement(self) -> None:
        """The kernel mechanisms for block rules and the responder for kill/stop/isolate, when the
        rules ask for any; a mechanism that cannot start stops the agent (never a silent alert-only)."""
        reactive = {r.action for r in self.engine.rules if r.action in REACTIVE_ACTIONS}
        if not self.policies and not reactive:
            return
        settings = self.cfg.enforcement
        protection = Protection(os.getpid(), settings.protected_programs)
        for path in protection.missing:
            self.log(f"enforcement: protected program {path} does not exist")
        self.enforcer = Enforcer(self.policies, settings, protection, self.log)
        try:
            self.enforcer.start(net="isolate" in reactive)
        except EnforcementError:
            self.enforcer.close()
            raise
        stopper = self.cri
        enforcer = self.enforcer
        self.responder = Responder(protection, stopper=stopper, isolate=enforcer.isolate,
                                   cgroup_of=lambda pid, cid: enforcer.cgroup_of_container(cid, pid))
        self.log(f"enforcement: {len(self.policies)} block rules, reactive actions {sorted(reactive) or 'none'}; "
                 f"default mode {'monitor (monitor_only)' if settings.monitor_only else settings.mode}")

    def _containers(self) -> tuple[CgroupResolver | None, ContainerDirectory | None]:
        """Container ids from cgroups; metadata from the runtime when its socket and stubs are there."""
        if not self.cfg.containers:
            return None, None
        from lanner.cri import CriClient, CriSetupError

        resolver = CgroupResolver()
        try:
            self.cri = CriClient(self.cfg.cri_socket or None)
        except CriSetupError as exc:
            self.log(f"container metadata off: {exc}")
            return resolver, None
        return resolver, ContainerDirectory(self.cri)

    def install_signals(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._stop = True

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        """The event loop, until stop() or a signal; then drain and flush."""
        source = self.source
        if source is None:
            raise RuntimeError("start() first")
        metrics = self.metrics
        next_check = 0.0
        while not self._stop:
            if self._reload:
                self._reload = False
                self.reload()
            self._handle(source.poll(2))
            if self.enforcer is not None:
                self._decisions(self.enforcer.poll())
            now = time.monotonic()
            metrics.heartbeat = now
            if now >= next_check:  # reading the kernel's counters is a few syscalls: once a second
                next_check = now + 1.0
                if self.enforcer is not None:
                    self.enforcer.tick()
                    self._check_lost_decisions()
                alert = self.drops.check(source.counters())
                if alert is not None:
                    self._send(alert)
        self._drain()

    def _drain(self) -> None:
        source = self.source
        assert source is not None
        for _ in range(100):  # what the kernel queued before the stop; bounded
            batch = source.poll(0)
            if not batch:
                break
            self._handle(batch)
        final = DropMonitor(interval_s=0).check(source.counters())
        if final is not None:
            self._send(final)
        self._handle(source.flush_held())
        source.close()
        self.source = None
        if self.enforcer is not None:
            self._decisions(self.enforcer.poll())
            self.enforcer.close()
            self.enforcer = None
        if self.responder is not None:
            self.responder.close()
        if self.directory is not None:
            self.directory.close()
        complete = self.outputs.stop(self.cfg.shutdown_timeout_s)
        if self.server is not None:
            self.server.stop()
        t = self.outputs.totals()
        self.log(f"stopped; alerts delivered {t.delivered}, failed {t.failed}, dropped {t.dropped_queue_full}"
                 + ("" if complete else f" (outputs still busy after {self.cfg.shutdown_timeout_s:g} s)"))

    # --- event path ------------------------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        if not events:
            return
        by_type = self.metrics.events_by_type
        process = self.engine.process
        seen = self._containers_seen if self.enforcer is not None and self.enforcer.watches_containers else None
        for evt in events:
            by_type[evt.type] += 1
            if seen is not None and evt.container is not None and evt.container.id not in seen:
                self._new_container(evt)
            alerts = process(evt)
            if alerts:
                for alert in alerts:
                    self._alert(alert, evt)

    def _alert(self, alert: Alert, evt: Event) -> None:
        cid = evt.proc.container_id if evt.proc is not None else ""
        scope = self.throttle.check(alert.rule, cid)
        if scope is not None:
            self.metrics.throttled[(alert.rule, scope)] += 1
            return
        latency = max(0.0, (time.time_ns() - evt.ts) / 1e9)
        self.metrics.latency.observe(latency)
        self.metrics.alerts[(alert.rule, alert.priority)] += 1
        alert.lanner = {"action": "alert", "latency_ms": round(latency * 1000, 3)}
        rule = self.ruleset.rules.get(alert.rule)
        if rule is not None and rule.action in REACTIVE_ACTIONS and self.responder is not None:
            self._react(rule, alert, evt)
            return
        self._send(alert)

    # --- enforcement -----------------------------------------------------------------------------

    def _enroll_running_containers(self) -> None:
        """Containers already running when enforcement starts: they may not exec anything soon, and
        their open and network policies must hold anyway."""
        if self.enforcer is None or not self.enforcer.watches_containers or self.directory is None:
            return
        first_pid: dict[str, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                cid = container_id_from_proc(int(name))
                if cid and cid not in first_pid:
                    first_pid[cid] = int(name)
        for cid, pid in first_pid.items():
            container = self.directory.wait(cid, self.cfg.container_metadata_wait_s)
            if container is not None:
                self._containers_seen.add(cid)
                self.enforcer.add_container(container, pid)

    def _new_container(self, evt: Event) -> None:
        assert evt.container is not None and self.enforcer is not None
        if evt.proc is not None and self.enforcer.add_container(evt.container, evt.proc.pid):
            self._containers_seen.add(evt.container.id)

    def _mode(self, rule: Rule, container: Any) -> str:
        ns = container.pod_namespace if container is not None else None
        return effective_mode(rule.mode, ns, self.cfg.enforcement)

    def _react(self, rule: Rule, alert: Alert, evt: Event) -> None:
        """kill / stop / isolate for an alert of a reactive rule; the alert says what happened."""
        assert self.responder is not None
        mode = self._mode(rule, evt.container)
        rule_id = self._reactive_id(rule.name)

        def done(result: str, error: str) -> None:
            self._enforcement_alert(alert, rule.action, mode, result, error, "reactive")

        outcome = self.responder.act(rule.action, mode == "enforce", rule.name, rule_id, evt, done)
        if outcome is not None:
            done(*outcome)

    def _container_of(self, d: Decision, caller: Process | None) -> Container | None:
        """The container of a decision the enforcer has no workload for (an isolated container...):
        from the decision's cgroup, else from what the state knows of the process."""
        if self.directory is None:
            return None
        cid = ""
        cgroups = self.source.cgroups if self.source is not None else None
        if d.cgroup_id and cgroups is not None:
            cid = cgroups.container_of(d.cgroup_id, d.tgid)
        if not cid and caller is not None:
            cid = caller.container_id
        return self.directory.get(cid) if cid and cid != "host" else None

    def _reactive_id(self, rule: str) -> int:
        """Ids for the reactive rules' kernel entries (isolate), apart from the block policies' ids."""
        rid = self._reactive_ids.get(rule)
        if rid is None:
            rid = self._reactive_ids[rule] = REACTIVE_ID_BASE + len(self._reactive_ids)
        return rid

    def _decisions(self, decisions: list[Decision]) -> None:
        """Each kernel decision becomes an alert of its rule, rendered with the rule's output."""
        if not decisions:
            return
        assert self.enforcer is not None
        tracker = self.source.tracker if self.source is not None else None
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
            container = self.enforcer.container_of(d.cgroup_id) or self._container_of(d, caller)
            evt = as_event(d, caller, container)
            alert = self.engine.alert(rule, evt)
            scope = self.throttle.check(alert.rule, caller.container_id if caller is not None else "")
            mode = "enforce" if d.enforced else "monitor"
            self.metrics.enforcement[(rule.name, action, mode, d.result)] += 1
            if scope is not None:
                self.metrics.throttled[(alert.rule, scope)] += 1
                continue
            latency = max(0.0, (time.time_ns() - d.ts_ns) / 1e9)
            self.metrics.latency.observe(latency)
            self.metrics.alerts[(alert.rule, alert.priority)] += 1
            alert.lanner = {"action": action, "mode": mode, "result": d.result, "mechanism": d.mechanism,
                            "latency_ms": round(latency * 1000, 3)}
            if d.error:
                alert.lanner["error"] = d.error
            self._send(alert)

    def _check_lost_decisions(self) -> None:
        """Decisions a mechanism could not hand over are loss like dropped events: counted in
        metrics and raised as an alert (at most one per drop_alert_interval_s)."""
        assert self.enforcer is not None
        lost = sum(self.enforcer.lost().values())
        now = time.monotonic()
        if lost <= self._lost_reported or now - self._lost_alerted < self.cfg.drop_alert_interval_s:
            return
        new, self._lost_reported, self._lost_alerted = lost - self._lost_reported, lost, now
        message = (f"{LOST_DECISIONS_RULE}: {new} enforcement decisions could not be reported since the last "
                   f"report ({lost} in all); the actions were still decided")
        self._send(Alert(rule=LOST_DECISIONS_RULE, priority="Critical", message=message,
                         output_fields={"lanner.decisions.lost": new, "lanner.decisions.lost_total": lost},
                         time_ns=time.time_ns(), tags=("lanner", "internal"), source="internal",
                         hostname=self.engine.hostname))

    def _enforcement_alert(self, alert: Alert, action: str, mode: str, result: str, error: str,
                           mechanism: str) -> None:
        self.metrics.enforcement[(alert.rule, action, mode, result)] += 1
        alert.lanner.update({"action": action, "mode": mode, "result": result, "mechanism": mechanism})
        if error:
            alert.lanner["error"] = error
        self._send(alert)

    def _send(self, alert: Alert) -> None:
        self.outputs.emit(alert)

    # --- reload ----------------------------------------------------------------------------------

    def reload(self) -> bool:
        """SIGHUP: new rules only if they load; the sensor follows their syscalls and prefilter."""
        self.outputs.reopen()
        try:
            ruleset, policies = load_rules(self.cfg.rules_files)
            engine = self._engine(ruleset)
            if self.enforcer is not None:
                self.enforcer.replace(policies)  # every mechanism swaps its whole table at once
            elif policies or any(r.action in REACTIVE_ACTIONS for r in engine.rules):
                self.policies = policies
                self._start_enforcement()
        except (RulesError, EnforcementError) as exc:
            self.metrics.reloads["failed"] += 1
            self.log(f"reload failed, keeping the {len(self.engine.rules)} rules running:\n{exc}")
            return False
        self.ruleset, self.policies, self.engine = ruleset, policies, engine
        self._containers_seen.clear()  # containers are matched again against the new scopes
        if self.source is not None:
            self.source.reconfigure(self._event_types(), self._prefilter(engine))
        self.metrics.reloads["ok"] += 1
        self.log(f"reloaded: {len(engine.rules)} rules")
        return True

    def snapshot(self) -> dict[str, Any]:
        """What /metrics reads at scrape time."""
        out: dict[str, Any] = {"rules": len(self.engine.rules),
                               "outputs": {name: st.to_json() for name, st in self.outputs.stats().items()}}
        source = self.source
        if source is not None:
            c = source.counters()
            out["kernel"] = {"sent": c.sent, "ring_buffer_full": c.dropped, "undecodable": c.undecodable,
                             "state_failure": c.failed, "filtered": c.filtered, "truncated": c.truncated}
            out["state"] = source.tracker.stats()
            out["containers"] = {"without_metadata": c.without_metadata, "held": c.held,
                                 **(self.directory.stats() if self.directory is not None else {})}
        if self.enforcer is not None:
            out["enforcement"] = {**self.enforcer.stats(), "lost": self.enforcer.lost()}
        return out
