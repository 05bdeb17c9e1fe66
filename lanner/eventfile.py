"""JSON-lines event files: what ``lanner capture`` writes and ``lanner replay`` reads.

One JSON object per line. The format is documented field by field in docs/event-format.md.
Reading is strict: a malformed line is an :class:`EventFileError` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from lanner.events import Container, Event, FdInfo, Mount, Process

_PROCESS_KEYS = frozenset(f.name for f in dataclasses.fields(Process)) - {"parent"}
_FD_KEYS = frozenset(f.name for f in dataclasses.fields(FdInfo))
_CONTAINER_KEYS = frozenset(f.name for f in dataclasses.fields(Container)) - {"mounts"}
_MOUNT_KEYS = frozenset(f.name for f in dataclasses.fields(Mount))
_EVENT_KEYS = frozenset({"type", "ts", "tid", "res", "args", "proc", "fd", "container", "num", "data", "dirs",
                         "target"})
_MAX_ANCESTORS = 64


class EventFileError(ValueError):
    """A line of an event file that cannot be read; the message names file and line."""


def _check_keys(obj: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} must be an object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ValueError(f"unknown {what} key(s): {', '.join(unknown)}")
    return obj


def _typed(cls: type, values: dict[str, Any], what: str) -> Any:
    """Build a dataclass, checking each value against the annotated basic type."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, val in values.items():
        hint = str(hints[key])
        if val is None:
            if "None" not in hint:
                raise ValueError(f"{what}.{key} must not be null")
            continue
        if hint.startswith("int") and (not isinstance(val, int) or isinstance(val, bool)):
            raise ValueError(f"{what}.{key} must be an integer")
        if hint.startswith("str") and not isinstance(val, str):
            raise ValueError(f"{what}.{key} must be a string")
        if hint == "bool" and not isinstance(val, bool):
            raise ValueError(f"{what}.{key} must be true or false")
        if hint.startswith("list[str]") and not (
            isinstance(val, list) and all(isinstance(x, str) for x in val)
        ):
            raise ValueError(f"{what}.{key} must be a list of strings")
        if hint.startswith("dict[str, str]") and not (
            isinstance(val, dict) and all(isinstance(x, str) for x in val.values())
        ):
            raise ValueError(f"{what}.{key} must be an object of strings")
    return cls(**values)


def process_from_json(obj: Any) -> Process:
    # Iterative over the parent chain: a hostile file must not exhaust the stack.
    chain: list[dict[str, Any]] = []
    cur = obj
    while cur is not None:
        if len(chain) >= _MAX_ANCESTORS:
            raise ValueError(f"proc: more than {_MAX_ANCESTORS} ancestors")
        d = _check_keys(cur, _PROCESS_KEYS | {"parent"}, "proc")
        chain.append(d)
        cur = d.get("parent")
    parent: Process | None = None
    for d in reversed(chain):
        values = {k: v for k, v in d.items() if k != "parent"}
        proc: Process = _typed(Process, values, "proc")
        proc.parent = parent
        parent = proc
    assert parent is not None
    return parent


def process_to_json(proc: Process) -> dict[str, Any]:
    out: dict[str, Any] = {}
    target = out
    cur: Process | None = proc
    depth = 0
    while cur is not None and depth < _MAX_ANCESTORS:
        for f in dataclasses.fields(Process):
            if f.name == "parent":
                continue
            val = getattr(cur, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if val != default or f.name in ("pid", "name"):
                target[f.name] = list(val) if isinstance(val, list) else val
        cur = cur.parent
        depth += 1
        if cur is not None:
            nxt: dict[str, Any] = {}
            target["parent"] = nxt
            target = nxt
    return out


def _container_from_json(obj: Any) -> Container:
    d = dict(_check_keys(obj, _CONTAINER_KEYS | {"mounts"}, "container"))
    mounts_raw = d.pop("mounts", [])
    if not isinstance(mounts_raw, list):
        raise ValueError("container.mounts must be a list")
    c: Container = _typed(Container, d, "container")
    c.mounts = [_typed(Mount, _check_keys(m, _MOUNT_KEYS, "mount"), "mount") for m in mounts_raw]
    return c


def event_from_json(obj: Any) -> Event:
    d = _check_keys(obj, _EVENT_KEYS, "event")
    etype = d.get("type")
    if not isinstance(etype, str) or not etype:
        raise ValueError("event.type is required and must be a non-empty string")
    args = d.get("args", {})
    if not isinstance(args, dict):
        raise ValueError("event.args must be an object")
    for key in ("ts", "tid", "num"):
        if key in d and (not isinstance(d[key], int) or isinstance(d[key], bool)):
            raise ValueError(f"event.{key} must be an integer")
    res = d.get("res")
    if res is not None and (not isinstance(res, int) or isinstance(res, bool)):
        raise ValueError("event.res must be an integer or null")
    data = d.get("data")
    if data is not None and not isinstance(data, str):
        raise ValueError("event.data must be a string (bytes as latin-1 code points)")
    return Event(
        type=etype,
        ts=d.get("ts", 0),
        tid=d.get("tid", 0),
        res=res,
        args=args,
        proc=process_from_json(d["proc"]) if d.get("proc") is not None else None,
        fd=_typed(FdInfo, _check_keys(d["fd"], _FD_KEYS, "fd"), "fd") if d.get("fd") is not None else None,
        container=_container_from_json(d["container"]) if d.get("container") is not None else None,
        num=d.get("num", 0),
        data=data.encode("latin-1") if isinstance(data, str) else None,
        dirs=_dirs_from_json(d["dirs"]) if d.get("dirs") is not None else None,
        target=process_from_json(d["target"]) if d.get("target") is not None else None,
    )


def _dirs_from_json(obj: Any) -> dict[int, str]:
    if not isinstance(obj, dict):
        raise ValueError("event.dirs must be an object mapping fd numbers to names")
    out: dict[int, str] = {}
    for k, v in obj.items():
        try:
            num = int(k)
        except ValueError:
            raise ValueError(f"event.dirs key {k!r} is not an fd number") from None
        if not isinstance(v, str):
            raise ValueError(f"event.dirs[{k}] must be a string")
        out[num] = v
    return out


def event_to_json(evt: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"type": evt.type, "ts": evt.ts, "tid": evt.tid}
    if evt.res is not None:
        out["res"] = evt.res
    if evt.args:
        out["args"] = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in evt.args.items()}
    if evt.proc is not None:
        out["proc"] = process_to_json(evt.proc)
    if evt.fd is not None:
        out["fd"] = {k: v for k, v in dataclasses.asdict(evt.fd).items() if v not in (None, "", False, 0)
                     or k in ("num", "type")}
    if evt.container is not None:
        out["container"] = dataclasses.asdict(evt.container)
    if evt.num:
        out["num"] = evt.num
    if evt.data is not None:
        out["data"] = evt.data.decode("latin-1")
    if evt.dirs:
        out["dirs"] = {str(k): v for k, v in evt.dirs.items()}
    if evt.target is not None:
        out["target"] = process_to_json(evt.target)
    return out


def read_events(path: str | Path) -> Iterator[Event]:
    """Events of a JSON-lines file, in order; blank lines are skipped."""
    name = str(path)
    try:
        fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise EventFileError(f"{name}: cannot open: {e.strerror}") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                col = getattr(e, "colno", 1)
                raise EventFileError(f"{name}:{lineno}:{col}: not valid JSON: {e}") from None
            try:
                evt = event_from_json(obj)
            except (ValueError, TypeError) as e:
                raise EventFileError(f"{name}:{lineno}: {e}") from None
            if not evt.num:
                evt.num = lineno
            yield evt


def write_events(events: Iterable[Event], fh: IO[str]) -> int:
    n = 0
    for evt in events:
        fh.write(json.dumps(event_to_json(evt), separators=(",", ":")) + "\n")
        n += 1
    return n
