"""Rendering of event arguments (``evt.arg.*``, ``evt.args``) and of field values for outputs.

Arguments arrive raw (Linux ints, paths as passed) or already rendered as text by a hand-written
event file; both give Falco's rendering (FIELDS.md §6).
"""

from __future__ import annotations

import grp
import ipaddress
import pwd
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from lanner.events import EVENT_PARAMS, Event
from lanner.paths import concatenate as concatenate_paths
from lanner.rules.fieldtypes import MISSING, Field

from . import tables
from ._common import AT_FDCWD, TimeText, fd_tag, printable

Rendered = tuple[str, str | None]
"""(raw form, resolved form or None). ``evt.arg.X`` shows the resolved form when there is one."""

ParamRenderer = Callable[[Event, Any], Rendered]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_int(v: Any) -> int | None:
    if _is_int(v):
        return int(v)
    if isinstance(v, str):
        t = v.strip()
        if (t[:1] == "-" and t[1:].isdigit()) or t.isdigit():
            return int(t)
    return None


def _text(v: Any) -> str:
    if v is None:
        return "<NA>"
    if isinstance(v, bytes):
        return printable(v)
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v)


@lru_cache(maxsize=1024)
def _host_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return "<NA>"


@lru_cache(maxsize=1024)
def _host_group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return "<NA>"


def uid_name(ev: Event, uid: int) -> str:
    """The name of a uid argument: known process names first, then the host database for host
    processes; ``<NA>`` when unknown (no ``root`` fallback, unlike user.name)."""
    p = ev.proc
    if p is not None:
        if uid == p.uid and p.user_name is not None:
            return p.user_name
        if uid == p.loginuid and p.loginname is not None:
            return p.loginname
        if p.container_id:
            return "<NA>"
    return _host_user(uid)


def gid_name(ev: Event, gid: int) -> str:
    p = ev.proc
    if p is not None:
        if gid == p.gid and p.group_name is not None:
            return p.group_name
        if p.container_id:
            return "<NA>"
    return _host_group(gid)


def _r_fd(ev: Event, v: Any) -> Rendered:
    n = _as_int(v)
    if n is None:
        return _text(v), None
    if n == AT_FDCWD:
        return str(n), "AT_FDCWD"
    if n < 0:
        name = tables.ERRNO_NAMES.get(-n)
        return str(n), name
    fdi = ev.fd
    if fdi is not None and fdi.num == n:
        return str(n), fd_tag(fdi.type, fdi.l4proto) + fdi.name
    dirs = ev.dirs
    if dirs is not None and n in dirs:
        return str(n), "<d>" + dirs[n]
    return str(n), None


def _r_errno(ev: Event, v: Any) -> Rendered:
    n = _as_int(v)
    if n is None:
        return _text(v), None
    return str(n), tables.ERRNO_NAMES.get(-n) if n < 0 else None


def _r_pid(ev: Event, v: Any) -> Rendered:
    n = _as_int(v)
    if n is None:
        return _text(v), None
    target = ev.target
    if target is not None and target.pid == n:
        return str(n), target.name
    p = ev.proc
    hops = 0
    while p is not None and hops < 64:
        if p.pid == n:
            return str(n), p.name
        p = p.parent
        hops += 1
    return str(n), None


def _r_fspath(ev: Event, v: Any) -> Rendered:
    if not isinstance(v, str):
        return _text(v), None
    if v and not v.startswith("/"):
        p = ev.proc
        return v, concatenate_paths(p.cwd if p is not None else "/", v)
    return v, None


def _r_relpath(dirparam: str) -> ParamRenderer:
    def render(ev: Event, v: Any) -> Rendered:
        if not isinstance(v, str):
            return _text(v), None
        if not v or v.startswith("/"):
            return v, None
        dirfd = _as_int(ev.args.get(dirparam, AT_FDCWD))
        fdi = ev.fd
        if dirfd == AT_FDCWD:
            p = ev.proc
            base = p.cwd if p is not None else "/"
        elif fdi is not None and fdi.num == dirfd:
            base = fdi.name
        elif ev.dirs is not None and dirfd in ev.dirs:
            base = ev.dirs[dirfd]
        else:
            base = "<UNKNOWN>"
        return v, concatenate_paths(base, v)
    return render


def _r_charbuf(ev: Event, v: Any) -> Rendered:
    return _text(v), None


def _r_buffer(ev: Event, v: Any) -> Rendered:
    if v is None:
        return "NULL", None
    if isinstance(v, list):
        return ".".join(str(x) for x in v), None
    return _text(v), None


def _r_tuple(ev: Event, v: Any) -> Rendered:
    return ("NULL" if v is None else _text(v)), None


def _r_uid(ev: Event, v: Any) -> Rendered:
    n = _as_int(v)
    if n is None:
        return _text(v), None
    if n in (-1, 0xFFFFFFFF):
        return "-1", "<NONE>"
    return str(n), uid_name(ev, n)


def _r_gid(ev: Event, v: Any) -> Rendered:
    n = _as_int(v)
    if n is None:
        return _text(v), None
    if n in (-1, 0xFFFFFFFF):
        return "-1", "<NONE>"
    return str(n), gid_name(ev, n)


def _flag_value(table: str, v: Any) -> int | None:
    n = _as_int(v)
    if n is not None:
        return n
    if isinstance(v, str):
        return tables.names_to_bits(v, tables.flag_names(table))
    return None


@lru_cache(maxsize=4096)
def _flags_rendered(table: str, n: int) -> Rendered:
    raw = str(tables.raw_flags(table, n))
    names = tables.render_flags(table, n)
    return raw, (names if names != raw else None)


def _r_flags(table: str) -> ParamRenderer:
    def render(ev: Event, v: Any) -> Rendered:
        if type(v) is int:
            return _flags_rendered(table, v)
        n = _flag_value(table, v)
        if n is None:
            return _text(v), None
        return _flags_rendered(table, n)
    return render


def _r_enum(table: str) -> ParamRenderer:
    def render(ev: Event, v: Any) -> Rendered:
        n = _flag_value(table, v)
        if n is None:
            return _text(v), None
        names = tables.render_enum(table, n)
        raw = str(n)
        return raw, (names if names != raw else None)
    return render


def _oct(n: int) -> str:
    return "0" if n == 0 else f"0{n:o}"


def _r_mode(ev: Event, v: Any) -> Rendered:
    n = _mode_value(v)
    if n is None:
        return _text(v), None
    names = tables.render_flags("chmod_mode", n)
    return _oct(n), (names if names != str(n) else None)


def _mode_value(v: Any) -> int | None:
    """A mode from an int, or from text written in octal (``0644``)."""
    if _is_int(v):
        return int(v)
    if isinstance(v, str) and v and all(c in "01234567" for c in v):
        return int(v, 8)
    return None


def _r_oct(ev: Event, v: Any) -> Rendered:
    n = _mode_value(v)
    return (_oct(n) if n is not None else _text(v)), None


def _r_hex(ev: Event, v: Any) -> Rendered:
    if _is_int(v):
        return f"{v:X}", None
    return _text(v), None


def _r_dec(ev: Event, v: Any) -> Rendered:
    return _text(v), None


_SIMPLE: Final[dict[str, ParamRenderer]] = {
    "FD": _r_fd, "ERRNO": _r_errno, "PID": _r_pid, "FSPATH": _r_fspath, "CHARBUF": _r_charbuf,
    "UID": _r_uid, "GID": _r_gid, "MODE": _r_mode, "OCT": _r_oct, "HEX": _r_hex, "DEC": _r_dec,
    "SOCKTUPLE": _r_tuple, "SOCKADDR": _r_tuple, "BYTEBUF": _r_buffer,
}


def renderer_for(kind: str) -> ParamRenderer:
    """The renderer of one EVENT_PARAMS kind (``FD``, ``FLAGS:file_flags``, ``FSRELPATH:dirfd``...)."""
    base, _, extra = kind.partition(":")
    if base == "FLAGS":
        return _r_flags(extra)
    if base == "ENUM":
        return _r_enum(extra)
    if base == "FSRELPATH":
        return _r_relpath(extra)
    return _SIMPLE.get(base, _r_charbuf)


# Per event type: [(param name, renderer)], in parameter order.
PARAM_RENDERERS: Final[dict[str, tuple[tuple[str, ParamRenderer], ...]]] = {
    evtype: tuple((name, renderer_for(kind)) for name, kind in params)
    for evtype, params in EVENT_PARAMS.items()
}

_RESULT_PARAMS: Final = frozenset({"res", "fd"})


def param_value(ev: Event, name: str, index: int) -> Any:
    """The raw value of a parameter; the first parameter falls back to Event.res."""
    args = ev.args
    if name in args:
        return args[name]
    if index == 0 and name in _RESULT_PARAMS and ev.res is not None:
        return ev.res
    return MISSING


def render_arg(ev: Event, name: str) -> Any:
    """``evt.arg.NAME``: the resolved form when there is one, else the raw form; MISSING when
    this event has no such parameter."""
    params = PARAM_RENDERERS.get(ev.type)
    if params is None:
        return MISSING
    for i, (pname, render) in enumerate(params):
        if pname == name:
            v = param_value(ev, name, i)
            if v is MISSING:
                return MISSING
            raw, resolved = render(ev, v)
            return resolved if resolved else raw
    return MISSING


def render_arg_index(ev: Event, index: int) -> Any:
    params = PARAM_RENDERERS.get(ev.type)
    if params is None or not 0 <= index < len(params):
        return MISSING
    return render_arg(ev, params[index][0])


def render_args(ev: Event) -> str:
    """``evt.args``: ``name=raw(resolved)`` for each parameter, separated by spaces."""
    params = PARAM_RENDERERS.get(ev.type)
    if params is None:
        return " ".join(f"{k}={_text(v)}" for k, v in ev.args.items())
    out = []
    for i, (name, render) in enumerate(params):
        v = param_value(ev, name, i)
        if v is MISSING:
            continue
        raw, resolved = render(ev, v)
        out.append(f"{name}={raw}({resolved})" if resolved else f"{name}={raw}")
    return " ".join(out)


def raw_arg(ev: Event, name: str) -> Any:
    """``evt.rawarg.NAME``: numbers as Falco's driver reports them, other values as text."""
    params = EVENT_PARAMS.get(ev.type)
    if params is None:
        return MISSING
    for i, (pname, kind) in enumerate(params):
        if pname != name:
            continue
        v = param_value(ev, name, i)
        if v is MISSING or v is None:
            return MISSING
        base, _, table = kind.partition(":")
        if base in ("FLAGS", "ENUM"):
            n = _flag_value(table, v)
            if n is None:
                return MISSING
            return tables.raw_flags(table, n) if base == "FLAGS" else n
        if base in ("MODE", "OCT"):
            m = _mode_value(v)
            return m if m is not None else MISSING
        if base in NUMERIC_KINDS:
            n = _as_int(v)
            return n if n is not None else MISSING
        if base == "BYTEBUF" and isinstance(v, bytes):
            return v
        return _text(v)
    return MISSING


NUMERIC_KINDS: Final = frozenset({"FD", "ERRNO", "PID", "UID", "GID", "HEX", "DEC", "MODE", "OCT",
                                  "FLAGS", "ENUM"})


# --- output rendering --------------------------------------------------------------------------

def render_text(field: Field, value: Any) -> str:
    """A value as it appears in a text output line (missing -> ``<NA>``)."""
    if value is MISSING or value is None:
        return "<NA>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return printable(value)
    if isinstance(value, list):
        return " ".join(render_text(field, v) for v in value)
    return str(value)


def render_json(field: Field, value: Any) -> Any:
    """A value for JSON ``output_fields``: numbers and booleans stay typed, missing -> None."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, TimeText):
        return value.ns
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, bytes):
        return printable(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, list):
        return " ".join(render_text(field, v) for v in value)
    return str(value)
