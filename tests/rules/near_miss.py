"""Trigger / near-miss event files, shared by the stable-rule and default-rule suites: a rules file
is loaded with one extra DEBUG rule per top-level clause of each rule, so a test can tell exactly
which clauses a near miss fails."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lanner.alert import Alert
from lanner.engine import Engine
from lanner.eventfile import read_events
from lanner.rules import Ruleset, load

# Falco's spelling of priorities in alerts (FIELDS.md §11.2).
PRIORITY_LABELS = {
    "emergency": "Emergency", "alert": "Alert", "critical": "Critical", "error": "Error",
    "warning": "Warning", "notice": "Notice", "informational": "Informational",
    "info": "Informational", "debug": "Debug",
}


@dataclass(frozen=True)
class Case:
    """One rule's hand-written trigger and near-miss event files, and what they must show."""

    rule: str
    trigger: str
    """What the trigger event is (the attack)."""
    clause: str
    """The top-level clause of the rule's condition that is false for the near miss (a prefix of
    its text as written in the rules file, whitespace collapsed); every other clause holds."""
    miss: str
    """What the near miss is, and why that clause is false."""
    output: tuple[str, ...]
    """Substrings a user would look for in the trigger's alert output line."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Expected values in the trigger alert's output_fields (JSON types as in FIELDS.md §11.3)."""
    xfail: str | None = None
    """Reason, when the trigger is known not to alert because of an engine gap."""


def top_level_clauses(condition: str) -> list[str]:
    """Split a condition on its top-level ``and`` (outside parentheses and quotes)."""
    text = " ".join(condition.split())
    clauses: list[str] = []
    depth, quote, start, i = 0, "", 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and text.startswith(" and ", i):
            clauses.append(text[start:i].strip())
            start = i + len(" and ")
            i = start
            continue
        i += 1
    clauses.append(text[start:].strip())
    return clauses


def clause_rule_name(rule: str, index: int) -> str:
    return f"{rule} :: clause {index}"


def clause_ruleset(rules_file: Path, rule_items: list[dict[str, Any]]) -> tuple[Ruleset, dict[str, list[str]]]:
    """`rules_file` plus one DEBUG rule per top-level clause of every rule's condition."""
    clauses = {str(item["rule"]): top_level_clauses(str(item["condition"])) for item in rule_items}
    extra = [
        {"rule": clause_rule_name(rule, i), "desc": "one clause", "condition": clause,
         "output": "clause", "priority": "DEBUG"}
        for rule, parts in clauses.items() for i, clause in enumerate(parts)
    ]
    return load([rules_file, yaml.safe_dump(extra, sort_keys=False, width=1 << 16)]), clauses


def replay(ruleset: Ruleset, path: Path, rule_matching: str = "all") -> Iterator[Alert]:
    engine = Engine(ruleset, rule_matching=rule_matching)
    for evt in read_events(path):
        yield from engine.process(evt)


def false_clauses(ruleset: Ruleset, clauses: list[str], rule: str, path: Path) -> list[str]:
    """The clauses of ``rule`` that no event of ``path`` satisfies."""
    matched = {a.rule for a in replay(ruleset, path)}
    return [c for i, c in enumerate(clauses) if clause_rule_name(rule, i) not in matched]
