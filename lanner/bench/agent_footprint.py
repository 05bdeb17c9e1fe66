"""``lanner bench agent``: what the agent costs when nothing happens, and whether its memory stays
flat under a day of process churn.

- idle: `lanner run` with the default rules on a quiet machine; CPU seconds and RSS over a window.
- churn: the agent's state tracker and engine (the code `lanner run` runs) fed, in this process,
  a day's worth of short-lived processes as kernel records — fork, exec, a few opens, a connect,
  exit — at a chosen rate; RSS and table sizes before and after.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lanner.sensor.records import EXEC_INFO, FD_DESC, Blob, Clock, Kind, Record


def _rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle(seconds: float = 10.0) -> dict[str, Any]:
    """CPU and RSS of `lanner run` (default rules, default outputs to /dev/null) on a quiet machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lanner", "run", "--metrics-listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        while True:
            line = proc.stderr.readline()
            if not line or "running" in line:
                break
        if "running" not in line:
            raise RuntimeError(f"agent did not start: {line}")
        time.sleep(2)  # let start-up settle
        cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = _cpu_s(proc.pid), time.monotonic()
        rss = _rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"seconds": round(t1 - t0, 1), "cpu_percent": round((cpu1 - cpu0) / (t1 - t0) * 100, 2),
            "rss_mib": round(rss / 1024, 1)}


class _Records:
    """Kernel records of a synthetic process's life, as the sensor would decode them."""

    def __init__(self) -> None:
        self.mono = time.monotonic_ns()
        self.exec_info = EXEC_INFO.pack(0, 100, 100, 0o100755, 0, 0, 2049, 0xEF53, 4242, 0, 0, 0, 0, 0,
                                        self.mono, 1, 0)

    def _rec(self, kind: Kind, pid: int, ppid: int, nr: int, ret: int, args: tuple[int, ...], comm: bytes,
             blobs: dict[int, bytes]) -> Record:
        self.mono += 1000
        return Record(kind, self.mono, 1, pid, pid, ppid, pid, pid, 1000, 1000, 1000, nr, ret,
                      args + (0,) * (6 - len(args)), comm.ljust(16, b"\0"), blobs)

    def life(self, pid: int, parent: int, n: int) -> list[Record]:
        name = f"job-{n % 50}".encode()
        fd = FD_DESC.pack(3, 0o100644, 2049, 0xEF53, 1000 + n % 5000, 0, 0, 0, 0, 0, 0, 0, b"", b"", 0, 0)
        sock = FD_DESC.pack(4, 0o140000, 8, 0x534F434B, 77, 2, 2, 1, 6, 40000 + n % 20000, 443, 1,
                            bytes([10, 0, 0, 5]) + bytes(12), bytes([10, 0, 0, 9]) + bytes(12), 0xFFFF0000 + n, 0)
        recs = [
            self._rec(Kind.FORK, parent, 1, -1, pid, (self.mono, pid, parent), b"bash", {}),
            self._rec(Kind.SYSCALL, pid, parent, 59, 0, (), name, {
                Blob.FILENAME: b"/usr/local/bin/" + name, Blob.ARGV: name + b"\0--run\0" + str(n).encode() + b"\0",
                Blob.ENV: b"PATH=/usr/bin\0HOME=/home/app\0", Blob.EXEPATH: b"/usr/local/bin/" + name,
                Blob.CWD: b"/home/app", Blob.EXEC: self.exec_info}),
        ]
        for i in range(3):
            recs.append(self._rec(Kind.SYSCALL, pid, parent, 257, 3, (2**64 - 100, 0, 0, 0), name, {
                Blob.PATH0: f"/var/lib/app/data-{n % 1000}-{i}.db".encode(), Blob.FD: fd}))
        recs.append(self._rec(Kind.SYSCALL, pid, parent, 42, 0, (4,), name, {
            Blob.SOCKADDR: bytes([2, 0, 1, 187, 10, 0, 0, 9]) + bytes(8), Blob.FD: sock}))
        recs.append(self._rec(Kind.EXIT, pid, parent, -1, 0, (), name, {}))
        return recs


def churn(hours: float = 24.0, processes_per_second: float = 10.0, rules: list[Path] | None = None
          ) -> dict[str, Any]:
    """Feed `hours` of short-lived processes through the state tracker and the engine."""
    from lanner.config import DEFAULT_RULES
    from lanner.engine import Engine
    from lanner.rules import load
    from lanner.state import StateTracker

    engine = Engine(load(rules or [DEFAULT_RULES]))
    tracker = StateTracker(Clock())
    tracker.seed()
    gen = _Records()
    total = int(hours * 3600 * processes_per_second)
    shell = os.getpid()  # a long-lived parent that exists in the table
    rss0 = _rss_kib()
    samples: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    alerts = 0
    for n in range(total):
        pid = 100_000 + n % 4_000_000
        for rec in gen.life(pid, shell, n):
            evt = tracker.handle(rec)
            if evt is not None:
                evt.num = n + 1
                alerts += len(engine.process(evt))
        if n % (total // 10 or 1) == 0:
            samples.append((n, round(_rss_kib() / 1024, 1)))
    elapsed = time.perf_counter() - t0
    samples.append((total, round(_rss_kib() / 1024, 1)))
    return {"hours": hours, "processes_per_second": processes_per_second, "processes": total,
            "records": total * 7, "elapsed_s": round(elapsed, 1), "alerts": alerts,
            "rss_start_mib": round(rss0 / 1024, 1), "rss_end_mib": samples[-1][1], "rss_samples": samples,
            "state": tracker.stats()}
