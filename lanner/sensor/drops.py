"""Event-loss reporting: growth of the lost-records counters becomes at most one alert per interval.

The kernel counts records it could not queue (ring buffer full) per CPU; user space counts records
it could not decode. Both are loss. The agent and `lanner capture` call `DropMonitor.check` every
poll cycle; it reads nothing itself, so it costs nothing between reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lanner.alert import Alert, hostname
from lanner.sensor.source import SourceCounters

DROP_RULE = "Lanner internal: event drops"


class DropMonitor:
    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._reported_lost = 0
        self._last_report: float | None = None

    def check(self, counters: SourceCounters) -> Alert | None:
        """An alert when records were lost since the last report and the interval has passed."""
        lost = counters.lost
        if lost <= self._reported_lost:
            return None
        now = self.clock()
        if self._last_report is not None and now - self._last_report < self.interval_s:
            return None
        new = lost - self._reported_lost
        self._reported_lost = lost
        self._last_report = now
        fields = {"lanner.drops.new": new, "lanner.drops.kernel": counters.dropped,
                  "lanner.drops.undecodable": counters.undecodable, "lanner.drops.failed": counters.failed,
                  "lanner.events.sent": counters.sent}
        message = (f"{DROP_RULE}: {new} events lost since the last report (totals: kernel ring buffer full "
                   f"{counters.dropped}, undecodable {counters.undecodable}, state failures {counters.failed}, "
                   f"sent {counters.sent})")
        return Alert(rule=DROP_RULE, priority="Critical", message=message, output_fields=fields,
                     time_ns=time.time_ns(), tags=("lanner", "internal"), source="internal",
                     hostname=hostname())
