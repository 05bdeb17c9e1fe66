"""Live kernel tests: one sensor for the session, attached for every supported event type.

Tests perform real actions in child processes (the sensor ignores the test process itself, as
the agent ignores itself) and look at the events of that child and its descendants.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lanner.events import Event, Process
from lanner.sensor.source import LiveSource
from tests.conftest import ROOT, require_or_skip


def _ancestor_pids(proc: Process | None) -> Iterator[int]:
    hops = 0
    while proc is not None and hops < 64:
        yield proc.pid
        proc = proc.parent
        hops += 1


class Live:
    """Collects every live event in a background thread; tests select the ones of their children."""

    def __init__(self, source: LiveSource | None = None) -> None:
        # raw mode by default: also the syscalls without a tracepoint of their own
        self.source = source if source is not None else LiveSource(None, raw=True)
        self.events: list[Event] = []
        self.received: dict[int, int] = {}
        """Event number -> when user space got it (ns since the epoch)."""
        self.exited: set[int] = set()
        self.cond = threading.Condition()
        self.stopping = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="live-sensor", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping:
                batch = self.source.poll(5)
                if batch:
                    now = time.time_ns()
                    with self.cond:
                        for evt in batch:
                            self.received[evt.num] = now
                            self.events.append(evt)
                            if evt.type == "procexit" and evt.proc is not None:
                                self.exited.add(evt.proc.pid)
                        self.cond.notify_all()
        except BaseException as exc:  # surfaced by the next wait()
            self.error = exc

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30, **kw: Any) -> list[Event]:
        """Run argv as a child and return the events of it and its descendants (after it exited)."""
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        out, err = proc.communicate(timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}: {err.decode(errors='replace')}")
        self.last_stdout = out.decode(errors="replace")
        return self.events_of(proc.pid)

    def py(self, code: str, **kw: Any) -> list[Event]:
        """Run a Python snippet as a child (its proc.name is python3...)."""
        return self.run(["/usr/bin/python3", "-c", code], **kw)

    def events_of(self, pid: int, timeout: float = 10) -> list[Event]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while pid not in self.exited:
                if self.error is not None:
                    raise self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no procexit event for pid {pid} within {timeout} s")
                self.cond.wait(left)
            time.sleep(0)  # events of descendants that outlived the child are not awaited
            return [e for e in self.events if pid in _ancestor_pids(e.proc)]

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10) -> Event:
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for evt in self.events[seen:]:
                    if pred(evt):
                        return evt
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected event not seen")
                self.cond.wait(left)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.source.close()


@pytest.fixture(scope="session")
def live() -> Iterator[Live]:
    if os.geteuid() != 0:
        require_or_skip("kernel tests need root")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        require_or_skip("kernel tests need BTF (/sys/kernel/btf/vmlinux)")
    if not (ROOT / "build" / "bpf" / "sensor.bpf.o").exists():
        require_or_skip("BPF objects not built (make setup)")
    lv = Live()
    try:
        yield lv
    finally:
        lv.close()
