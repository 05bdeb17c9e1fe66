"""Field values of live events, the way a condition and an output line see them."""

from __future__ import annotations

from typing import Any

from lanner.events import Event
from lanner.rules.fields import bind, lookup, render_text


def _split(name: str) -> tuple[str, str | None]:
    if name.endswith("]") and "[" in name:
        base, arg = name[:-1].split("[", 1)
        return base, arg
    return name, None


def extract(evt: Event, name: str) -> Any:
    """The raw field value (MISSING when absent), as a condition compares it."""
    base, arg = _split(name)
    f = lookup(base)
    if f is None and base.startswith("evt.arg."):
        f, arg = lookup("evt.arg"), base[len("evt.arg."):]
    assert f is not None, name
    return bind(f, arg)(evt)


def text(evt: Event, name: str) -> str:
    """The field as an output line prints it (`<NA>` when missing)."""
    base, arg = _split(name)
    f = lookup(base)
    if f is None and base.startswith("evt.arg."):
        f, arg = lookup("evt.arg"), base[len("evt.arg."):]
    assert f is not None, name
    return render_text(f, bind(f, arg)(evt))
