"""A real Prometheus (Debian's package) scrapes a running agent; every PromQL expression of the Grafana
dashboard and of the alerting rules evaluates through Prometheus' HTTP API, and returns data where the
agent has produced the metric; the rules load, and the output-failing and agent-down alerts fire."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agent_support import Agent, free_port, require_agent_machine, wait_until
from tests.deploy.support import AGENT_JOB, DASHBOARD, RULES_FILE, tool

pytestmark = pytest.mark.kernel

RULE = ("Read sensitive file by untrusted program", "Warning")  # one of Lanner's default rules
DEAD_OUTPUT = "dead-receiver"
# What Grafana substitutes before it sends a panel's query (the agent picker set to All).
GRAFANA_VARIABLES = {"$__rate_interval": "20s", "$__range": "5m", "$instance": ".*"}


@dataclass
class Stack:
    agent: Agent
    url: str
    dead_target: str

    def api(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body: dict[str, Any] = json.load(r)
        except urllib.error.HTTPError as e:  # a bad query is a 400 with the error in the body
            body = json.load(e)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)


def read_shadow() -> None:
    subprocess.run(["python3", "-c", "open('/etc/shadow').read()"], check=True, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_agent_machine()
    prometheus = tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    refused = free_port()  # nothing listens there: an output that always fails, and an agent that is down
    agent = Agent(tmp, "deploy", outputs=(f"  - kind: http\n    name: {DEAD_OUTPUT}\n"
                                          f"    url: http://127.0.0.1:{refused}/\n    max_retries: 0\n"))
    dead_target = f"127.0.0.1:{refused}"
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [{"job_name": AGENT_JOB,
                            "static_configs": [{"targets": [agent.metrics_addr, dead_target]}]}],
    }))
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    s = Stack(agent, f"http://127.0.0.1:{port}", dead_target)
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited: {(tmp / 'prometheus.log').read_text()}"
            try:
                return bool(urllib.request.urlopen(f"{s.url}/-/ready", timeout=2).status == 200)
            except OSError:
                return False
        wait_until(ready, "Prometheus ready", timeout=30)
        wait_until(lambda: s.query(f'up{{instance="{agent.metrics_addr}"}} == 1')["data"]["result"],
                   "Prometheus scraping the agent")
        # Alerts in two waves a few scrapes apart, so counters are seen to rise (rate, increase > 0).
        for _ in range(2):
            for _ in range(3):
                read_shadow()
            wait_until(lambda: agent.alerts_counted(*RULE) > 0, "the agent's alert")
            time.sleep(3)
        wait_until(lambda: s.query(f'increase(lanner_output_alerts_total{{output="{DEAD_OUTPUT}", '
                                   'result="failed"}[20s]) > 0')["data"]["result"],
                   "Prometheus seeing the failing output's counter rise")
        yield s
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        agent.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]
    assert len(out) >= 16
    return out


def grafana_substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:lanner|process)_[a-z_]+)\b", expr))


def test_dashboard_covers_what_operators_watch() -> None:
    exprs = " ".join(e for _, e in dashboard_queries())
    for metric in ("lanner_events_total", "lanner_events_lost_total", "lanner_alerts_total",
                   "lanner_alert_latency_seconds_bucket", "lanner_enforcement_decisions_total",
                   "lanner_output_alerts_total", "lanner_output_queue_depth", "process_cpu_seconds_total",
                   "process_resident_memory_bytes"):
        assert metric in exprs, f"no panel shows {metric}"


def test_every_dashboard_query_evaluates_and_returns_data(stack: Stack) -> None:
    produced = {name for name, _ in stack.agent.metrics()}
    empty_ok = []
    for title, raw in dashboard_queries():
        expr = grafana_substitute(raw)
        now = time.time()
        for res in (stack.query(expr), stack.api("query_range", query=expr, start=str(now - 60), end=str(now),
                                                   step="2")):
            assert res["status"] == "success", f"panel {title!r}: {expr}: {res.get('error')}"
            assert not res.get("warnings"), f"panel {title!r}: {res['warnings']}"
            if metric_names(expr) <= produced:
                assert res["data"]["result"], f"panel {title!r} shows nothing: {expr}"
            else:
                empty_ok.append(title)
    # The agent exposes these only once they happen: throttling (off here) and enforcement decisions.
    assert set(empty_ok) <= {"Throttled alerts", "Blocked and enforced actions"}, empty_ok


def test_dashboard_latency_panel_reports_the_alerts_latency(stack: Stack) -> None:
    [(_, p99)] = [(t, e) for t, e in dashboard_queries() if "0.99" in e and "latency" in e]
    [sample] = stack.query(grafana_substitute(p99).replace("[20s]", "[5m]"))["data"]["result"]
    seconds = float(sample["value"][1])
    assert 0 < seconds < 2.5, seconds  # a real syscall-to-alert time, inside the histogram's buckets


def test_alert_rules_load_and_evaluate_without_error(stack: Stack) -> None:
    groups = stack.api("rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    expected = {r["alert"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]}
    assert set(rules) == expected
    wait_until(lambda: all(r.get("lastEvaluation", "").startswith("2") and
                           not r["lastEvaluation"].startswith("0001") for r in
                           (rr for g in stack.api("rules")["data"]["groups"] for rr in g["rules"])),
               "every rule evaluated once")
    for g in stack.api("rules")["data"]["groups"]:
        for r in g["rules"]:
            assert r["health"] == "ok" and not r.get("lastError"), (r["name"], r.get("lastError"))
            res = stack.query(r["query"])
            assert res["status"] == "success", (r["name"], res.get("error"))


def test_output_failing_and_agent_down_alerts_fire(stack: Stack) -> None:
    def alerts() -> dict[str, list[dict[str, Any]]]:
        by: dict[str, list[dict[str, Any]]] = {}
        for a in stack.api("alerts")["data"]["alerts"]:
            by.setdefault(a["labels"]["alertname"], []).append(a)
        return by
    got = wait_until(lambda: (a := alerts()).get("LannerOutputFailing") and a.get("LannerAgentDown") and a,
                     "LannerOutputFailing and LannerAgentDown")
    [failing] = got["LannerOutputFailing"]
    assert failing["state"] == "firing" and failing["labels"]["output"] == DEAD_OUTPUT
    assert failing["labels"]["instance"] == stack.agent.metrics_addr
    [down] = got["LannerAgentDown"]
    assert down["labels"]["instance"] == stack.dead_target
    assert down["state"] == "pending"  # `for: 5m`: pending until then
    assert "LannerAgentsAbsent" not in got


def test_promtool_checks_the_rules() -> None:
    proc = subprocess.run([tool("promtool"), "check", "rules", str(RULES_FILE)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = sum(len(g["rules"]) for g in yaml.safe_load(RULES_FILE.read_text())["groups"])
    assert f"SUCCESS: {n} rules found" in proc.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """promtool does check: a rule with a PromQL syntax error fails."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "up{job=} == 0"
    bad = tmp_path / "bad.rules.yaml"
    bad.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([tool("promtool"), "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_promtool_unit_tests_fire_every_alert_on_its_condition() -> None:
    """deploy/prometheus/lanner-alerts.test.yaml: each alert fires on a synthetic series at the time its
    `for` allows, with its rendered text, and stays quiet on the healthy series beside it."""
    tests = RULES_FILE.parent / "lanner-alerts.test.yaml"
    proc = subprocess.run([tool("promtool"), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    covered = {t["alertname"] for group in yaml.safe_load(tests.read_text())["tests"] for t in group["alert_rule_test"]
               if t.get("exp_alerts")}
    alerts = {r["alert"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]}
    assert covered == alerts


def test_promtool_unit_tests_notice_a_wrong_budget(tmp_path: Path) -> None:
    """The unit tests can fail: with a 100 ms latency budget the 20-50 ms agent no longer alerts."""
    shutil.copy(RULES_FILE.parent / "lanner-alerts.test.yaml", tmp_path)
    (tmp_path / RULES_FILE.name).write_text(RULES_FILE.read_text().replace("> 0.01\n", "> 0.1\n"))
    proc = subprocess.run([tool("promtool"), "test", "rules", str(tmp_path / "lanner-alerts.test.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "LannerAlertLatencyHigh" in proc.stdout + proc.stderr
