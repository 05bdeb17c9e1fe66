"""The condition parser against Falco's own accept/reject corpus, positions, limits and fuzzing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanner.rules import ConditionSyntaxError, parse_condition
from lanner.rules.ast import And, Compare, FieldRef, Identifier, ListValue, Literal, Not, Or, Transform
from tests.conftest import SHARED

CORPUS = SHARED / "falco" / "conditions"


def _corpus(name: str) -> list[str]:
    path = CORPUS / name
    if not path.exists():
        pytest.fail(f"parser corpus missing: {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


VALID = _corpus("valid.jsonl")
INVALID = _corpus("invalid.jsonl")


def test_corpus_is_complete() -> None:
    assert len(VALID) == 510
    assert len(INVALID) == 99


@pytest.mark.parametrize("cond", VALID)
def test_accepts_falco_valid_condition(cond: str) -> None:
    parse_condition(cond)


@pytest.mark.parametrize("cond", INVALID)
def test_rejects_falco_invalid_condition(cond: str) -> None:
    with pytest.raises(ConditionSyntaxError):
        parse_condition(cond)


def test_tree_shape_and_value_equality() -> None:
    tree = parse_condition("evt.type in (open, openat) and not proc.name = bash or fd.name pmatch (/etc)")
    assert tree == Or((
        And((
            Compare(FieldRef("evt.type"), "in", ListValue(("open", "openat"))),
            Not(Compare(FieldRef("proc.name"), "=", Literal("bash"))),
        )),
        Compare(FieldRef("fd.name"), "pmatch", ListValue(("/etc",))),
    ))
    # positions are kept but do not take part in equality
    assert parse_condition("  a") == Identifier("a")


def test_field_arguments_transformers_and_modifiers() -> None:
    assert parse_condition("proc.aname[2]=sshd") == Compare(FieldRef("proc.aname", "2"), "=", Literal("sshd"))
    assert parse_condition("container.mount.dest[/var/run/docker.sock] exists") == Compare(
        FieldRef("container.mount.dest", "/var/run/docker.sock"), "exists")
    assert parse_condition('k8s.pod.label["app"] = web') == Compare(
        FieldRef("k8s.pod.label", "app"), "=", Literal("web"))
    assert parse_condition("tolower(proc.name) = val(proc.pname)") == Compare(
        Transform("tolower", (FieldRef("proc.name"),)), "=", Transform("val", (FieldRef("proc.pname"),)))
    c = parse_condition("evt.type == oneof (open, openat)")
    assert isinstance(c, Compare) and c.modifier == "oneof" and c.rhs == ListValue(("open", "openat"))


def test_double_negation_cancels_like_falco() -> None:
    assert parse_condition("not not a") == Identifier("a")
    assert parse_condition("not not not a") == Not(Identifier("a"))


def test_quoted_strings_and_escapes() -> None:
    c = parse_condition(r'proc.cmdline = "a \"b\" \\ c\tx"')
    assert isinstance(c, Compare) and c.rhs == Literal('a "b" \\ c\tx')
    with pytest.raises(ConditionSyntaxError, match="escape"):
        parse_condition(r"proc.name = 'a \" b'")


def test_error_carries_position() -> None:
    with pytest.raises(ConditionSyntaxError) as ei:
        parse_condition("evt.type = open and\n  proc.name contains")
    err = ei.value
    assert err.pos.line == 2
    assert "line 2" in str(err)


@pytest.mark.parametrize("text", [
    "(" * 100_000 + "a" + ")" * 100_000,
    "not(" * 100_000 + "a" + ")" * 100_000,
    "tolower(" * 100_000 + "proc.name" + ")" * 100_000 + " = x",
])
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ConditionSyntaxError, match="nested too deeply"):
        parse_condition(text)


def test_long_flat_conditions_parse() -> None:
    cond = " or ".join(f"proc.name = p{i}" for i in range(20_000))
    tree = parse_condition(cond)
    assert isinstance(tree, Or) and len(tree.items) == 20_000


def test_empty_and_blank() -> None:
    with pytest.raises(ConditionSyntaxError, match="empty"):
        parse_condition("")
    with pytest.raises(ConditionSyntaxError):
        parse_condition("   ")


_TOKENS = st.sampled_from([
    "a", "b", "proc.name", "fd.name", "evt.type", " ", "and", "or", "not", "(", ")", "=", "!=", "in",
    "contains", "exists", "pmatch", "glob", "<", ">=", "'x y'", '"q"', "\\", "[", "]", "1", "-2", "0x1",
    ",", "tolower(", "val(", "join(", "oneof", "\n", "\t", "%", "'", '"', "/etc/*", "bcontains ",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=30).map("".join))
def test_fuzz_tokens_parse_or_raise_syntax_error(text: str) -> None:
    with contextlib.suppress(ConditionSyntaxError):
        parse_condition(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_parse_or_raise_syntax_error(text: str) -> None:
    with contextlib.suppress(ConditionSyntaxError):
        parse_condition(text)


def test_corpus_files_are_json_strings() -> None:
    for name in ("valid.jsonl", "invalid.jsonl"):
        for line in Path(CORPUS / name).read_text().splitlines():
            assert isinstance(json.loads(line), str)
