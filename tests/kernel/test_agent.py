"""`lanner run` as a user runs it: a subprocess with real outputs, real signals and real events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent_support import Receiver, free_port
from tests.conftest import ROOT, require_or_skip

MARK_RULE = """
- rule: Marker file opened
  desc: a test rule
  condition: evt.type in (open, openat) and fd.name startswith {prefix}
  output: marker opened (file=%fd.name proc=%proc.name pid=%proc.pid)
  priority: WARNING
  tags: [test]
"""


class AgentProc:
    def __init__(self, tmp: Path, rules: list[Path], outputs: str = "") -> None:
        self.metrics = f"127.0.0.1:{free_port()}"
        self.json_file = tmp / "alerts.json"
        cfg = tmp / "lanner.yaml"
        cfg.write_text("throttle_rule: {rate: 0, burst: 0}\nthrottle_container: {rate: 0, burst: 0}\n"
                       f"outputs:\n  - kind: stdout\n  - kind: file\n    path: {self.json_file}\n" + outputs)
        cmd = [sys.executable, "-m", "lanner", "run", "-c", str(cfg), "--metrics-listen", self.metrics]
        for r in rules:
            cmd += ["-r", str(r)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        assert self.proc.stderr is not None
        while True:  # notices (e.g. syscalls this kernel cannot show) may come before "running"
            line = self.proc.stderr.readline()
            self.stderr.append(line)
            if not line or "running" in line:
                break
        if "running" not in line:
            self.proc.kill()
            raise AssertionError(f"agent did not start: {''.join(self.stderr)}{self.proc.stderr.read()}")
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def metrics_text(self) -> str:
        body: bytes = urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5).read()
        return body.decode()

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # not communicate(): the reader thread owns stderr
        self.proc.wait(timeout=120)
        self.reader.join(timeout=10)
        return out

    def json_alerts(self) -> list[dict[str, Any]]:
        if not self.json_file.exists():
            return []
        return [json.loads(x) for x in self.json_file.read_text().splitlines() if x.strip()]


@pytest.fixture()
def root_only() -> None:
    if os.geteuid() != 0:
        require_or_skip("the agent needs root")
    if not (ROOT / "build" / "bpf" / "sensor.bpf.o").exists():
        require_or_skip("BPF objects not built (make setup)")


def wait_until(pred: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def open_markers(prefix: Path, n: int, start: int = 0) -> None:
    """A child process opens n marker files (each one an alert)."""
    code = (f"import os\nfor i in range({start}, {start + n}):\n"
            f"    p = '{prefix}-%d' % i\n    open(p, 'w').close()\n")
    subprocess.run(["/usr/bin/python3", "-c", code], check=True)


@pytest.fixture()
def marker(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    prefix = tmp_path / f"mark-{uuid.uuid4().hex[:8]}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARK_RULE.format(prefix=prefix))
    yield prefix, rules


def test_http_receiver_down_then_back_gets_everything_once(root_only: None, tmp_path: Path,
                                                           marker: tuple[Path, Path]) -> None:
    prefix, rules = marker
    recv = Receiver(free_port())
    recv.start()
    agent = AgentProc(tmp_path, [rules], outputs=(
        f"  - kind: http\n    name: receiver\n    url: http://127.0.0.1:{recv.port}/\n    max_retries: -1\n"
        "    backoff_initial: 0.05\n    backoff_max: 0.2\n"))
    try:
        open_markers(prefix, 20, 0)
        wait_until(lambda: len(recv.bodies) >= 20)
        recv.stop()
        open_markers(prefix, 30, 20)                    # raised while the receiver is down
        wait_until(lambda: 'lanner_output_alerts_total{output="receiver",result="retries"} 0.0'
                   not in agent.metrics_text())        # it has tried and failed at least once
        recv.start()
        wait_until(lambda: len(recv.bodies) >= 50)
        time.sleep(0.5)                                 # nothing more may arrive: no duplicates
    finally:
        agent.stop()
    files = [b["output_fields"]["fd.name"] for b in recv.bodies]
    assert sorted(files) == sorted(f"{prefix}-{i}" for i in range(50)), "every alert once"
    assert files == [f"{prefix}-{i}" for i in range(50)], "in order"
    assert all(b["rule"] == "Marker file opened" and b["source"] == "syscall" for b in recv.bodies)


def test_sigterm_under_load_delivers_every_alert_to_the_file(root_only: None, tmp_path: Path,
                                                             marker: tuple[Path, Path]) -> None:
    prefix, rules = marker
    agent = AgentProc(tmp_path, [rules])
    n = 3000
    try:
        open_markers(prefix, n)
    finally:
        out = agent.stop()                              # right away: alerts still in flight
    alerts = agent.json_alerts()
    names = {a["output_fields"]["fd.name"] for a in alerts}
    assert names == {f"{prefix}-{i}" for i in range(n)}
    assert len(alerts) == n
    assert out.count(": Warning marker opened (file=") == n   # and every one on stdout
    assert agent.proc.returncode == 0
    assert any("delivered" in line and "failed 0" in line for line in agent.stderr), agent.stderr


def test_sighup_reload_keeps_old_rules_when_new_ones_are_bad(root_only: None, tmp_path: Path,
                                                             marker: tuple[Path, Path]) -> None:
    prefix, rules = marker
    agent = AgentProc(tmp_path, [rules])
    try:
        good = rules.read_text()
        rules.write_text(good + "\n- rule: broken\n  desc: x\n  condition: evt.type = openat and (\n"
                                "  output: x\n  priority: WARNING\n")
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("reload failed" in line for line in agent.stderr))
        assert any("broken" in line or "rules.yaml" in line for line in agent.stderr)
        open_markers(prefix, 3)
        wait_until(lambda: len(agent.json_alerts()) == 3)          # the old rules still run
        assert 'lanner_rules_reloads_total{result="failed"} 1.0' in agent.metrics_text()

        other = tmp_path / "other-marker"
        rules.write_text(good + MARK_RULE.format(prefix=other).replace("Marker file opened", "Other marker"))
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("reloaded" in line for line in agent.stderr))
        open_markers(other, 2)
        wait_until(lambda: sum(a["rule"] == "Other marker" for a in agent.json_alerts()) == 2)
        assert 'lanner_rules_reloads_total{result="ok"} 1.0' in agent.metrics_text()
    finally:
        agent.stop()


def test_bad_rules_and_bad_config_exit_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  desc: x\n  condition: evt.type = = openat\n  output: x\n  priority: WARNING\n")
    res = subprocess.run([sys.executable, "-m", "lanner", "run", "-r", str(bad)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and "bad.yaml:3" in res.stderr and "Traceback" not in res.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("outputs:\n  - kind: file\n")
    res = subprocess.run([sys.executable, "-m", "lanner", "run", "-c", str(cfg)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "path" in res.stderr and "Traceback" not in res.stderr
