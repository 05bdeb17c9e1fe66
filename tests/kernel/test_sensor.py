"""The sensor as a whole: capture and replay agree with the live run, loss is counted and raised,
only the syscalls the rules need are enabled, and the agent's own process is not watched."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lanner.engine import Engine
from lanner.eventfile import read_events
from lanner.events import Event
from lanner.rules import load
from lanner.sensor.drops import DROP_RULE, DropMonitor
from lanner.sensor.prefilter import OpenNeed, Prefilter, kernel_sends
from lanner.sensor.source import LiveSource
from tests.conftest import FALCO_RULES, ROOT
from tests.kernel.conftest import Live

LANNER = [sys.executable, "-m", "lanner"]
STABLE = FALCO_RULES / "falco_rules.yaml"


def poll_until(src: LiveSource, done: Callable[[Event], bool], timeout: float = 5) -> list[Event]:
    """Events from `src` until one satisfies `done` (or the timeout)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(done(e) for e in events):
        events += src.poll(5)
    return events


def child_exited(e: Event) -> bool:
    """A python3 child of this test process ended."""
    return e.type == "procexit" and e.proc is not None and e.proc.name == "python3" and e.proc.ppid == os.getpid()


def _messages(engine: Engine, events: list[Event]) -> list[tuple[str, str]]:
    return sorted((a.rule, a.message) for e in events for a in engine.process(e))


def _scenario(tmp: Path) -> list[str]:
    """A program doing three things Falco's stable rules flag."""
    link = tmp / "shadow-link"
    code = (f"import os, subprocess\nos.symlink('/etc/shadow', {str(link)!r})\n"
            "open('/etc/../etc/../etc/passwd').close()\n"
            f"subprocess.run(['find', {str(tmp)!r}, '-name', 'id_rsa'])\nos.unlink({str(link)!r})")
    return ["/usr/bin/python3", "-c", code]


def test_capture_replays_to_the_live_alerts(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "capture.jsonl"
    cap = subprocess.Popen([*LANNER, "capture", "-w", str(out), "-r", str(STABLE)], cwd=ROOT,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stderr is not None
        line = cap.stderr.readline()
        assert "capturing" in line, line
        events = live.run(_scenario(tmp_path))
        time.sleep(0.3)  # the capture's reader drains at least every few ms
    finally:
        cap.send_signal(signal.SIGINT)
        _, err = cap.communicate(timeout=30)
    assert cap.returncode == 0, err
    assert "events written" in err and "lost 0" in err, err

    engine = Engine(load([STABLE]), rule_matching="all")
    live_alerts = _messages(engine, events)
    assert {r for r, _ in live_alerts} >= {"Create Symlink Over Sensitive Files",
                                           "Directory traversal monitored file read",
                                           "Search Private Keys or Passwords"}
    shell_pid = next(e.proc.pid for e in events if e.type == "execve" and e.proc and e.proc.name == "python3")

    def mine(e: Event) -> bool:
        p, hops = e.proc, 0
        while p is not None and hops < 64:
            if p.pid == shell_pid:
                return True
            p, hops = p.parent, hops + 1
        return False

    captured = [e for e in read_events(out) if mine(e)]
    assert captured, "the capture holds none of the scenario's events"
    assert _messages(engine, captured) == live_alerts

    # and through the command a user runs
    only = tmp_path / "scenario.jsonl"
    with open(out) as src, open(only, "w") as dst:
        for raw, evt in zip(src, read_events(out), strict=True):
            if mine(evt):
                dst.write(raw)
    res = subprocess.run([*LANNER, "replay", str(only), "-r", str(STABLE), "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    replayed = [json.loads(x) for x in res.stdout.splitlines()]
    first = Engine(load([STABLE]))  # replay's default rule_matching is "first"
    assert sorted((a["rule"], a["output"].split(": ", 1)[1].split(" ", 1)[1]) for a in replayed) == \
        _messages(first, captured)


def test_drops_are_counted_and_raised() -> None:
    with LiveSource({"openat"}, ring_bytes=8192) as src:
        # nothing reads the ring while a child opens files 2,000 times: it overflows
        subprocess.run(["/usr/bin/python3", "-c",
                        "import os\nfor _ in range(2000): os.close(os.open('/etc/hostname', os.O_RDONLY))"],
                       check=True)
        for _ in range(20):
            src.poll(1)
        c = src.counters()
        assert c.dropped > 0 and c.lost == c.dropped
        assert c.sent + c.dropped >= 2000
        clock = [100.0]
        mon = DropMonitor(interval_s=30, clock=lambda: clock[0])
        alert = mon.check(c)
        assert alert is not None and alert.rule == DROP_RULE and alert.priority == "Critical"
        assert alert.output_fields["lanner.drops.kernel"] == c.dropped
        assert str(c.dropped) in alert.message
        assert mon.check(c) is None                     # nothing new
        c.dropped += 5
        clock[0] += 10
        assert mon.check(c) is None                     # new loss, but within 30 s of the last alert
        clock[0] += 21
        again = mon.check(c)
        assert again is not None and again.output_fields["lanner.drops.new"] == 5


def test_only_the_syscalls_the_rules_need(tmp_path: Path) -> None:
    rules = load([STABLE])
    types = Engine(rules).event_types()
    assert types is not None and "mkdir" not in types and "openat" in types
    with LiveSource(types) as src:
        enabled = {s.name for s in src.syscalls}
        assert {"openat", "execve", "connect", "ptrace"} <= enabled
        assert not enabled & {"mkdir", "mkdirat", "unlink", "kill", "bind"}
        d = tmp_path / "made"
        subprocess.run(["/bin/sh", "-c", f"mkdir {d} && cat /etc/hostname > /dev/null"], check=True)
        events = poll_until(src, lambda e: e.type == "procexit" and e.proc is not None and e.proc.name == "cat")
        mine = [e for e in events if e.proc and e.proc.name in ("mkdir", "cat", "sh")]
        assert any(e.type == "openat" and e.args.get("name") == "/etc/hostname" for e in mine)
        assert not any(e.type in ("mkdir", "mkdirat") for e in mine)
        # only the selected syscalls' exit tracepoints have a program attached
        attached = set(src.kernel.programs.links)
        assert "exit_openat" in attached and "exit_mkdir" not in attached and "on_sys_exit" not in attached
        tracefs = set(os.listdir("/sys/kernel/tracing/events/syscalls"))
        assert src.kernel.uncaptured == sorted(s.name for s in src.syscalls
                                               if f"sys_exit_{s.tracepoint}" not in tracefs)

        # a reload that needs mkdir: attached in place, then captured
        src.reconfigure(types | {"mkdir"}, None)
        assert "exit_mkdir" in src.kernel.programs.links
        d2 = tmp_path / "made2"
        subprocess.run(["mkdir", str(d2)], check=True)
        later = poll_until(src, lambda e: e.type == "mkdir")
        assert any(e.type == "mkdir" and e.args.get("path") == str(d2) for e in later)


def test_the_agent_process_is_not_watched(live: Live) -> None:
    marker = f"/etc/hostname-lanner-self-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.open(marker, os.O_RDONLY)  # by the process that runs the sensor: filtered in the kernel
    events = live.py(f"import os\ntry: os.open({marker!r}, os.O_RDONLY)\nexcept OSError: pass")
    assert any(e.args.get("name") == marker for e in events)      # a child is watched
    with live.cond:
        assert not any(e.proc is not None and e.proc.pid == os.getpid() for e in live.events)


@pytest.mark.parametrize("flag", ["--filter", "-r"])
def test_capture_rejects_bad_input(tmp_path: Path, flag: str) -> None:
    bad = "evt.type = open and (" if flag == "--filter" else str(tmp_path / "missing.yaml")
    res = subprocess.run([*LANNER, "capture", "-w", str(tmp_path / "x.jsonl"), flag, bad, "--duration", "1"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode in (1, 2)
    assert "Traceback" not in res.stderr and res.stderr.strip()


def test_kernel_prefilter_agrees_with_its_model(tmp_path: Path) -> None:
    """The kernel drops exactly the opens the model says no rule can match, and counts them."""
    target = tmp_path / "f"
    target.write_text("x")
    need = OpenNeed(exact=frozenset({"/etc/hostname"}), prefixes=frozenset({"/etc/ssl/"}), flags_any=os.O_TRUNC)
    cases = [("/etc/hostname", os.O_RDONLY), ("/etc/hosts", os.O_RDONLY), ("/etc/hostnamex", os.O_RDONLY),
             ("/etc/ssl/openssl.cnf", os.O_RDONLY), ("/etc//hosts", os.O_RDONLY), ("/etc/../etc/hosts", os.O_RDONLY),
             ("/etc/./hosts", os.O_RDONLY), ("hosts", os.O_RDONLY), (str(target), os.O_WRONLY),
             (str(target), os.O_WRONLY | os.O_TRUNC), ("/etc/ssl", os.O_RDONLY | os.O_DIRECTORY)]
    code = "import os\nos.chdir('/etc')\n" + "".join(
        f"try: os.close(os.open({p!r}, {f}))\nexcept OSError: pass\n" for p, f in cases)
    with LiveSource({"openat"}, prefilter=Prefilter({"openat": need})) as src:
        subprocess.run(["/usr/bin/python3", "-c", code], check=True)
        events = poll_until(src, child_exited)
        seen = {(e.args.get("name"), e.args.get("flags", 0) & ~os.O_CLOEXEC) for e in events
                if e.type == "openat" and e.proc is not None and e.proc.name == "python3"}
        filtered = src.counters().filtered
    for path, flags in cases:
        expected = kernel_sends(need, path, flags)
        assert ((path, flags) in seen) == expected, (path, oct(flags), expected)
    assert filtered >= sum(not kernel_sends(need, p, f) for p, f in cases)


def test_tcp_sends_dropped_in_the_kernel_when_no_rule_needs_them() -> None:
    code = ("import socket\nsrv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n"
            "c = socket.create_connection(srv.getsockname()); c.send(b'tcp-payload')\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', ('127.0.0.1', 9))\n")
    with LiveSource({"sendto"}, prefilter=Prefilter({}, frozenset({"sendto"}))) as src:
        subprocess.run(["/usr/bin/python3", "-c", code], check=True)
        events = poll_until(src, child_exited)
        sends = [e for e in events if e.type == "sendto" and e.proc is not None and e.proc.ppid == os.getpid()]
        assert [e.fd.l4proto if e.fd else None for e in sends] == ["udp"]
        assert src.counters().filtered >= 1
