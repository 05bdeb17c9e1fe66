"""The reactive actions of rules the engine matched: kill the process, stop the container through
the CRI, or isolate the container (cut its network with the network guard).

These act after the event, unlike ``block``; they are for what the kernel cannot decide up front.
Each call returns the result word alerts and metrics use; nothing here raises into the event loop.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Protocol

from lanner.events import Event
from lanner.response.safety import Protection


class ContainerStopper(Protocol):
    def stop_container(self, container_id: str, *, grace_s: int = 0, timeout_s: float | None = None) -> str: ...


Isolator = Callable[[int, int], str]
"""isolate(cgroup_id, rule_id) → "" or why it failed."""
Done = Callable[[str, str], None]
"""done(result, error) — how a slow action (stop) reports back."""

_REMEMBER_S = 60.0


class Responder:
    """Carries out kill, stop and isolate, at most once per process or container per rule."""

    def __init__(self, protection: Protection, *, stopper: ContainerStopper | None = None,
                 isolate: Isolator | None = None, cgroup_of: Callable[[int, str], int] | None = None) -> None:
        self.protection = protection
        self.stopper = stopper
        self.isolate_fn = isolate
        self.cgroup_of = cgroup_of
        self._done: dict[tuple[str, str], float] = {}
        self._stops: queue.Queue[tuple[str, Done] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def act(self, action: str, enforce: bool, rule: str, rule_id: int, evt: Event,
            done: Done) -> tuple[str, str] | None:
        """(result, error) now, or None when the result will come through ``done`` (stop)."""
        proc = evt.proc
        pid = proc.pid if proc is not None else -1
        if action == "kill":
            return self._kill(pid, enforce, rule)
        cid = proc.container_id if proc is not None else ""
        if not cid or cid == "host":
            return "failed", f"{action} needs a container; the process runs on the host"
        gate = self._gate(rule, f"{action}:{cid}", enforce)
        if gate is not None:
            return gate
        if action == "stop":
            if self.stopper is None:
                return "failed", "no container runtime connection"
            self._start_worker()
            self._stops.put((cid, done))
            return None
        if action == "isolate":
            if self.isolate_fn is None or self.cgroup_of is None:
                return "failed", "the network guard is not running"
            cgroup = self.cgroup_of(pid, cid)
            if not cgroup:
                return "failed", f"the cgroup of container {cid[:12]} is unknown"
            try:
                err = self.isolate_fn(cgroup, rule_id)
            except (OSError, ValueError) as e:  # never into the event loop
                err = str(e)
            return ("failed", err) if err else ("isolated", "")
        return "failed", f"unknown action {action}"

    def _kill(self, pid: int, enforce: bool, rule: str) -> tuple[str, str]:
        if pid <= 0:
            return "failed", "the process is unknown"
        why = self.protection.why_protected(pid)
        if why:
            return "protected", f"not killed: {why}"
        gate = self._gate(rule, f"kill:{pid}", enforce)
        if gate is not None:
            return gate
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return "failed", "the process had already exited"
        except OSError as e:
            return "failed", e.strerror or str(e)
        return "killed", ""

    def _gate(self, rule: str, target: str, enforce: bool) -> tuple[str, str] | None:
        """The result when the action is not carried out: done already for this rule and target in the
        last minute, or monitor mode; None to go ahead."""
        if self._seen((rule, target)):
            return "duplicate", ""
        return None if enforce else ("allowed", "")

    def _seen(self, key: tuple[str, str]) -> bool:
        now = time.monotonic()
        if len(self._done) > 10_000:
            self._done = {k: t for k, t in self._done.items() if now - t < _REMEMBER_S}
        last = self._done.get(key)
        if last is not None and now - last < _REMEMBER_S:
            return True
        self._done[key] = now
        return False

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="stop-container", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._stops.get()
            if item is None:
                return
            cid, done = item
            assert self.stopper is not None
            try:
                err = self.stopper.stop_container(cid, grace_s=0)
            except Exception as e:  # a runtime failure must not end the worker
                err = f"{type(e).__name__}: {e}"
            done("failed" if err else "stopped", err)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued stops (bounded) and end the worker."""
        if self._worker is not None:
            self._stops.put(None)
            self._worker.join(timeout_s)
            self._worker = None
