"""`python -m lanner run -c CONFIG` as a subprocess, its JSON alert file read incrementally, and a TCP stand-in."""

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
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.kernel.test_agent import Receiver


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(pred: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll `pred` until it returns something truthy (returned); fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


class RulesAgent:
    """One agent: the given rules files, a JSON file output, throttling off, metrics on a free port."""

    def __init__(self, tmp: Path, name: str, rules_files: Sequence[Path], extra_config: str = "",
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.metrics_addr = f"127.0.0.1:{free_port()}"
        self.receiver = Receiver(free_port())  # a falcosidekick stand-in for the HTTP output
        self.receiver.start()
        self.json_file = tmp / f"{name}-alerts.json"
        self.config = tmp / f"{name}.yaml"
        rules = "".join(f"  - {p}\n" for p in rules_files)
        self.config.write_text(
            "throttle_rule: {rate: 0, burst: 0}\nthrottle_container: {rate: 0, burst: 0}\nshutdown_timeout_s: 10\n"
            f"metrics_listen: '{self.metrics_addr}'\nrules_files:\n{rules}{extra_config}"
            f"outputs:\n  - kind: file\n    path: {self.json_file}\n  - kind: stdout\n"
            f"  - kind: http\n    url: http://127.0.0.1:{self.receiver.port}/\n")
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._alerts: list[dict[str, Any]] = []
        self._offset = 0
        self._lock = threading.Lock()
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "lanner", "run", "-c", str(self.config)], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()
        try:
            wait_until(lambda: self.proc.poll() is not None or any("running" in x for x in self.stderr),
                       f"the {name} agent's running line", timeout=90)
        except AssertionError:
            self.proc.kill()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"the {name} agent exited {self.proc.returncode}: {''.join(self.stderr)}")
        self.start_s = time.monotonic() - t0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))

    def json_alerts(self) -> list[dict[str, Any]]:
        """Every complete line of the JSON file so far."""
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
        text = urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        self._reader.join(timeout=10)
        self._out_reader.join(timeout=10)
        self.receiver.stop()
        return rc


class Listener:
    """A TCP server on a loopback address that accepts and closes every connection (an API-server stand-in)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()
