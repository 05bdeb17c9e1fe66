"""Parser for Falco's condition language.

A hand-written recursive-descent parser that accepts what Falco's filter parser accepts: the
same lexical classes (identifiers, dotted field names, bare and quoted strings), the same
operators, transformers and ``oneof/anyof/allof`` modifiers, and the same quirks (``a or(b)`` is
fine, ``a andb`` is not). Every error is a :class:`ConditionSyntaxError` carrying the position.
Nesting is bounded so that hostile input gets an error, never a RecursionError.
"""

from __future__ import annotations

import bisect
import re
from typing import Final

from lanner.rules.ast import (
    And,
    Compare,
    Expr,
    FieldRef,
    Identifier,
    ListValue,
    Literal,
    Not,
    Or,
    Pos,
    Transform,
    ValueExpr,
)

MAX_DEPTH: Final = 100
"""Deepest nesting of parentheses and transformers a condition may use."""

_BLANK = " \t\b\r\n"
_RE_NOT_BLANK: Final = re.compile(r"not[ \t\b\r\n]+")
_RE_IDENTIFIER: Final = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_RE_FIELD_NAME: Final = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
_RE_FIELD_ARG_BARE: Final = re.compile(r"[^ \t\b\r\n\[\]\"']+")
_RE_HEX_NUM: Final = re.compile(r"0[xX][0-9a-zA-Z]+")
_RE_NUMBER: Final = re.compile(r"[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")
_RE_BARE_STR: Final = re.compile(r"[^ \t\b\r\n(),=\"']+")
_RE_MODIFIER: Final = re.compile(r"(oneof|anyof|allof)[ \t\b\r\n]+")

UNARY_OPS: Final = ("exists",)
NUM_OPS: Final = ("<=", "<", ">=", ">")
SYMBOL_STR_OPS: Final = ("==", "=", "!=")
WORD_STR_OPS: Final = ("glob", "iglob", "contains", "icontains", "bcontains", "startswith", "bstartswith",
                       "endswith", "regex")
LIST_OPS: Final = ("intersects", "in", "pmatch")
OPERATORS: Final = UNARY_OPS + NUM_OPS + SYMBOL_STR_OPS + WORD_STR_OPS + LIST_OPS

UNARY_TRANSFORMERS: Final = ("tolower", "toupper", "b64", "basename", "len")
TRANSFORMERS: Final = (*UNARY_TRANSFORMERS, "concat", "join", "getopt")
"""Transformers usable on either side; ``val()`` is accepted only on the right-hand side."""

_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", " ": "\\", "\\": "\\", "/": "/"}


class ConditionSyntaxError(ValueError):
    """A condition that does not parse. ``pos`` says where (index, line, column)."""

    def __init__(self, message: str, pos: Pos, text: str = "") -> None:
        super().__init__(f"{message} (at line {pos.line}, column {pos.col})")
        self.message = message
        self.pos = pos
        self.text = text

    @property
    def index(self) -> int:
        return self.pos.idx


def unescape(token: str) -> str:
    """Body of a quoted token (quotes included) with Falco's escapes applied."""
    delim = token[0]
    out: list[str] = []
    i, end = 1, len(token) - 1
    while i < end:
        c = token[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        e = token[i] if i < end else ""
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
        elif e in "\"'":
            if e != delim:
                raise ValueError(f"invalid \\{e} escape in {delim}-quoted string")
            out.append(e)
        elif e == "x" and i + 2 < end + 1 and re.fullmatch(r"[0-9a-fA-F]{2}", token[i + 1:i + 3]):
            out.append(chr(int(token[i + 1:i + 3], 16)))
            i += 2
        else:
            raise ValueError(f"unsupported string escape sequence: \\{e}")
        i += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.depth = 0
        self.last = ""
        self.newlines = [i for i, c in enumerate(text) if c in "\r\n"]

    # --- positions and errors ---

    def pos(self, idx: int | None = None) -> Pos:
        idx = self.i if idx is None else idx
        if not self.newlines:
            return Pos(idx, 1, idx + 1)
        k = bisect.bisect_left(self.newlines, idx)
        return Pos(idx, k + 1, idx - (self.newlines[k - 1] if k else -1))

    def error(self, message: str, idx: int | None = None) -> ConditionSyntaxError:
        return ConditionSyntaxError(message, self.pos(idx), self.s)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"condition nested too deeply (more than {MAX_DEPTH} levels)")

    # --- lexing helpers ---

    def blank(self) -> bool:
        start = self.i
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in _BLANK:
            self.i += 1
        return self.i > start

    def lit(self, token: str) -> bool:
        if self.s.startswith(token, self.i):
            self.last = token
            self.i += len(token)
            return True
        return False

    def rgx(self, pattern: re.Pattern[str]) -> bool:
        m = pattern.match(self.s, self.i)
        if m is None or m.end() == self.i:
            return False
        self.last = m.group(0)
        self.i = m.end()
        return True

    def quoted(self) -> bool:
        s = self.s
        if self.i >= len(s) or s[self.i] not in "'\"":
            return False
        delim = s[self.i]
        j = self.i + 1
        prev = delim
        while j < len(s):
            c = s[j]
            if c == delim and prev != "\\":
                token = s[self.i:j + 1]
                try:
                    self.last = unescape(token)
                except ValueError as e:
                    raise self.error(str(e)) from None
                self.i = j + 1
                return True
            prev = c
            j += 1
        return False

    def word_op(self, words: tuple[str, ...]) -> str | None:
        """An operator word followed by a blank (``glob value``, not ``globvalue``)."""
        for w in words:
            end = self.i + len(w)
            if self.s.startswith(w, self.i) and end < len(self.s) and self.s[end] in _BLANK:
                self.i = end
                self.last = w
                return w
        return None

    def any_lit(self, tokens: tuple[str, ...]) -> str | None:
        for t in tokens:
            if self.lit(t):
                return t
        return None

    def transformer_open(self, names: tuple[str, ...]) -> str | None:
        for name in names:
            if self.s.startswith(name + "(", self.i):
                self.i += len(name) + 1
                self.last = name + "("
                return name
        return None

    # --- grammar ---

    def parse(self) -> Expr:
        if not self.s:
            raise self.error("filter input string is empty")
        res = self.parse_or()
        if self.i != len(self.s):
            raise self.error(f"unexpected token after '{self.last}', expecting 'or', 'and'")
        return res

    def parse_or(self) -> Expr:
        pos = self.pos()
        self.blank()
        items = [self.parse_and()]
        self.blank()
        while self.lit("or"):
            if self.blank():
                items.append(self.parse_and())
            elif self.lit("("):
                items.append(self.parse_embedded())
            else:
                raise self.error("expected blank or '(' after 'or'")
            self.blank()
        return items[0] if len(items) == 1 else Or(tuple(items), pos)

    def parse_and(self) -> Expr:
        pos = self.pos()
        self.blank()
        items = [self.parse_not()]
        self.blank()
        while self.lit("and"):
            if self.blank():
                items.append(self.parse_not())
            elif self.lit("("):
                items.append(self.parse_embedded())
            else:
                raise self.error("expected blank or '(' after 'and'")
            self.blank()
        return items[0] if len(items) == 1 else And(tuple(items), pos)

    def parse_not(self) -> Expr:
        pos = self.pos()
        self.blank()
        negate = False
        while self.rgx(_RE_NOT_BLANK):
            negate = not negate
        if self.lit("not("):
            negate = not negate
            child = self.parse_embedded()
        else:
            child = self.parse_check()
        return Not(child, pos) if negate else child

    def parse_embedded(self) -> Expr:
        """The rest of a parenthesised expression, after its '('."""
        self.enter()
        self.blank()
        child = self.parse_or()
        self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token")
        self.depth -= 1
        return child

    def parse_check(self) -> Expr:
        pos = self.pos()
        self.blank()
        if self.lit("("):
            return self.parse_embedded()
        if self.rgx(_RE_FIELD_NAME):
            lhs: FieldRef | Transform = self.field_remainder(self.last, pos)
            return self.parse_condition(lhs, pos)
        name = self.transformer_open(TRANSFORMERS)
        if name is not None:
            lhs = self.transformer_remainder(name, pos)
            return self.parse_condition(lhs, pos)
        if self.rgx(_RE_IDENTIFIER):
            return Identifier(self.last, pos)
        raise self.error("expected a '(' token, a field check, or an identifier")

    def field_remainder(self, name: str, pos: Pos) -> FieldRef:
        arg: str | None = None
        if self.lit("["):
            if not (self.quoted() or self.rgx(_RE_FIELD_ARG_BARE)):
                raise self.error("expected a valid field argument: a quoted string or a bare string")
            arg = self.last
            if not self.lit("]"):
                raise self.error("expected a ']' token")
        return FieldRef(name, arg, pos)

    def operand(self, allow_literals: bool) -> ValueExpr:
        """A transformer operand: a field, a nested transformer, or (where allowed) a literal."""
        pos = self.pos()
        name = self.transformer_open(TRANSFORMERS)
        if name is not None:
            return self.transformer_remainder(name, pos)
        if self.rgx(_RE_FIELD_NAME):
            return self.field_remainder(self.last, pos)
        if allow_literals and (self.quoted() or self.rgx(_RE_BARE_STR)):
            return Literal(self.last, pos)
        raise self.error("expected a field or a nested valid transformer: "
                         + ", ".join(f"'{t}'" for t in ("val", *TRANSFORMERS)))

    def close_transformer(self) -> None:
        self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token closing the transformer")

    def transformer_remainder(self, name: str, pos: Pos) -> Transform:
        """The rest of ``name(...)`` after its '('."""
        self.enter()
        self.blank()
        args: list[ValueExpr] = []
        index: str | None = None
        if name in UNARY_TRANSFORMERS:
            args.append(self.operand(allow_literals=False))
        elif name == "concat":
            args.append(self.operand(allow_literals=True))
            self.blank()
            while self.lit(","):
                self.blank()
                args.append(self.operand(allow_literals=True))
                self.blank()
        elif name == "join":
            args.append(self.operand(allow_literals=True))
            self.blank()
            if not self.lit(","):
                raise self.error("expected ',' after the separator of 'join'")
            self.blank()
            args.append(self.operand_list())
        else:  # getopt
            self.blank()
            args.append(self.operand_list() if self.s.startswith("(", self.i) else
                        self.operand(allow_literals=False))
            self.blank()
            if not self.lit(","):
                raise self.error("expected ',' after the first operand of 'getopt'")
            self.blank()
            if not self.quoted():
                raise self.error("expected a quoted option string in 'getopt'")
            args.append(Literal(self.last))
        self.close_transformer()
        if name == "getopt" and self.lit("["):
            if not (self.quoted() or self.rgx(_RE_FIELD_ARG_BARE)):
                raise self.error("expected a valid field argument: a quoted string or a bare string")
            index = self.last
            if not self.lit("]"):
                raise self.error("expected a ']' token")
        self.depth -= 1
        return Transform(name, tuple(args), index, pos)

    def operand_list(self) -> Transform:
        """``(a, "b", field, f(x))``: a parenthesised list of operands, for join and getopt."""
        pos = self.pos()
        if not self.lit("("):
            raise self.error("expected a '(' token opening a list of operands")
        self.blank()
        items: list[ValueExpr] = []
        if not self.s.startswith(")", self.i):
            items.append(self.operand(allow_literals=True))
            self.blank()
            while self.lit(","):
                self.blank()
                items.append(self.operand(allow_literals=True))
                self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token")
        return Transform("list", tuple(items), None, pos)

    def rhs_transformer(self) -> ValueExpr | None:
        pos = self.pos()
        if self.lit("val("):
            self.blank()
            fpos = self.pos()
            if not self.rgx(_RE_FIELD_NAME):
                raise self.error("expected a field within 'val' transformer")
            fref = self.field_remainder(self.last, fpos)
            self.close_transformer()
            return Transform("val", (fref,), None, pos)
        name = self.transformer_open(TRANSFORMERS)
        if name is not None:
            return self.transformer_remainder(name, pos)
        return None

    def parse_condition(self, lhs: FieldRef | Transform, pos: Pos) -> Compare:
        self.blank()
        if self.any_lit(UNARY_OPS):
            return Compare(lhs, "exists", None, None, pos)
        op = self.any_lit(NUM_OPS)
        if op is not None:
            self.blank()
            vpos = self.pos()
            rhs = self.rhs_transformer()
            if rhs is None:
                if not (self.rgx(_RE_HEX_NUM) or self.rgx(_RE_NUMBER)):
                    raise self.error("expected a number value or a field with a valid transformer")
                rhs = Literal(self.last, vpos)
            return Compare(lhs, op, rhs, None, pos)
        op = self.any_lit(SYMBOL_STR_OPS) or self.word_op(WORD_STR_OPS)
        if op is not None:
            had_blank = self.blank() or op in WORD_STR_OPS
            mark = self.i
            if had_blank and self.rgx(_RE_MODIFIER):
                modifier = self.last.strip()
                vpos = self.pos()
                if self.s.startswith("(", self.i):
                    return Compare(lhs, op, self.list_value(), modifier, pos)
                if self.rgx(_RE_IDENTIFIER) and self.last not in ("and", "or", "not"):
                    return Compare(lhs, op, Literal(self.last, vpos), modifier, pos)
                self.i = mark  # the word was a plain value: `proc.name = oneof or ...`
            return Compare(lhs, op, self.str_value(), None, pos)
        op = self.any_lit(LIST_OPS)
        if op is not None:
            self.blank()
            vpos = self.pos()
            if self.s.startswith("(", self.i):
                return Compare(lhs, op, self.list_value(), None, pos)
            rhs = self.rhs_transformer()
            if rhs is None:
                if not self.rgx(_RE_IDENTIFIER):
                    raise self.error("expected a list, an identifier, or a field with a valid transformer")
                rhs = Literal(self.last, vpos)
            return Compare(lhs, op, rhs, None, pos)
        raise self.error("expected a valid check operator: one of "
                         + ", ".join(f"'{o}'" for o in OPERATORS))

    def str_value(self) -> ValueExpr:
        self.blank()
        pos = self.pos()
        rhs = self.rhs_transformer()
        if rhs is not None:
            return rhs
        if self.quoted() or self.rgx(_RE_BARE_STR):
            return Literal(self.last, pos)
        raise self.error("expected a string value or a field with a valid transformer")

    def list_value(self) -> ListValue:
        pos = self.pos()
        if not self.lit("("):
            raise self.error("expected a list")
        self.blank()
        items: list[str] = []
        if self.quoted() or self.rgx(_RE_BARE_STR):
            items.append(self.last)
            self.blank()
            while self.lit(","):
                self.blank()
                if not (self.quoted() or self.rgx(_RE_BARE_STR)):
                    raise self.error("expected a string value")
                items.append(self.last)
                self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token")
        return ListValue(tuple(items), pos)


def parse_condition(text: str) -> Expr:
    """Parse a condition; raises :class:`ConditionSyntaxError` with the position on bad input."""
    if not isinstance(text, str):
        raise TypeError("a condition is a string")
    return _Parser(text).parse()
