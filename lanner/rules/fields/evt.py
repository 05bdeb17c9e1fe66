"""Class ``evt``: the event itself (FIELDS.md §5, §6)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from lanner.events import EVENT_PARAMS, Event
from lanner.rules.fieldtypes import MISSING, ArgMode, Field, FieldType

from . import tables
from ._common import TimeText
from .render import (
    NUMERIC_KINDS,
    ParamRenderer,
    param_value,
    raw_arg,
    render_arg,
    render_arg_index,
    render_args,
    renderer_for,
)

_OPEN_RW: Final = frozenset({"open", "openat", "openat2", "open_by_handle_at"})
_OPEN_EXEC: Final = frozenset({"open", "openat", "openat2"})
_ENTER_DIR_EVENTS: Final = frozenset({"procexit", "container"})
HOSTNAME: Final = os.environ.get("FALCO_HOSTNAME") or socket.gethostname()


def _type(ev: Event, arg: str | None = None) -> Any:
    return ev.type


def _num(ev: Event, arg: str | None = None) -> Any:
    return ev.num


def _res(ev: Event, arg: str | None = None) -> Any:
    res = ev.res
    if res is None:
        return MISSING
    if res >= 0:
        return "SUCCESS"
    if res == -100:
        params = EVENT_PARAMS.get(ev.type)
        if params and params[0][1] == "FD":
            return "AT_FDCWD"
    return tables.errno_name(res)


def _rawres(ev: Event, arg: str | None = None) -> Any:
    res = ev.res
    return MISSING if res is None else res


def _failed(ev: Event, arg: str | None = None) -> Any:
    res = ev.res
    return MISSING if res is None else res < 0


def _open_flags(ev: Event) -> int | None:
    return tables.file_flags_ppm(ev.args.get("flags"))


def _is_open_read(ev: Event, arg: str | None = None) -> Any:
    if ev.type not in _OPEN_RW:
        return False
    f = _open_flags(ev)
    return f is not None and bool(f & tables.PPM_O_RDONLY)


def _is_open_write(ev: Event, arg: str | None = None) -> Any:
    if ev.type not in _OPEN_RW:
        return False
    f = _open_flags(ev)
    return f is not None and bool(f & tables.PPM_O_WRONLY)


def _mode_bits(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v and all(c in "01234567" for c in v):
        return int(v, 8)
    return 0


def _is_open_exec(ev: Event, arg: str | None = None) -> Any:
    t = ev.type
    if t == "creat":
        return bool(_mode_bits(ev.args.get("mode")) & 0o111)
    if t not in _OPEN_EXEC:
        return False
    f = _open_flags(ev)
    if f is None or not f & (tables.PPM_O_CREAT | tables.PPM_O_TMPFILE):
        return False
    return bool(_mode_bits(ev.args.get("mode")) & 0o111)


def _args(ev: Event, arg: str | None = None) -> Any:
    return render_args(ev)


def _buffer(ev: Event, arg: str | None = None) -> Any:
    data = ev.data
    if data is None:
        d = ev.args.get("data")
        if isinstance(d, bytes):
            return d
        if isinstance(d, str):
            return d.encode("utf-8", "surrogateescape")
        return MISSING
    return data


def _buflen(ev: Event, arg: str | None = None) -> Any:
    b = _buffer(ev)
    return MISSING if b is MISSING else len(b)


def _dir(ev: Event, arg: str | None = None) -> Any:
    return ">" if ev.type in _ENTER_DIR_EVENTS else "<"


def _source(ev: Event, arg: str | None = None) -> Any:
    return "syscall"


def _hostname(ev: Event, arg: str | None = None) -> Any:
    return HOSTNAME


def _time(ev: Event, arg: str | None = None) -> Any:
    ts = ev.ts
    t = time.localtime(ts // 1_000_000_000)
    return TimeText(f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ts % 1_000_000_000:09d}", ts)


def _time_iso(ev: Event, arg: str | None = None) -> Any:
    ts = ev.ts
    t = time.gmtime(ts // 1_000_000_000)
    return TimeText(time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ts % 1_000_000_000:09d}+0000", ts)


def _datetime(ev: Event, arg: str | None = None) -> Any:
    ts = ev.ts
    t = time.localtime(ts // 1_000_000_000)
    return TimeText(time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ts % 1_000_000_000:09d}", ts)


def _rawtime(ev: Event, arg: str | None = None) -> Any:
    return ev.ts


def _time_s(ev: Event, arg: str | None = None) -> Any:
    return ev.ts // 1_000_000_000


def _arg_keyed(ev: Event, arg: str | None = None) -> Any:
    """``evt.arg[N]`` (by position) or ``evt.arg[NAME]``."""
    if arg is None:
        return MISSING
    if arg.isdigit():
        return render_arg_index(ev, int(arg))
    return render_arg(ev, arg)


def _rawarg_keyed(ev: Event, arg: str | None = None) -> Any:
    if arg is None:
        return MISSING
    if arg.isdigit():
        params = EVENT_PARAMS.get(ev.type)
        n = int(arg)
        if params is None or n >= len(params):
            return MISSING
        arg = params[n][0]
    return raw_arg(ev, arg)


def _F(name: str, typ: FieldType, desc: str, fn: Callable[[Event, str | None], Any],
       arg: ArgMode = ArgMode.NONE, **kw: Any) -> Field:
    return Field(name=name, type=typ, desc=desc, extract=fn, arg=arg, **kw)


C, U64, I64, B = FieldType.CHARBUF, FieldType.UINT64, FieldType.INT64, FieldType.BOOL

FIELDS: Final[tuple[Field, ...]] = (
    _F("evt.type", C, "Event type: the syscall name (openat, execve...) or a meta event name.", _type),
    _F("evt.num", U64, "Event sequence number, starting at 1.", _num),
    _F("evt.res", C, "Return value: SUCCESS, or the errno name (ENOENT) of a failure.", _res),
    _F("evt.rawres", I64, "Raw return value: fd, byte count, 0 or -errno.", _rawres),
    _F("evt.failed", B, "True when the syscall returned an error.", _failed),
    _F("evt.is_open_read", B, "True for an open/openat/openat2 with read access (false otherwise).",
       _is_open_read),
    _F("evt.is_open_write", B, "True for an open/openat/openat2 with write access (false otherwise).",
       _is_open_write),
    _F("evt.is_open_exec", B, "True for an open that creates a file with an execute bit in its mode.",
       _is_open_exec),
    _F("evt.args", C, "All arguments as name=value, with the resolved form in parentheses.", _args),
    _F("evt.arg", C, "An argument by name or position, rendered (evt.arg[0], evt.arg[flags]).",
       _arg_keyed, ArgMode.REQUIRED_KEY),
    _F("evt.rawarg", C, "An argument by name or position, raw (numbers as numbers in text).",
       _rawarg_keyed, ArgMode.REQUIRED_KEY),
    _F("evt.buffer", FieldType.BYTEBUF, "The data buffer of the event (read, sendto, init_module...).",
       _buffer),
    _F("evt.buflen", U64, "Length of the event's data buffer.", _buflen),
    _F("evt.dir", C, "Deprecated: '<' for every syscall exit event.", _dir, deprecated=True),
    _F("evt.source", C, "The event source: syscall.", _source),
    _F("evt.hostname", C, "Hostname of the machine (FALCO_HOSTNAME overrides).", _hostname),
    _F("evt.time", C, "Local time HH:MM:SS.nnnnnnnnn; an integer ns in JSON output.", _time),
    _F("evt.time.iso8601", C, "UTC time YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+0000.", _time_iso),
    _F("evt.datetime", C, "Local date and time YYYY-MM-DD HH:MM:SS.nnnnnnnnn.", _datetime),
    _F("evt.rawtime", FieldType.ABSTIME, "Event timestamp in ns since the epoch.", _rawtime),
    _F("evt.time.s", U64, "Event timestamp in whole seconds since the epoch.", _time_s),
)


# --- dynamic evt.arg.NAME / evt.rawarg.NAME ---------------------------------------------------

PARAM_NAMES: Final = frozenset(name for params in EVENT_PARAMS.values() for name, _ in params)
_dynamic: dict[str, Field] = {}


def _arg_extractor(name: str) -> Callable[[Event, str | None], Any]:
    table: dict[str, tuple[int, ParamRenderer]] = {}
    for evtype, params in EVENT_PARAMS.items():
        for i, (pname, kind) in enumerate(params):
            if pname == name:
                table[evtype] = (i, renderer_for(kind))

    def extract(ev: Event, arg: str | None = None) -> Any:
        ent = table.get(ev.type)
        if ent is None:
            return MISSING
        v = param_value(ev, name, ent[0])
        if v is MISSING:
            return MISSING
        raw, resolved = ent[1](ev, v)
        return resolved if resolved else raw

    return extract


def _rawarg_type(name: str) -> FieldType:
    # Like Falco, the first event that has the parameter decides its type.
    for params in EVENT_PARAMS.values():
        for pname, kind in params:
            if pname == name:
                base = kind.partition(":")[0]
                if base in NUMERIC_KINDS:
                    return FieldType.INT64
                return FieldType.BYTEBUF if base == "BYTEBUF" else FieldType.CHARBUF
    return FieldType.CHARBUF


def lookup_dynamic(name: str) -> Field | None:
    """``evt.arg.NAME`` / ``evt.rawarg.NAME`` for a parameter name of any event."""
    f = _dynamic.get(name)
    if f is not None:
        return f
    if name.startswith("evt.arg."):
        pname = name[8:]
        if pname not in PARAM_NAMES:
            return None
        f = Field(name=name, type=FieldType.CHARBUF, extract=_arg_extractor(pname),
                  desc=f"The {pname} argument of the event, rendered as Falco prints it.")
    elif name.startswith("evt.rawarg."):
        pname = name[11:]
        if pname not in PARAM_NAMES:
            return None

        def extract(ev: Event, arg: str | None = None, _p: str = pname) -> Any:
            return raw_arg(ev, _p)

        f = Field(name=name, type=_rawarg_type(pname), extract=extract,
                  desc=f"The raw {pname} argument of the event.")
    else:
        return None
    _dynamic[name] = f
    return f
