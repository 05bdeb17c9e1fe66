"""Output specs (plain dicts, as read from the configuration file) → validated, built outputs.

Every key is checked: an unknown kind, an unknown key, a missing required key or a bad value raises
:class:`OutputConfigError` naming the output, the key and the problem. Defaults are the output
classes' own; docs/outputs.md lists every key."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lanner.outputs.base import Output, RetryPolicy
from lanner.outputs.fanout import OutputSet
from lanner.outputs.file import FileOutput
from lanner.outputs.http import HttpOutput, parse_url
from lanner.outputs.json import JsonOutput
from lanner.outputs.lines import FORMATS
from lanner.outputs.program import ProgramOutput
from lanner.outputs.stdout import StdoutOutput
from lanner.outputs.syslog import FACILITIES, SyslogOutput, facility_number, parse_address


class OutputConfigError(ValueError):
    def __init__(self, label: str, key: str | None, problem: str) -> None:
        where = f"{label}: key {key!r}: " if key else f"{label}: "
        super().__init__(where + problem)
        self.label = label
        self.key = key
        self.problem = problem


Check = Callable[[Any], Any]
"""Returns the value to pass on, or raises ValueError with the problem."""


def _got(v: Any) -> str:
    return f"got {v!r} ({type(v).__name__})"


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string, {_got(v)}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, {_got(v)}")
    return v


def _int_at_least(low: int) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"expected an integer >= {low}, {_got(v)}")
        return v
    return check


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ValueError(f"expected a positive number of seconds, {_got(v)}")
    return float(v)


def _choice(*allowed: str) -> Check:
    def check(v: Any) -> str:
        s = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if s not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, {_got(v)}")
        return str(s)
    return check


def _existing_file(v: Any) -> str:
    path = _str(v)
    if not os.path.isfile(path):
        raise ValueError(f"no such file: {path}")
    return path


def _header_map(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of header names to strings, {_got(v)}")
    out: dict[str, str] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k or any(c in k for c in ":\r\n \t"):
            raise ValueError(f"bad header name {k!r}")
        if not isinstance(val, (str, int)) or isinstance(val, bool) or any(c in str(val) for c in "\r\n"):
            raise ValueError(f"header {k!r}: expected a one-line string, {_got(val)}")
        out[k] = str(val)
    return out


def _syntax(parse: Callable[[str], object]) -> Check:
    def check(v: Any) -> str:
        parse(_str(v))
        return str(v)
    return check


def _facility(v: Any) -> str | int:
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"expected one of {', '.join(FACILITIES)} or a number 0..23, {_got(v)}")
    facility_number(v)
    return v


def _app_name(v: Any) -> str:
    s = _str(v)
    if len(s) > 48 or not all("!" <= c <= "~" for c in s):
        raise ValueError(f"expected 1..48 printable ASCII characters without spaces, got {s!r}")
    return s


@dataclass(frozen=True)
class Kind:
    factory: Callable[..., Output]
    keys: dict[str, Check]
    required: tuple[str, ...] = ()


_FORMAT = _choice(*FORMATS)

KINDS: dict[str, Kind] = {
    "stdout": Kind(StdoutOutput, {}),
    "json": Kind(JsonOutput, {}),
    "file": Kind(FileOutput, {"path": _str, "format": _FORMAT, "fsync": _bool}, required=("path",)),
    "syslog": Kind(SyslogOutput, {"address": _syntax(parse_address), "rfc": _choice("5424", "3164"),
                                  "facility": _facility, "app_name": _app_name, "format": _FORMAT,
                                  "framing": _choice("octet-counting", "newline"), "timeout": _seconds}),
    "http": Kind(HttpOutput, {"url": _syntax(parse_url), "headers": _header_map, "ca_file": _existing_file,
                              "client_cert": _existing_file, "client_key": _existing_file, "insecure": _bool,
                              "timeout": _seconds, "user_agent": _str}, required=("url",)),
    "program": Kind(ProgramOutput, {"command": _str, "format": _FORMAT, "keep_alive": _bool},
                    required=("command",)),
}

COMMON_KEYS: dict[str, Check] = {"kind": _str, "name": _str, "enabled": _bool, "queue_size": _int_at_least(1)}
RETRY_KEYS: dict[str, Check] = {"max_retries": _int_at_least(-1), "backoff_initial": _seconds,
                                "backoff_max": _seconds}


def build_output(spec: dict[str, Any], index: int = 0) -> Output | None:
    """One output from its spec; None when ``enabled: false``. ``index`` (0-based) is for messages."""
    if not isinstance(spec, dict):
        raise OutputConfigError(f"output #{index + 1}", None,
                                f"expected a mapping with at least a 'kind' key, {_got(spec)}")
    raw_name = spec.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else None
    number = f"#{index + 1}"
    label = f"output {name!r} ({number})" if name else f"output {number}"
    if "kind" not in spec:
        raise OutputConfigError(label, "kind", f"missing; expected one of {', '.join(KINDS)}")
    kind_name = spec["kind"]
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise OutputConfigError(label, "kind", f"unknown kind {kind_name!r}; expected one of {', '.join(KINDS)}")
    label = f"output {name!r} ({number}, {kind_name})" if name else f"output {number} ({kind_name})"

    known = {**COMMON_KEYS, **RETRY_KEYS, **kind.keys}
    values: dict[str, Any] = {}
    for key, raw in spec.items():
        check = known.get(key) if isinstance(key, str) else None
        if check is None:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise OutputConfigError(label, str(key), "unknown key" + hint)
        try:
            values[key] = check(raw)
        except ValueError as e:
            raise OutputConfigError(label, key, str(e)) from None
    for key in kind.required:
        if key not in values:
            raise OutputConfigError(label, key, "missing (required)")
    _cross_check(label, kind_name, values)
    if not values.pop("enabled", True):
        return None

    del values["kind"]
    retry = {k: values.pop(k) for k in RETRY_KEYS if k in values}
    try:
        return kind.factory(retry=RetryPolicy(**retry), **values)
    except ValueError as e:
        raise OutputConfigError(label, None, str(e)) from None


def _cross_check(label: str, kind: str, values: dict[str, Any]) -> None:
    policy = RetryPolicy()
    if values.get("backoff_initial", policy.backoff_initial) > values.get("backoff_max", policy.backoff_max):
        raise OutputConfigError(label, "backoff_initial", "must not be greater than backoff_max")
    if kind == "http":
        if "client_key" in values and "client_cert" not in values:
            raise OutputConfigError(label, "client_key", "needs client_cert")
        if not values["url"].startswith("https:"):
            for key in ("ca_file", "client_cert", "client_key", "insecure"):
                if key in values:
                    raise OutputConfigError(label, key, "only applies to an https:// url")
    if kind == "syslog" and "framing" in values and not values.get("address", "").startswith("tcp:"):
        raise OutputConfigError(label, "framing", "only applies to a tcp:// address")


def build_outputs(specs: list[dict[str, Any]]) -> OutputSet:
    """Validate every spec and build the outputs (not started). Raises OutputConfigError."""
    if not isinstance(specs, list):
        raise OutputConfigError("outputs", None, f"expected a list of output mappings, {_got(specs)}")
    outputs: list[Output] = []
    for i, spec in enumerate(specs):
        out = build_output(spec, i)
        if out is None:
            continue
        if any(o.name == out.name for o in outputs):
            raise OutputConfigError(f"output {out.name!r} (#{i + 1})", "name",
                                    f"another output is already named {out.name!r}; give each a unique name")
        outputs.append(out)
    return OutputSet(outputs)
