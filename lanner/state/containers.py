"""Container and pod metadata by container id, filled asynchronously from the container runtime.

``ContainerDirectory.get(cid)`` is called on the event path and never blocks: a known id gives its
``Container``, an unknown one schedules a lookup on a worker thread and gives None (the field layer
then treats the container's fields as missing, as Falco does until metadata arrives). Callers that
may hold an event briefly use ``wait(cid, timeout_s)``.

Failed lookups are retried with a backoff per id (NOT_FOUND: an id the runtime does not know, e.g. a
container of another engine) and, after errors (runtime down or slow), for the whole runtime — so a
dead runtime costs one failed call per backoff period, not one per event. Removed containers are
evicted when a lookup answers NOT_FOUND and by a periodic listing of the runtime's containers.
"""

from __future__ import annotations

import enum
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from lanner.events import Container

__all__ = [
    "ContainerDirectory",
    "ContainerSource",
    "Lookup",
    "LookupStatus",
]

log = logging.getLogger(__name__)

DEFAULT_LOOKUP_TIMEOUT_S: Final = 2.0
DEFAULT_MAX_CONTAINERS: Final = 4096
DEFAULT_REFRESH_INTERVAL_S: Final = 30.0


class LookupStatus(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    """The runtime does not know the id (never created, or removed)."""
    ERROR = "error"
    """The runtime is down, slow (deadline) or answered with an error: try again later."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a container source answers for one id."""

    status: LookupStatus
    container: Container | None = None


class ContainerSource(Protocol):
    """Where container metadata comes from (``lanner.cri.CriClient``). Implementations never raise."""

    def lookup(self, container_id: str, *, timeout_s: float | None = None) -> Lookup: ...

    def list_ids(self, *, timeout_s: float | None = None) -> set[str] | None:
        """Every container and sandbox id the runtime knows; None when it cannot say."""
        ...

    def close(self) -> None: ...


_STOP: Final = ""


class ContainerDirectory:
    """Container id → ``Container``, cached (at most ``max_entries``, oldest first out) and filled by
    ``workers`` background threads from ``client``. Thread-safe.

    ``lookup_timeout_s``: deadline of one lookup (all its runtime calls). ``retry_s``/``max_retry_s``
    (a short first wait: a container's first processes run before the runtime lists it, for ~0.1 s):
    first and longest wait before an id (NOT_FOUND, error) or the runtime (error) is asked again,
    doubling in between. ``refresh_interval_s``: how often the runtime's container list is read to
    evict removed containers (0 disables it). ``max_pending``: bound of the lookup queue. The
    directory owns ``client``: ``close()`` closes it.
    """

    def __init__(self, client: ContainerSource, *, lookup_timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S,
                 max_entries: int = DEFAULT_MAX_CONTAINERS, refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
                 retry_s: float = 0.05, max_retry_s: float = 60.0, max_pending: int = 1024, workers: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.lookup_timeout_s = lookup_timeout_s
        self.max_entries = max(1, max_entries)
        self.refresh_interval_s = refresh_interval_s
        self.retry_s = retry_s
        self.max_retry_s = max(retry_s, max_retry_s)
        self.max_pending = max(1, max_pending)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, Container] = {}
        self._cached_at: dict[str, float] = {}
        self._pending: dict[str, threading.Event] = {}
        self._retry: dict[str, tuple[float, float]] = {}
        """id -> (when it may be asked again, the wait that was applied)."""
        self._down_until = 0.0
        self._down_wait = 0.0
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._closed = False
        self._next_refresh = clock() + refresh_interval_s if refresh_interval_s > 0 else float("inf")
        self._refresh_lock = threading.Lock()
        self.counters: dict[str, int] = {
            "lookups": 0, "found": 0, "failures": 0, "not_found": 0, "errors": 0, "evicted": 0, "overflow": 0,
            "forgotten": 0, "dropped": 0, "refreshes": 0,
        }
        self._threads = [threading.Thread(target=self._work, name=f"lanner-containers-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    # --- public API ----------------------------------------------------------------------------------

    def get(self, cid: str) -> Container | None:
        """The container's metadata if known; otherwise None, and a lookup is scheduled. Never blocks
        ("" — the host — is always None)."""
        c = self._cache.get(cid)
        if c is None and cid:
            self._schedule(cid)
        return c

    def wait(self, cid: str, timeout_s: float) -> Container | None:
        """The container's metadata, waiting up to ``timeout_s`` for a lookup (started if needed).
        Returns at once with None while the id or the runtime is in its retry backoff."""
        c = self._cache.get(cid)
        if c is not None or not cid:
            return c
        done = self._schedule(cid)
        if done is not None:
            done.wait(timeout_s)
        return self._cache.get(cid)

    def prefetch(self, ids: Iterable[str] | None = None) -> int:
        """Schedule lookups of ``ids`` (default: every container and sandbox the runtime lists — that
        listing is done here, blocking up to ``lookup_timeout_s``), e.g. at start so running
        containers are known before their events; returns how many were scheduled."""
        if ids is None:
            listed = self.client.list_ids(timeout_s=self.lookup_timeout_s)
            ids = listed if listed is not None else ()
        n = 0
        for cid in ids:
            if cid and cid not in self._cache and self._schedule(cid) is not None:
                n += 1
        return n

    def forget(self, cid: str) -> None:
        """Drop a container (its removal was seen); a later get() looks it up again."""
        with self._lock:
            if self._drop(cid):
                self.counters["forgotten"] += 1
            self._retry.pop(cid, None)

    def refresh(self) -> int | None:
        """Evict the cached containers the runtime no longer lists (those cached before the listing
        started); forget the retry backoff of ids it now lists. Returns how many were evicted, None
        when the runtime could not be listed. Done every ``refresh_interval_s`` by a worker."""
        with self._refresh_lock:
            started = self._clock()
            ids = self.client.list_ids(timeout_s=self.lookup_timeout_s)
            self.counters["refreshes"] += 1
            if ids is None:
                return None
            evicted = 0
            with self._lock:
                for cid in [cid for cid, at in self._cached_at.items() if at <= started and cid not in ids]:
                    self._drop(cid)
                    evicted += 1
                for cid in [cid for cid in self._retry if cid in ids]:
                    del self._retry[cid]
                self.counters["evicted"] += evicted
            return evicted

    def __contains__(self, cid: object) -> bool:
        return cid in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def stats(self) -> dict[str, int]:
        """cached, pending; lookups (runtime lookups done) = found + failures, failures = not_found +
        errors; evicted (removed containers, by NOT_FOUND or the periodic listing), overflow (dropped
        for the bound), forgotten (forget()), dropped (lookups not queued: queue full), refreshes."""
        with self._lock:
            return {"cached": len(self._cache), "pending": len(self._pending), **self.counters}

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers (a lookup in flight finishes or times out), wake waiters, close the client."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for ev in pending:
            ev.set()
        self.client.close()

    def __enter__(self) -> ContainerDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------------

    def _schedule(self, cid: str) -> threading.Event | None:
        """Queue a lookup unless one is pending (its event is returned) or a backoff or the bound
        forbids it (None)."""
        with self._lock:
            ev = self._pending.get(cid)
            if ev is not None or self._closed:
                return ev
            now = self._clock()
            if now < self._down_until:
                return None
            retry = self._retry.get(cid)
            if retry is not None and now < retry[0]:
                return None
            if len(self._pending) >= self.max_pending:
                self.counters["dropped"] += 1
                return None
            ev = self._pending[cid] = threading.Event()
        self._queue.put(cid)
        return ev

    def _drop(self, cid: str) -> bool:
        """Remove from the cache (lock held)."""
        self._cached_at.pop(cid, None)
        return self._cache.pop(cid, None) is not None

    def _work(self) -> None:
        while True:
            wait = self._next_refresh - self._clock()
            try:
                cid = self._queue.get(timeout=min(max(wait, 0.001), 3600.0))
            except queue.Empty:
                cid = None
            if cid == _STOP or self._closed:
                return
            if cid is not None:
                try:
                    self._resolve(cid)
                except Exception:  # a bug here must not kill the worker
                    log.exception("container lookup of %s failed", cid)
                    with self._lock:
                        ev = self._pending.pop(cid, None)
                    if ev is not None:
                        ev.set()
            if self._refresh_due():
                try:
                    self.refresh()
                except Exception:
                    log.exception("container list refresh failed")

    def _refresh_due(self) -> bool:
        """True (once per period, for one worker) when the periodic refresh is due."""
        with self._lock:
            now = self._clock()
            if now < self._next_refresh:
                return False
            self._next_refresh = now + self.refresh_interval_s
            return True

    def _resolve(self, cid: str) -> None:
        now = self._clock()
        if now < self._down_until:  # the runtime failed after this id was queued: ask later
            result: Lookup | None = None
        else:
            result = self.client.lookup(cid, timeout_s=self.lookup_timeout_s)
        with self._lock:
            now = self._clock()
            counters = self.counters
            if result is None:
                self._retry[cid] = (self._down_until, self._retry.get(cid, (0.0, 0.0))[1])
            elif result.status is LookupStatus.FOUND and result.container is not None:
                counters["lookups"] += 1
                counters["found"] += 1
                self._cache.pop(cid, None)
                self._cache[cid] = result.container
                self._cached_at[cid] = now
                self._retry.pop(cid, None)
                self._down_wait = 0.0
                excess = len(self._cache) - self.max_entries
                if excess > 0:
                    for old in list(itertools.islice(self._cache, excess)):
                        self._drop(old)
                    counters["overflow"] += excess
            else:
                counters["lookups"] += 1
                counters["failures"] += 1
                if result.status is LookupStatus.NOT_FOUND:
                    counters["not_found"] += 1
                    if self._drop(cid):
                        counters["evicted"] += 1
                    self._down_wait = 0.0  # the runtime answered
                else:
                    counters["errors"] += 1
                    self._down_wait = min(self._down_wait * 2 or self.retry_s, self.max_retry_s)
                    self._down_until = now + self._down_wait
                prev = self._retry.get(cid, (0.0, 0.0))[1]
                wait = min(prev * 2 or self.retry_s, self.max_retry_s)
                self._retry[cid] = (now + wait, wait)
                if len(self._retry) > self.max_entries:
                    for old in list(itertools.islice(self._retry, len(self._retry) - self.max_entries)):
                        del self._retry[old]
            ev = self._pending.pop(cid, None)
        if ev is not None:
            ev.set()
