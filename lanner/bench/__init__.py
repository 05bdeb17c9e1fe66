"""``lanner bench ...``: benchmarks that print figures. They never pass or fail."""

from __future__ import annotations

import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import click

from lanner.events import Container, Event, FdInfo, Process

ENGINE_MIX = {
    "openat read": 45, "openat write": 12, "execve": 10, "connect": 10, "accept4": 5, "socket": 5,
    "unlinkat": 4, "renameat2": 2, "mkdirat": 2, "setuid": 2, "symlinkat": 1, "ptrace": 1, "memfd_create": 1,
}
"""Event mix of the engine benchmark, per 100 events: the syscalls the sensor enables for
Falco's stable rules, weighted like a busy web node (mostly file opens)."""


def _default_rules() -> Path | None:
    checkout = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("LANNER_SHARED", checkout.parent / "shared"))
    for cand in (shared / "falco/rules/falco_rules.yaml", Path("/etc/lanner/falco_rules.yaml")):
        if cand.exists():
            return cand
    return None


def _procs(rng: random.Random) -> list[Process]:
    init = Process(pid=1, name="init", exe="/sbin/init", exepath="/sbin/init", uid=0, user_name="root")
    sshd = Process(pid=400, ppid=1, name="sshd", exe="/usr/sbin/sshd", exepath="/usr/sbin/sshd", uid=0,
                   user_name="root", parent=init)
    bash = Process(pid=1200, ppid=400, name="bash", exe="-bash", exepath="/usr/bin/bash", uid=1000,
                   user_name="alice", loginuid=1000, tty=34816, cwd="/home/alice/", parent=sshd)
    nginx = Process(pid=800, ppid=1, name="nginx", exe="nginx", exepath="/usr/sbin/nginx",
                    args=["-g", "daemon off;"], uid=33, user_name="www-data", parent=init)
    cid = "3f1c2d9e8b7a" + "0" * 52
    shim = Process(pid=2000, ppid=1, name="containerd-shim", exe="/usr/bin/containerd-shim-runc-v2",
                   exepath="/usr/bin/containerd-shim-runc-v2", parent=init)
    app = Process(pid=2100, ppid=2000, vpid=1, name="python3", exe="python3", exepath="/usr/bin/python3.11",
                  args=["app.py"], uid=0, user_name="root", container_id=cid, cwd="/app/", parent=shim)
    return [bash, nginx, app, sshd]


def make_stream(n: int, seed: int = 1) -> list[Event]:
    """A deterministic mixed event stream for the engine benchmark (see ENGINE_MIX)."""
    rng = random.Random(seed)
    procs = _procs(rng)
    container = Container(id=procs[2].container_id, name="web", image="docker.io/library/python:3.11",
                          image_repository="docker.io/library/python", image_tag="3.11",
                          pod_name="web-0", pod_namespace="default")
    kinds = [k for k, w in ENGINE_MIX.items() for _ in range(w)]
    read_files = ["/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/passwd", "/etc/nsswitch.conf",
                  "/var/www/html/index.html", "/proc/self/status", "/usr/share/zoneinfo/UTC", "/app/app.py",
                  "/home/alice/.bashrc", "/etc/hosts"]
    write_files = ["/tmp/sess_81723", "/var/log/nginx/access.log", "/home/alice/notes.txt", "/app/cache/x"]
    execs = [("ls", "/usr/bin/ls", ["-la"]), ("grep", "/usr/bin/grep", ["-r", "foo", "."]),
             ("python3", "/usr/bin/python3.11", ["-c", "print(1)"]), ("git", "/usr/bin/git", ["status"]),
             ("sh", "/usr/bin/dash", ["-c", "date"])]
    out: list[Event] = []
    ts = 1_700_000_000_000_000_000
    for i in range(n):
        kind = rng.choice(kinds)
        proc = rng.choice(procs)
        ts += 1000
        evt = Event(type=kind.split()[0], ts=ts, tid=proc.pid, proc=proc, num=i + 1,
                    container=container if proc.container_id else None)
        if kind.startswith("openat"):
            write = kind.endswith("write")
            path = rng.choice(write_files if write else read_files)
            flags = (0o1 | 0o100 | 0o1000) if write else 0
            evt.res = 3
            evt.args = {"fd": 3, "dirfd": -100, "name": path, "flags": flags, "mode": 0o644 if write else 0}
            evt.fd = FdInfo(num=3, type="file", name=path, nameraw=path)
        elif kind == "execve":
            name, path, args = rng.choice(execs)
            child = Process(pid=proc.pid + 1, ppid=proc.pid, name=name, exe=name, exepath=path, args=args,
                            uid=proc.uid, user_name=proc.user_name, loginuid=proc.loginuid, tty=proc.tty,
                            cwd=proc.cwd, container_id=proc.container_id, parent=proc)
            evt.proc, evt.res = child, 0
            evt.args = {"exe": name, "filename": path, "cwd": proc.cwd}
        elif kind in ("connect", "accept4"):
            port = rng.choice([443, 80, 5432, 6379])
            evt.res = 0 if kind == "connect" else 5
            evt.fd = FdInfo(num=5, type="ipv4", l4proto="tcp", role="client" if kind == "connect" else "server",
                            cip="10.0.0.5", cport=40000 + i % 20000, sip="10.0.0.9", sport=port, connected=True,
                            name=f"10.0.0.5:{40000 + i % 20000}->10.0.0.9:{port}")
            evt.args = {"fd": 5}
        elif kind == "socket":
            evt.res = 4
            evt.args = {"fd": 4, "domain": 2, "type": 1, "proto": 0}
            evt.fd = FdInfo(num=4, type="ipv4")
        elif kind == "unlinkat":
            evt.res, evt.args = 0, {"dirfd": -100, "name": "/tmp/sess_81723", "flags": 0}
        elif kind == "renameat2":
            evt.res, evt.args = 0, {"olddirfd": -100, "oldpath": "/tmp/a", "newdirfd": -100, "newpath": "/tmp/b"}
        elif kind == "mkdirat":
            evt.res, evt.args = 0, {"dirfd": -100, "path": "/tmp/build", "mode": 0o755}
        elif kind == "setuid":
            evt.res, evt.args = 0, {"uid": 33}
        elif kind == "symlinkat":
            evt.res, evt.args = 0, {"target": "/usr/bin/python3", "linkdirfd": -100, "linkpath": "/tmp/py"}
        elif kind == "ptrace":
            evt.res, evt.args = -1, {"request": 16, "pid": 800}
        else:  # memfd_create
            evt.res, evt.args = 6, {"fd": 6, "name": "jit", "flags": 1}
            evt.fd = FdInfo(num=6, type="memfd", name="jit")
        out.append(evt)
    return out


def run_engine_bench(rules: list[Path], n: int, rule_matching: str) -> dict[str, Any]:
    from lanner.engine import Engine
    from lanner.rules import load

    t0 = time.perf_counter()
    rs = load(rules)
    load_s = time.perf_counter() - t0
    if not rs.ok:
        raise click.ClickException("rules do not load: " + "; ".join(str(e) for e in rs.errors[:3]))
    engine = Engine(rs, rule_matching=rule_matching)
    stream = make_stream(n)
    for evt in stream[:2000]:  # build the per-type matchers before timing
        engine.process(evt)
    alerts = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for evt in stream:
        alerts += len(engine.process(evt))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    lat: list[int] = []
    clock = time.perf_counter_ns
    for evt in stream[: min(n, 100_000)]:
        s = clock()
        engine.process(evt)
        lat.append(clock() - s)
    lat.sort()
    return {
        "benchmark": "engine", "rules_files": [str(r) for r in rules], "rules_enabled": len(engine.rules),
        "rule_matching": rule_matching, "events": n, "alerts": alerts, "mix_per_100_events": ENGINE_MIX,
        "events_per_second": round(n / wall), "events_per_cpu_second": round(n / cpu) if cpu else None,
        "us_per_event_p50": round(lat[len(lat) // 2] / 1000, 2),
        "us_per_event_p99": round(lat[int(len(lat) * 0.99)] / 1000, 2),
        "rules_load_seconds": round(load_s, 3),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: they print figures; record them in docs/benchmarks.md."""


@bench_group.command("engine")
@click.option("-r", "--rules", "rules_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Rules files (default: Falco's falco_rules.yaml from the shared reference data).")
@click.option("-n", "--events", default=500_000, show_default=True)
@click.option("--rule-matching", type=click.Choice(["first", "all"]), default="first", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_engine(rules_files: tuple[Path, ...], events: int, rule_matching: str, as_json: bool) -> None:
    """Replay a realistic mixed stream through the engine on one core: events/s and µs/event."""
    rules = list(rules_files)
    if not rules:
        default = _default_rules()
        if default is None:
            raise click.UsageError("no rules file given and falco_rules.yaml not found: use -r FILE")
        rules = [default]
    res = run_engine_bench(rules, events, rule_matching)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"engine: {res['events']} events against {res['rules_enabled']} rules "
               f"({', '.join(res['rules_files'])}), rule_matching={rule_matching}")
    click.echo("mix per 100 events: " + ", ".join(f"{k} {v}" for k, v in ENGINE_MIX.items()))
    click.echo(f"  {res['events_per_second']:,} events/s (wall), {res['events_per_cpu_second']:,} per CPU-second")
    click.echo(f"  latency per event: p50 {res['us_per_event_p50']} µs, p99 {res['us_per_event_p99']} µs")
    click.echo(f"  alerts: {res['alerts']}; rules load: {res['rules_load_seconds']} s")
    click.echo(f"  {res['machine']}, {res['date']}")


@bench_group.command("scan")
@click.option("-n", "--manifests", default=2000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_scan_command(manifests: int, as_json: bool) -> None:
    """Posture scan throughput: Deployments per second through `lanner scan`'s checks."""
    from lanner.posture.bench import bench_scan

    res = bench_scan(manifests)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    for key, val in res.items():
        click.echo(f"  {key}: {val}")


@bench_group.command("sensor")
@click.option("-r", "--rules", "rules_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Rules the agent runs (default: Falco's falco_rules.yaml).")
@click.option("--seconds", default=3.0, show_default=True, help="Length of each timed run.")
@click.option("--redis-requests", default=100_000, show_default=True,
              help="redis-benchmark requests per run, 3 runs off and 3 with the agent (0 skips redis).")
@click.option("--json", "as_json", is_flag=True)
def bench_sensor_command(rules_files: tuple[Path, ...], seconds: float, redis_requests: int, as_json: bool) -> None:
    """Live sensor cost: loops off / no-op BPF / agent, redis-benchmark, zero-drop rate, alert latency."""
    from lanner.bench.sensor import run

    run(rules_files, seconds, redis_requests, as_json)


@bench_group.command("agent")
@click.option("--idle-seconds", default=10.0, show_default=True, help="Window over which idle CPU is measured.")
@click.option("--hours", default=24.0, show_default=True, help="Simulated hours of process churn.")
@click.option("--rate", default=10.0, show_default=True, help="Short-lived processes per second in the churn.")
@click.option("--json", "as_json", is_flag=True)
def bench_agent_command(idle_seconds: float, hours: float, rate: float, as_json: bool) -> None:
    """The agent idle (CPU, RSS) and its memory after simulated hours of process churn."""
    from lanner.bench.agent_footprint import churn, idle

    if os.geteuid() != 0:
        raise click.UsageError("lanner bench agent needs root (it runs the agent)")
    res: dict[str, Any] = {"idle": idle(idle_seconds), "churn": churn(hours, rate),
           "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
           "date": time.strftime("%Y-%m-%d")}
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    i, c = res["idle"], res["churn"]
    click.echo(f"idle agent (default rules) over {i['seconds']} s: CPU {i['cpu_percent']} % of one core, "
               f"RSS {i['rss_mib']} MiB")
    click.echo(f"churn: {c['processes']:,} processes ({c['hours']} h at {c['processes_per_second']}/s), "
               f"{c['records']:,} records in {c['elapsed_s']} s; RSS {c['rss_start_mib']} → {c['rss_end_mib']} MiB")
    click.echo(f"  RSS samples (processes, MiB): {c['rss_samples']}")
    click.echo(f"  state after: {c['state']}")


@bench_group.command("enforce")
@click.option("--seconds", default=3.0, show_default=True, help="Length of each timed run.")
@click.option("--rounds", default=3, show_default=True, help="Alternated off/on rounds per case (medians).")
@click.option("--json", "as_json", is_flag=True)
def bench_enforce_command(seconds: float, rounds: int, as_json: bool) -> None:
    """What enforcement costs the work it lets through: loops with each mechanism off and on."""
    from lanner.bench.enforce import run

    run(seconds, rounds, as_json)
