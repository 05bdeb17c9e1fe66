"""``OutputSet``: every alert to every output; start, stop, reopen and stats for all of them."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from lanner.alert import Alert
from lanner.outputs.base import COUNTERS, DEFAULT_STOP_TIMEOUT, Output, OutputStats


class OutputSet:
    def __init__(self, outputs: Iterable[Output] = ()) -> None:
        self.outputs: tuple[Output, ...] = tuple(outputs)
        names = [o.name for o in self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"output names must be unique: {', '.join(dup)}")

    def __iter__(self) -> Iterator[Output]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __getitem__(self, name: str) -> Output:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)

    def emit(self, alert: Alert) -> int:
        """Offer ``alert`` to every output; how many accepted it (the others counted it as dropped)."""
        return sum(o.emit(alert) for o in self.outputs)

    def start(self) -> None:
        """Start every output; if one cannot start, those already started are stopped and the error raised."""
        started: list[Output] = []
        try:
            for o in self.outputs:
                o.start()
                started.append(o)
        except BaseException:
            OutputSet(started).stop()
            raise

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
        """Flush and close all outputs at once, each within ``timeout``. True when none had to give up."""
        results: dict[str, bool] = {}

        def stop_one(o: Output) -> None:
            results[o.name] = o.stop(timeout)

        threads = [threading.Thread(target=stop_one, args=(o,), name=f"lanner-stop-{o.name}") for o in self.outputs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return all(results.values())

    def reopen(self) -> None:
        for o in self.outputs:
            o.reopen()

    def stats(self) -> dict[str, OutputStats]:
        return {o.name: o.stats() for o in self.outputs}

    def totals(self) -> OutputStats:
        """The counters summed over all outputs (last_error: the first output's that has one)."""
        per = list(self.stats().values())
        sums = {c: sum(getattr(s, c) for s in per) for c in (*COUNTERS, "queue_depth", "in_flight")}
        error = next((f"{s.name}: {s.last_error}" for s in per if s.last_error), None)
        return OutputStats(name="*", kind="*", last_error=error, **sums)
