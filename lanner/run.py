"""``lanner run`` (the agent) and ``lanner config show`` (its effective configuration)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from lanner.config import Config, ConfigError, apply, load, show


def _output_spec(text: str) -> dict[str, Any]:
    """-o forms: stdout, json, syslog, file:PATH, http:URL / https:URL, program:COMMAND."""
    kind, sep, rest = text.partition(":")
    if kind in ("stdout", "json", "syslog") and not sep:
        return {"kind": kind}
    if kind == "file" and rest:
        return {"kind": "file", "name": f"file:{rest}", "path": rest}
    if kind in ("http", "https") and rest.startswith("//"):
        return {"kind": "http", "name": text, "url": text}
    if kind == "program" and rest:
        return {"kind": "program", "name": "program", "command": rest}
    raise click.BadParameter(f"{text!r}: use stdout, json, syslog, file:PATH, http(s)://URL or program:COMMAND",
                             param_hint="-o")


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="YAML configuration file (docs/agent.md)."),
        click.option("-r", "--rules", "rules_files", multiple=True, type=click.Path(dir_okay=False),
                     help="Rules file (repeatable; replaces rules_files)."),
        click.option("-o", "--output", "outputs", multiple=True,
                     help="Output (repeatable; replaces outputs): stdout, json, syslog, file:PATH, https://URL, "
                          "program:COMMAND."),
        click.option("--json", "as_json", is_flag=True, help="Print alerts on stdout as Falco JSON lines."),
        click.option("--min-priority", default=None, help="Lowest priority evaluated."),
        click.option("--rule-matching", type=click.Choice(["first", "all"]), default=None),
        click.option("--metrics-listen", default=None, help="host:port for /metrics and /healthz ('' = off)."),
        click.option("--ring-mb", type=int, default=None, help="Kernel ring buffer, MiB (power of two)."),
        click.option("--no-prefilter", is_flag=True, help="Send every open and send to user space."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def effective(config_path: str | None, rules_files: tuple[str, ...], outputs: tuple[str, ...], as_json: bool,
              min_priority: str | None, rule_matching: str | None, metrics_listen: str | None,
              ring_mb: int | None, no_prefilter: bool) -> Config:
    """Defaults, then the file, then the flags."""
    cfg = load(config_path)
    flags: dict[str, Any] = {}
    if rules_files:
        flags["rules_files"] = list(rules_files)
    if outputs:
        flags["outputs"] = [_output_spec(o) for o in outputs]
    if min_priority is not None:
        flags["min_priority"] = min_priority
    if rule_matching is not None:
        flags["rule_matching"] = rule_matching
    if metrics_listen is not None:
        flags["metrics_listen"] = metrics_listen
    if ring_mb is not None:
        flags["ring_buffer_mb"] = ring_mb
    if no_prefilter:
        flags["prefilter"] = False
    apply(cfg, flags, source="command line")
    if as_json:
        cfg.outputs = [{**o, "kind": "json"} if o.get("kind") == "stdout" else o for o in cfg.outputs]
        if not any(o.get("kind") == "json" for o in cfg.outputs):
            cfg.outputs.append({"kind": "json"})
    from lanner.outputs import OutputConfigError, build_outputs

    try:
        build_outputs(cfg.outputs)  # checks every output spec now, not when the agent starts
    except OutputConfigError as exc:
        raise ConfigError(f"outputs: {exc}") from None
    return cfg


@click.command("run")
@_options
def run_command(**kw: Any) -> None:
    """Run the agent (root): live events, rules, alerts to the outputs, metrics."""
    from lanner.agent import Agent, RulesError
    from lanner.doctor import require_sensor
    from lanner.outputs import OutputError
    from lanner.response.enforcer import EnforcementError
    from lanner.sensor.loader import SensorError

    try:
        cfg = effective(**kw)
    except ConfigError as exc:
        click.echo(f"lanner run: {exc}", err=True)
        sys.exit(2)
    try:
        agent = Agent(cfg)
    except RulesError as exc:
        click.echo(f"lanner run: the rules do not load:\n{exc}", err=True)
        sys.exit(1)
    try:
        require_sensor()
        agent.install_signals()
        agent.start()
    except (SensorError, OutputError, EnforcementError, OSError) as exc:
        click.echo(f"lanner run: {exc}", err=True)
        sys.exit(2)
    agent.run()


@click.group("config")
def config_group() -> None:
    """The agent's configuration."""


@config_group.command("show")
@_options
def show_command(**kw: Any) -> None:
    """Print the effective configuration (defaults, file, flags) as YAML."""
    try:
        cfg = effective(**kw)
    except ConfigError as exc:
        click.echo(f"lanner config: {exc}", err=True)
        sys.exit(2)
    click.echo(show(cfg), nl=False)
