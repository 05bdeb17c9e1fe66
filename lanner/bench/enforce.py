"""``lanner bench enforce``: what each enforcement mechanism costs the work it lets through.

Native loops (``build/loadgen``) timed with a mechanism off and on, side by side in one run:
rounds alternate off/on (ABBA order, so a drift of the machine's load cancels out) and the
figures are medians. Every "on" round loads the guard, applies its policy and closes it again
afterwards, so "off" means nothing of it attached. No policy names what the loops do: each row
counts the decisions its guard made anyway (any would be a wrong deny or kill).

- fork+exec of ``/bin/true``: fanotify exec-deny with marks on a few unrelated files; the exec
  guard with a deny set of a few hundred unrelated files and an allow-list and drift scope on an
  unrelated cgroup; the exec guard with the loop in its own cgroup under an allow-list that lists
  ``/bin/true`` (every exec is checked against the list);
- open+close of one file: fanotify open-deny of an unrelated directory; fanotify write-deny of the
  loop's own directory while the loop opens for reading (every open is a permission event
  answered by the Python responder);
- loopback TCP connect: the network guard with a deny entry on an unrelated port.

Figures only: nothing passes or fails on speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lanner.bench.sensor import BenchError, loadgen_path

if TYPE_CHECKING:
    from lanner.response.exec_guard import ExecGuard
    from lanner.response.net_guard import NetGuard

UNRELATED_FILES: Final = 300
"""Files in the exec guard's unrelated deny set."""
FANOTIFY_EXEC_FILES: Final = 5
"""Unrelated files fanotify's exec-deny marks."""
UNRELATED_PORT: Final = 1
"""The port of the network guard's unrelated deny entry (tcpmux: nothing here uses it)."""


@dataclass(frozen=True, slots=True)
class Case:
    mechanism: str
    case: str
    loop: str
    """The loadgen mode."""
    description: str
    in_cgroup: bool = False
    """The loop runs in the bench's own test cgroup, off and on."""


CASES: Final = (
    Case("fanotify", "exec-deny, unrelated files", "exec",
         f"FAN_OPEN_EXEC_PERM inode marks on {FANOTIFY_EXEC_FILES} files the loop never runs"),
    Case("exec-guard", "deny set + scopes elsewhere", "exec",
         f"{UNRELATED_FILES} deny entries (every cgroup) and an allow-list + drift scope on an idle cgroup"),
    Case("exec-guard", "allow-list on the loop's cgroup", "exec",
         "the same deny set; the loop's cgroup may run only /bin/true and loadgen, drift on",
         in_cgroup=True),
    Case("fanotify", "open-deny, unrelated directory", "open",
         "read+write deny below a directory the loop does not open in"),
    Case("fanotify", "write-deny, the loop's directory", "open",
         "write deny of the directory the loop opens its file in for reading: every open is a "
         "permission event answered by the Python responder"),
    Case("net-guard", "deny, unrelated port", "connect",
         f"connect/send deny to port {UNRELATED_PORT} on any address; the loop connects to a loopback listener"),
)


@dataclass(slots=True)
class Env:
    """What the cases share: files and cgroups this run made (removed at its end)."""

    root: Path
    loop_file: Path
    """The file the open loop opens, in a directory of its own."""
    guarded_dir: Path
    """A directory nothing in the benchmark opens anything in."""
    unrelated: list[Path]
    idle_cgroup: tuple[Path, int]
    loop_cgroup: tuple[Path, int]
    pin_root: str


# --- setting up and tearing down ------------------------------------------------------------------

def _make_files(stack: ExitStack) -> tuple[Path, Path, Path, list[Path]]:
    # On the root filesystem like /usr/bin/true: the kernel's fsnotify fast path is per
    # filesystem, so marks there are what an unrelated policy realistically costs.
    root = Path(tempfile.mkdtemp(prefix="lanner-bench-enforce-", dir="/var/tmp"))
    stack.callback(shutil.rmtree, root, True)
    loop_dir = root / "loop"
    loop_dir.mkdir()
    loop_file = loop_dir / "data"
    loop_file.write_text("lanner bench enforce\n")
    guarded = root / "guarded"
    for sub in ("a/b", "c", "d/e/f"):
        (guarded / sub).mkdir(parents=True)
        (guarded / sub / "file").write_text("x\n")
    bins = root / "unrelated"
    bins.mkdir()
    unrelated = []
    for i in range(UNRELATED_FILES):
        p = bins / f"prog{i:03d}"
        p.write_bytes(b"#!/bin/sh\nexit 0\n")
        p.chmod(0o755)
        unrelated.append(p)
    return root, loop_file, guarded, unrelated


def _make_cgroup(stack: ExitStack, mount: str, label: str) -> tuple[Path, int]:
    """A new child of the cgroup2 root, named lanner-bench-*, removed at the end."""
    from lanner.state.cgroups import rmdir_cgroup

    path = Path(mount) / f"lanner-bench-{label}-{os.getpid()}-{secrets.token_hex(3)}"
    path.mkdir()

    def remove() -> None:
        err = rmdir_cgroup(path)
        if err is not None:
            print(f"lanner bench enforce: could not remove the cgroup {err}", file=sys.stderr)

    stack.callback(remove)
    return path, path.stat().st_ino


def _environment(stack: ExitStack) -> Env:
    from lanner.state.cgroups import find_cgroup2_mount

    mount = find_cgroup2_mount()
    if mount is None:
        raise BenchError("no cgroup2 hierarchy is mounted (the exec and network guards need it)")
    root, loop_file, guarded, unrelated = _make_files(stack)
    idle = _make_cgroup(stack, mount, "idle")
    loop = _make_cgroup(stack, mount, "loop")
    # Pins of our own: a concurrent agent's pinned guards under /sys/fs/bpf/lanner are left alone.
    pin_root = f"/sys/fs/bpf/lanner-bench-{os.getpid()}"
    return Env(root, loop_file, guarded, unrelated, idle, loop, pin_root)


# --- the guards, one context manager per case ---------------------------------------------------------

class _Checked:
    """What a guard decided during a run: anything at all means the loop was acted on."""

    def __init__(self) -> None:
        self.decisions = 0
        self.events = 0
        """fanotify permission events answered (0 for the BPF guards)."""
        self.prog_ids: list[int] = []
        """The BPF guard's programs (none for fanotify)."""


@contextlib.contextmanager
def _fanotify(table_of: Callable[[], Any]) -> Iterator[_Checked]:
    from lanner.response.fanotify import FanotifyGuard

    checked = _Checked()
    guard = FanotifyGuard()
    try:
        guard.apply(table_of())
        before = guard.stats()
        yield checked
        after = guard.stats()
        checked.decisions = len(guard.poll()) + after["dropped"] - before["dropped"]
        checked.events = after["events"] - before["events"]
    finally:
        guard.close()


@contextlib.contextmanager
def _bpf_guard(make: Callable[[], ExecGuard | NetGuard], table: Any) -> Iterator[_Checked]:
    checked = _Checked()
    guard = make()
    try:
        guard.load()
        guard.attach()
        guard.apply(table)
        checked.prog_ids = guard.prog_ids()
        yield checked
        checked.decisions = len(guard.poll()) + guard.dropped()
    finally:
        guard.close()


def _guard_for(case: Case, env: Env) -> Callable[[], AbstractContextManager[_Checked]]:
    from lanner.response.exec_guard import DriftScope, ExecAllowList, ExecDeny, ExecGuard, ExecTable, file_key
    from lanner.response.fanotify import ExecDenyEntry, FanotifyTable, OpenDenyEntry
    from lanner.response.net_guard import NetDeny, NetGuard, NetTable

    deny = [ExecDeny.for_path(p, rule_id=100 + i) for i, p in enumerate(env.unrelated)]
    if case.case == "exec-deny, unrelated files":
        paths = tuple(str(p) for p in env.unrelated[:FANOTIFY_EXEC_FILES])
        return lambda: _fanotify(lambda: FanotifyTable(exec_deny=[ExecDenyEntry(1, True, paths)]))
    if case.case == "open-deny, unrelated directory":
        entry = OpenDenyEntry(2, True, (str(env.guarded_dir),), write=True, read=True)
        return lambda: _fanotify(lambda: FanotifyTable(open_deny=[entry]))
    if case.case == "write-deny, the loop's directory":
        entry = OpenDenyEntry(3, True, (str(env.loop_file.parent),), write=True, read=False)
        return lambda: _fanotify(lambda: FanotifyTable(open_deny=[entry]))
    exec_pin = f"{env.pin_root}/exec-guard"
    if case.case == "deny set + scopes elsewhere":
        idle = env.idle_cgroup[1]
        table = ExecTable(deny=deny, allow=[ExecAllowList(idle, 10, frozenset({file_key("/bin/true")}))],
                          drift=[DriftScope(idle, 11)])
        return lambda: _bpf_guard(lambda: ExecGuard(pin_dir=exec_pin), table)
    if case.case == "allow-list on the loop's cgroup":
        cg = env.loop_cgroup[1]
        allowed = frozenset({file_key("/bin/true"), file_key(loadgen_path())})
        table = ExecTable(deny=deny, allow=[ExecAllowList(cg, 12, allowed)], drift=[DriftScope(cg, 13)])
        return lambda: _bpf_guard(lambda: ExecGuard(pin_dir=exec_pin), table)
    if case.case == "deny, unrelated port":
        net = NetTable(deny=[NetDeny(20, ports=[UNRELATED_PORT])])
        return lambda: _bpf_guard(lambda: NetGuard(pin_dir=f"{env.pin_root}/net-guard"), net)
    raise AssertionError(f"no guard for case {case.case!r}")


# --- what a BPF guard's programs cost per run ---------------------------------------------------------

@contextlib.contextmanager
def _bpf_stats() -> Iterator[None]:
    """Run-time statistics of every BPF program while inside (BPF_ENABLE_STATS: off again when
    the fd closes, so a crash cannot leave them on)."""
    import ctypes

    from lanner.sensor import libbpf

    so = libbpf.lib()
    enable = so.bpf_enable_stats
    enable.restype, enable.argtypes = ctypes.c_int, [ctypes.c_int]
    fd = enable(0)  # BPF_STATS_RUN_TIME
    if fd < 0:
        raise BenchError(f"BPF_ENABLE_STATS: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        os.close(fd)


def _prog_runs(prog_ids: list[int]) -> tuple[int, int]:
    """(runs, ns) summed over the programs, from their fdinfo."""
    import ctypes

    from lanner.sensor import libbpf

    get_fd = libbpf.lib().bpf_prog_get_fd_by_id
    get_fd.restype, get_fd.argtypes = ctypes.c_int, [ctypes.c_uint32]
    runs = ns = 0
    for pid in prog_ids:
        fd = get_fd(pid)
        if fd < 0:
            raise BenchError(f"BPF program {pid}: {os.strerror(ctypes.get_errno())}")
        try:
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        finally:
            os.close(fd)
        runs += int(info.get("run_cnt", 0))
        ns += int(info.get("run_time_ns", 0))
    return runs, ns


# --- the loops ---------------------------------------------------------------------------------------

def _loop(case: Case, env: Env, seconds: float) -> float:
    """Operations per second of one loadgen run. The loop runs in a session of its own, killed
    as a whole if we are interrupted (the connect loop forks a listener)."""
    cmd = [str(loadgen_path()), case.loop, f"{seconds:g}"]
    if case.loop in ("open", "write"):
        cmd += ["0", str(env.loop_file)]
    cgroup_procs = env.loop_cgroup[0] / "cgroup.procs"

    def enter_cgroup() -> None:  # in the forked child, before the exec
        with open(cgroup_procs, "w") as f:
            f.write("0")

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=enter_cgroup if case.in_cgroup else None)
    try:
        out, err = proc.communicate(timeout=seconds * 5 + 30)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"loadgen {case.loop} exited {proc.returncode}: {err.strip()[:300]}")
    ops, secs = out.split()
    return int(ops) / float(secs)


def _measure(case: Case, env: Env, seconds: float, rounds: int) -> dict[str, Any]:
    guard = _guard_for(case, env)
    _loop(case, env, min(seconds, 0.5))  # warm-up: page cache, first fork of a fresh binary
    off: list[float] = []
    on: list[float] = []
    events = decisions = 0
    responder_cpu = 0.0
    for r in range(rounds):
        for state in (("off", "on") if r % 2 == 0 else ("on", "off")):
            if state == "off":
                off.append(_loop(case, env, seconds))
                continue
            with guard() as checked:
                cpu = time.process_time()
                on.append(_loop(case, env, seconds))
                # this process does nothing else meanwhile: its CPU is the fanotify responder's
                responder_cpu += time.process_time() - cpu
            decisions += checked.decisions
            events += checked.events
    o, a = statistics.median(off), statistics.median(on)
    row: dict[str, Any] = {
        "mechanism": case.mechanism, "case": case.case, "loop": case.loop, "description": case.description,
        "off": round(o), "on": round(a), "ratio": round(a / o, 4),
        "added_us_per_op": round((1 / a - 1 / o) * 1e6, 2),
        "off_runs": [round(x) for x in off], "on_runs": [round(x) for x in on],
        # each round's on / off, the two runs next to each other: their spread is the noise
        "round_ratios": [round(y / x, 4) for x, y in zip(off, on, strict=True)],
        "decisions": decisions,
    }
    if case.mechanism == "fanotify":
        row["permission_events"] = events
        row["responder_cpu_us_per_event"] = round(responder_cpu / events * 1e6, 1) if events else None
    else:
        # One more "on" run, apart from the ratios (the statistics cost a clock read per program
        # run, for every BPF program of the machine): what the guard's programs take per run.
        with _bpf_stats(), guard() as checked:
            _loop(case, env, seconds)
            runs, ns = _prog_runs(checked.prog_ids)
        row["bpf_runs"] = runs
        row["bpf_ns_per_run"] = round(ns / runs) if runs else None
    return row


def bench_enforce(seconds: float = 3.0, rounds: int = 3) -> dict[str, Any]:
    """Every case of CASES, measured side by side; the result as a JSON-able dict."""
    loadgen_path()  # fail early, before anything is made
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        env = _environment(stack)
        for case in CASES:
            results.append(_measure(case, env, seconds, rounds))
    return {
        "benchmark": "enforce", "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, kernel {platform.release()}, "
                   f"Python {platform.python_version()}",
        "seconds": seconds, "rounds": rounds,
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "results": results,
    }


def run(seconds: float, rounds: int, as_json: bool) -> None:
    import click

    from lanner.response.exec_guard import GuardError

    if os.geteuid() != 0:
        click.echo("lanner bench enforce: needs root (it loads fanotify groups and BPF guards)", err=True)
        sys.exit(2)
    if seconds <= 0 or rounds < 1:
        click.echo("lanner bench enforce: --seconds must be positive and --rounds at least 1", err=True)
        sys.exit(2)
    try:
        res = bench_enforce(seconds, rounds)
    except (BenchError, GuardError, ValueError, OSError) as exc:
        click.echo(f"lanner bench enforce: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{res['date']}, {res['machine']}; {seconds:g} s per run, median of {rounds} alternated "
               f"off/on rounds; load average {res['load_average']['before'][0]} → {res['load_average']['after'][0]}")
    click.echo(f"{'mechanism':11} {'case':34} {'loop':8} {'off ops/s':>11} {'on ops/s':>11} {'on/off':>7} "
               f"{'rounds':>13} {'µs/op':>7}")
    for r in res["results"]:
        events = r.get("permission_events")
        if events is not None:
            per = r["responder_cpu_us_per_event"]
            extra = f"{events:,} permission events" + (f", responder {per} µs CPU each" if per is not None else "")
        else:
            extra = f"guard programs {r['bpf_ns_per_run']} ns per run ({r['bpf_runs']:,} runs)"
        if r["decisions"]:
            extra += f"; {r['decisions']} wrong decisions (the loop was denied or killed)"
        spread = f"{min(r['round_ratios']):.0%}–{max(r['round_ratios']):.0%}"
        click.echo(f"{r['mechanism']:11} {r['case']:34} {r['loop']:8} {r['off']:11,} {r['on']:11,} "
                   f"{r['ratio']:7.1%} {spread:>13} {r['added_us_per_op']:+7.2f}   {extra}")
