"""Which file opens and socket sends can matter to the loaded rules, worked out from their
conditions, so the kernel can drop the rest before they cost a ring-buffer record and a Python
decode.

Sends: when every rule that looks at sendto/sendmsg requires a non-TCP socket (Falco's
`outbound` macro does: `fd.l4proto != tcp`), sends on TCP sockets — most of a server's traffic —
are dropped in the kernel (`tcp_sends_unneeded`).

For each open-family event type the rules' conditions (macros expanded, evt.type folded) are
over-approximated by a `OpenNeed`: the event can only match a rule if its path is one of some
exact paths or starts with one of some prefixes, or its open flags include one of some bits.
Anything the analysis cannot bound (a negation, an unknown field, a suffix) makes the need
unbounded and turns the filter off for that event type, so the filter never changes a verdict.
The kernel always sends a path it cannot judge exactly: relative paths, and paths with '//',
'/.' or '/..' in them (Falco normalises those before comparing).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from lanner.rules.ast import And, Compare, Expr, FieldRef, ListValue, Literal, Not, Or
from lanner.rules.codegen import fold

OPEN_EVENTS: Final = ("open", "openat", "openat2")
"""Event types the kernel can filter by path (creat is rare and always sent)."""

MAX_PATH: Final = 255
"""Longest path the kernel's prefix table holds; a longer filter path disables the filter."""

_FLAG_BITS: Final = {"O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_CREAT": os.O_CREAT, "O_TRUNC": os.O_TRUNC,
                     "O_APPEND": os.O_APPEND, "O_EXCL": os.O_EXCL, "O_DIRECTORY": os.O_DIRECTORY,
                     "O_TMPFILE": os.O_TMPFILE & ~os.O_DIRECTORY}
# When a condition needs several flags at once, one of them is enough for an over-approximation:
# keep the rarest, so the kernel sends the fewest events.
_RARITY: Final = (os.O_TRUNC, os.O_APPEND, os.O_EXCL, os.O_CREAT, os.O_RDWR | os.O_WRONLY)
_GLOB: Final = "*?["


@dataclass(frozen=True, slots=True)
class OpenNeed:
    """The opens some rule can match: path in `exact`, path under a `prefixes` entry, or
    (flags & flags_any) != 0. Paths the kernel cannot judge exactly are always sent."""

    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    flags_any: int = 0

    def union(self, other: OpenNeed) -> OpenNeed:
        return OpenNeed(self.exact | other.exact, self.prefixes | other.prefixes, self.flags_any | other.flags_any)

    def size(self) -> int:
        return len(self.exact) + len(self.prefixes)


ANY: Final = None  # the analysis result "unbounded"
NEVER: Final = OpenNeed()  # nothing but paths the kernel cannot judge (a rule that cannot match)
Need = OpenNeed | None


def _literals(c: Compare) -> list[str] | None:
    if isinstance(c.rhs, Literal):
        return [c.rhs.value]
    if isinstance(c.rhs, ListValue):
        return list(c.rhs.items)
    return None


def _static_prefix(pattern: str) -> str:
    cut = min((pattern.find(ch) for ch in _GLOB if ch in pattern), default=len(pattern))
    return pattern[:cut]


def _prefixes(values: list[str]) -> Need:
    out = set()
    for v in values:
        if not v.startswith("/") or len(v) > MAX_PATH:
            return ANY
        out.add(v)
    return OpenNeed(prefixes=frozenset(out))


def _compare(c: Compare) -> Need:
    lhs = c.lhs
    if not isinstance(lhs, FieldRef) or c.modifier is not None:
        return ANY
    values = _literals(c)
    if values is None:
        return ANY
    name, op = lhs.name, c.op
    if lhs.name == "evt.arg" and lhs.arg == "flags":
        name = "evt.arg.flags"
    if name == "fd.name" and lhs.arg is None:
        if op in ("=", "==", "in", "intersects"):
            if any(not v.startswith("/") or len(v) > MAX_PATH for v in values):
                return ANY
            # Falco compares the normalised name: a trailing '/' never survives normalisation
            return OpenNeed(exact=frozenset(v.rstrip("/") or "/" for v in values))
        if op == "startswith":
            return _prefixes(values)
        if op in ("glob", "pmatch"):  # pmatch items may hold glob characters too
            return _prefixes([_static_prefix(v) for v in values])
        return ANY
    if name == "fd.directory" and lhs.arg is None:
        if op in ("=", "==", "in", "intersects"):
            return _prefixes([v.rstrip("/") + "/" for v in values])
        if op == "startswith":
            return _prefixes(values)
        if op == "pmatch":
            return _prefixes([_static_prefix(v) for v in values])
        return ANY
    if name == "fd.nameraw" and lhs.arg is None and op in ("contains", "glob"):
        # '../' can only be in a path the kernel cannot judge, and those are always sent
        if any("../" in v for v in values):
            return NEVER
        return ANY
    if name == "evt.is_open_write" and op in ("=", "==") and values == ["true"]:
        return OpenNeed(flags_any=os.O_WRONLY | os.O_RDWR)
    if name == "evt.arg.flags" and op == "contains" and len(values) == 1 and values[0] in _FLAG_BITS:
        return OpenNeed(flags_any=_FLAG_BITS[values[0]])
    return ANY


def _score(n: OpenNeed) -> tuple[int, int]:
    """Smaller is a tighter filter. Only paths the kernel cannot judge beats everything; then a flag
    constraint (writes, truncation: most opens are reads, so it drops most of them); then paths
    (a rule on writes below /etc or /lib would otherwise let every library load through)."""
    if not n.flags_any and not n.size():
        return (0, 0)
    if n.flags_any and not n.size():
        rank = next((i for i, bits in enumerate(_RARITY) if n.flags_any & ~bits == 0), len(_RARITY))
        return (1, rank)
    return (2 if not n.flags_any else 3, n.size())


def need(node: Expr | bool) -> Need:
    """An over-approximation of the opens `node` (already folded for one event type) can match."""
    if node is True:
        return ANY
    if node is False:
        return NEVER
    if isinstance(node, Compare):
        return _compare(node)
    if isinstance(node, Not):
        return ANY
    if isinstance(node, And):
        bounded = [n for n in (need(i) for i in node.items) if n is not None]
        # every conjunct must hold, so any one of them bounds the whole: take the tightest
        return min(bounded, key=_score) if bounded else ANY
    if isinstance(node, Or):
        out = NEVER
        for item in node.items:
            n = need(item)
            if n is None:
                return ANY
            out = out.union(n)
        return out
    return ANY  # an unexpanded macro: cannot happen for loaded rules, be safe


def open_filters(conditions: Iterable[Expr]) -> dict[str, OpenNeed]:
    """Per open event type, what the kernel must send; a type missing from the result is unfiltered."""
    conds = list(conditions)
    out: dict[str, OpenNeed] = {}
    for evtype in OPEN_EVENTS:
        total: Need = NEVER
        for cond in conds:
            n = need(fold(cond, evtype))
            if n is None:
                total = ANY
                break
            assert total is not None
            total = total.union(n)
        if total is not None:
            out[evtype] = total
    return out


SEND_EVENTS: Final = ("sendto", "sendmsg")


def _excludes_tcp(node: Expr | bool) -> bool:
    """True when `node` cannot hold for an event on a TCP socket (fd.l4proto = tcp)."""
    if node is True:
        return False
    if node is False:
        return True
    if isinstance(node, Compare):
        lhs = node.lhs
        if not (isinstance(lhs, FieldRef) and lhs.name == "fd.l4proto" and lhs.arg is None) or node.modifier:
            return False
        values = _literals(node)
        if values is None:
            return False
        if node.op == "!=":
            return values == ["tcp"]
        return node.op in ("=", "==", "in") and "tcp" not in values
    if isinstance(node, And):
        return any(_excludes_tcp(i) for i in node.items)
    if isinstance(node, Or):
        return all(_excludes_tcp(i) for i in node.items)
    return False


def tcp_sends_unneeded(conditions: Iterable[Expr]) -> frozenset[str]:
    """The send event types no rule can match on a TCP socket."""
    conds = list(conditions)
    return frozenset(t for t in SEND_EVENTS if all(_excludes_tcp(fold(c, t)) for c in conds))


def kernel_sends(need: OpenNeed, path: str, flags: int) -> bool:
    """What the kernel program decides for one open (prefilter_pass in sensor.bpf.c), for tests
    and for explaining a decision: True when the event reaches user space."""
    if flags & need.flags_any:
        return True
    raw = path.encode()
    if not raw or len(raw) >= MAX_PATH + 1 or not path.startswith("/"):
        return True
    for i, ch in enumerate(path):
        if ch == "/" and (i + 1 == len(path) or path[i + 1] in "./"):
            return True  # not normalised: Falco would compare another string
    if path in need.exact:
        return True
    return any(path.startswith(p) for p in need.prefixes)


@dataclass(frozen=True, slots=True)
class Prefilter:
    """Everything the kernel may drop for a set of rules."""

    opens: dict[str, OpenNeed]
    """Per open event type, the opens to send; a type not in it is sent in full."""
    tcp_sends: frozenset[str] = frozenset()
    """Send event types whose calls on TCP sockets are dropped."""


def for_conditions(conditions: Iterable[Expr]) -> Prefilter:
    conds = list(conditions)
    return Prefilter(open_filters(conds), tcp_sends_unneeded(conds))
