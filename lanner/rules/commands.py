"""``lanner rules validate|list``, ``lanner fields`` and ``lanner replay``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from lanner.rules.ruleset import Ruleset

_rules_option = click.option("-r", "--rules", "rules_files", multiple=True, required=True,
                             type=click.Path(dir_okay=False, path_type=Path),
                             help="Rules file (repeatable; loaded in order).")


def _load(paths: tuple[Path, ...], min_priority: str = "debug") -> Ruleset:
    from lanner.rules import load
    from lanner.rules.policy import check

    rs = load(list(paths), min_priority=min_priority)
    if rs.ok:
        check(rs)  # block rules must be enforceable exactly, as the agent requires
    return rs


@click.group("rules")
def rules_group() -> None:
    """Validate and list Falco-style rules files."""


@rules_group.command("validate")
@_rules_option
@click.option("--json", "as_json", is_flag=True, help="Print Falco's load-result JSON.")
def validate_command(rules_files: tuple[Path, ...], as_json: bool) -> None:
    """Load the files as the agent would and report errors and warnings (exit 1 on errors)."""
    rs = _load(rules_files)
    if as_json:
        click.echo(json.dumps({"ok": rs.ok, "errors": [m.to_json() for m in rs.errors],
                               "warnings": [m.to_json() for m in rs.warnings]}, indent=2))
    else:
        for m in rs.errors:
            click.echo(f"ERROR {m}", err=True)
        for m in rs.warnings:
            click.echo(f"WARNING {m}", err=True)
        if rs.ok:
            counts = rs.counts
            click.echo(f"{', '.join(str(p) for p in rules_files)}: Ok "
                       f"({counts.get('rule', 0)} rules, {counts.get('macro', 0)} macros, "
                       f"{counts.get('list', 0)} lists; {len(rs.rules)} rules loaded, "
                       f"{len(rs.enabled_rules())} enabled; {len(rs.warnings)} warnings)")
        else:
            click.echo(f"Invalid: {len(rs.errors)} error(s)", err=True)
    sys.exit(0 if rs.ok else 1)


@rules_group.command("list")
@_rules_option
@click.option("--json", "as_json", is_flag=True)
def list_command(rules_files: tuple[Path, ...], as_json: bool) -> None:
    """List the loaded rules: name, priority, enabled, event types."""
    rs = _load(rules_files)
    if not rs.ok:
        for m in rs.errors:
            click.echo(f"ERROR {m}", err=True)
        sys.exit(1)
    rows: list[dict[str, Any]] = [
        {"rule": r.name, "priority": r.priority.label, "enabled": r.enabled, "source": r.source,
         "tags": list(r.tags), "evttypes": sorted(r.evttypes) if r.evttypes is not None else None,
         "action": r.action}
        for r in rs.rules.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        types = ",".join(row["evttypes"]) if row["evttypes"] is not None else "(all)"
        state = "" if row["enabled"] else " [disabled]"
        click.echo(f"{row['rule']}  [{row['priority']}]{state}  evt.type: {types}")


@click.command("fields")
@click.option("--json", "as_json", is_flag=True)
def fields_command(as_json: bool) -> None:
    """List every field conditions and outputs can use, with its type and description."""
    from lanner.rules.fields import all_fields

    fields = all_fields()
    if as_json:
        click.echo(json.dumps([{"name": f.name, "type": f.type.value, "arg": f.arg.value,
                                "filter_only": f.filter_only, "desc": f.desc} for f in fields], indent=2))
        return
    for f in fields:
        arg = "" if f.arg.value == "none" else f"[{f.arg.value}]"
        click.echo(f"{f.name}{arg}  {f.type.value}  {f.desc}")


@click.command("replay")
@click.argument("event_file", type=click.Path(dir_okay=False, path_type=Path))
@_rules_option
@click.option("--json", "as_json", is_flag=True, help="Alerts as Falco json_output lines.")
@click.option("--rule-matching", type=click.Choice(["first", "all"]), default="first", show_default=True)
@click.option("--min-priority", default="debug", show_default=True)
def replay_command(event_file: Path, rules_files: tuple[Path, ...], as_json: bool, rule_matching: str,
                   min_priority: str) -> None:
    """Evaluate a recorded event file (JSON lines) against rules and print the alerts."""
    from lanner.engine import Engine
    from lanner.eventfile import EventFileError, read_events
    from lanner.rules.ruleset import Priority

    try:
        Priority.parse(min_priority)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    rs = _load(rules_files)
    if not rs.ok:
        for m in rs.errors:
            click.echo(f"ERROR {m}", err=True)
        sys.exit(1)
    engine = Engine(rs, rule_matching=rule_matching, min_priority=min_priority)
    n_events = n_alerts = 0
    try:
        for evt in read_events(event_file):
            n_events += 1
            for alert in engine.process(evt):
                n_alerts += 1
                click.echo(alert.to_json_line() if as_json else alert.output)
    except EventFileError as e:
        click.echo(f"ERROR {e}", err=True)
        sys.exit(1)
    click.echo(f"{n_events} events, {n_alerts} alerts", err=True)
