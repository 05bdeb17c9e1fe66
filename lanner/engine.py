"""Events in, alerts out: rules indexed by event type, Falco's rule_matching semantics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lanner.alert import Alert, hostname
from lanner.events import Event
from lanner.rules import codegen
from lanner.rules.compiler import shared_tests
from lanner.rules.ruleset import Priority, Rule, Ruleset

RULE_MATCHING = ("first", "all")


class Engine:
    """Evaluates events against a ruleset.

    ``process(event)`` returns the alerts of one event: with ``rule_matching="first"`` (Falco's
    default) at most one — the first rule in load order whose condition holds — and with
    ``"all"`` every matching rule. Only enabled rules at or above ``min_priority`` take part.
    """

    def __init__(self, ruleset: Ruleset, rule_matching: str = "first",
                 min_priority: Priority | str = Priority.DEBUG) -> None:
        if rule_matching not in RULE_MATCHING:
            raise ValueError(f"rule_matching must be one of {', '.join(RULE_MATCHING)}")
        if isinstance(min_priority, str):
            min_priority = Priority.parse(min_priority)
        self.first = rule_matching == "first"
        self.rules: list[Rule] = sorted(
            (r for r in ruleset.rules.values() if r.enabled and r.priority <= min_priority),
            key=lambda r: r.index)
        self.hostname = hostname()
        self._by_type: dict[str, tuple[Callable[[Any], Sequence[int]], list[Rule]]] = {}
        self.matches: dict[str, int] = {r.name: 0 for r in self.rules}

    def _matcher(self, evtype: str) -> tuple[Callable[[Any], Sequence[int]], list[Rule]]:
        rules = [r for r in self.rules if r.evttypes is None or evtype in r.evttypes]
        fn = codegen.build_type_matcher([r.condition for r in rules], evtype, shared_tests(), self.first)
        entry = (fn, rules)
        self._by_type[evtype] = entry
        return entry

    def match(self, evt: Event) -> list[Rule]:
        """The rules an event matches, in load order (at most one with rule_matching=first)."""
        entry = self._by_type.get(evt.type)
        if entry is None:
            entry = self._matcher(evt.type)
        fn, rules = entry
        return [rules[i] for i in fn(evt)]

    def process(self, evt: Event) -> list[Alert]:
        alerts = []
        for rule in self.match(evt):
            self.matches[rule.name] += 1
            alerts.append(self.alert(rule, evt))
        return alerts

    def alert(self, rule: Rule, evt: Event) -> Alert:
        message, fields = rule.formatter.render(evt)
        return Alert(rule=rule.name, priority=rule.priority.label, message=message, output_fields=fields,
                     time_ns=evt.ts, tags=rule.tags, source=rule.source, hostname=self.hostname)
