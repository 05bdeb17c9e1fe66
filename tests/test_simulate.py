"""`lanner simulate` without the kernel: the registry's consistency with the rules files, --list, and the
environment errors."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from lanner.cli import cli
from lanner.simulate.actions import ACTIONS, NOT_SIMULATED
from lanner.simulate.verify import Metrics, parse_alert_counters, rule_names
from tests.conftest import ROOT, SHARED

DEFAULT_RULES = ROOT / "lanner" / "rules" / "default" / "lanner_rules.yaml"
FALCO_DIR = SHARED / "falco" / "rules"
EVENT_GENERATOR = SHARED / "falco" / "event-generator-actions.md"


def _rules(path: object) -> list[str]:
    return [item["rule"] for item in yaml.safe_load(open(str(path))) if "rule" in item]


def test_every_default_rule_has_a_host_action_or_is_container_only() -> None:
    names = _rules(DEFAULT_RULES)
    host = {a.lanner_rule for a in ACTIONS.values() if not a.container_only and a.perform is not None} - {None}
    container = {a.lanner_rule for a in ACTIONS.values() if a.container_only} - {None}
    assert not host & container
    assert not (host | container) & set(NOT_SIMULATED)
    assert host | container | set(NOT_SIMULATED) == set(names)
    assert len(host) == 18 and len(container) == 6


def test_expected_rules_exist_in_the_rules_files() -> None:
    lanner = set(_rules(DEFAULT_RULES))
    falco = rule_names(sorted(FALCO_DIR.glob("*.yaml")))
    for a in ACTIONS.values():
        assert a.rules, a.name
        assert a.lanner_rule is None or a.lanner_rule in lanner, a
        assert a.falco_rule is None or a.falco_rule in falco, a
        assert (a.perform is None) is a.container_only, a


def test_event_generator_default_actions_are_covered() -> None:
    """Every default-enabled event-generator action is an action here (same name; container-only ones need
    --in-pod). Those that contact a remote address in the event generator contact a listener of our own in a
    private network namespace here, or run a copy of /usr/bin/true under the tool's name (nmap)."""
    defaults = set()
    for line in EVENT_GENERATOR.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and cells[2].startswith("`syscall.") and cells[3] == "**yes**":
            defaults.add(cells[2].strip("`").removeprefix("syscall."))
    assert len(defaults) == 23
    ours = {a.name for a in ACTIONS.values() if a.event_generator}
    assert ours == defaults, defaults ^ ours


def test_falco_stable_host_rules_have_host_actions() -> None:
    stable = set(_rules(FALCO_DIR / "falco_rules.yaml"))
    host_stable = {a.falco_rule for a in ACTIONS.values() if not a.container_only and a.falco_rule in stable}
    assert len(host_stable) == 16


def test_list() -> None:
    res = CliRunner().invoke(cli, ["simulate", "--list"])
    assert res.exit_code == 0, res.output
    for a in ACTIONS.values():
        assert a.name in res.output
    res = CliRunner().invoke(cli, ["simulate", "--list", "--json"])
    assert res.exit_code == 0, res.output
    assert {x["action"] for x in json.loads(res.output)} == set(ACTIONS)


def test_unknown_action_and_in_pod_are_environment_errors() -> None:
    res = CliRunner().invoke(cli, ["simulate", "NoSuchAction"])
    assert res.exit_code == 2 and "unknown action" in res.output
    res = CliRunner().invoke(cli, ["simulate", "--in-pod", "--cri-socket", "/nonexistent.sock"])
    assert res.exit_code == 2 and "no CRI socket at /nonexistent.sock" in res.output


def test_no_agent_is_exit_2_with_a_hint() -> None:
    if os.geteuid() != 0:
        pytest.skip("the check for root comes first")
    res = CliRunner().invoke(cli, ["simulate", "--metrics", "http://127.0.0.1:1", "WriteBelowEtc"])
    assert res.exit_code == 2, res.output
    assert "no agent answers at http://127.0.0.1:1/metrics" in res.output
    assert "lanner run" in res.output and "--start-agent" in res.output


def test_parse_alert_counters() -> None:
    text = ('# HELP lanner_alerts_total x\n'
            'lanner_alerts_total{priority="Warning",rule="Execution from /dev/shm"} 2.0\n'
            'lanner_alerts_total{priority="Error",rule="Execution from /dev/shm"} 1.0\n'
            'lanner_alerts_total{priority="Notice",rule="Say \\"hi\\""} 1.0\n'
            'lanner_alerts_created{priority="Notice",rule="x"} 1.7e9\n')
    assert parse_alert_counters(text) == {"Execution from /dev/shm": 3.0, 'Say "hi"': 1.0}
    assert Metrics("127.0.0.1:8765").url == "http://127.0.0.1:8765/metrics"
    assert Metrics("http://127.0.0.1:8765/metrics").url == "http://127.0.0.1:8765/metrics"
