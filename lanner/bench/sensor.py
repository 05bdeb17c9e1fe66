"""``lanner bench sensor``: what the live sensor costs the workloads it watches, measured side by side.

(a) native loops (open/close, fork+exec, loopback connect) with nothing attached, with empty BPF
programs on the same attach points (the floor), and with the agent's event path running the
rules; (b) redis-benchmark with and without the agent; (c) the highest paced open rate the agent
holds with zero drops; (d) syscall-to-alert latency. Figures only: nothing passes or fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("open", "exec", "connect")


class BenchError(RuntimeError):
    pass


def loadgen_path() -> Path:
    path = ROOT / "build" / "loadgen"
    if not path.is_file():
        raise BenchError(f"{path} not found: run `make setup`")
    return path


def run_loadgen(mode: str, seconds: float, rate: float | None = None) -> float:
    """Operations per second of one load-generator run."""
    cmd = [str(loadgen_path()), mode, str(seconds)]
    if rate:
        cmd.append(str(rate))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds * 5 + 30).stdout
    ops, secs = out.split()
    return int(ops) / float(secs)


class NoopProbe(AbstractContextManager["NoopProbe"]):
    """Empty programs attached where the sensor attaches for these rules."""

    def __init__(self, rules: list[Path], raw: bool = False) -> None:
        self.rules = rules
        self.raw = raw

    def __enter__(self) -> NoopProbe:
        from lanner.engine import Engine
        from lanner.rules import load
        from lanner.sensor import libbpf, syscalls
        from lanner.sensor.loader import Programs, object_path

        selected = syscalls.select(Engine(load(self.rules)).event_types())
        self.obj = libbpf.BpfObject(str(object_path("noop.bpf.o")))
        self.programs = Programs(self.obj, self.raw, selected)
        self.obj.load()
        self.programs.attach(selected)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.programs.detach()
        self.obj.close()


class Agent(AbstractContextManager["Agent"]):
    """The agent's event path in its own process (python -m lanner.bench.agent)."""

    def __init__(self, rules: list[Path], prefilter: bool = True) -> None:
        self.cmd = [sys.executable, "-m", "lanner.bench.agent"]
        for r in rules:
            self.cmd += ["-r", str(r)]
        if not prefilter:
            self.cmd.append("--no-prefilter")
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Agent:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise BenchError(f"agent did not start (said {line!r}, exit {self.proc.wait()})")
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        time.sleep(0.2)  # let the last events reach the ring buffer
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        lines = [x for x in out.splitlines() if x.startswith("{")]
        self.result = json.loads(lines[-1]) if lines else {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_rps(requests: int) -> dict[str, float]:
    """requests/s of redis-benchmark SET and GET against a fresh loopback redis-server."""
    server, bench = shutil.which("redis-server"), shutil.which("redis-benchmark")
    if not server or not bench:
        raise BenchError("redis-server / redis-benchmark not installed: run `make setup`")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--daemonize", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        out = subprocess.run([bench, "-p", str(port), "-q", "-n", str(requests), "-t", "set,get", "-c", "50"],
                             capture_output=True, text=True, check=True, timeout=600).stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rps: dict[str, float] = {}
    for m in re.finditer(r"(\w+): ([\d.]+) requests per second", out.replace("\r", "\n")):
        rps[m.group(1)] = float(m.group(2))
    return rps


def bench_sensor(rules: list[Path], seconds: float = 3.0, redis_requests: int = 100_000,
                 rates: tuple[int, ...] = (25_000, 50_000, 100_000, 200_000, 400_000)) -> dict[str, Any]:
    out: dict[str, Any] = {"rules": [str(r) for r in rules], "seconds": seconds}
    loops: dict[str, dict[str, float]] = {}
    for mode in WORKLOADS:
        row: dict[str, float] = {}
        row["off"] = run_loadgen(mode, seconds)
        with NoopProbe(rules):
            row["noop"] = run_loadgen(mode, seconds)
        with Agent(rules) as agent:
            row["agent"] = run_loadgen(mode, seconds)
        row["agent_dropped"] = agent.result.get("dropped", -1)
        row["agent_events"] = agent.result.get("events", -1)
        row["noop_ratio"] = row["noop"] / row["off"]
        row["agent_ratio"] = row["agent"] / row["off"]
        loops[mode] = row
    out["loops"] = loops

    if redis_requests:
        out["redis"] = redis_side_by_side(rules, redis_requests)

    out["zero_drop"] = {
        # opens of a file no rule names: the kernel's prefilter keeps them out of user space
        "prefiltered": _zero_drop(rules, "open", True, rates, seconds),
        # opens for writing, which a rule can match: every one is decoded and evaluated in Python
        "delivered": _zero_drop(rules, "write", True, (25_000, 50_000, 75_000, 100_000, 150_000, 200_000), seconds),
    }

    # Latency: sensitive-file reads (an alert each) at 200/s on top of 20,000/s opens for writing,
    # which reach the engine without raising anything.
    with Agent(rules) as agent:
        bg = subprocess.Popen([str(loadgen_path()), "write", str(seconds), "20000"], stdout=subprocess.DEVNULL)
        run_loadgen("shadow", seconds, 200)
        bg.wait()
    out["latency"] = {"alerts": agent.result.get("alerts"), "by_rule": agent.result.get("by_rule"),
                      **(agent.result.get("latency_ms") or {})}
    return out


def redis_side_by_side(rules: list[Path], requests: int, rounds: int = 3) -> dict[str, Any]:
    """redis-benchmark off / agent alternately, `rounds` times each; medians (one noisy run decides
    nothing on a 2-vCPU VM)."""
    off: dict[str, list[float]] = {}
    on: dict[str, list[float]] = {}
    dropped = 0
    for _ in range(rounds):
        for test, rps in redis_rps(requests).items():
            off.setdefault(test, []).append(rps)
        with Agent(rules) as agent:
            for test, rps in redis_rps(requests).items():
                on.setdefault(test, []).append(rps)
        dropped += agent.result.get("dropped", 0)
    res: dict[str, Any] = {}
    for test in on:
        o, a = statistics.median(off.get(test, [0.0])), statistics.median(on[test])
        res[test] = {"off": o, "agent": a, "ratio": a / o if o else None, "off_runs": off.get(test),
                     "agent_runs": on[test]}
    res["agent_dropped"] = dropped
    return res


def _zero_drop(rules: list[Path], mode: str, prefilter: bool, rates: tuple[int, ...],
               seconds: float = 3.0) -> dict[str, Any]:
    """Paced load at rising rates until the agent drops something; the highest rate held."""
    runs: list[dict[str, Any]] = []
    best = None
    for rate in rates:
        with Agent(rules, prefilter) as agent:
            achieved = run_loadgen(mode, seconds, rate)
        r = agent.result
        lost = r.get("dropped", -1) + r.get("undecodable", 0) + r.get("failed", 0)
        runs.append({"target": rate, "achieved": round(achieved), "events": r.get("events"),
                     "filtered": r.get("filtered"), "lost": lost, "agent_cpu_s": r.get("cpu_s")})
        if lost != 0:
            break
        best = round(achieved)
    return {"workload": mode, "runs": runs, "highest_rate_zero_drops": best}


def _default_rules() -> list[Path]:
    from lanner.bench import _default_rules as find

    path = find()
    return [path] if path else []


def run(rules: tuple[Path, ...], seconds: float, redis_requests: int, as_json: bool) -> None:
    import click

    if os.geteuid() != 0:
        raise click.UsageError("lanner bench sensor needs root (it loads BPF programs)")
    rule_paths = list(rules) or _default_rules()
    if not rule_paths:
        raise click.UsageError("no rules: pass -r falco_rules.yaml")
    try:
        res = bench_sensor(rule_paths, seconds, redis_requests)
    except BenchError as exc:
        click.echo(f"lanner bench sensor: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"rules: {', '.join(res['rules'])}; {seconds:g} s per run")
    click.echo(f"{'loop':8} {'off ops/s':>12} {'noop ops/s':>12} {'agent ops/s':>12} {'noop':>7} {'agent':>7}")
    for mode, row in res["loops"].items():
        click.echo(f"{mode:8} {row['off']:12,.0f} {row['noop']:12,.0f} {row['agent']:12,.0f} "
                   f"{row['noop_ratio']:7.1%} {row['agent_ratio']:7.1%}   (agent drops {row['agent_dropped']})")
    if "redis" in res:
        for test, r in res["redis"].items():
            if isinstance(r, dict):
                click.echo(f"redis {test:4} off {r['off']:10,.0f} req/s  agent {r['agent']:10,.0f} req/s  "
                           f"{r['ratio']:.1%}")
    for label, z in res["zero_drop"].items():
        for r in z["runs"]:
            click.echo(f"{label:11} {z['workload']:5} target {r['target']:>7,}/s achieved {r['achieved']:>7,}/s "
                       f"events {r['events']} filtered {r['filtered']} lost {r['lost']} "
                       f"agent cpu {r['agent_cpu_s']} s")
        click.echo(f"{label}: highest rate held with zero drops: {z['highest_rate_zero_drops']}/s")
    lat = res["latency"]
    click.echo(f"syscall-to-alert latency over {lat.get('alerts')} alerts: p50 {lat.get('p50')} ms, "
               f"p99 {lat.get('p99')} ms, max {lat.get('max')} ms")
