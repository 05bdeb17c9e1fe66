"""The output interface: a bounded queue and a worker thread per output, retries, counters.

A kind subclasses :class:`Output` and implements ``_send(alert)``; everything about queueing,
retrying, stopping and counting lives here, so every kind behaves the same way.

Accounting invariant, at any moment: ``accepted == delivered + failed + queue_depth + in_flight``.
Alerts refused by ``emit`` are counted in ``dropped_queue_full`` (or ``dropped_stopped`` after
``stop``) and never in ``accepted``.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from lanner.alert import Alert

log = logging.getLogger("lanner.outputs")

DEFAULT_QUEUE_SIZE = 10_000
COUNTERS = ("accepted", "delivered", "failed", "dropped_queue_full", "dropped_stopped", "retries")
DEFAULT_STOP_TIMEOUT = 5.0


class OutputError(Exception):
    """An output cannot start (bad file, missing program...)."""


class PermanentError(Exception):
    """Raised by ``_send``: this alert can never be delivered; do not retry it."""


class RetryLater(Exception):
    """Raised by ``_send``: a transient refusal (HTTP 503...). ``retry_after`` is the receiver's hint, seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failed delivery is tried again.

    Attempt ``n`` (0-based) waits ``min(backoff_max, backoff_initial * 2**n)`` scaled by a random factor
    in [0.5, 1] (jitter). ``max_retries`` is the number of retries after the first attempt; -1 retries
    until the output is stopped."""

    max_retries: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def delay(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 62))
        return base * random.uniform(0.5, 1.0)

    def gives_up_after(self, retries: int) -> bool:
        return self.max_retries >= 0 and retries >= self.max_retries


@dataclass(frozen=True, slots=True)
class OutputStats:
    name: str
    kind: str
    accepted: int = 0
    """Alerts taken into the queue by ``emit``."""
    delivered: int = 0
    failed: int = 0
    """Accepted alerts given up: retries exhausted, a permanent refusal, or still queued when ``stop`` timed out."""
    dropped_queue_full: int = 0
    dropped_stopped: int = 0
    """Alerts offered after ``stop``."""
    retries: int = 0
    queue_depth: int = 0
    in_flight: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_Outcome = tuple[bool, str | None]
_CUT_SHORT = "not delivered within the stop timeout"


class Output:
    """One alert destination with its own bounded queue and worker thread.

    ``emit`` never blocks; ``stop`` flushes. Subclasses implement ``_send`` (deliver one alert or
    raise: :class:`PermanentError` to give up, :class:`RetryLater` or ``OSError`` to retry, anything else
    is a bug and fails the alert) and may implement ``_open`` (at ``start``, in the caller's thread;
    raise :class:`OutputError` when the output cannot work at all) and ``_close`` (in the worker
    thread: after a ``reopen`` request and when the worker ends). ``_send`` opens lazily whatever
    ``_close`` closed."""

    kind: ClassVar[str] = "output"

    def __init__(self, name: str | None = None, *, queue_size: int = DEFAULT_QUEUE_SIZE,
                 retry: RetryPolicy | None = None) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.name = name or self.kind
        self.queue_size = queue_size
        self.retry = retry or RetryPolicy()
        self._cond = threading.Condition()
        self._pending: collections.deque[Alert] = collections.deque()
        self._inflight: int | None = None
        """Sequence number of the alert the worker is delivering; None when idle or abandoned by stop."""
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline: float | None = None
        self._reopen_requested = False
        self._failing = False
        self._cut_short = 0
        """Alerts given up because the stop timeout passed."""
        self._c = dict.fromkeys(COUNTERS, 0)
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- the public interface -------------------------------------------------------------------

    def emit(self, alert: Alert) -> bool:
        """Queue ``alert``; False (and counted as dropped) when the queue is full or the output stopped."""
        with self._cond:
            if self._closing:
                self._c["dropped_stopped"] += 1
                return False
            if len(self._pending) >= self.queue_size:
                self._c["dropped_queue_full"] += 1
                return False
            self._pending.append(alert)
            self._c["accepted"] += 1
            self._cond.notify_all()
            return True

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._closing:
                raise RuntimeError(f"output {self.name!r} already started or stopped")
        self._open()
        thread = threading.Thread(target=self._run, name=f"lanner-output-{self.name}", daemon=True)
        with self._cond:
            self._thread = thread
        thread.start()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
        """Deliver what is queued, for at most ``timeout`` seconds, then close. Alerts not delivered by
        then are counted as failed. True when the timeout cut nothing short."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._cond:
            left = len(self._pending) + (self._inflight is not None)
            if left:
                self._c["failed"] += left
                self._cut_short += left
                self._pending.clear()
                self._inflight = None
            if self._cut_short:
                self._last_error = f"{self._cut_short} alert(s) not delivered within the stop timeout ({timeout:g} s)"
            if thread is None:
                self._close_quietly()
            return self._cut_short == 0

    def reopen(self) -> None:
        """Reopen files and connections before the next delivery (SIGHUP, logrotate). Safe from a signal handler."""
        self._reopen_requested = True

    def stats(self) -> OutputStats:
        with self._cond:
            return OutputStats(name=self.name, kind=self.kind, queue_depth=len(self._pending),
                               in_flight=int(self._inflight is not None), last_error=self._last_error, **self._c)

    # -- what a kind implements -----------------------------------------------------------------

    def _open(self) -> None:
        """Called by ``start`` before the worker runs."""

    def _send(self, alert: Alert) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Close files and connections; the next ``_send`` reopens them."""

    # -- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    alert = self._pending.popleft()
                    self._seq += 1
                    seq = self._inflight = self._seq
                ok, error = self._deliver(alert)
                with self._cond:
                    if self._inflight != seq:
                        continue  # stop() gave up on it and counted it already
                    self._inflight = None
                    self._c["delivered" if ok else "failed"] += 1
                    if error is _CUT_SHORT:
                        self._cut_short += 1
                    if error:
                        self._last_error = error
        finally:
            self._close_quietly()

    def _deliver(self, alert: Alert) -> _Outcome:
        attempt = 0
        while True:
            if self._past_deadline():
                return False, _CUT_SHORT
            if self._reopen_requested:
                self._reopen_requested = False
                self._close_quietly()
            retry_after: float | None = None
            try:
                self._send(alert)
                if self._failing:
                    self._failing = False
                    log.warning("output %s: delivering again", self.name)
                return True, None
            except PermanentError as e:
                self._note_failing(f"alert {alert.rule!r} refused, not retried: {e}")
                return False, str(e)
            except (OSError, RetryLater) as e:
                error = _describe(e)
                retry_after = e.retry_after if isinstance(e, RetryLater) else None
            except Exception as e:
                log.exception("output %s: cannot deliver alert %r", self.name, alert.rule)
                return False, _describe(e)
            if self._past_deadline():
                return False, _CUT_SHORT
            self._note_failing(f"delivery failing, will retry: {error}")
            if self.retry.gives_up_after(attempt):
                log.warning("output %s: gave up on alert %r after %d retries: %s", self.name, alert.rule,
                            attempt, error)
                return False, error
            with self._cond:
                self._c["retries"] += 1
                self._last_error = error
            delay = self.retry.delay(attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry.backoff_max))
            self._sleep(delay)
            attempt += 1

    def _note_failing(self, message: str) -> None:
        """Log the first failure after a success (not every failure: a dead receiver would flood the log)."""
        if not self._failing:
            self._failing = True
            log.warning("output %s: %s", self.name, message)

    def _past_deadline(self) -> bool:
        deadline = self._deadline
        return deadline is not None and time.monotonic() >= deadline

    def _sleep(self, seconds: float) -> None:
        """Wait between retries, cut short by the stop deadline."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                limit = end if self._deadline is None else min(end, self._deadline)
                left = limit - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception:
            log.exception("output %s: error while closing", self.name)


def _describe(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, (PermanentError, RetryLater)):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
