"""Rule output formats: ``%field`` templates rendered for an event, Falco-style."""

from __future__ import annotations

import re
from typing import Any

from lanner.rules.ast import FieldRef
from lanner.rules.fieldtypes import MISSING, Field

SUGGESTED_FIELDS = ("container.id", "container.name", "container.image.repository", "container.image.tag",
                    "k8s.pod.name", "k8s.ns.name")
"""Fields Falco's container plugin appends to every rule output (``append_output``)."""

_NAME_CHARS = re.compile(r"[a-zA-Z0-9_.]+")


def suggested_suffix() -> str:
    return " ".join(f"{f.replace('.', '_')}=%{f}" for f in SUGGESTED_FIELDS)


class OutputFormat:
    """A compiled output template. ``render(event)`` gives the text and the JSON field values."""

    __slots__ = ("fields", "parts", "template")

    def __init__(self, template: str, append_suggested: bool = True) -> None:
        from lanner.rules.compiler import CompileError, lookup_field, resolve_field

        template = template.strip().replace("%container.info", "")
        if append_suggested:
            template = f"{template} {suggested_suffix()}" if template else suggested_suffix()
        self.template = template
        self.parts: list[str | tuple[str, Field, str | None]] = []
        self.fields: dict[str, tuple[Field, str | None]] = {}
        i, n = 0, len(template)
        text: list[str] = []
        while i < n:
            c = template[i]
            if c != "%":
                text.append(c)
                i += 1
                continue
            m = _NAME_CHARS.match(template, i + 1)
            if m is None:
                text.append(c)
                i += 1
                continue
            cand = m.group(0)
            field, name = None, ""
            for end in range(len(cand), 0, -1):
                f = lookup_field(cand[:end])
                if f is not None:
                    field, name = f, cand[:end]
                    break
            if field is None:
                raise ValueError(f"invalid output format '%{cand}': unknown field '{cand}'")
            j = i + 1 + len(name)
            arg: str | None = None
            if j < n and template[j] == "[":
                close = template.find("]", j)
                if close == -1:
                    raise ValueError(f"invalid output format: '[' without ']' after '%{name}'")
                arg = template[j + 1:close]
                j = close + 1
            try:
                field = resolve_field(FieldRef(name, arg))
            except CompileError as e:
                raise ValueError(f"invalid output format '%{name}': {e}") from None
            if field.filter_only:
                raise ValueError(f"field '{name}' can only be used in conditions, not in an output")
            key = f"{name}[{arg}]" if arg is not None else name
            if text:
                self.parts.append("".join(text))
                text = []
            self.parts.append((key, field, arg))
            self.fields[key] = (field, arg)
            i = j
        if text:
            self.parts.append("".join(text))

    def render(self, evt: Any) -> tuple[str, dict[str, Any]]:
        from lanner.rules.fields import render_json, render_text

        out: list[str] = []
        values: dict[str, Any] = {}
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            key, field, arg = p
            v = field.extract(evt, arg)
            out.append(render_text(field, v))
            values[key] = None if v is MISSING else render_json(field, v)
        return "".join(out), values

