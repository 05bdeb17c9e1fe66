"""Performing actions against an agent and watching its /metrics for the expected alert counters."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lanner.simulate.actions import Action, SimulateError, Workspace

POLL_S = 0.01
_LINE = re.compile(r'^lanner_alerts_total\{(?P<labels>.*)\}\s+(?P<value>\S+)\s*$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class AgentUnavailable(Exception):
    """No agent answers at the metrics address (or one could not be started)."""


def _unescape(v: str) -> str:
    return v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_alert_counters(text: str) -> dict[str, float]:
    """lanner_alerts_total summed over priorities: rule -> count."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group("labels"))}
        rule = labels.get("rule")
        if rule is not None:
            out[rule] = out.get(rule, 0.0) + float(m.group("value"))
    return out


class Metrics:
    """An agent's /metrics endpoint."""

    def __init__(self, url: str) -> None:
        url = url.rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        self.url = url if url.endswith("/metrics") else f"{url}/metrics"

    def alerts(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as resp:
                text: str = resp.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise AgentUnavailable(f"no agent answers at {self.url}: {exc}") from None
        if "lanner_" not in text:
            raise AgentUnavailable(f"{self.url} does not look like a Lanner agent's metrics")
        return parse_alert_counters(text)


def rule_names(paths: Iterable[str | Path]) -> set[str]:
    """Names of the rules defined in the rules files (enabled or not: an override may enable them)."""
    names: set[str] = set()
    for p in paths:
        doc = yaml.safe_load(Path(p).read_text()) or []
        names |= {str(item["rule"]) for item in doc if isinstance(item, dict) and "rule" in item}
    return names


@dataclass
class Result:
    action: str
    rules: tuple[str, ...]
    """The rules awaited (any of them counts)."""
    detected: bool = False
    latency_ms: float | None = None
    rule_seen: str | None = None
    error: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"action": self.action, "expected_rules": list(self.rules), "detected": self.detected,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
                "rule": self.rule_seen, "error": self.error, "skipped": self.skipped}


@dataclass
class _Run:
    trigger: float | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def perform_and_await(act: Action, rules: Sequence[str], metrics: Metrics, ws: Workspace,
                      timeout_s: float) -> Result:
    """Perform `act` in a thread while polling /metrics every 10 ms until a counter of `rules` rises."""
    assert act.perform is not None
    res = Result(act.name, tuple(rules))
    before = metrics.alerts()
    run = _Run()
    perform = act.perform

    def work() -> None:
        try:
            run.trigger = perform(ws)
        except (SimulateError, OSError, subprocess.SubprocessError) as exc:
            run.error = str(exc)
        finally:
            run.done.set()

    start = time.monotonic()
    threading.Thread(target=work, daemon=True).start()
    deadline: float | None = None
    while True:
        now_counts = metrics.alerts()
        seen = time.monotonic()
        risen = [r for r in rules if now_counts.get(r, 0.0) > before.get(r, 0.0)]
        if risen and res.rule_seen is None:
            res.detected, res.rule_seen = True, risen[0]
            res.latency_ms = (seen - start) * 1000.0
        if run.done.is_set():
            if deadline is None:
                deadline = time.monotonic() + timeout_s
            if res.detected or time.monotonic() > deadline or run.error:
                break
        time.sleep(POLL_S)
    if run.error:
        res.error = run.error
    if res.detected and run.trigger is not None and res.latency_ms is not None:
        # measured from the decisive system call (an action may wait before it, e.g. 6 s of "startup")
        res.latency_ms = max(0.0, res.latency_ms - (run.trigger - start) * 1000.0)
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class StartedAgent:
    """`python -m lanner run` for the duration of a simulation: the given rules, throttling off, every rule
    matching an event raised (rule_matching: all), metrics on a free loopback port, alerts to a file."""

    def __init__(self, rules_files: Sequence[str], start_timeout_s: float = 120.0, *,
                 workdir: Path | None = None, config: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        """`config` adds keys to the agent's configuration, `env` to its environment."""
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="lanner-simulate-agent-"))
        port = _free_port()
        self.metrics_url = f"http://127.0.0.1:{port}"
        config_file = self.dir / "agent.yaml"
        config_file.write_text(yaml.safe_dump({
            "rules_files": [str(Path(p).resolve()) for p in rules_files],
            "rule_matching": "all",
            "throttle_rule": {"rate": 0, "burst": 0},
            "throttle_container": {"rate": 0, "burst": 0},
            "metrics_listen": f"127.0.0.1:{port}",
            "shutdown_timeout_s": 10,
            "outputs": [{"kind": "file", "path": str(self.dir / "alerts.json")}],
            **(config or {}),
        }))
        self.stderr_path = self.dir / "agent.stderr"
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "lanner", "run", "-c", str(config_file)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True, env={**os.environ, **(env or {})})
        metrics = Metrics(self.metrics_url)
        deadline = time.monotonic() + start_timeout_s
        while True:
            if self.proc.poll() is not None:
                msg = self.stderr_tail()
                self._remove()
                raise AgentUnavailable(f"the agent exited {self.proc.returncode}: {msg}")
            try:
                metrics.alerts()
                if "lanner: running" in self.stderr_tail():   # the sensor is attached
                    break
                raise AgentUnavailable("not running yet")
            except AgentUnavailable:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AgentUnavailable(f"the agent did not serve metrics within {start_timeout_s:g} s") from None
                time.sleep(0.1)

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._remove()
        return self.proc.returncode

    def _remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
