"""Loading rules files: Falco's files unmodified, override semantics, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lanner.rules import load, parse_condition
from lanner.rules.ruleset import Priority

OFFICIAL = ["falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml"]


def _lanner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lanner", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_file_loads_with_its_counts(falco_rules_dir: Path, name: str) -> None:
    path = falco_rules_dir / name
    items = yaml.safe_load(path.read_text())
    expected = {k: sum(1 for i in items if k in i) for k in ("rule", "macro", "list")}
    rs = load([path])
    assert rs.errors == []
    assert rs.counts == expected
    assert len(rs.rules) == expected["rule"]
    assert len(rs.macros) == expected["macro"]
    assert len(rs.lists) == expected["list"]
    disabled = sum(1 for i in items if "rule" in i and i.get("enabled") is False)
    assert len(rs.enabled_rules()) == expected["rule"] - disabled


@pytest.mark.parametrize("name", OFFICIAL)
def test_validate_command_exits_0_on_official_file(falco_rules_dir: Path, name: str) -> None:
    res = _lanner("rules", "validate", "-r", str(falco_rules_dir / name), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["errors"] == []


def test_all_three_files_together(falco_rules_dir: Path) -> None:
    rs = load([falco_rules_dir / n for n in OFFICIAL])
    assert rs.errors == []
    assert "Terminal shell in container" in rs.rules


def test_rule_condition_is_expanded_ast() -> None:
    rs = load("""
- list: shells
  items: [bash, "my shell"]
- macro: spawned
  condition: evt.type = execve
- rule: r
  desc: d
  condition: spawned and proc.name in (shells)
  output: o
  priority: warning
""")
    assert rs.errors == []
    assert rs.rules["r"].condition == parse_condition('(evt.type = execve) and proc.name in (bash, "my shell")')


def test_exceptions_expand_to_and_not_form() -> None:
    rs = load("""
- rule: r
  desc: d
  condition: evt.type = open
  output: o
  priority: info
  exceptions:
    - name: pairs
      fields: [proc.name, fd.directory]
      comps: [=, in]
      values:
        - [cat, [/etc, /tmp x]]
    - name: single
      fields: proc.pname
      values: [sshd, "my daemon"]
""")
    assert rs.errors == [], rs.errors
    expected = ('evt.type = open and not ((proc.name = cat and fd.directory in (/etc, "/tmp x")))'
                ' and not (proc.pname in (sshd, "my daemon"))')
    assert rs.rules["r"].condition == parse_condition(expected)


def test_override_append_replace_and_legacy_append_across_files(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("""
- list: bins
  items: [ls]
- macro: m
  condition: proc.name in (bins)
- rule: r
  desc: d
  condition: evt.type = execve and m
  output: "base %proc.name"
  priority: notice
  tags: [a]
- rule: other
  desc: d
  condition: evt.type = open
  output: o
  priority: notice
""")
    local = tmp_path / "local.yaml"
    local.write_text("""
- list: bins
  items: [cat]
  override:
    items: append
- rule: r
  condition: and user.uid = 0
  priority: critical
  override:
    condition: append
    priority: replace
- rule: other
  enabled: false
- macro: m
  condition: or proc.name = vi
  append: true
""")
    rs = load([base, local])
    assert rs.errors == [], rs.errors
    r = rs.rules["r"]
    assert r.priority is Priority.CRITICAL
    assert r.condition == parse_condition("evt.type = execve and (proc.name in (ls, cat) or proc.name = vi)"
                                          " and user.uid = 0")
    assert rs.rules["other"].enabled is False
    assert any(w.code == "LOAD_DEPRECATED_ITEM" for w in rs.warnings)
    assert list(rs.rules) == ["r", "other"]  # load order is first definition order


def test_redefinition_replaces_and_keeps_position() -> None:
    rs = load("""
- rule: a
  desc: d
  condition: evt.type = open
  output: one
  priority: info
- rule: b
  desc: d
  condition: evt.type = open
  output: b
  priority: info
- rule: a
  desc: d
  condition: evt.type = openat
  output: two
  priority: info
""")
    assert list(rs.rules) == ["a", "b"]
    assert rs.rules["a"].output == "two"


def _one_error(text: str) -> tuple[str, str, int]:
    rs = load(text)
    assert rs.errors, "expected an error"
    e = rs.errors[0]
    return e.code, e.message, e.location.line


@pytest.mark.parametrize(("text", "code", "fragment", "line"), [
    ("- rule: r\n  desc: [unclosed\n", "LOAD_ERR_YAML_PARSE", "invalid YAML", 3),
    ("- rule: r\n  desc: d\n  condition: [a, b]\n  output: o\n  priority: info\n",
     "LOAD_ERR_YAML_VALIDATE", "'condition' must be a string", 3),
    ("- rule: r\n  desc: d\n  output: o\n  priority: info\n", "LOAD_ERR_YAML_VALIDATE", "no 'condition'", 1),
    ("- rule: r\n  desc: d\n  condition: evt.type=open\n  output: o\n  priority: loud\n",
     "LOAD_ERR_YAML_VALIDATE", "invalid priority", 5),
    ("- rule: r\n  desc: d\n  condition: evt.type=open and nosuch\n  output: o\n  priority: info\n",
     "LOAD_ERR_VALIDATE", "Undefined macro 'nosuch'", 3),
    ("- macro: a\n  condition: b\n- macro: b\n  condition: a\n", "LOAD_ERR_VALIDATE", "circular", 1),
    ("- rule: r\n  desc: d\n  condition: proc.nosuchfield = x\n  output: o\n  priority: info\n",
     "LOAD_ERR_COMPILE_CONDITION", "nonexistent field proc.nosuchfield", 3),
    ("- rule: r\n  desc: d\n  condition: evt.rawres contains x\n  output: o\n  priority: info\n",
     "LOAD_ERR_COMPILE_CONDITION", "not supported on field 'evt.rawres'", 3),
    ("- rule: r\n  desc: d\n  condition: evt.rawres = abc\n  output: o\n  priority: info\n",
     "LOAD_ERR_COMPILE_CONDITION", "invalid value 'abc'", 3),
    ("- rule: r\n  desc: d\n  condition: evt.type = open\n  output: '%proc.nosuch'\n  priority: info\n",
     "LOAD_ERR_COMPILE_OUTPUT", "unknown field", 4),
    ("- rule: r\n  desc: d\n  condition: evt.type = open and (\n  output: o\n  priority: info\n",
     "LOAD_ERR_COMPILE_CONDITION", "expected", 3),
    ("", "LOAD_ERR_YAML_VALIDATE", "empty", 1),
    ("rule: r\n", "LOAD_ERR_YAML_VALIDATE", "not a YAML array", 1),
    ("- just a string\n", "LOAD_ERR_YAML_VALIDATE", "associative array", 1),
    ("- rule: r\n  override:\n    condition: append\n  condition: x\n", "LOAD_ERR_VALIDATE", "no rule named", 1),
    ("- required_engine_version: 99.0.0\n", "LOAD_ERR_VALIDATE", "engine version", 1),
])
def test_bad_input_gets_code_message_and_location(text: str, code: str, fragment: str, line: int) -> None:
    got_code, message, got_line = _one_error(text)
    assert got_code == code
    assert fragment in message
    assert got_line == line


def test_deeply_nested_condition_in_rules_file() -> None:
    cond = "(" * 100_000 + "evt.type = open" + ")" * 100_000
    rs = load(f"- rule: r\n  desc: d\n  condition: '{cond}'\n  output: o\n  priority: info\n")
    assert rs.errors and "nested too deeply" in rs.errors[0].message


def test_unknown_field_with_skip_if_unknown_filter_is_a_warning() -> None:
    rs = load("- rule: r\n  desc: d\n  condition: proc.nosuch = x\n  output: o\n  priority: info\n"
              "  skip-if-unknown-filter: true\n")
    assert rs.errors == []
    assert [w.code for w in rs.warnings] == ["LOAD_UNKNOWN_FILTER"]
    assert "r" not in rs.rules


def test_warnings_have_falco_codes() -> None:
    rs = load("""
- list: unused
  items: [a]
- macro: bad-name
  condition: evt.type = open
- rule: r
  desc: d
  condition: proc.name = x
  output: o
  priority: info
  colour: blue
- something_else: 1
""")
    codes = {w.code for w in rs.warnings}
    assert {"LOAD_UNUSED_LIST", "LOAD_INVALID_MACRO_NAME", "LOAD_UNKNOWN_KEY", "LOAD_UNKNOWN_ITEM",
            "LOAD_NO_EVTTYPE", "LOAD_UNUSED_MACRO"} <= codes


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary\xff\xfe", b"\xff\xfe\xfd", b"- rule: [",
                                     b"- rule: r\n  desc: d\n  condition: " + b"(" * 5000 + b"\n"])
def test_cli_bad_files_exit_1_with_location_no_traceback(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.yaml"
    f.write_bytes(content)
    res = _lanner("rules", "validate", "-r", str(f))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert str(f) in res.stderr
    res = _lanner("rules", "validate", "-r", str(f), "--json")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False
    err = out["errors"][0]
    assert set(err) == {"code", "item_type", "item_name", "message", "file", "line", "column"}
    assert err["file"] == str(f)


def test_cli_missing_file(tmp_path: Path) -> None:
    res = _lanner("rules", "validate", "-r", str(tmp_path / "nope.yaml"))
    assert res.returncode == 1
    assert "cannot read file" in res.stderr and "Traceback" not in res.stderr
