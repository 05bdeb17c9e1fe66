"""Events in, alerts out: rules indexed by event type, Falco's rule_matching semantics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lanner.alert import Alert, hostname
from lanner.events import Event
from lanner.rules import codegen
from lanner.rules.compiler import TestCache
from lanner.rules.ruleset import Priority, Rule, Ruleset

RULE_MATCHING = ("first", "all")


class Engine:
    """Evaluates events against a ruleset.

    ``process(event)`` returns the alerts of one event: with ``rule_matching="first"`` (Falco's
    default) at most one — the first rule in load order whose condition holds — and with
    ``"all"`` every matching rule. Only enabled rules at or above ``min_priority`` take part, and
    none whose action is in ``skip_actions`` (the agent leaves block rules to the kernel).
    """

    def __init__(self, ruleset: Ruleset, rule_matching: str = "first",
                 min_priority: Priority | str = Priority.DEBUG, skip_actions: frozenset[str] = frozenset()) -> None:
        if rule_matching not in RULE_MATCHING:
            raise ValueError(f"rule_matching must be one of {', '.join(RULE_MATCHING)}")
        if isinstance(min_priority, str):
            min_priority = Priority.parse(min_priority)
        self.first = rule_matching == "first"
        self.rules: list[Rule] = sorted(
            (r for r in ruleset.rules.values()
             if r.enabled and r.priority <= min_priority and r.action not in skip_actions),
            key=lambda r: r.index)
        self.tests = ruleset.tests if ruleset.tests is not None else TestCache()
        self.hostname = hostname()
        self._by_type: dict[str, tuple[Callable[[Any], Sequence[int]], list[Rule]]] = {}

    def event_types(self) -> set[str] | None:
        """The event types some rule can match; None when a rule matches every type."""
        out: set[str] = set()
        for rule in self.rules:
            if rule.evttypes is None:
                return None
            out |= rule.evttypes
        return out

    def warm(self, event_types: set[str] | frozenset[str]) -> None:
        """Compile the matchers of these event types now, not on their first event (which would
        pay the compile in its alert latency)."""
        for evtype in event_types:
            if evtype not in self._by_type:
                self._matcher(evtype)

    def _matcher(self, evtype: str) -> tuple[Callable[[Any], Sequence[int]], list[Rule]]:
        rules = [r for r in self.rules if r.evttypes is None or evtype in r.evttypes]
        fn = codegen.build_type_matcher([r.condition for r in rules], evtype, self.tests, self.first)
        entry = (fn, rules)
        self._by_type[evtype] = entry
        return entry

    def match(self, evt: Event) -> list[Rule]:
        """The rules an event matches, in load order (at most one with rule_matching=first)."""
        fn, rules = self._by_type.get(evt.type) or self._matcher(evt.type)
        return [rules[i] for i in fn(evt)]

    def process(self, evt: Event) -> list[Alert]:
        fn, rules = self._by_type.get(evt.type) or self._matcher(evt.type)
        hits = fn(evt)
        if not hits:  # the common case: no comprehension frame, no list to build
            return []
        return [self.alert(rules[i], evt) for i in hits]

    def alert(self, rule: Rule, evt: Event) -> Alert:
        message, fields = rule.formatter.render(evt)
        return Alert(rule=rule.name, priority=rule.priority.label, message=message, output_fields=fields,
                     time_ns=evt.ts, tags=rule.tags, source=rule.source, hostname=self.hostname)
