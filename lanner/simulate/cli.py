"""``lanner simulate``: perform safe suspicious actions and check the agent detected them."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import click

from lanner.simulate.actions import ACTIONS, Action, Workspace
from lanner.simulate.pod import DEFAULT_IMAGE, PodError, run_in_pod
from lanner.simulate.verify import AgentUnavailable, Metrics, Result, StartedAgent, perform_and_await, rule_names

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default" / "lanner_rules.yaml"
NO_AGENT_HELP = ("start one with `sudo lanner run` (metrics on 127.0.0.1:8765 by default), point --metrics at "
                 "the agent's metrics address, or let this command start one with --start-agent")


def _list(as_json: bool) -> None:
    rows = sorted(ACTIONS.values(), key=lambda a: (a.container_only, a.name))
    if as_json:
        click.echo(json.dumps([{"action": a.name, "description": a.description, "falco_rule": a.falco_rule,
                                "lanner_rule": a.lanner_rule, "container_only": a.container_only,
                                "event_generator_default": a.event_generator} for a in rows], indent=2))
        return
    width = max(len(a.name) for a in rows)
    for a in rows:
        where = "container" if a.container_only else "host"
        rules = " | ".join(a.rules)
        click.echo(f"{a.name:<{width}}  {where:<9}  {rules}")
        click.echo(f"{'':<{width}}  {'':<9}  {a.description}")


def _expected(act: Action, loaded: set[str] | None) -> tuple[str, ...]:
    return act.rules if loaded is None else tuple(r for r in act.rules if r in loaded)


def _table(results: list[Result]) -> None:
    w_a = max([len("action")] + [len(r.action) for r in results])
    w_r = max([len("expected rule")] + [len(" | ".join(r.rules)) for r in results])
    click.echo(f"{'action':<{w_a}}  {'expected rule':<{w_r}}  detected  latency ms")
    for r in results:
        if r.skipped:
            det, lat = "skipped", r.skipped
        else:
            det = "yes" if r.detected else "NO"
            lat = f"{r.latency_ms:.0f}" if r.latency_ms is not None else (f"error: {r.error}" if r.error else "-")
        click.echo(f"{r.action:<{w_a}}  {' | '.join(r.rules):<{w_r}}  {det:<8}  {lat}")


def summary(results: list[Result]) -> dict[str, object]:
    ran = [r for r in results if not r.skipped]
    lat = sorted(r.latency_ms for r in ran if r.latency_ms is not None)
    return {"performed": len(ran), "detected": sum(r.detected for r in ran),
            "missed": [r.action for r in ran if not r.detected],
            "skipped": [r.action for r in results if r.skipped],
            "latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
            "latency_ms_worst": round(lat[-1], 1) if lat else None}


@click.command("simulate")
@click.argument("actions", nargs=-1)
@click.option("--list", "list_", is_flag=True, help="List the actions and the rules they should raise.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--metrics", "metrics_url", default="http://127.0.0.1:8765", show_default=True,
              help="The running agent's metrics address.")
@click.option("--start-agent", is_flag=True, help="Start `lanner run` for the simulation and stop it after.")
@click.option("-r", "--rules", "rules_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Rules files the agent runs (with --start-agent: loaded; default Lanner's default rules). "
                   "Actions whose rules are not in them are skipped.")
@click.option("--in-pod", is_flag=True,
              help="Run the container-only actions in a throwaway pod made through the CRI (removed afterwards).")
@click.option("--cri-socket", default=None, help="With --in-pod: the runtime's CRI socket (default: containerd's, "
                                                 "then CRI-O's). --start-agent gives it to the agent too.")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True,
              help="With --in-pod: the pod's image; on a real node, one present there (busybox-like tools).")
@click.option("--timeout", "timeout_s", default=10.0, show_default=True,
              help="Seconds to wait for an alert after an action finished.")
def simulate_command(actions: tuple[str, ...], list_: bool, as_json: bool, metrics_url: str, start_agent: bool,
                     rules_files: tuple[str, ...], in_pod: bool, cri_socket: str | None, image: str,
                     timeout_s: float) -> None:
    """Perform safe, real versions of suspicious behaviour and check the agent detected each one.

    Exit 0 when every action performed was detected, 1 when one was missed, 2 on an environment error.
    """
    if list_:
        _list(as_json)
        return
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        click.echo(f"lanner simulate: unknown action(s): {', '.join(unknown)} (see --list)", err=True)
        sys.exit(2)
    if in_pod and cri_socket and not os.path.exists(cri_socket):
        click.echo(f"lanner simulate: --in-pod: no CRI socket at {cri_socket}", err=True)
        sys.exit(2)
    if actions:
        chosen = [ACTIONS[a] for a in actions]
    else:
        chosen = sorted((a for a in ACTIONS.values() if a.container_only or not in_pod), key=lambda a: a.name)
    if os.geteuid() != 0:
        click.echo("lanner simulate: needs root (the actions read /etc/shadow, write below /etc, use namespaces)",
                   err=True)
        sys.exit(2)
    rules = list(rules_files) or ([str(DEFAULT_RULES)] if start_agent else [])
    loaded = rule_names(rules) if rules else None
    if in_pod:
        _report(_in_pod(chosen, loaded, rules, cri_socket, image, start_agent, metrics_url, timeout_s), as_json)
        return
    agent: StartedAgent | None = None
    try:
        if start_agent:
            agent = StartedAgent(rules)
            metrics_url = agent.metrics_url
        metrics = Metrics(metrics_url)
        metrics.alerts()
    except AgentUnavailable as exc:
        click.echo(f"lanner simulate: {exc}; {NO_AGENT_HELP}", err=True)
        if agent is not None:
            agent.stop()
        sys.exit(2)
    results: list[Result] = []
    ws = Workspace()
    try:
        for act in chosen:
            expected = _expected(act, loaded)
            if act.container_only or act.perform is None:
                results.append(Result(act.name, act.rules, skipped="container only (--in-pod)"))
            elif not expected:
                results.append(Result(act.name, act.rules, skipped="rule not loaded"))
            else:
                results.append(perform_and_await(act, expected, metrics, ws, timeout_s))
    except AgentUnavailable as exc:
        click.echo(f"lanner simulate: the agent went away: {exc}", err=True)
        sys.exit(2)
    finally:
        ws.cleanup()
        if agent is not None:
            agent.stop()
    _report(results, as_json)


def _in_pod(chosen: list[Action], loaded: set[str] | None, rules: list[str], cri_socket: str | None, image: str,
            start_agent: bool, metrics_url: str, timeout_s: float) -> list[Result]:
    try:
        return run_in_pod([(a, _expected(a, loaded)) for a in chosen], socket_path=cri_socket, image=image,
                          start_agent=start_agent, rules=rules, metrics_url=metrics_url, timeout_s=timeout_s)
    except AgentUnavailable as exc:
        click.echo(f"lanner simulate: {exc}; {NO_AGENT_HELP}", err=True)
    except PodError as exc:
        click.echo(f"lanner simulate: --in-pod: {exc}", err=True)
    sys.exit(2)


def _report(results: list[Result], as_json: bool) -> None:
    summ = summary(results)
    if as_json:
        click.echo(json.dumps({"results": [r.to_dict() for r in results], "summary": summ}, indent=2))
    else:
        _table(results)
        click.echo(f"\n{summ['detected']}/{summ['performed']} detected; latency p50 {summ['latency_ms_p50']} ms, "
                   f"worst {summ['latency_ms_worst']} ms")
    if summ["missed"]:
        sys.exit(1)
