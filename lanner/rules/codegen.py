"""Compiling condition trees to Python functions.

For each event type the engine builds one function that evaluates, in load order, every rule
that can match that type. Inside it:

- ``evt.type`` comparisons are folded to constants (the function only sees one type), so rules
  that cannot match disappear and the rest lose a clause;
- each field is read at most once per event (lazy locals), and a sub-condition shared by
  several rules — a macro such as ``open_write`` — is evaluated at most once per event;
- comparisons are inline Python operators wherever one operator is Falco's semantics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lanner.events import EVENT_TYPES
from lanner.rules.ast import And, Compare, Expr, FieldRef, ListValue, Literal, Not, Or
from lanner.rules.compiler import INLINE_OPERATORS, Test, TestCache, Value
from lanner.rules.fieldtypes import MISSING, Quantifier

Folded = Expr | bool


class _Unset:
    __slots__ = ()


_U = _Unset()


def _evt_type_check(c: Compare) -> frozenset[str] | None:
    """The set of types an ``evt.type`` comparison accepts, or None if it is not one we fold."""
    if not (isinstance(c.lhs, FieldRef) and c.lhs.name == "evt.type" and c.lhs.arg is None
            and c.modifier is None):
        return None
    if c.op in ("=", "==", "!=") and isinstance(c.rhs, Literal):
        return frozenset({c.rhs.value})
    if c.op in ("in", "intersects") and isinstance(c.rhs, ListValue):
        return frozenset(c.rhs.items)
    return None


def fold(node: Expr, evtype: str) -> Folded:
    """The condition as seen by events of one type: evt.type checks become constants."""
    if isinstance(node, Compare):
        types = _evt_type_check(node)
        if types is None:
            return node
        hit = evtype in types
        return not hit if node.op == "!=" else hit
    if isinstance(node, Not):
        inner = fold(node.item, evtype)
        return (not inner) if isinstance(inner, bool) else (node if inner is node.item else Not(inner, node.pos))
    if isinstance(node, And | Or):
        is_and = isinstance(node, And)
        items: list[Expr] = []
        changed = False
        for it in node.items:
            f = fold(it, evtype)
            if isinstance(f, bool):
                changed = True
                if f is not is_and:  # False in an And, True in an Or decides it
                    return f
                continue
            changed = changed or f is not it
            items.append(f)
        if not items:
            return is_and
        if len(items) == 1:
            return items[0]
        if not changed:
            return node
        return And(tuple(items), node.pos) if is_and else Or(tuple(items), node.pos)
    return node


def event_types(cond: Expr) -> frozenset[str] | None:
    """The event types a condition can match; None when it is not restricted by evt.type."""
    types = frozenset(t for t in EVENT_TYPES if fold(cond, t) is not False)
    return None if types == EVENT_TYPES else types


class _Gen:
    def __init__(self, tests: TestCache) -> None:
        self.tests = tests
        self.ns: dict[str, Any] = {"_M": MISSING, "_U": _U}
        self.const_names: dict[int, str] = {}
        self.value_count: Counter[tuple[Any, ...]] = Counter()
        self.node_count: Counter[Expr] = Counter()
        self.value_vars: dict[tuple[Any, ...], str] = {}
        self.node_vars: dict[Expr, str] = {}

    def const(self, obj: Any) -> str:
        if isinstance(obj, bool) or obj is None:
            return repr(obj)
        if isinstance(obj, str | int) and len(repr(obj)) < 200:
            return repr(obj)
        name = self.const_names.get(id(obj))
        if name is None:
            name = self.const_names[id(obj)] = f"k{len(self.const_names)}"
            self.ns[name] = obj
        return name

    def count(self, node: Expr) -> None:
        stack: list[Expr] = [node]
        while stack:
            n = stack.pop()
            self.node_count[n] += 1
            if self.node_count[n] > 1:
                continue  # its children were counted the first time
            if isinstance(n, Compare):
                t = self.tests.get(n)
                self.value_count[t.value.key] += 1
                if t.rhs is not None:
                    self.value_count[t.rhs.key] += 1
            elif isinstance(n, And | Or):
                stack.extend(n.items)
            elif isinstance(n, Not):
                stack.append(n.item)

    def read(self, v: Value) -> str:
        if v.field is not None and v.key[0] == "f":
            call = f"{self.const(v.field.extract)}(e, {v.arg!r})"
        else:
            call = f"{self.const(v.read)}(e)"
        if self.value_count[v.key] < 2:
            return call
        var = self.value_vars.get(v.key)
        if var is None:
            var = self.value_vars[v.key] = f"_v{len(self.value_vars)}"
        return f"({var} if {var} is not _U else ({var} := {call}))"

    def test(self, t: Test) -> str:
        src = self.read(t.value)
        if t.op == "exists":
            return f"({src} is not _M)"
        if t.rhs is not None:
            return self.dynamic(t, src)
        q = t.value.quantifier
        head = f"(_a := {src}) is not _M"
        if q is not Quantifier.ONE:
            if t.negate_any:
                assert t.pred is not None
                return f"({head} and bool(_a) and not any(map({self.const(t.pred)}, _a)))"
            if t.pred is None and t.op in ("in", "intersects"):
                return f"({head} and not {self.const(t.const)}.isdisjoint(_a))"
            assert t.pred is not None, "quantified values always compare through a predicate"
            return f"({head} and any(map({self.const(t.pred)}, _a)))"
        if t.pred is not None:
            return f"({head} and {self.const(t.pred)}(_a))"
        k = self.const(t.const)
        if t.op in ("in", "intersects"):
            return f"({head} and _a in {k})"
        return f"({head} and _a {INLINE_OPERATORS[t.op]} {k})"

    def dynamic(self, t: Test, src: str) -> str:
        """A comparison with a value read from the event on the right (``val(field)``)."""
        assert t.rhs is not None and t.compare is not None
        cmp = self.const(t.compare)
        return f"((_a := {src}) is not _M and (_b := {self.read(t.rhs)}) is not _M and {cmp}(_a, _b))"

    def expr(self, node: Folded) -> str:
        if isinstance(node, bool):
            return repr(node)
        if self.node_count[node] > 1:
            var = self.node_vars.get(node)
            if var is None:
                var = self.node_vars[node] = f"_c{len(self.node_vars)}"
            return f"({var} if {var} is not _U else ({var} := {self.plain(node)}))"
        return self.plain(node)

    def plain(self, node: Expr) -> str:
        if isinstance(node, Compare):
            return self.test(self.tests.get(node))
        if isinstance(node, Not):
            return f"(not {self.expr(node.item)})"
        if isinstance(node, And):
            return "(" + " and ".join(self.expr(i) for i in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " or ".join(self.expr(i) for i in node.items) + ")"
        raise TypeError(f"cannot compile {type(node).__name__}")

    def function(self, conds: Sequence[Folded], first: bool) -> Callable[[Any], Sequence[int]]:
        for c in conds:
            if not isinstance(c, bool):
                self.count(c)
        body: list[str] = []
        for i, c in enumerate(conds):
            if c is False:
                continue
            test = self.expr(c)
            body.append(f"    if {test}:\n        " + (f"return ({i},)" if first else f"r.append({i})"))
        local_vars = list(self.value_vars.values()) + list(self.node_vars.values())
        head = ["def _match(e):"]
        if local_vars:
            head.append("    " + " = ".join(local_vars) + " = _U")
        if not first:
            head.append("    r = []")
        tail = "    return ()" if first else "    return r"
        src = "\n".join([*head, *body, tail]) + "\n"
        code = compile(src, "<lanner-rules>", "exec")
        exec(code, self.ns)
        fn: Callable[[Any], Sequence[int]] = self.ns["_match"]
        fn.__lanner_source__ = src  # type: ignore[attr-defined]
        return fn


def build_type_matcher(conds: Iterable[Expr], evtype: str | None, tests: TestCache,
                       first: bool) -> Callable[[Any], Sequence[int]]:
    """One function for all rules and one event type; it returns the indices of matching rules."""
    folded = [fold(c, evtype) if evtype is not None else c for c in conds]
    return _Gen(tests).function(folded, first)
