"""Classes ``user`` and ``group`` (FIELDS.md §7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from lanner.events import Event
from lanner.rules.fieldtypes import MISSING, Field, FieldType

_U32: Final = 0xFFFFFFFF


def _uid(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    return MISSING if p is None else p.uid & _U32


def _loginuid(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    lu = p.loginuid
    return -1 if lu == _U32 else lu


def _gid(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    return MISSING if p is None else p.gid & _U32


def _resolved_name(name_attr: str, id_attr: str) -> Callable[[Event, str | None], Any]:
    """A name the state layer resolved; else Falco's fallbacks: root for id 0, the literal <NA>."""
    def extract(ev: Event, arg: str | None = None) -> Any:
        p = ev.proc
        if p is None:
            return MISSING
        n = getattr(p, name_attr)
        if n is not None:
            return n
        return "root" if getattr(p, id_attr) == 0 else "<NA>"
    return extract


_name = _resolved_name("user_name", "uid")
_loginname = _resolved_name("loginname", "loginuid")
_group = _resolved_name("group_name", "gid")


def _F(name: str, typ: FieldType, desc: str, fn: Callable[[Event, str | None], Any]) -> Field:
    return Field(name=name, type=typ, desc=desc, extract=fn)


FIELDS: Final[tuple[Field, ...]] = (
    _F("user.uid", FieldType.UINT32, "Effective user id of the thread.", _uid),
    _F("user.name", FieldType.CHARBUF, "User name; root for uid 0 and <NA> when unknown.", _name),
    _F("user.loginuid", FieldType.INT64, "Audit login uid; -1 when unset.", _loginuid),
    _F("user.loginname", FieldType.CHARBUF, "Name of the login user; root for 0, <NA> when unknown.",
       _loginname),
    _F("group.gid", FieldType.UINT32, "Group id of the thread.", _gid),
    _F("group.name", FieldType.CHARBUF, "Group name; root for gid 0 and <NA> when unknown.", _group),
)
