"""Noise control: token buckets per rule and per (rule, container), so one noisy rule or workload
cannot flood the outputs. Suppressed alerts are counted, never dropped silently."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from lanner.config import Throttle


class TokenBuckets:
    """One bucket per key: `rate` tokens per second up to `burst`; bounded number of keys."""

    def __init__(self, spec: Throttle, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.rate = spec.rate
        self.burst = float(spec.burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, key: object) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # the least recently used key starts full again
        return ok


class AlertThrottle:
    """Per rule, then per (rule, container): an alert passes only if both buckets allow it."""

    def __init__(self, per_rule: Throttle, per_container: Throttle,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = TokenBuckets(per_rule, clock)
        self.container = TokenBuckets(per_container, clock)

    def check(self, rule: str, container_id: str) -> str | None:
        """None when the alert may go out, else the scope that suppressed it ('rule' or 'container')."""
        if not self.container.allow((rule, container_id or "host")):
            return "container"
        if not self.rule.allow(rule):
            return "rule"
        return None
