"""The agent's configuration: defaults, file, flags; every mistake named with its place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lanner.config import DEFAULT_RULES, Config, ConfigError, Throttle, apply, load, show
from lanner.run import config_group


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lanner.yaml"
    p.write_text(text)
    return p


def test_defaults() -> None:
    cfg = load(None)
    assert cfg.rules_files == [str(DEFAULT_RULES)]
    assert DEFAULT_RULES.is_file()
    assert cfg.outputs == [{"kind": "stdout"}] and cfg.rule_matching == "first" and cfg.prefilter


def test_file_overrides_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "min_priority: notice\nring_buffer_mb: 64\nthrottle_rule: {rate: 2, burst: 5}\n"
                               "outputs:\n  - kind: file\n    path: /tmp/x.json\n"))
    assert cfg.min_priority == "notice" and cfg.ring_buffer_mb == 64
    assert cfg.throttle_rule == Throttle(2.0, 5)
    assert cfg.outputs == [{"kind": "file", "path": "/tmp/x.json"}]


@pytest.mark.parametrize(("text", "message"), [
    ("min_priority: notice\nrule_maching: all\n", "lanner.yaml:2:1: unknown key 'rule_maching'"),
    ("ring_buffer_mb: 3\n", "ring_buffer_mb must be a power of two"),
    ("ring_buffer_mb: lots\n", "lanner.yaml:1:1: ring_buffer_mb must be int"),
    ("prefilter: 1\n", "prefilter must be bool"),
    ("rule_matching: most\n", "rule_matching must be 'first' or 'all'"),
    ("min_priority: loud\n", "min_priority 'loud' is not one of"),
    ("metrics_listen: localhost\n", "metrics_listen must be host:port"),
    ("throttle_container: {rate: 1}\n", "throttle_container.burst must be at least 1"),
    ("throttle_rule: {rate: -1, burst: 1}\n", "throttle_rule.rate must be a number >= 0"),
    ("outputs: [stdout]\n", "outputs must be a list of mappings"),
    ("rules_files: []\n", "rules_files must be a non-empty list"),
    ("- a\n- b\n", "must be a mapping of keys"),
    ("min_priority: [\n", "not valid YAML"),
])
def test_bad_configuration_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(write(tmp_path, text))
    assert message in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_flags_override_the_file_and_show_round_trips(tmp_path: Path) -> None:
    cfgfile = write(tmp_path, "min_priority: notice\noutputs:\n  - kind: stdout\n")
    res = CliRunner().invoke(config_group, ["show", "-c", str(cfgfile), "--min-priority", "error", "--json",
                                            "-o", "stdout", "-o", f"file:{tmp_path}/a.json", "--no-prefilter"])
    assert res.exit_code == 0, res.output
    shown = yaml.safe_load(res.output)
    assert shown["min_priority"] == "error" and shown["prefilter"] is False
    assert shown["outputs"] == [{"kind": "json"}, {"kind": "file", "name": f"file:{tmp_path}/a.json",
                                                   "path": f"{tmp_path}/a.json"}]
    again = write(tmp_path, res.output)
    assert show(load(again)) == res.output


def test_bad_output_spec_is_a_config_error(tmp_path: Path) -> None:
    cfgfile = write(tmp_path, "outputs:\n  - kind: http\n    url: http://127.0.0.1:1/\n    timout: 3\n")
    res = CliRunner().invoke(config_group, ["show", "-c", str(cfgfile)])
    assert res.exit_code == 2 and "timout" in res.output
    res = CliRunner().invoke(config_group, ["show", "-o", "carrier-pigeon"])
    assert res.exit_code == 2 and "use stdout, json" in res.output


def test_apply_checks_like_the_file() -> None:
    cfg = Config()
    with pytest.raises(ConfigError, match="command line: unknown key"):
        apply(cfg, {"nope": 1}, source="command line")
