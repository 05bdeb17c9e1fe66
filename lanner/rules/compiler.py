"""Type-checking conditions against the field registry, and compiling rules.

Each comparison of a condition becomes a :class:`Test`: the field and its extractor, the
operator, and the literal already parsed to the field's type. :mod:`lanner.rules.codegen`
turns trees of tests into Python functions; this module decides what is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lanner.rules import operators as ops
from lanner.rules.ast import Compare, FieldRef, ListValue, Literal, Transform, walk
from lanner.rules.fieldtypes import (
    MISSING,
    OPERATORS_BY_TYPE,
    Field,
    FieldType,
    Quantifier,
)
from lanner.rules.ruleset import Rule


class CompileError(ValueError):
    """A condition or output that is syntactically fine but cannot be compiled."""


class UnknownFieldError(CompileError):
    """A condition uses a field that does not exist."""


def lookup_field(name: str) -> Field | None:
    from lanner.rules.fields import lookup

    return lookup(name)


def resolve_field(ref: FieldRef) -> Field:
    f = lookup_field(ref.name)
    if f is None:
        raise UnknownFieldError(f"filter_check called with nonexistent field {ref.name}")
    from lanner.rules.fields import check_arg

    try:
        check_arg(f, ref.arg)
    except ValueError as e:
        raise CompileError(f"field '{ref.name}': {e}") from None
    return f


@dataclass(frozen=True, slots=True, eq=False)
class Value:
    """How to read the left-hand side of a test: a field or a transformer over fields."""

    field: Field | None
    arg: str | None
    type: FieldType
    quantifier: Quantifier
    read: Callable[[Any], Any]
    """``read(event)`` returns the value, a list (quantified fields) or MISSING."""
    key: tuple[Any, ...]
    """Identifies equal values, so one event reads each at most once."""


def _transform_fn(name: str) -> Callable[[Any], Any]:
    return {"tolower": ops.t_tolower, "toupper": ops.t_toupper, "b64": ops.t_b64,
            "basename": ops.t_basename, "len": ops.t_len}[name]


def compile_value(node: FieldRef | Transform | Literal | ListValue, rhs: bool = False) -> Value:
    if isinstance(node, FieldRef):
        f = resolve_field(node)
        ex, arg = f.extract, node.arg
        return Value(f, arg, f.type, f.quantifier_for(arg), lambda e: ex(e, arg), ("f", node.name, arg))
    if isinstance(node, Literal):
        text = node.value
        return Value(None, None, FieldType.CHARBUF, Quantifier.ONE, lambda e: text, ("l", text))
    if isinstance(node, ListValue):
        items = list(node.items)
        return Value(None, None, FieldType.CHARBUF, Quantifier.ONE, lambda e: items, ("L", node.items))
    return _compile_transform(node, rhs)


def _single(v: Value) -> Callable[[Any], Any]:
    """A reader that yields one value: quantified (list) fields are joined with spaces."""
    read = v.read
    if v.quantifier is Quantifier.ONE:
        return read

    def joined(e: Any) -> Any:
        vals = read(e)
        return MISSING if vals is MISSING or not vals else " ".join(ops.to_str(x) for x in vals)
    return joined


def _compile_transform(node: Transform, rhs: bool) -> Value:
    name = node.name
    if name == "val":
        if not rhs:
            raise CompileError("'val()' can only be used on the right-hand side of a comparison")
        inner = compile_value(node.args[0])
        return Value(inner.field, inner.arg, inner.type, inner.quantifier, inner.read, ("val", *inner.key))
    parts = [compile_value(a) for a in node.args]
    key = (name, node.index, *(p.key for p in parts))
    if name in ("tolower", "toupper", "b64", "basename", "len"):
        fn = _transform_fn(name)
        src = _single(parts[0])
        if parts[0].type in (FieldType.BOOL, FieldType.IPNET) and name != "len":
            raise CompileError(f"transformer '{name}' does not apply to a field of type {parts[0].type.value}")

        def apply(e: Any) -> Any:
            v = src(e)
            if v is MISSING:
                return MISSING
            r = fn(v)
            return MISSING if r is None else r
        ftype = FieldType.INT64 if name == "len" else FieldType.CHARBUF
        return Value(None, None, ftype, Quantifier.ONE, apply, key)
    if name == "concat":
        readers = [_single(p) for p in parts]

        def concat(e: Any) -> Any:
            out = []
            for r in readers:
                v = r(e)
                if v is MISSING:
                    return MISSING
                out.append(ops.to_str(v))
            return "".join(out)
        return Value(None, None, FieldType.CHARBUF, Quantifier.ONE, concat, key)
    if name == "join":
        sep_r = _single(parts[0])
        lst = node.args[1]
        assert isinstance(lst, Transform)
        readers = [_single(compile_value(a)) for a in lst.args]

        def join(e: Any) -> Any:
            sep = sep_r(e)
            if sep is MISSING:
                return MISSING
            vals = [r(e) for r in readers]
            return ops.to_str(sep).join(ops.to_str(v) for v in vals if v is not MISSING)
        return Value(None, None, FieldType.CHARBUF, Quantifier.ONE, join, key)
    if name == "getopt":
        src_node, optstring = node.args[0], node.args[1]
        assert isinstance(optstring, Literal)
        opts = optstring.value
        if isinstance(src_node, Transform) and src_node.name == "list":
            lits = [compile_value(a) for a in src_node.args]
            readers = [_single(x) for x in lits]

            def argv(e: Any) -> Any:
                return [ops.to_str(r(e)) for r in readers]
        else:
            src_v = compile_value(src_node)
            src_read = _single(src_v)

            def argv(e: Any) -> Any:
                v = src_read(e)
                return MISSING if v is MISSING else ops.to_str(v).split()
        index = node.index

        def getopt(e: Any) -> Any:
            a = argv(e)
            if a is MISSING:
                return MISSING
            found = ops.getopt_values(a, opts)
            if index is not None:
                vals = found.get(index)
                return vals[-1] if vals else MISSING
            out: list[str] = []
            for opt, vals in found.items():
                out.append(opt)
                out.extend(v for v in vals if v)
            return out
        if index is not None:
            return Value(None, None, FieldType.CHARBUF, Quantifier.ONE, getopt, key)
        return Value(None, None, FieldType.CHARBUF, Quantifier.ANY, getopt, key)
    raise CompileError(f"unknown transformer '{name}'")


@dataclass(frozen=True, slots=True, eq=False)
class Test:
    """One comparison, ready to run: read a value, apply ``pred`` (or the inline operator)."""

    value: Value
    op: str
    negate_any: bool
    """EITHER_END ``!=``: true when every end differs (and there is at least one end)."""
    const: Any
    """The parsed literal (or set of literals) for inline operators."""
    pred: Callable[[Any], bool] | None
    """A predicate for operators that are not one Python operator."""
    rhs: Value | None = None
    """A ``val(field)`` or transformer right-hand side, read per event."""
    compare: Callable[[Any, Any], bool] | None = None
    """With ``rhs``: compares the left value with the right one."""


_FD_ANY_EXISTS = frozenset({"fd.ip", "fd.port", "fd.net", "fd.proto"})
INLINE_OPERATORS = {"=": "==", "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _parse(field: Value, text: str, op: str) -> Any:
    from lanner.rules.fields import parse_hex_literal, parse_literal

    if op in ("bcontains", "bstartswith"):
        try:
            return parse_hex_literal(text)
        except ValueError as e:
            raise CompileError(f"invalid hex value '{text}' for '{op}': {e}") from None
    if field.field is None:
        if field.type in (FieldType.INT64,):
            try:
                return int(text)
            except ValueError:
                raise CompileError(f"'{text}' is not a number") from None
        return text
    try:
        return parse_literal(field.field, text)
    except ValueError as e:
        raise CompileError(f"invalid value '{text}' for field '{field.field.name}': {e}") from None


def binary_pred(op: str, const: Any, ftype: FieldType) -> Callable[[Any], bool]:
    """A predicate for one value against one parsed literal."""
    if ftype is FieldType.IPNET:
        test = ops.in_networks([const])
        return (lambda v: not test(v)) if op == "!=" else test
    if op in ("=", "=="):
        return lambda v: v == const
    if op == "!=":
        return lambda v: v != const
    if op == "<":
        return lambda v: v < const
    if op == "<=":
        return lambda v: v <= const
    if op == ">":
        return lambda v: v > const
    if op == ">=":
        return lambda v: v >= const
    if op in ("contains", "bcontains"):
        return lambda v: const in v
    if op == "icontains":
        low = str(const).lower()
        return lambda v: low in ops.to_str(v).lower()
    if op in ("startswith", "bstartswith"):
        return lambda v: v.startswith(const)
    if op == "endswith":
        return lambda v: v.endswith(const)
    if op == "glob":
        return ops.glob_matcher(str(const))
    if op == "iglob":
        return ops.glob_matcher(str(const), ignore_case=True)
    if op == "regex":
        return ops.regex_matcher(str(const))
    raise CompileError(f"operator '{op}' needs a list")


def _s(v: Any) -> str:
    return ops.to_str(v)


def _same(a: Any, b: Any) -> bool:
    return bool(a == b or _s(a) == _s(b))


# Comparisons whose right side is read from the event (``proc.name = val(proc.pname)``).
_DYNAMIC_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": _same, "==": _same, "!=": lambda a, b: not _same(a, b), "in": _same, "intersects": _same,
    "<": lambda a, b: bool(a < b), "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b), ">=": lambda a, b: bool(a >= b),
    "contains": lambda a, b: _s(b) in _s(a), "icontains": lambda a, b: _s(b).lower() in _s(a).lower(),
    "startswith": lambda a, b: _s(a).startswith(_s(b)), "endswith": lambda a, b: _s(a).endswith(_s(b)),
    "glob": lambda a, b: ops.glob_matcher(_s(b))(_s(a)),
    "iglob": lambda a, b: ops.glob_matcher(_s(b), True)(_s(a)),
    "pmatch": lambda a, b: ops.PathPrefixes([_s(b)])(_s(a)),
    "regex": lambda a, b: ops.regex_matcher(_s(b))(_s(a)),
    "bcontains": lambda a, b: bool(b in a), "bstartswith": lambda a, b: bool(a.startswith(b)),
}


def _set_pred(op: str, consts: list[Any], ftype: FieldType) -> tuple[Any, Callable[[Any], bool] | None]:
    if op == "pmatch":
        return None, ops.PathPrefixes([str(c) for c in consts])
    if ftype is FieldType.IPNET:
        return None, ops.in_networks(consts)
    return frozenset(consts), None


def compile_test(c: Compare) -> Test:
    value = compile_value(c.lhs)
    op = c.op
    if op != "exists" and value.field is not None and op not in OPERATORS_BY_TYPE[value.type]:
        raise CompileError(f"operator '{op}' is not supported on field '{value.field.name}' "
                           f"of type {value.type.value}")
    if op == "exists":
        if value.field is not None and value.field.name in _FD_ANY_EXISTS:
            # Falco: `fd.ip exists` holds whenever the event has fd info at all, even a file.
            value = Value(None, None, value.type, Quantifier.ONE,
                          lambda e: MISSING if e.fd is None else True, ("fd-exists",))
        return Test(value, op, False, None, None)
    rhs = c.rhs
    if value.field is not None and value.field.name in _IP_NAME_FIELDS and value.field.name == value.key[1]:
        return _domain_test(value, op, rhs)
    if isinstance(rhs, Transform):
        rv = compile_value(rhs, rhs=True)
        return Test(value, op, False, None, None, rv, _DYNAMIC_COMPARE[op])
    if c.modifier is not None:
        if not isinstance(rhs, ListValue):
            raise CompileError(f"'{c.modifier}' needs a list of values, not the name '{getattr(rhs, 'value', '')}'")
        preds = [binary_pred(op, _parse(value, t, op), value.type) for t in rhs.items]
        if c.modifier == "anyof":
            return Test(value, op, False, None, lambda v: any(p(v) for p in preds))
        if c.modifier == "allof":
            return Test(value, op, False, None, lambda v: bool(preds) and all(p(v) for p in preds))
        return Test(value, op, False, None, lambda v: sum(1 for p in preds if p(v)) == 1)
    if op in ("in", "intersects", "pmatch"):
        if isinstance(rhs, Literal):
            raise CompileError(f"unknown list '{rhs.value}' after '{op}'")
        assert isinstance(rhs, ListValue)
        consts = [_parse(value, t, op) for t in rhs.items]
        const, pred = _set_pred(op, consts, value.type)
        return Test(value, op, False, const, pred)
    assert isinstance(rhs, Literal)
    const = _parse(value, rhs.value, op)
    negate_any = value.quantifier is Quantifier.EITHER_END and op == "!="
    if negate_any:
        return Test(value, op, True, const, binary_pred("=", const, value.type))
    if op in INLINE_OPERATORS and value.type is not FieldType.IPNET and value.quantifier is Quantifier.ONE:
        return Test(value, op, False, const, None)
    # Quantified (list) values and operators that are not one Python operator use a predicate.
    return Test(value, op, False, const, binary_pred(op, const, value.type))


_IP_NAME_FIELDS = {"fd.sip.name": "fd.sip", "fd.cip.name": "fd.cip", "fd.lip.name": "fd.lip",
                   "fd.rip.name": "fd.rip"}


def _domain_test(value: Value, op: str, rhs: Any) -> Test:
    """``fd.sip.name = domain``: the fd's IP is one of the domain's addresses (Falco's DNS cache)."""
    from lanner.rules import dns

    if op not in ("=", "==", "!=", "in", "intersects") or not isinstance(rhs, Literal | ListValue):
        raise CompileError(f"'{value.field.name if value.field else ''}' supports =, != and in with domain names")
    domains = [d.lower() for d in ([rhs.value] if isinstance(rhs, Literal) else rhs.items)]
    for d in domains:
        dns.table().watch(d)
    ip_value = compile_value(FieldRef(_IP_NAME_FIELDS[value.key[1]]))

    def resolves(ip: Any) -> bool:
        tbl = dns.table()
        return any(ip in tbl.addresses(d) for d in domains)
    pred: Callable[[Any], bool] = (lambda ip: not resolves(ip)) if op == "!=" else resolves
    return Test(ip_value, op, False, None, pred)


class TestCache:
    """Compiled tests by comparison node: equal comparisons compile once and share a Test."""

    def __init__(self) -> None:
        self.tests: dict[Compare, Test] = {}

    def get(self, c: Compare) -> Test:
        t = self.tests.get(c)
        if t is None:
            t = self.tests[c] = compile_test(c)
        return t


def compile_rule(rule: Rule, tests: TestCache) -> None:
    """Type-check every comparison of the (macro-expanded) condition and compute its event types."""
    from lanner.rules import codegen

    for node in walk(rule.condition):
        if isinstance(node, Compare):
            tests.get(node)
    rule.evttypes = codegen.event_types(rule.condition)


def compile_output(rule: Rule) -> None:
    from lanner.rules.output import OutputFormat

    try:
        rule.formatter = OutputFormat(rule.output)
    except ValueError as e:
        raise CompileError(str(e)) from None


def condition_warnings(rule: Rule) -> Iterator[tuple[str, str]]:
    for node in walk(rule.condition):
        if isinstance(node, Compare) and isinstance(node.lhs, FieldRef):
            name = node.lhs.name
            if name == "evt.dir":
                yield "LOAD_DEPRECATED_ITEM", "evt.dir is deprecated: only exit events reach rules"
            if name.startswith(("ka.", "jevt.")) and node.op in ("=", "==", "!=", "in", "intersects", "pmatch"):
                rhs = node.rhs
                items = rhs.items if isinstance(rhs, ListValue) else (rhs.value,) if isinstance(rhs, Literal) else ()
                if "<NA>" in items:
                    yield "LOAD_UNSAFE_NA_CHECK", "Unsafe <NA> comparison in condition"

