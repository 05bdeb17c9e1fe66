"""Container metadata on events, without judging a new container's first events blind.

Lookups in the container runtime are asynchronous (a few ms). An event of a container whose
metadata is not known yet is held, with the container's later events behind it in order, until
the metadata arrives or `wait_s` passes; then the events go on, with the metadata or counted as
judged without it. Host events never wait.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

from lanner.events import Container, Event


class ContainerLookup(Protocol):
    def get(self, container_id: str) -> Container | None:
        """The metadata if known; otherwise None (and a lookup is under way). Never blocks."""


class ContainerEnricher:
    def __init__(self, lookup: ContainerLookup, *, wait_s: float = 2.0, max_held: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self.wait_s = wait_s
        self.max_held = max_held
        self.clock = clock
        self._held: dict[str, deque[tuple[float, Event]]] = {}
        self._known: OrderedDict[str, Container] = OrderedDict()
        """Metadata seen lately, so a removed container's last events (its processes exiting while
        it is torn down, after the runtime forgot it) keep their context."""
        self.max_known = 4096
        self.held = 0
        self.without_metadata = 0
        """Container events passed on without metadata (the runtime did not answer in time)."""

    def add(self, evt: Event) -> list[Event]:
        """The events ready to evaluate now: this one, or none while its container is looked up."""
        proc = evt.proc
        cid = proc.container_id if proc is not None else ""
        if not cid:
            return [evt]
        queue = self._held.get(cid)
        if queue is None:  # nothing of this container waiting: it goes now if the metadata is known
            c = self._get(cid)
            if c is not None:
                evt.container = c
                return [evt]
            queue = self._held[cid] = deque()
        queue.append((self.clock() + self.wait_s, evt))
        self.held += 1
        if self.held > self.max_held:  # bounded: the oldest waiting container goes on without metadata
            return self._flush(next(iter(self._held)), None)
        return []

    def release(self) -> list[Event]:
        """Held events whose metadata arrived, or whose wait ran out."""
        out: list[Event] = []
        now = self.clock()
        for cid in list(self._held):
            c = self._get(cid)
            if c is not None:
                out += self._flush(cid, c)
            elif self._held[cid][0][0] <= now:
                out += self._flush(cid, None)
        return out

    def _flush(self, cid: str, c: Container | None) -> list[Event]:
        queue = self._held.pop(cid)
        self.held -= len(queue)
        if c is None:
            self.without_metadata += len(queue)
        out = []
        for _, evt in queue:
            evt.container = c
            out.append(evt)
        return out

    def drain(self) -> list[Event]:
        """Everything held, with what is known now (a stop)."""
        out: list[Event] = []
        for cid in list(self._held):
            out += self._flush(cid, self._get(cid))
        return out

    def _get(self, cid: str) -> Container | None:
        c = self.lookup.get(cid)
        known = self._known
        if c is None:
            return known.get(cid)
        if known.get(cid) is not c:
            known[cid] = c
            known.move_to_end(cid)
            if len(known) > self.max_known:
                known.popitem(last=False)
        return c
