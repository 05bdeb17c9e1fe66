"""Live events: the kernel sensor's records through the state tracker, as Event objects.

`LiveSource` is the live counterpart of `lanner.eventfile.read_events`: both hand the engine the
same Event objects. It owns the loaded kernel program and the state tables; it neither
evaluates rules nor raises alerts (the agent does, from `counters()`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lanner.events import Event
from lanner.sensor import syscalls
from lanner.sensor.enrich import ContainerEnricher, ContainerLookup
from lanner.sensor.loader import Counters, KernelSensor
from lanner.sensor.prefilter import Prefilter
from lanner.sensor.records import Clock, RecordError, decode
from lanner.state import StateTracker
from lanner.state.cgroups import CgroupResolver


@dataclass(slots=True)
class SourceCounters:
    """Kernel counters plus what user space lost: nothing may disappear without being counted."""

    sent: int = 0
    dropped: int = 0
    """Records the kernel could not put in the ring buffer (it was full)."""
    truncated: int = 0
    """Paths longer than the kernel walk allows (reported cut)."""
    filtered: int = 0
    """Opens no rule could match, dropped in the kernel on purpose (not loss)."""
    undecodable: int = 0
    """Records user space could not decode (counted as lost)."""
    failed: int = 0
    """Records the state layer failed on (counted as lost)."""
    received: int = 0
    events: int = 0
    without_metadata: int = 0
    """Container events judged without container metadata (the runtime did not answer in time)."""
    held: int = 0
    """Container events waiting for metadata right now."""

    @property
    def lost(self) -> int:
        return self.dropped + self.undecodable + self.failed


class LiveSource:
    """Attach the sensor for `event_types` (None: every supported event) and yield live Events."""

    def __init__(self, event_types: Iterable[str] | None = None, *, ring_bytes: int = 16 << 20,
                 wakeup_bytes: int = 64 << 10, exclude_tgid: int | None = None,
                 cgroups: CgroupResolver | None = None,
                 prefilter: Prefilter | None = None, raw: bool = False,
                 containers: ContainerLookup | None = None, metadata_wait_s: float = 2.0) -> None:
        self.syscalls = syscalls.select(None if event_types is None else set(event_types))
        self.clock = Clock()
        self.cgroups = cgroups
        if cgroups is None:
            self.tracker = StateTracker(self.clock)
        else:  # container ids from cgroup ids; the tracker stats the same cgroup2 mount for /proc seeding
            self.tracker = StateTracker(self.clock, cgroup_container=cgroups.container_of,
                                        cgroup_root=cgroups.root or "/sys/fs/cgroup")
        self._pending: list[Event] = []
        self.enricher = None if containers is None else ContainerEnricher(containers, wait_s=metadata_wait_s)
        self._undecodable = 0
        self._failed = 0
        self.first_failure: str | None = None
        self._received = 0
        self._events = 0
        # Attach before seeding from /proc so no process started in between is missed.
        self.kernel = KernelSensor(self.syscalls, ring_bytes=ring_bytes, wakeup_bytes=wakeup_bytes,
                                   exclude_tgid=exclude_tgid, prefilter=prefilter, raw=raw)
        try:
            self.kernel.open_ring(self._on_record)
            self.tracker.seed()
        except BaseException:
            self.kernel.close()
            raise

    def _on_record(self, raw: bytes) -> None:
        # Called by libbpf inside poll/consume; must not raise.
        self._received += 1
        try:
            rec = decode(raw)
        except RecordError:
            self._undecodable += 1
            return
        try:
            evt = self.tracker.handle(rec)
        except Exception as exc:  # a state bug must not stop the ring buffer: count it as a loss
            self._failed += 1
            if self.first_failure is None:
                self.first_failure = f"{type(exc).__name__}: {exc} (record {rec.kind.name} nr {rec.nr})"
            return
        if evt is not None:
            self._events += 1
            evt.num = self._events
            if self.enricher is None:
                self._pending.append(evt)
            else:
                self._pending += self.enricher.add(evt)

    def reconfigure(self, event_types: Iterable[str] | None, prefilter: Prefilter | None) -> None:
        """Capture for other rules from now on (a reload); the state tables are kept."""
        self.syscalls = syscalls.select(None if event_types is None else set(event_types))
        self.kernel.reconfigure(self.syscalls, prefilter)

    def poll(self, timeout_ms: int = 2) -> list[Event]:
        """The events that arrived within timeout_ms (possibly none)."""
        self.kernel.poll(timeout_ms)
        if self.enricher is not None and self.enricher.held:
            self._pending += self.enricher.release()
        out, self._pending = self._pending, []
        return out

    def flush_held(self) -> list[Event]:
        """Events still waiting for container metadata, with what is known now (before a stop)."""
        return [] if self.enricher is None else self.enricher.drain()

    def counters(self) -> SourceCounters:
        k: Counters = self.kernel.counters()
        return SourceCounters(sent=k.sent, dropped=k.dropped, truncated=k.truncated, filtered=k.filtered,
                              undecodable=self._undecodable, failed=self._failed, received=self._received,
                              events=self._events,
                              without_metadata=0 if self.enricher is None else self.enricher.without_metadata,
                              held=0 if self.enricher is None else self.enricher.held)

    def close(self) -> None:
        self.kernel.close()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
