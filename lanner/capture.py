"""``lanner capture``: record live events in the JSON-lines format ``lanner replay`` reads."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

import click
import yaml

from lanner.engine import Engine
from lanner.events import Event
from lanner.rules.ruleset import Ruleset
from lanner.state.cgroups import CgroupResolver
from lanner.state.containers import ContainerDirectory


def filter_ruleset(condition: str) -> Ruleset:
    """A one-rule ruleset whose rule is `condition`, so a filter is checked like any rule."""
    from lanner.rules import load

    text = yaml.safe_dump([{"rule": "capture filter", "desc": "lanner capture --filter",
                            "condition": condition, "output": "%evt.type", "priority": "DEBUG"}])
    return load(text)


def _fail(rs: Ruleset, what: str) -> None:
    for m in rs.errors:
        click.echo(f"ERROR {what}: {m.message}", err=True)
    sys.exit(1)


def container_context() -> tuple[CgroupResolver, ContainerDirectory | None]:
    """Container ids from cgroups, and metadata from the container runtime when it is reachable."""
    from lanner.cri import CriClient, CriSetupError

    try:
        return CgroupResolver(), ContainerDirectory(CriClient())
    except CriSetupError as exc:
        click.echo(f"lanner: container metadata off: {exc}", err=True)
        return CgroupResolver(), None


def event_types(engines: list[Engine]) -> set[str] | None:
    """The event types the engines can match; None when some rule matches every type."""
    out: set[str] = set()
    for engine in engines:
        types = engine.event_types()
        if types is None:
            return None
        out |= types
    return out


@click.command("capture")
@click.option("-w", "--write", "out_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="File to write (JSON lines; '-' for stdout).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: until interrupted).")
@click.option("--filter", "condition", default=None, help="Keep only events matching this Falco condition.")
@click.option("-r", "--rules", "rules_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Capture only the event types these rules look at (repeatable).")
@click.option("--ring-mb", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Kernel ring buffer size, MiB (a power of two).")
def capture_command(out_path: str, duration: float | None, condition: str | None, rules_files: tuple[Path, ...],
                    ring_mb: int) -> None:
    """Record live kernel events to FILE; `lanner replay FILE -r RULES` evaluates them later."""
    from lanner.doctor import require_sensor
    from lanner.eventfile import event_to_json
    from lanner.sensor.drops import DropMonitor
    from lanner.sensor.loader import SensorError
    from lanner.sensor.prefilter import for_conditions
    from lanner.sensor.source import LiveSource

    ring_bytes = ring_mb << 20
    if ring_mb & (ring_mb - 1):
        raise click.BadParameter("must be a power of two", param_hint="--ring-mb")
    engines: list[Engine] = []
    filter_engine = None
    if condition is not None:
        rs = filter_ruleset(condition)
        if not rs.ok:
            _fail(rs, "--filter")
        filter_engine = Engine(rs)
        engines.append(filter_engine)
    if rules_files:
        from lanner.rules import load

        rs = load(list(rules_files))
        if not rs.ok:
            _fail(rs, "rules")
        engines.append(Engine(rs))
    types = event_types(engines) if engines else None
    # Opens no rule (or filter) can match are dropped in the kernel; a plain capture keeps them all.
    prefilter = for_conditions(r.condition for e in engines for r in e.rules) if engines else None

    try:
        require_sensor()
        cgroups, directory = container_context()
        source = LiveSource(types, ring_bytes=ring_bytes, prefilter=prefilter, cgroups=cgroups,
                            containers=directory)
    except SensorError as exc:
        click.echo(f"lanner capture: {exc}", err=True)
        sys.exit(2)

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    out: IO[str] = sys.stdout if out_path == "-" else open(out_path, "w", encoding="utf-8")  # noqa: SIM115
    drops = DropMonitor()
    written = 0
    dumps = json.dumps

    def write_all(events: list[Event]) -> int:
        n = 0
        for evt in events:
            if filter_engine is not None and not filter_engine.match(evt):
                continue
            out.write(dumps(event_to_json(evt), separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
            n += 1
        return n

    what = "every supported event type" if types is None else f"{len(source.syscalls)} syscalls"
    click.echo(f"lanner capture: capturing {what} to {out_path}", err=True)
    end = None if duration is None else time.monotonic() + duration
    next_check = 0.0
    try:
        with source:
            while not stopping and (end is None or time.monotonic() < end):
                written += write_all(source.poll())
                now = time.monotonic()
                if now >= next_check:  # the kernel's counters cost a few syscalls: once a second
                    next_check = now + 1.0
                    alert = drops.check(source.counters())
                    if alert is not None:
                        click.echo(alert.output, err=True)
            written += write_all(source.flush_held())
            counters = source.counters()
    finally:
        if directory is not None:
            directory.close()
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    click.echo(f"{written} events written; kernel sent {counters.sent}, filtered {counters.filtered} events no "
               f"rule can match, lost {counters.lost} "
               f"(ring buffer full {counters.dropped}, undecodable {counters.undecodable})", err=True)
    final = DropMonitor(interval_s=0).check(counters)
    if final is not None:
        click.echo(final.output, err=True)
