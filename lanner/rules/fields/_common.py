"""Helpers shared by the field modules: paths, IP values, the event's fd."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Final

from lanner.events import EVENT_FD, Event
from lanner.rules.fieldtypes import MISSING

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AT_FDCWD: Final = -100

FD_TYPECHAR: Final[dict[str, str]] = {
    "file": "f", "directory": "d", "ipv4": "4", "ipv6": "6", "unix": "u", "pipe": "p",
    "event": "e", "signalfd": "s", "eventpoll": "l", "inotify": "i", "timerfd": "t",
    "netlink": "n", "bpf": "b", "userfaultfd": "u", "io_uring": "r", "memfd": "m", "pidfd": "P",
}
"""fd.type -> fd.typechar."""

# Guessed typechar when the event has no fdinfo (libs extract_typechar): 'o' for everything
# else, including a failed open() (FIELDS.md §8.1, §13.1).
GUESSED_TYPECHAR: Final[dict[str, str]] = {
    "openat": "f", "openat2": "f", "creat": "f", "socket": "4", "accept": "4", "accept4": "4",
    "pipe": "p", "pipe2": "p", "eventfd": "e", "eventfd2": "e", "signalfd": "s", "signalfd4": "s",
    "timerfd_create": "t", "inotify_init": "i", "inotify_init1": "i",
}

_L4_CHAR: Final = {"tcp": "t", "udp": "u", "icmp": "i", "raw": "r"}

OPEN_EVENTS: Final = frozenset({"open", "openat", "openat2", "creat"})


@lru_cache(maxsize=8192)
def to_ip(text: str) -> IPAddress | None:
    """Parse an address string once; None when it is not an address."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def cwd_of(ev: Event) -> str:
    p = ev.proc
    return p.cwd if p is not None else "/"


def event_fd_num(ev: Event) -> Any:
    """The number of the fd the event refers to (fd.num), or MISSING."""
    where = EVENT_FD.get(ev.type)
    if where is None:
        return MISSING
    fdi = ev.fd
    if fdi is not None:
        return fdi.num
    if where == "C":
        res = ev.res
        if res is None:
            res = ev.args.get("fd", ev.args.get("res"))
            if not isinstance(res, int):
                return MISSING
        if res < 0 and ev.type in OPEN_EVENTS:
            return -1
        return res
    val = ev.args.get(where)
    return val if isinstance(val, int) and not isinstance(val, bool) else MISSING


def fd_tag(typ: str, l4proto: str | None) -> str:
    """``<f>``, ``<4t>``: the prefix Falco puts before an fd name in argument rendering."""
    ch = FD_TYPECHAR.get(typ, "o")
    if typ in ("ipv4", "ipv6") and l4proto:
        return "<" + ch + _L4_CHAR.get(l4proto, "") + ">"
    return "<" + ch + ">"


class TimeText(str):
    """A rendered timestamp that remembers its ns value (evt.time is text, but JSON wants ns)."""

    ns: int

    def __new__(cls, text: str, ns: int) -> TimeText:
        obj = super().__new__(cls, text)
        obj.ns = ns
        return obj


_PRINTABLE: Final = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def printable(data: bytes) -> str:
    """Printable ASCII kept, every other byte shown as ``.``."""
    return data.translate(_PRINTABLE).decode("ascii")
