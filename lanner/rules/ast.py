"""Syntax tree of a Falco condition.

Nodes are frozen dataclasses, so two trees compare by value: an expanded rule condition can be
compared with a freshly parsed one. Positions are kept out of equality on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a node starts in the condition text (0-based index, 1-based line and column)."""

    idx: int = 0
    line: int = 1
    col: int = 1


# --- expressions that yield a value -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field, with its optional argument: ``proc.aname[2]``, ``k8s.pod.label[app]``."""

    name: str
    arg: str | None = None
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class Transform:
    """A transformer applied to values: ``tolower(proc.name)``, ``join("-", (a, b))``.

    ``args`` holds the transformer's operands in order; literal operands are :class:`Literal`,
    list operands :class:`ListValue`. ``index`` is the ``[...]`` suffix of ``getopt(...)[t]``.
    """

    name: str
    args: tuple[ValueExpr, ...]
    index: str | None = None
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal string as written (quotes removed, escapes applied); typed by the field later."""

    value: str
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class ListValue:
    """A parenthesised list of literals: ``(a, "b c", 3)``."""

    items: tuple[str, ...]
    pos: Pos = field(default=Pos(), compare=False)


ValueExpr = FieldRef | Transform | Literal | ListValue


# --- boolean expressions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """``lhs op rhs``; ``rhs`` is None for the unary ``exists``.

    ``modifier`` is ``oneof``, ``anyof`` or ``allof`` when the operator carries one
    (``evt.type == oneof (a, b)``). ``rhs`` may be a :class:`Literal`, a :class:`ListValue`,
    a ``val(field)`` / transformer expression, or (after ``in``) a bare identifier as a Literal.
    """

    lhs: FieldRef | Transform
    op: str
    rhs: ValueExpr | None = None
    modifier: str | None = None
    pos: Pos = field(default=Pos(), compare=False)


@dataclass(frozen=True, slots=True)
class Identifier:
    """A bare name in boolean position: a macro reference."""

    name: str
    pos: Pos = field(default=Pos(), compare=False)


Expr = And | Or | Not | Compare | Identifier


def walk(node: Expr) -> list[Expr]:
    """Every boolean node of the tree, iteratively (trees can be deep)."""
    out: list[Expr] = []
    stack: list[Expr] = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        if isinstance(n, And | Or):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)
    return out


def value_fields(v: ValueExpr | None) -> list[FieldRef]:
    """The fields a value expression reads."""
    if v is None or isinstance(v, Literal | ListValue):
        return []
    if isinstance(v, FieldRef):
        return [v]
    out: list[FieldRef] = []
    for a in v.args:
        out.extend(value_fields(a))
    return out


def _quote(text: str) -> str:
    if text and all(c.isalnum() or c in "/._-:*[]" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value_text(v: ValueExpr | None) -> str:
    """A value expression written back as condition text."""
    if v is None:
        return ""
    if isinstance(v, FieldRef):
        return v.name + (f"[{v.arg}]" if v.arg is not None else "")
    if isinstance(v, Literal):
        return _quote(v.value)
    if isinstance(v, ListValue):
        return "(" + ", ".join(_quote(i) for i in v.items) + ")"
    index = f"[{v.index}]" if v.index is not None else ""
    return f"{v.name}(" + ", ".join(value_text(a) for a in v.args) + ")" + index


def to_text(node: Expr) -> str:
    """A condition tree written back as text (macros already expanded read as their bodies), for
    messages that quote one clause of an expanded condition."""
    if isinstance(node, And | Or):
        word = " and " if isinstance(node, And) else " or "
        return word.join(f"({to_text(i)})" if isinstance(i, And | Or) else to_text(i) for i in node.items)
    if isinstance(node, Not):
        inner = to_text(node.item)
        return f"not ({inner})" if isinstance(node.item, And | Or) else f"not {inner}"
    if isinstance(node, Identifier):
        return node.name
    op = f"{node.op} {node.modifier}" if node.modifier else node.op
    if node.rhs is None:
        return f"{value_text(node.lhs)} {op}"
    return f"{value_text(node.lhs)} {op} {value_text(node.rhs)}"
