"""Prometheus metrics and health of the agent, served on /metrics and /healthz.

The event loop only bumps plain dict counters and observes one histogram per alert; everything
else (kernel counters, output queues, table sizes) is read when Prometheus scrapes, so metrics
cost the hot path nothing. Names are listed in docs/metrics.md.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AgentMetrics(Collector):
    """Counters the agent loop updates, plus gauges read from the agent at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.events_by_type: Counter[str] = Counter()
        self.alerts: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.reloads: Counter[str] = Counter()
        self.enforcement: Counter[tuple[str, str, str, str]] = Counter()
        """Enforcement decisions by (rule, action, mode, result); see docs/enforcement.md."""
        self.latency = Histogram("lanner_alert_latency_seconds",
                                 "Time from the system call to the alert being handed to the outputs.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.snapshot = snapshot
        self.heartbeat = time.monotonic()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, process_cpu_seconds_total...
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        ev = CounterMetricFamily("lanner_events", "Events evaluated, by event type.", labels=["type"])
        for t, n in sorted(self.events_by_type.items()):
            ev.add_metric([t], n)
        yield ev
        k = snap.get("kernel", {})
        yield CounterMetricFamily("lanner_kernel_records_sent", "Records the kernel put in the ring buffer.",
                                  value=k.get("sent", 0))
        lost = CounterMetricFamily("lanner_events_lost", "Events lost, by reason (never silent).", labels=["reason"])
        for reason in ("ring_buffer_full", "undecodable", "state_failure"):
            lost.add_metric([reason], k.get(reason, 0))
        yield lost
        yield CounterMetricFamily("lanner_events_filtered", "Opens and sends no rule can match, dropped in the "
                                  "kernel on purpose.", value=k.get("filtered", 0))
        yield CounterMetricFamily("lanner_paths_truncated", "Paths longer than the kernel walk allows.",
                                  value=k.get("truncated", 0))
        al = CounterMetricFamily("lanner_alerts", "Alerts raised, by rule and priority.", labels=["rule", "priority"])
        for (rule, prio), n in sorted(self.alerts.items()):
            al.add_metric([rule, prio], n)
        yield al
        th = CounterMetricFamily("lanner_alerts_throttled", "Alerts suppressed by throttling, by rule and scope.",
                                 labels=["rule", "scope"])
        for (rule, scope), n in sorted(self.throttled.items()):
            th.add_metric([rule, scope], n)
        yield th
        out_total = CounterMetricFamily("lanner_output_alerts", "Alerts per output and result.",
                                        labels=["output", "result"])
        depth = GaugeMetricFamily("lanner_output_queue_depth", "Alerts waiting in an output's queue.",
                                  labels=["output"])
        for name, st in sorted(snap.get("outputs", {}).items()):
            for result in ("accepted", "delivered", "failed", "dropped_queue_full", "retries"):
                out_total.add_metric([name, result], st.get(result, 0))
            depth.add_metric([name], st.get("queue_depth", 0))
        yield out_total
        yield depth
        enf = CounterMetricFamily("lanner_enforcement_decisions", "Enforcement decisions by rule, action "
                                  "(block, kill, stop, isolate), mode (monitor, enforce) and result.",
                                  labels=["rule", "action", "mode", "result"])
        for (rule, action, mode, result), n in sorted(self.enforcement.items()):
            enf.add_metric([rule, action, mode, result], n)
        yield enf
        enforcement = snap.get("enforcement")
        if enforcement is not None:
            lost = CounterMetricFamily("lanner_enforcement_decisions_lost", "Enforcement decisions a mechanism "
                                       "could not report (its queue was full); the action was still decided.",
                                       labels=["mechanism"])
            for mech, n in sorted(enforcement["lost"].items()):
                lost.add_metric([mech], n)
            yield lost
            yield GaugeMetricFamily("lanner_enforcement_workloads", "Containers some block policy covers now.",
                                    value=enforcement["workloads"])
        rl = CounterMetricFamily("lanner_rules_reloads", "Rule reloads (SIGHUP), by result.", labels=["result"])
        for result in ("ok", "failed"):
            rl.add_metric([result], self.reloads.get(result, 0))
        yield rl
        yield GaugeMetricFamily("lanner_rules_loaded", "Enabled rules the engine evaluates.",
                                value=snap.get("rules", 0))
        ct = snap.get("containers", {})
        yield CounterMetricFamily("lanner_events_without_container_metadata",
                                  "Container events judged without container metadata (the runtime did not "
                                  "answer in time).", value=ct.get("without_metadata", 0))
        cs = GaugeMetricFamily("lanner_containers", "Container metadata directory: cached entries, lookups, "
                               "failures, evictions.", labels=["stat"])
        for name, n in sorted(ct.items()):
            if name != "without_metadata":
                cs.add_metric([name], n)
        yield cs
        st = GaugeMetricFamily("lanner_state_entries", "Sizes of the state tables.", labels=["table"])
        for name, n in sorted(snap.get("state", {}).items()):
            st.add_metric([name], n)
        yield st

    def render(self) -> bytes:
        body: bytes = generate_latest(self.registry)
        return body


class MetricsServer:
    """/metrics and /healthz over HTTP in a daemon thread."""

    def __init__(self, metrics: AgentMetrics, listen: str, stale_after_s: float = 5.0) -> None:
        host, _, port = listen.rpartition(":")
        self.metrics = metrics
        metrics_ref = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    body, code, ctype = metrics_ref.render(), 200, "text/plain; version=0.0.4; charset=utf-8"
                elif self.path == "/healthz":
                    age = time.monotonic() - metrics_ref.heartbeat
                    ok = age < stale_after_s
                    body = (b"ok\n" if ok else f"event loop stalled for {age:.1f} s\n".encode())
                    code, ctype = (200 if ok else 503), "text/plain"
                else:
                    body, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
