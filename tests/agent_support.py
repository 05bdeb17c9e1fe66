"""Running `lanner run` as a user would, for the agent tests: the agent as a subprocess with its
channels (stdout, JSON file, HTTP receiver, /metrics) and the helpers they share."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, require_or_skip

WAIT_S = 20.0


def require_agent_machine() -> None:
    """Root, BTF and the built BPF objects, or skip (fail under LANNER_REQUIRE_KERNEL=1)."""
    if os.geteuid() != 0:
        require_or_skip("the agent needs root")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        require_or_skip("the sensor needs BTF (/sys/kernel/btf/vmlinux)")
    if not (ROOT / "build" / "bpf" / "sensor.bpf.o").exists():
        require_or_skip("BPF objects not built (make setup)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    """A falcosidekick stand-in: collects the JSON bodies POSTed to it; can be stopped and restarted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server: HTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        HTTPServer.allow_reuse_address = True
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None


def wait_until(pred: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll `pred` until it returns something truthy (returned); fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


class Agent:
    """`python -m lanner run -c CONFIG` as a subprocess; stdout and stderr collected line by line."""

    def __init__(self, tmp: Path, name: str, extra_config: str = "", outputs: str = "", *,
                 rules_files: Sequence[Path] = (), env: Mapping[str, str] | None = None,
                 receiver: bool = False) -> None:
        self.name = name
        self.metrics_addr = f"127.0.0.1:{free_port()}"
        self.receiver: Receiver | None = None
        if receiver:  # a falcosidekick stand-in for an HTTP output
            self.receiver = Receiver(free_port())
            self.receiver.start()
            outputs += f"  - kind: http\n    url: http://127.0.0.1:{self.receiver.port}/\n"
        if rules_files:
            extra_config += "rules_files:\n" + "".join(f"  - {p}\n" for p in rules_files)
        self.json_file = tmp / f"{name}-alerts.json"
        self.config = tmp / f"{name}.yaml"
        self.config.write_text(
            "throttle_rule: {rate: 0, burst: 0}\nthrottle_container: {rate: 0, burst: 0}\nshutdown_timeout_s: 10\n"
            f"metrics_listen: '{self.metrics_addr}'\n{extra_config}"
            f"outputs:\n  - kind: stdout\n  - kind: file\n    path: {self.json_file}\n{outputs}")
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._alerts: list[dict[str, Any]] = []
        self._offset = 0
        self._lock = threading.Lock()
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "lanner", "run", "-c", str(self.config)], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})
        self._readers = [threading.Thread(target=self._read, args=(s, d), daemon=True)
                         for s, d in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for t in self._readers:
            t.start()
        try:
            wait_until(lambda: self.proc.poll() is not None or any("running" in x for x in self.stderr),
                       "the agent's running line", timeout=60)
        except AssertionError:
            self.proc.kill()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"the agent exited {self.proc.returncode}: {''.join(self.stderr)}")
        self.start_s = time.monotonic() - t0

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def json_alerts(self) -> list[dict[str, Any]]:
        """Every complete line of the JSON file so far (read incrementally)."""
        with self._lock:
            if self.json_file.exists():
                with self.json_file.open("rb") as f:
                    f.seek(self._offset)
                    data = f.read()
                end = data.rfind(b"\n") + 1
                self._offset += end
                self._alerts += [json.loads(x) for x in data[:end].splitlines() if x.strip()]
            return list(self._alerts)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The /metrics samples: (name, sorted labels) -> value."""
        text = urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def alerts_counted(self, rule: str, priority: str) -> float:
        return self.metrics().get(("lanner_alerts_total", (("priority", priority), ("rule", rule))), 0.0)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for t in self._readers:
            t.join(timeout=10)
        if self.receiver is not None:
            self.receiver.stop()
        return rc


