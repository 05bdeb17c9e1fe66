"""Enforcement through the agent, on the real kernel: `lanner run` with block and kill rules.

What a user checks: the forbidden exec fails (EPERM) however the program is named and its marker
file is never written; a write below the protected directory fails while reads there work; a
connect to the forbidden port fails for IPv4 and IPv6 while another port works; a kill rule kills;
each decision is an alert of its rule in Falco's JSON with lanner.action/mode/result; monitor mode
lets everything through with the same alerts marked mode=monitor; the agent itself is never
blocked (its alert file lives in the protected directory and its HTTP output goes to the
forbidden port); protected programs are exempt.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lanner.simulate.listener import Listener
from tests.agent_support import Agent, Receiver, free_port, require_agent_machine, wait_until

MARKER_C = r"""
#include <stdio.h>
int main(int argc, char **argv) { FILE *f = fopen(argv[1], "w"); if (!f) return 3; fputs("ran\n", f); return 0; }
"""

# Runs in a child: exec the program the way argv[1] says, report the errno on stdout.
EXEC_WAYS = textwrap.dedent(r"""
    import ctypes, os, sys
    way, prog, marker = sys.argv[1:4]
    try:
        if way == "absolute":
            os.execv(prog, [prog, marker])
        elif way == "relative":
            os.chdir(os.path.dirname(prog))
            os.execv("./" + os.path.basename(prog), ["x", marker])
        elif way == "execveat":
            libc = ctypes.CDLL(None, use_errno=True)
            dirfd = os.open(os.path.dirname(prog), os.O_RDONLY | os.O_DIRECTORY)
            argv = (ctypes.c_char_p * 3)(b"x", marker.encode(), None)
            envp = (ctypes.c_char_p * 1)(None)
            libc.syscall(322, dirfd, os.path.basename(prog).encode(), argv, envp, 0)  # SYS_execveat
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except OSError as e:
        print(e.errno)
        sys.exit(0)
""")


@dataclass
class Lab:
    root: Path
    evil: Path
    victim: Path
    allowed: Path
    protected: Path
    trusted_sh: Path
    port_denied: int
    port_open: int
    receiver: Receiver
    """The falcosidekick stand-in the agents post to, on the forbidden port."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_agent_machine()
    root = tmp_path_factory.mktemp("enforce")
    src = root / "marker.c"
    src.write_text(MARKER_C)
    evil = root / "bin" / "evil"
    evil.parent.mkdir()
    subprocess.run(["gcc", "-O1", "-o", str(evil), str(src)], check=True)
    victim, allowed = root / "bin" / "victim", root / "bin" / "allowed"
    shutil.copy("/bin/sleep", victim)
    shutil.copy(evil, allowed)
    (root / "bin" / "evil-symlink").symlink_to(evil)
    os.link(evil, root / "bin" / "evil-hardlink")
    protected = root / "protected"
    (protected / "sub").mkdir(parents=True)
    (protected / "sub" / "readme").write_text("readable\n")
    trusted_sh = root / "bin" / "trusted-sh"
    shutil.copy("/bin/sh", trusted_sh)
    port_denied = free_port()
    receiver = Receiver(port_denied)
    receiver.start()
    other = Listener("127.0.0.1")
    listeners = [Listener("::1", port_denied), other, Listener("::1", other.port)]
    yield Lab(root, evil, victim, allowed, protected, trusted_sh, port_denied, other.port, receiver)
    receiver.stop()
    for listener in listeners:
        listener.close()


def _rules(lab: Lab) -> str:
    return textwrap.dedent(f"""\
        - rule: Forbidden program
          desc: test
          condition: evt.type in (execve, execveat) and proc.exepath = {lab.evil}
          output: forbidden program (proc.exepath=%proc.exepath parent=%proc.pname)
          priority: WARNING
          action: block
        - rule: Write below protected
          desc: test
          condition: >-
            evt.type in (open, openat, openat2, creat) and evt.is_open_write = true
            and fd.name startswith {lab.protected}/
          output: write below protected (file=%fd.name proc=%proc.name)
          priority: ERROR
          action: block
        - rule: Forbidden port
          desc: test
          condition: evt.type in (connect, sendto) and fd.sport = {lab.port_denied}
          output: forbidden port (connection=%fd.name proc=%proc.name)
          priority: WARNING
          action: block
        - rule: Kill victim
          desc: test
          condition: evt.type in (execve, execveat) and proc.exepath = {lab.victim}
          output: victim started (proc.exepath=%proc.exepath)
          priority: WARNING
          action: kill
        """)


def _agent(lab: Lab, name: str, mode: str) -> Agent:
    rules = lab.root / f"{name}-rules.yaml"
    rules.write_text(_rules(lab))
    # The agent's own alert file is below the protected directory and its HTTP output goes to the
    # forbidden port: the agent must never be blocked by its own policies.
    out_dir = lab.protected / f"{name}-out"
    out_dir.mkdir()
    config = (f"enforcement:\n  mode: {mode}\n  protected_programs: [{lab.trusted_sh}]\n"
              f"rules_files: [{rules}]\n")
    outputs = f"  - kind: http\n    url: http://127.0.0.1:{lab.port_denied}/\n"
    return Agent(out_dir, name, config, outputs)


@pytest.fixture(scope="module")
def enforcing(lab: Lab) -> Iterator[Agent]:
    agent = _agent(lab, "enforce", "enforce")
    yield agent
    assert agent.stop() == 0


@pytest.fixture(scope="module")
def monitoring(lab: Lab, enforcing: Agent) -> Iterator[Agent]:
    assert enforcing.stop() == 0  # one agent at a time: the enforcing one would block this one's set-up
    agent = _agent(lab, "monitor", "monitor")
    yield agent
    assert agent.stop() == 0


def _exec(way: str, prog: Path, marker: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", EXEC_WAYS, way, str(prog), str(marker)], capture_output=True,
                          text=True, timeout=30)


def _alerts(agent: Agent, rule: str, n: int) -> list[dict[str, Any]]:
    return wait_until(lambda: [a for a in agent.json_alerts() if a["rule"] == rule][n - 1:] and
                      [a for a in agent.json_alerts() if a["rule"] == rule], f"{n} alerts of {rule!r}")


def _connect(family: int, port: int) -> int:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.connect(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
    except OSError as e:
        return e.errno or -1
    finally:
        s.close()
    return 0


WAYS = [("absolute", "evil"), ("relative", "evil"), ("absolute", "evil-symlink"), ("absolute", "evil-hardlink"),
        ("execveat", "evil")]


def test_forbidden_exec_fails_with_eperm_however_it_is_named(lab: Lab, enforcing: Agent) -> None:
    for i, (way, name) in enumerate(WAYS):
        marker = lab.root / f"enforce-exec-{i}"
        out = _exec(way, lab.evil.parent / name, marker)
        assert out.stdout.strip() == "1", f"{way} {name}: {out.stdout!r} {out.stderr!r}"  # EPERM
        assert not marker.exists(), f"{way} {name}: the forbidden program ran"
    shell = subprocess.run(["/bin/sh", "-c", f"{lab.evil} {lab.root / 'enforce-exec-sh'}"], capture_output=True)
    assert shell.returncode == 126 and not (lab.root / "enforce-exec-sh").exists()
    ok = subprocess.run([str(lab.allowed), str(lab.root / "allowed-ran")])
    assert ok.returncode == 0 and (lab.root / "allowed-ran").exists()

    alerts = _alerts(enforcing, "Forbidden program", len(WAYS) + 1)
    for a in alerts:
        assert a["lanner"]["action"] == "block" and a["lanner"]["mode"] == "enforce"
        assert a["lanner"]["result"] == "blocked" and a["lanner"]["mechanism"] == "fanotify"
        assert a["priority"] == "Warning" and a["source"] == "syscall"
    # the file the kernel resolved: a symlink leads to the program, a hard link is its other name
    assert {a["output_fields"]["proc.exepath"] for a in alerts} == {str(lab.evil), str(lab.evil) + "-hardlink"}
    assert enforcing.metrics().get(("lanner_enforcement_decisions_total", (
        ("action", "block"), ("mode", "enforce"), ("result", "blocked"), ("rule", "Forbidden program")))) \
        == len(alerts)


def test_write_below_protected_fails_and_reads_work(lab: Lab, enforcing: Agent) -> None:
    target = lab.protected / "sub" / "new-file"
    with pytest.raises(PermissionError):
        target.write_text("x")
    with pytest.raises(PermissionError):
        os.open(lab.protected / "sub" / "readme", os.O_WRONLY | os.O_TRUNC)
    assert (lab.protected / "sub" / "readme").read_text() == "readable\n"
    # nothing was written: a denied O_CREAT may leave an empty file behind (fanotify decides after the create)
    assert not target.exists() or target.read_text() == ""
    alerts = _alerts(enforcing, "Write below protected", 2)
    assert {a["output_fields"]["fd.name"] for a in alerts} >= {str(target), str(lab.protected / "sub" / "readme")}
    assert all(a["lanner"]["result"] == "blocked" and a["priority"] == "Error" for a in alerts)


def test_connect_to_the_forbidden_port_fails_for_ipv4_and_ipv6(lab: Lab, enforcing: Agent) -> None:
    assert _connect(socket.AF_INET, lab.port_denied) == 1
    assert _connect(socket.AF_INET6, lab.port_denied) == 1
    assert _connect(socket.AF_INET, lab.port_open) == 0
    assert _connect(socket.AF_INET6, lab.port_open) == 0
    alerts = _alerts(enforcing, "Forbidden port", 2)
    names = {a["output_fields"]["fd.name"] for a in alerts}
    assert f"->127.0.0.1:{lab.port_denied}" in names and f"->[::1]:{lab.port_denied}" in names
    assert all(a["lanner"]["mechanism"] == "cgroup-net" and a["lanner"]["result"] == "blocked" for a in alerts)


def test_kill_rule_kills_the_process(lab: Lab, enforcing: Agent) -> None:
    proc = subprocess.Popen([str(lab.victim), "30"])  # a copy of sleep
    assert proc.wait(timeout=20) == -9
    (alert,) = _alerts(enforcing, "Kill victim", 1)
    assert alert["lanner"]["action"] == "kill" and alert["lanner"]["mode"] == "enforce"
    assert alert["lanner"]["result"] == "killed" and alert["output_fields"]["proc.exepath"] == str(lab.victim)


def test_the_agent_and_protected_programs_are_never_blocked(lab: Lab, enforcing: Agent) -> None:
    # The agent wrote every alert above into the protected directory and delivered them over HTTP to the
    # forbidden port.
    written = enforcing.json_alerts()
    assert enforcing.json_file.is_relative_to(lab.protected) and written
    wait_until(lambda: len(lab.receiver.bodies) >= len(written), "the alerts at the HTTP receiver")
    assert not any("Operation not permitted" in line for line in enforcing.stderr)
    target = lab.protected / "sub" / "by-trusted"
    done = subprocess.run([str(lab.trusted_sh), "-c", f"echo trusted > {target}"])
    assert done.returncode == 0 and target.read_text() == "trusted\n"


def test_a_program_replaced_by_a_new_file_is_blocked_again(lab: Lab, enforcing: Agent) -> None:
    # A package upgrade writes a new file (new inode) at the listed path: the policy follows the path.
    fresh = lab.evil.parent / "evil.new"
    shutil.copy(lab.allowed, fresh)
    os.replace(fresh, lab.evil)

    def blocked() -> bool:
        marker = lab.root / "replaced-ran"
        marker.unlink(missing_ok=True)
        return _exec("absolute", lab.evil, marker).stdout.strip() == "1" and not marker.exists()

    wait_until(blocked, "the replaced program blocked again", timeout=15)


def test_monitor_mode_lets_everything_through_with_the_same_alerts(lab: Lab, monitoring: Agent) -> None:
    marker = lab.root / "monitor-exec"
    out = _exec("absolute", lab.evil, marker)
    assert out.returncode == 0 and marker.read_text() == "ran\n"
    target = lab.protected / "sub" / "monitored"
    target.write_text("x")
    assert target.read_text() == "x"
    assert _connect(socket.AF_INET, lab.port_denied) == 0
    for rule in ("Forbidden program", "Write below protected", "Forbidden port"):
        (alert, *_rest) = _alerts(monitoring, rule, 1)
        assert alert["lanner"]["mode"] == "monitor" and alert["lanner"]["result"] == "allowed", alert
    (prog,) = [a for a in monitoring.json_alerts() if a["rule"] == "Forbidden program"]
    assert prog["output_fields"]["proc.exepath"] == str(lab.evil)


def test_a_reload_swaps_the_policy_and_an_unenforceable_rule_is_refused(lab: Lab, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    first, second = lab.root / "bin" / "first", lab.root / "bin" / "second"
    shutil.copy(lab.allowed, first)
    shutil.copy(lab.allowed, second)

    def block(prog: Path) -> str:
        return (f"- rule: Forbidden\n  desc: t\n  condition: evt.type = execve and proc.exepath = {prog}\n"
                "  output: forbidden %proc.exepath\n  priority: WARNING\n  action: block\n")

    rules.write_text(block(first))
    agent = Agent(tmp_path, "reload", f"enforcement:\n  mode: enforce\nrules_files: [{rules}]\n")
    try:
        assert _exec("absolute", first, tmp_path / "m1").stdout.strip() == "1"
        rules.write_text(block(second))
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("reloaded" in line for line in agent.stderr), "the reload")
        assert _exec("absolute", first, tmp_path / "m2").returncode == 0 and (tmp_path / "m2").exists()
        assert _exec("absolute", second, tmp_path / "m3").stdout.strip() == "1"
        # A reload whose block rule cannot be enforced is refused; the running policy stays.
        rules.write_text(block(first).replace(f"proc.exepath = {first}", "proc.name = first"))
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("reload failed" in line for line in agent.stderr), "the refused reload")
        assert any("clause 'proc.name = first' cannot be enforced" in line for line in agent.stderr)
        assert _exec("absolute", second, tmp_path / "m4").stdout.strip() == "1"
    finally:
        assert agent.stop() == 0
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m3").exists() and not (tmp_path / "m4").exists()
    # After the stop nothing is enforced any more.
    assert _exec("absolute", second, tmp_path / "m5").returncode == 0 and (tmp_path / "m5").exists()
    # And the agent refuses to start with it.
    out = subprocess.run([sys.executable, "-m", "lanner", "run", "-r", str(rules)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "clause 'proc.name = first' cannot be enforced" in out.stderr


def test_exec_deny_by_kill_kills_before_the_first_instruction(lab: Lab, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    prog = lab.root / "bin" / "killed-at-exec"
    shutil.copy(lab.allowed, prog)
    rules.write_text(f"- rule: Killed at exec\n  desc: t\n  condition: evt.type in (execve, execveat) and "
                     f"proc.exepath = {prog}\n  output: killed %proc.exepath\n  priority: WARNING\n  action: block\n")
    agent = Agent(tmp_path, "kill", f"enforcement:\n  mode: enforce\n  exec_deny: kill\nrules_files: [{rules}]\n")
    try:
        for i, way in enumerate(("absolute", "relative", "execveat")):
            out = _exec(way, prog, tmp_path / f"k{i}")
            assert out.returncode == -9, (way, out)
            assert not (tmp_path / f"k{i}").exists()
        alerts = _alerts(agent, "Killed at exec", 3)
        assert all(a["lanner"]["result"] == "killed" and a["lanner"]["mechanism"] == "exec-kill" for a in alerts)
        assert all(a["output_fields"]["proc.exepath"] == str(prog) for a in alerts)
    finally:
        assert agent.stop() == 0


def test_a_throttled_kill_rule_still_kills(lab: Lab, tmp_path: Path) -> None:
    """Throttling limits alerts, never actions: the second victim dies though its alert is suppressed."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"- rule: Kill victim\n  desc: t\n  condition: evt.type in (execve, execveat) and "
                     f"proc.exepath = {lab.victim}\n  output: victim %proc.pid\n  priority: WARNING\n  action: kill\n")
    agent = Agent(tmp_path, "throttled", f"enforcement:\n  mode: enforce\nrules_files: [{rules}]\n"
                  "throttle_rule: {rate: 0.001, burst: 1}\n")
    try:
        for _ in range(2):
            assert subprocess.Popen([str(lab.victim), "30"]).wait(timeout=20) == -9
        wait_until(lambda: agent.metrics().get(("lanner_enforcement_decisions_total", (
            ("action", "kill"), ("mode", "enforce"), ("result", "killed"), ("rule", "Kill victim")))) == 2,
            "two kills counted")
        assert len([a for a in agent.json_alerts() if a["rule"] == "Kill victim"]) == 1
    finally:
        assert agent.stop() == 0


def test_a_policy_the_mechanism_refuses_stops_the_agent_with_a_clear_error(tmp_path: Path) -> None:
    """The open guard never marks procfs (its responder reads it): the agent says so and exits 2."""
    require_agent_machine()
    rules = tmp_path / "rules.yaml"
    rules.write_text("- rule: Proc writes\n  desc: t\n  condition: evt.type = openat and evt.is_open_write = true and "
                     "fd.name startswith /proc/sys/\n  output: x %fd.name\n  priority: WARNING\n  action: block\n")
    out = subprocess.run([sys.executable, "-m", "lanner", "run", "-r", str(rules)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out
    assert "enforcement" in out.stderr and "procfs" in out.stderr and "Traceback" not in out.stderr
