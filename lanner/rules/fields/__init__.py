"""The typed field registry: every field a condition or an output can name, with its extractor.

``lookup(name)`` resolves a field name without its ``[arg]`` (the parser keeps the argument
apart); dynamic names such as ``evt.arg.flags`` are built on first use. ``bind(field, arg)``
validates an argument and returns a one-argument extractor with the argument pre-parsed, for
the compiled hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, cast

from lanner.events import Event
from lanner.rules.fieldtypes import ArgMode, Field

from . import container, evt, fd, proc, user
from .literals import parse_hex_literal, parse_literal, parse_port
from .render import render_arg, render_args, render_json, render_text

__all__ = [
    "FIELDS",
    "all_fields",
    "bind",
    "check_arg",
    "lookup",
    "parse_hex_literal",
    "parse_literal",
    "parse_port",
    "render_arg",
    "render_args",
    "render_json",
    "render_text",
]

FIELDS: Final[Mapping[str, Field]] = MappingProxyType({
    f.name: f for f in (*evt.FIELDS, *proc.FIELDS, *user.FIELDS, *fd.FIELDS, *container.FIELDS)
})
"""Every static field by name (dynamic ``evt.arg.NAME`` / ``evt.rawarg.NAME`` not included)."""

_MOUNT_KEYED: Final = frozenset({
    "container.mount", "container.mount.dest", "container.mount.source", "container.mount.mode",
    "container.mount.rdwr", "container.mount.propagation",
})


def lookup(name: str) -> Field | None:
    """The field called ``name`` (without ``[arg]``), or None when there is no such field."""
    f = FIELDS.get(name)
    if f is not None:
        return f
    if name.startswith("evt."):
        return evt.lookup_dynamic(name)
    return None


def all_fields() -> list[Field]:
    """Every static field, sorted by name (for ``lanner fields``)."""
    return sorted(FIELDS.values(), key=lambda f: f.name)


def check_arg(field: Field, arg: str | None) -> None:
    """Raise ValueError when ``arg`` is not acceptable for ``field`` (a load-time error)."""
    mode = field.arg
    if mode is ArgMode.NONE:
        if arg is not None:
            raise ValueError(f"field {field.name} does not take an argument")
        return
    if arg is None:
        if mode in (ArgMode.REQUIRED_INDEX, ArgMode.REQUIRED_KEY):
            raise ValueError(f"field {field.name} requires an argument")
        return
    if field.name in proc.INDEXED or mode in (ArgMode.OPTIONAL_INDEX, ArgMode.REQUIRED_INDEX):
        try:
            proc.parse_index(arg)
        except ValueError as e:
            raise ValueError(f"field {field.name}: {e}") from None
    elif field.name in _MOUNT_KEYED:
        container.check_mount_key(arg)
    elif field.name in ("evt.arg", "evt.rawarg") and not arg.isdigit() and arg not in evt.PARAM_NAMES:
        raise ValueError(f"field {field.name}: no event has an argument called {arg!r}")
    elif arg == "":
        raise ValueError(f"field {field.name}: empty argument")


def bind(field: Field, arg: str | None) -> Callable[[Event], Any]:
    """A one-argument extractor for ``field[arg]``; ValueError when the argument is invalid."""
    check_arg(field, arg)
    extract = field.extract
    if arg is None:
        # Every extractor here defaults its argument to None, so it is its own bound form.
        return cast(Callable[[Event], Any], extract)
    attr = proc.ANCESTRAL_ATTRS.get(field.name)
    if attr is not None:
        return proc.bind_ancestral(attr, int(arg))

    def bound(ev: Event) -> Any:
        return extract(ev, arg)
    return bound
