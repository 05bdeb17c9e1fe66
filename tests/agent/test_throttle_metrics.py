"""Token buckets and the metrics page, without the kernel."""

from __future__ import annotations

import urllib.request

from lanner.config import Throttle
from lanner.metrics import AgentMetrics, MetricsServer
from lanner.throttle import AlertThrottle, TokenBuckets


def test_token_bucket_burst_then_rate() -> None:
    now = [0.0]
    tb = TokenBuckets(Throttle(rate=2.0, burst=3), clock=lambda: now[0])
    assert [tb.allow("k") for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5                          # one token back at 2/s
    assert tb.allow("k") and not tb.allow("k")
    assert tb.allow("other")               # keys are independent
    now[0] += 100
    assert sum(tb.allow("k") for _ in range(10)) == 3   # never more than the burst


def test_rate_zero_means_off() -> None:
    tb = TokenBuckets(Throttle(rate=0, burst=0))
    assert not tb.enabled and all(tb.allow("k") for _ in range(1000))


def test_per_container_before_per_rule() -> None:
    now = [0.0]
    th = AlertThrottle(Throttle(rate=1, burst=4), Throttle(rate=1, burst=2), clock=lambda: now[0])
    assert [th.check("R", "c1") for _ in range(3)] == [None, None, "container"]
    assert [th.check("R", "c2") for _ in range(3)] == [None, None, "container"]
    assert th.check("R", "c3") == "rule"   # the rule's budget (4) is spent by c1 and c2


def test_metrics_page_and_health() -> None:
    snap = {"rules": 7, "kernel": {"sent": 10, "ring_buffer_full": 2, "filtered": 5},
            "outputs": {"stdout": {"accepted": 3, "delivered": 3, "queue_depth": 0}},
            "state": {"processes": 42}}
    m = AgentMetrics(lambda: snap)
    m.events_by_type["openat"] += 5
    m.alerts[("Write below etc", "Error")] += 1
    m.throttled[("Write below etc", "container")] += 2
    m.latency.observe(0.003)
    srv = MetricsServer(m, "127.0.0.1:0")
    srv.start()
    try:
        page = urllib.request.urlopen(f"http://{srv.address}/metrics", timeout=5).read().decode()
        for line in ('lanner_events_total{type="openat"} 5.0',
                     'lanner_events_lost_total{reason="ring_buffer_full"} 2.0',
                     'lanner_alerts_total{priority="Error",rule="Write below etc"} 1.0',
                     'lanner_alerts_throttled_total{rule="Write below etc",scope="container"} 2.0',
                     'lanner_output_alerts_total{output="stdout",result="delivered"} 3.0',
                     "lanner_events_filtered_total 5.0", "lanner_rules_loaded 7.0",
                     'lanner_state_entries{table="processes"} 42.0', "lanner_alert_latency_seconds_count 1.0",
                     "process_resident_memory_bytes"):
            assert line in page, line
        assert urllib.request.urlopen(f"http://{srv.address}/healthz", timeout=5).read() == b"ok\n"
        m.heartbeat -= 60
        try:
            urllib.request.urlopen(f"http://{srv.address}/healthz", timeout=5)
            raise AssertionError("a stalled loop must not be healthy")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
    finally:
        srv.stop()
