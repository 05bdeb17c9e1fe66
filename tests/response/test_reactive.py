"""kill / stop / isolate: what they do, what they refuse, and that each happens once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from lanner.events import Event, Process
from lanner.response.reactive import Done, Responder
from lanner.response.safety import Protection, file_key, is_kernel_thread


def _evt(pid: int, container_id: str = "") -> Event:
    return Event(type="execve", proc=Process(pid=pid, container_id=container_id))


def _results() -> tuple[list[tuple[str, str]], Done]:
    got: list[tuple[str, str]] = []

    def done(result: str, error: str) -> None:
        got.append((result, error))

    return got, done


def test_kill_kills_once_and_monitor_lets_live() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        r = Responder(Protection(os.getpid()))
        _got, done = _results()
        assert r.act("kill", False, "rule", 1, _evt(child.pid), done) == ("allowed", "")
        time.sleep(0.1)
        assert child.poll() is None
        r2 = Responder(Protection(os.getpid()))
        assert r2.act("kill", True, "rule", 1, _evt(child.pid), done) == ("killed", "")
        assert child.wait(5) == -9
        assert r2.act("kill", True, "rule", 1, _evt(child.pid), done) == ("duplicate", "")
    finally:
        child.kill()
        child.wait()


def test_never_kills_the_agent_pid1_kernel_threads_or_protected_programs() -> None:
    prot = Protection(os.getpid(), [sys.executable, "/nonexistent/prog"])
    assert prot.missing == ["/nonexistent/prog"]
    r = Responder(prot)
    _got, done = _results()
    assert r.act("kill", True, "r", 1, _evt(os.getpid()), done) == ("protected", "not killed: the agent itself")
    assert r.act("kill", True, "r", 1, _evt(1), done) == ("protected", "not killed: pid 1")
    assert is_kernel_thread(2)
    kthread = r.act("kill", True, "r", 1, _evt(2), done)
    assert kthread is not None and kthread[0] == "protected"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        result = r.act("kill", True, "r", 1, _evt(child.pid), done)
        assert result is not None and result[0] == "protected" and sys.executable in result[1]
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert file_key(sys.executable) in prot.files


class _Runtime:
    def __init__(self, err: str = "") -> None:
        self.stopped: list[str] = []
        self.err = err

    def stop_container(self, container_id: str, *, grace_s: int = 0, timeout_s: float | None = None) -> str:
        self.stopped.append(container_id)
        return self.err


def test_stop_goes_through_the_runtime_in_the_background() -> None:
    rt = _Runtime()
    r = Responder(Protection(os.getpid()), stopper=rt)
    got, done = _results()
    assert r.act("stop", True, "r", 1, _evt(1234, "c" * 64), done) is None
    assert r.act("stop", True, "r", 1, _evt(1235, "c" * 64), done) == ("duplicate", "")
    r.close()
    assert rt.stopped == ["c" * 64] and got == [("stopped", "")]
    assert r.act("stop", True, "r", 1, _evt(1, ""), done) == (
        "failed", "stop needs a container; the process runs on the host")
    failing = Responder(Protection(os.getpid()), stopper=_Runtime("NOT_FOUND"))
    got2, done2 = _results()
    failing.act("stop", True, "r", 1, _evt(5, "d" * 64), done2)
    failing.close()
    assert got2 == [("failed", "NOT_FOUND")]


def test_isolate_asks_the_network_guard_for_the_cgroup() -> None:
    calls: list[tuple[int, int]] = []

    def isolate(cg: int, rule_id: int) -> str:
        calls.append((cg, rule_id))
        return ""

    r = Responder(Protection(os.getpid()), isolate=isolate, cgroup_of=lambda pid, cid: 4242)
    _got, done = _results()
    assert r.act("isolate", True, "r", 7, _evt(99, "e" * 64), done) == ("isolated", "")
    assert calls == [(4242, 7)]
    assert r.act("isolate", False, "r2", 7, _evt(99, "e" * 64), done) == ("allowed", "")
    assert calls == [(4242, 7)]
