"""The agent's event path without outputs, run as a separate process by `lanner bench sensor`.

Live sensor → state → engine; every alert's syscall-to-alert latency is recorded. Prints "ready"
once attached and seeded; on SIGTERM it drains what the kernel already queued and prints one
JSON line of figures.

    python -m lanner.bench.agent -r RULES... [--poll-ms N]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from types import FrameType


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lanner.bench.agent")
    ap.add_argument("-r", "--rules", action="append", required=True)
    ap.add_argument("--poll-ms", type=int, default=2)
    ap.add_argument("--ring-mb", type=int, default=16)
    ap.add_argument("--no-prefilter", action="store_true", help="send every open to user space")
    args = ap.parse_args(argv)

    from lanner.engine import Engine
    from lanner.rules import load
    from lanner.sensor.prefilter import for_conditions
    from lanner.sensor.source import LiveSource

    rs = load(args.rules)
    if not rs.ok:
        print(f"rules: {rs.errors[0]}", file=sys.stderr)
        return 1
    engine = Engine(rs)
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    latencies: list[float] = []
    by_rule: Counter[str] = Counter()
    from lanner.events import EVENT_TYPES

    engine.warm(engine.event_types() or EVENT_TYPES)
    prefilter = None if args.no_prefilter else for_conditions(r.condition for r in engine.rules)
    with LiveSource(engine.event_types(), ring_bytes=args.ring_mb << 20, prefilter=prefilter) as source:
        print("ready", flush=True)
        cpu0 = time.process_time()  # the event path only, not loading and seeding
        process = engine.process
        while not stopping:
            for evt in source.poll(args.poll_ms):
                for alert in process(evt):
                    latencies.append((time.time_ns() - evt.ts) / 1e6)
                    by_rule[alert.rule] += 1
        for _ in range(50):  # drain: what the kernel queued before the stop
            if not source.poll(0):
                break
        c = source.counters()
    latencies.sort()
    print(json.dumps({
        "events": c.events, "sent": c.sent, "dropped": c.dropped, "undecodable": c.undecodable,
        "failed": c.failed, "filtered": c.filtered,
        "alerts": len(latencies), "by_rule": dict(by_rule), "cpu_s": round(time.process_time() - cpu0, 3),
        "latency_ms": {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99),
                       "max": latencies[-1] if latencies else None},
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
