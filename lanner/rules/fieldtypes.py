"""The contract between the field registry and the condition compiler.

A :class:`Field` says what a field is (type, argument form, description) and how to read it
from an :class:`~lanner.events.Event`. Extractors return :data:`MISSING` when the field has no
value for the event; every comparison on a missing value is false (Falco's semantics).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lanner.events import Event


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()
"""Returned by an extractor when the field has no value for this event."""


class FieldType(enum.Enum):
    CHARBUF = "CHARBUF"
    FSPATH = "FSPATH"
    FSRELPATH = "FSRELPATH"
    BYTEBUF = "BYTEBUF"
    INT64 = "INT64"
    INT32 = "INT32"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    PID = "PID"
    FD = "FD"
    ERRNO = "ERRNO"
    RELTIME = "RELTIME"
    ABSTIME = "ABSTIME"
    PORT = "PORT"
    BOOL = "BOOL"
    IPADDR = "IPADDR"
    IPNET = "IPNET"


STRING_TYPES: Final = frozenset({FieldType.CHARBUF, FieldType.FSPATH, FieldType.FSRELPATH})
NUMERIC_TYPES: Final = frozenset({
    FieldType.INT64, FieldType.INT32, FieldType.UINT32, FieldType.UINT64, FieldType.PID,
    FieldType.FD, FieldType.ERRNO, FieldType.RELTIME, FieldType.ABSTIME, FieldType.PORT,
})

_EQ_SET: Final = frozenset({"=", "==", "!=", "in", "intersects", "exists"})
_NUM_OPS: Final = _EQ_SET | {"<", "<=", ">", ">="}
_STR_OPS: Final = _NUM_OPS | {"contains", "icontains", "startswith", "endswith", "glob", "iglob",
                              "pmatch", "regex"}
_BUF_OPS: Final = _EQ_SET | {"contains", "bcontains", "startswith", "bstartswith", "endswith"}

OPERATORS_BY_TYPE: Final[dict[FieldType, frozenset[str]]] = {
    **{t: frozenset(_STR_OPS) for t in STRING_TYPES},
    **{t: frozenset(_NUM_OPS) for t in NUMERIC_TYPES},
    FieldType.BYTEBUF: frozenset(_BUF_OPS),
    FieldType.BOOL: _EQ_SET,
    FieldType.IPADDR: _EQ_SET,
    FieldType.IPNET: _EQ_SET,
}
"""Operators each type accepts (libs filter_compare.cpp); any other is a load error."""


class ArgMode(enum.Enum):
    NONE = "none"
    """The field takes no ``[arg]``."""
    OPTIONAL_INDEX = "optional index"
    """``proc.aname`` or ``proc.aname[2]``."""
    REQUIRED_INDEX = "required index"
    OPTIONAL_KEY = "optional key"
    """``proc.env`` or ``proc.env[HOME]``."""
    REQUIRED_KEY = "required key"
    """``k8s.pod.label[app]``, ``evt.arg[...]``."""


class Quantifier(enum.Enum):
    ONE = "one"
    """The extractor returns one value (or MISSING)."""
    ANY = "any"
    """The extractor returns a list; a comparison is true when it holds for some item
    (``proc.aname`` without an index). Applies to every operator, ``!=`` included."""
    EITHER_END = "either end"
    """The extractor returns the candidate values of both socket ends (``fd.ip``, ``fd.port``,
    ``fd.net``): ``=``, ``in`` and the orderings hold when some end matches; ``!=`` holds when
    every end differs."""


Extractor = Callable[[Event, str | None], Any]
"""``extract(event, arg)`` returns the field's value, or MISSING.

Value representation by type: str for the string types; int for the numeric types;
bool for BOOL; bytes for BYTEBUF; ``ipaddress.IPv4Address | IPv6Address`` for IPADDR
(and for IPNET extraction, which yields addresses tested against the literal networks).
"""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    desc: str
    extract: Extractor
    arg: ArgMode = ArgMode.NONE
    quantifier: Quantifier = Quantifier.ONE
    filter_only: bool = False
    """Cannot be used in an output format (fd.ip, fd.net...)."""
    list_with_arg: bool = False
    """With an argument the field is single-valued even when ``quantifier`` is ANY."""
    deprecated: bool = False

    def quantifier_for(self, arg: str | None) -> Quantifier:
        if arg is not None and self.list_with_arg:
            return Quantifier.ONE
        return self.quantifier


def first_or_missing(values: Sequence[Any]) -> Any:
    return values[0] if values else MISSING
