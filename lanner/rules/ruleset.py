"""What loading rules files produces: rules, macros, lists, and the load result messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lanner.rules.ast import Expr

if TYPE_CHECKING:
    from lanner.rules.compiler import TestCache


class Priority(enum.IntEnum):
    """Falco's priorities; a lower value is more severe."""

    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7

    @property
    def label(self) -> str:
        """How Falco prints it: ``Warning``, ``Informational``..."""
        return self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Case-insensitive; accepts Falco's aliases (``info``, ``warn``...)."""
        t = str(text).strip().upper()
        aliases = {"INFO": "INFORMATIONAL", "WARN": "WARNING", "ERR": "ERROR", "CRIT": "CRITICAL",
                   "EMERG": "EMERGENCY"}
        t = aliases.get(t, t)
        try:
            return cls[t]
        except KeyError:
            raise ValueError(f"invalid priority {text!r}: expected one of "
                             + ", ".join(p.name.lower() for p in cls)) from None


ERROR_CODES = frozenset({
    "LOAD_ERR_YAML_PARSE", "LOAD_ERR_YAML_VALIDATE", "LOAD_ERR_VALIDATE", "LOAD_ERR_COMPILE_CONDITION",
    "LOAD_ERR_COMPILE_OUTPUT", "LOAD_ERR_EXTENSION",
})
WARNING_CODES = frozenset({
    "LOAD_UNKNOWN_SOURCE", "LOAD_UNSAFE_NA_CHECK", "LOAD_NO_EVTTYPE", "LOAD_UNKNOWN_FILTER",
    "LOAD_UNUSED_MACRO", "LOAD_UNUSED_LIST", "LOAD_UNKNOWN_ITEM", "LOAD_DEPRECATED_ITEM",
    "LOAD_WARNING_EXTENSION", "LOAD_APPEND_NO_VALUES", "LOAD_EXCEPTION_NAME_NOT_UNIQUE",
    "LOAD_INVALID_MACRO_NAME", "LOAD_INVALID_LIST_NAME", "LOAD_COMPILE_CONDITION", "LOAD_UNKNOWN_KEY",
})


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class LoadMessage:
    """An error or warning of a load, with the same codes and shape as ``rules validate --json``."""

    code: str
    message: str
    item_type: str = ""
    item_name: str = ""
    location: Location = Location("")

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "item_type": self.item_type, "item_name": self.item_name,
                "message": self.message, "file": self.location.file, "line": self.location.line,
                "column": self.location.column}

    def __str__(self) -> str:
        what = f"{self.item_type} '{self.item_name}': " if self.item_type else ""
        return f"{self.location}: {self.code}: {what}{self.message}"


@dataclass(slots=True)
class Rule:
    name: str
    condition: Expr
    """The expanded condition: lists and macros substituted, exceptions applied."""
    output: str
    priority: Priority
    desc: str = ""
    source: str = "syscall"
    tags: tuple[str, ...] = ()
    enabled: bool = True
    evttypes: frozenset[str] | None = None
    """Event types the condition can match; None means every type."""
    action: str = "alert"
    mode: str | None = None
    capture: bool = False
    location: Location = Location("")
    index: int = 0
    """Load order: the position where the rule was first defined."""
    formatter: Any = field(default=None, repr=False, compare=False)
    """The compiled output format (lanner.rules.output.OutputFormat)."""


@dataclass(slots=True)
class Ruleset:
    """The result of loading rules files: the rules in load order plus errors and warnings."""

    rules: dict[str, Rule] = field(default_factory=dict)
    macros: dict[str, Expr] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errors: list[LoadMessage] = field(default_factory=list)
    warnings: list[LoadMessage] = field(default_factory=list)
    required_engine_version: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    """How many rule, macro and list definitions the files contain (before merging)."""
    tests: TestCache | None = field(default=None, repr=False, compare=False)
    """The compiled comparisons of this ruleset's conditions, shared by its rules."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def enabled_rules(self) -> list[Rule]:
        return [r for r in self.rules.values() if r.enabled]
