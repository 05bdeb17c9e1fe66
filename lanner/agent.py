"""The agent: live sensor → state → engine → throttling → outputs, with metrics, reload and a
clean stop.

One thread runs the event path. Signals only set flags that the loop acts on between polls:
SIGHUP reloads the rules (after validating them; a bad file keeps the old rules) and reopens
file outputs; SIGTERM/SIGINT stop the loop, drain what the kernel already queued and flush every
output before exit, so no accepted alert is lost on a clean stop.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from lanner.alert import Alert
from lanner.config import Config
from lanner.enforcement import Enforcement, reactive_actions
from lanner.engine import Engine
from lanner.events import EVENT_TYPES, Event
from lanner.metrics import AgentMetrics, MetricsServer
from lanner.outputs import OutputSet, build_outputs
from lanner.response.enforcer import EnforcementError
from lanner.rules import load
from lanner.rules.policy import REACTIVE_ACTIONS, Policy, check
from lanner.rules.ruleset import Ruleset
from lanner.sensor.drops import DropMonitor
from lanner.sensor.prefilter import Prefilter, for_conditions
from lanner.sensor.source import LiveSource
from lanner.state.cgroups import CgroupResolver
from lanner.state.containers import ContainerDirectory
from lanner.throttle import AlertThrottle

if TYPE_CHECKING:
    from lanner.cri import CriClient


EXEC_EVENTS = frozenset({"execve", "execveat"})


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
        self.enforcement: Enforcement | None = None
        self.outputs: OutputSet = build_outputs(cfg.outputs)
        self.throttle = AlertThrottle(cfg.throttle_rule, cfg.throttle_container)
        self.metrics = AgentMetrics(self.snapshot)
        self.drops = DropMonitor(cfg.drop_alert_interval_s)
        self.source: LiveSource | None = None
        self.directory: ContainerDirectory | None = None
        self.server: MetricsServer | None = None
        self._stop = False
        self._reload = False
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
        if types is not None and self.enforcement is not None and self.enforcement.watches_containers:
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
            if self.enforcement is not None:
                self.enforcement.enroll_running()
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
        reactive = reactive_actions(self.engine.rules)
        if self.policies or reactive:
            self.enforcement = Enforcement(self.cfg, self.ruleset, self.policies, reactive, directory=self.directory,
                                           cri=self.cri, metrics=self.metrics,
                                           render=lambda rule, evt: self.engine.alert(rule, evt),
                                           deliver=self._deliver, log=self.log)

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
            if self.enforcement is not None:
                self.enforcement.collect(source.tracker, source.cgroups)
            now = time.monotonic()
            metrics.heartbeat = now
            if now >= next_check:  # reading the kernel's counters is a few syscalls: once a second
                next_check = now + 1.0
                if self.enforcement is not None:
                    lost = self.enforcement.tick()
                    if lost is not None:
                        self._send(lost)
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
        if self.enforcement is not None:
            self.enforcement.close(source.tracker, source.cgroups)
            self.enforcement = None
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
        enf = self.enforcement if self.enforcement is not None and self.enforcement.watches_containers else None
        early = enf is not None and enf.checks_early_execs
        for evt in events:
            by_type[evt.type] += 1
            if enf is not None and evt.container is not None:
                if evt.container.id not in enf.seen:
                    enf.new_container(evt)
                if early and evt.type in EXEC_EVENTS:
                    enf.check_early(evt)
            alerts = process(evt)
            if alerts:
                for alert in alerts:
                    self._alert(alert, evt)

    def _alert(self, alert: Alert, evt: Event) -> None:
        if self.enforcement is not None:
            rule = self.ruleset.rules.get(alert.rule)
            if rule is not None and rule.action in REACTIVE_ACTIONS:
                self.enforcement.react(rule, alert, evt)  # acts even when the alert is throttled
                return
        alert.lanner = {"action": "alert"}
        self._deliver(alert, evt.proc.container_id if evt.proc is not None else "", evt.ts)

    def _deliver(self, alert: Alert, container_id: str, event_ns: int) -> None:
        """Throttle, time and send an alert (of the engine or of an enforcement decision)."""
        scope = self.throttle.check(alert.rule, container_id)
        if scope is not None:
            self.metrics.throttled[(alert.rule, scope)] += 1
            return
        latency = max(0.0, (time.time_ns() - event_ns) / 1e9)
        self.metrics.latency.observe(latency)
        self.metrics.alerts[(alert.rule, alert.priority)] += 1
        alert.lanner["latency_ms"] = round(latency * 1000, 3)
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
            if self.enforcement is not None:
                self.enforcement.replace(ruleset, policies)
            elif policies or reactive_actions(engine.rules):
                old = self.ruleset, self.policies, self.engine
                self.ruleset, self.policies, self.engine = ruleset, policies, engine
                try:
                    self._start_enforcement()
                except EnforcementError:
                    self.ruleset, self.policies, self.engine = old
                    raise
        except (RulesError, EnforcementError) as exc:
            self.metrics.reloads["failed"] += 1
            self.log(f"reload failed, keeping the {len(self.engine.rules)} rules running:\n{exc}")
            return False
        self.ruleset, self.policies, self.engine = ruleset, policies, engine
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
        if self.enforcement is not None:
            out["enforcement"] = self.enforcement.snapshot()
        return out
