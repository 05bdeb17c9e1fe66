"""Falco-compatible rules: load rules files, parse and compile conditions.

Public API::

    from lanner.rules import load, parse_condition, ConditionSyntaxError
    ruleset = load(["falco_rules.yaml"])       # never raises for bad input
    ruleset.errors, ruleset.warnings           # LoadMessage items with Falco's codes
    ruleset.rules["Terminal shell in container"].condition   # expanded AST
"""

from lanner.rules.loader import load
from lanner.rules.parser import ConditionSyntaxError, parse_condition
from lanner.rules.ruleset import LoadMessage, Priority, Rule, Ruleset

__all__ = ["ConditionSyntaxError", "LoadMessage", "Priority", "Rule", "Ruleset", "load", "parse_condition"]
