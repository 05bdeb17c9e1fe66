"""Class ``fd``: the file descriptor the event created or used (FIELDS.md §8)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from lanner.events import EVENT_FD, Event, FdInfo
from lanner.paths import collapse_slashes
from lanner.paths import concatenate as concatenate_paths
from lanner.rules.fieldtypes import MISSING, Field, FieldType, Quantifier

from ._common import (
    AT_FDCWD,
    FD_TYPECHAR,
    GUESSED_TYPECHAR,
    event_fd_num,
    to_ip,
)

_IP_TYPES: Final = frozenset({"ipv4", "ipv6"})
_OPEN_CWD: Final = frozenset({"open", "creat"})
_OPEN_AT: Final = frozenset({"openat", "openat2"})
_TUPLE_EVENTS: Final = frozenset({"accept", "accept4", "connect"})


def event_name(ev: Event) -> Any:
    """fd.name when there is no fdinfo: built from the event's own parameters."""
    t = ev.type
    if t not in EVENT_FD:
        return MISSING
    args = ev.args
    if t in _OPEN_CWD:
        name = args.get("name")
        if not isinstance(name, str):
            return ""
        if name.startswith("/"):
            return name
        p = ev.proc
        return concatenate_paths(p.cwd if p is not None else "/", name)
    if t in _OPEN_AT:
        name = args.get("name")
        if not isinstance(name, str):
            return ""
        dirfd = args.get("dirfd", AT_FDCWD)
        if dirfd == AT_FDCWD:
            p = ev.proc
            base = p.cwd if p is not None else "/"
        elif ev.dirs is not None and dirfd in ev.dirs:
            base = ev.dirs[dirfd]
        else:
            base = "<UNKNOWN>"
        return concatenate_paths(base, name)
    if t in _TUPLE_EVENTS:
        tup = args.get("tuple")
        return tup if isinstance(tup, str) else ""
    return ""


def _num(ev: Event, arg: str | None = None) -> Any:
    return event_fd_num(ev)


def _type(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is None:
        return MISSING
    t = fdi.type
    return t if t in FD_TYPECHAR else "<NA>"


def _typechar(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is not None:
        return FD_TYPECHAR.get(fdi.type, "o")
    if ev.type not in EVENT_FD:
        return MISSING
    return GUESSED_TYPECHAR.get(ev.type, "o")


def _name(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is not None:
        return fdi.name
    return event_name(ev)


def _nameraw(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is not None:
        return fdi.nameraw
    t = ev.type
    if t not in EVENT_FD:
        return MISSING
    if t in _OPEN_AT:
        name = ev.args.get("name")
        return collapse_slashes(name) if isinstance(name, str) else ""
    if t in _OPEN_CWD:
        return event_name(ev)
    return ""


def _dirname(name: str) -> str:
    i = name.rfind("/")
    if i <= 0:
        return "/"
    return name[:i]


def _directory(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is None:
        name = event_name(ev)
        if name is MISSING:
            return MISSING
        return _dirname(name) if name else "/"
    t = fdi.type
    if t == "directory":
        return fdi.name
    if t == "file":
        return _dirname(fdi.name)
    return MISSING


def _filename(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is None or fdi.type != "file":
        return MISSING
    name = fdi.name
    return name[name.rfind("/") + 1:]


def _ipfd(ev: Event) -> FdInfo | None:
    fdi = ev.fd
    if fdi is None or fdi.type not in _IP_TYPES:
        return None
    return fdi


def _addr(text: str | None) -> Any:
    if text is None:
        return MISSING
    a = to_ip(text)
    return MISSING if a is None else a


def _sip(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role is None:
        return MISSING
    return _addr(fdi.sip)


def _cip(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role not in ("client", "server"):
        return MISSING
    return _addr(fdi.cip)


def _port(v: int | None) -> Any:
    return MISSING if v is None else v


def _sport(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role is None:
        return MISSING
    return _port(fdi.sport)


def _cport(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role not in ("client", "server"):
        return MISSING
    return _port(fdi.cport)


def _by_role(client_attr: str, server_attr: str, conv: Callable[[Any], Any]) -> Callable[[Event, str | None], Any]:
    """Local/remote ends: a connecting (client) socket's local end is the client side, an accepted
    (server) socket's local end is the server side."""
    def extract(ev: Event, arg: str | None = None) -> Any:
        fdi = _ipfd(ev)
        if fdi is None:
            return MISSING
        role = fdi.role
        if role == "client":
            return conv(getattr(fdi, client_attr))
        if role == "server":
            return conv(getattr(fdi, server_attr))
        return MISSING
    return extract


_lip = _by_role("cip", "sip", _addr)
_rip = _by_role("sip", "cip", _addr)
_lport = _by_role("cport", "sport", _port)
_rport = _by_role("sport", "cport", _port)


def _both_ips(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role is None:
        return MISSING
    if fdi.role == "listen":
        ends = [fdi.sip]
    else:
        ends = [fdi.cip, fdi.sip]
    vals = [a for a in (to_ip(e) for e in ends if e is not None) if a is not None]
    return vals if vals else MISSING


def _both_ports(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role is None:
        return MISSING
    ends = [fdi.sport] if fdi.role == "listen" else [fdi.cport, fdi.sport]
    vals = [p for p in ends if p is not None]
    return vals if vals else MISSING


@lru_cache(maxsize=1024)
def _service(port: int, proto: str) -> str:
    try:
        return socket.getservbyport(port, proto)
    except (OSError, OverflowError):
        return str(port)


def _proto_of(fdi: FdInfo, port: int | None) -> str | None:
    if port is None or fdi.l4proto not in ("tcp", "udp"):
        return None
    return _service(port, fdi.l4proto or "tcp")


def _sproto(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role is None:
        return MISSING
    s = _proto_of(fdi, fdi.sport)
    return MISSING if s is None else s


def _cproto(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role not in ("client", "server"):
        return MISSING
    s = _proto_of(fdi, fdi.cport)
    return MISSING if s is None else s


def _both_protos(ev: Event, arg: str | None = None) -> Any:
    fdi = _ipfd(ev)
    if fdi is None or fdi.role is None:
        return MISSING
    ends = [fdi.sport] if fdi.role == "listen" else [fdi.cport, fdi.sport]
    vals = [s for s in (_proto_of(fdi, p) for p in ends) if s is not None]
    return vals if vals else MISSING


def _l4proto(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is None:
        return MISSING
    if fdi.type in _IP_TYPES and fdi.role is not None and fdi.l4proto:
        return fdi.l4proto
    return "<NA>"


def _sockfamily(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    if fdi is None:
        return MISSING
    t = fdi.type
    if t in _IP_TYPES:
        return "ip"
    return "unix" if t == "unix" else MISSING


def _connected(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    return MISSING if fdi is None else fdi.connected


def _name_changed(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    return MISSING if fdi is None else fdi.name_changed


def _dev(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    return MISSING if fdi is None else fdi.dev


def _ino(ev: Event, arg: str | None = None) -> Any:
    fdi = ev.fd
    return MISSING if fdi is None else fdi.ino


def _ip_name(ip_extract: Callable[[Event, str | None], Any]) -> Callable[[Event, str | None], Any]:
    """The watched condition domain the address belongs to (FIELDS.md §8.4), else missing."""
    def extract(ev: Event, arg: str | None = None) -> Any:
        from lanner.rules.dns import table

        ip = ip_extract(ev, None)
        if ip is MISSING:
            return MISSING
        name = table().name_of(ip)
        return MISSING if name is None else name
    return extract


def _F(name: str, typ: FieldType, desc: str, fn: Callable[[Event, str | None], Any], **kw: Any) -> Field:
    return Field(name=name, type=typ, desc=desc, extract=fn, **kw)


C, IP, NET, PORT, B = (FieldType.CHARBUF, FieldType.IPADDR, FieldType.IPNET, FieldType.PORT,
                       FieldType.BOOL)
_EITHER: Final = {"quantifier": Quantifier.EITHER_END, "filter_only": True}

FIELDS: Final[tuple[Field, ...]] = (
    _F("fd.num", FieldType.INT64, "The fd number (-1 for a failed open, -100 for AT_FDCWD).", _num),
    _F("fd.type", C, "Type of fd: file, directory, ipv4, ipv6, unix, pipe, event, memfd...", _type),
    _F("fd.typechar", C, "One-letter fd type: f, d, 4, 6, u, p, e, s, l, i, t, n, b, r, m, P, o.",
       _typechar),
    _F("fd.name", C, "Full name of the fd: path, socket tuple or unix path.", _name),
    _F("fd.nameraw", C, "Path as passed to the open call, not resolved.", _nameraw),
    _F("fd.directory", C, "Directory part of a file fd's path (or the directory itself).", _directory),
    _F("fd.filename", C, "File name part of a file fd's path.", _filename),
    _F("fd.sip", IP, "Server IP address.", _sip),
    _F("fd.cip", IP, "Client IP address.", _cip),
    _F("fd.lip", IP, "Local IP address.", _lip),
    _F("fd.rip", IP, "Remote IP address.", _rip),
    _F("fd.sport", PORT, "Server port.", _sport),
    _F("fd.cport", PORT, "Client port.", _cport),
    _F("fd.lport", PORT, "Local port.", _lport),
    _F("fd.rport", PORT, "Remote port.", _rport),
    _F("fd.sproto", C, "Service name of the server port.", _sproto),
    _F("fd.cproto", C, "Service name of the client port.", _cproto),
    _F("fd.ip", IP, "Matches the client or the server IP address (filter only).", _both_ips, **_EITHER),
    _F("fd.port", PORT, "Matches the client or the server port (filter only).", _both_ports, **_EITHER),
    _F("fd.proto", C, "Matches the client or the server service name (filter only).", _both_protos,
       **_EITHER),
    _F("fd.net", NET, "Matches when the client or the server IP is in the network (filter only).",
       _both_ips, **_EITHER),
    _F("fd.snet", NET, "Server IP tested against networks (filter only).", _sip, filter_only=True),
    _F("fd.cnet", NET, "Client IP tested against networks (filter only).", _cip, filter_only=True),
    _F("fd.lnet", NET, "Local IP tested against networks (filter only).", _lip, filter_only=True),
    _F("fd.rnet", NET, "Remote IP tested against networks (filter only).", _rip, filter_only=True),
    _F("fd.sip.name", C, "Domain name of the server IP, from the domains conditions use.", _ip_name(_sip)),
    _F("fd.cip.name", C, "Domain name of the client IP, from the domains conditions use.", _ip_name(_cip)),
    _F("fd.lip.name", C, "Domain name of the local IP, from the domains conditions use.", _ip_name(_lip)),
    _F("fd.rip.name", C, "Domain name of the remote IP, from the domains conditions use.", _ip_name(_rip)),
    _F("fd.l4proto", C, "IP protocol: tcp, udp, icmp, raw; <NA> for other fds.", _l4proto),
    _F("fd.sockfamily", C, "Socket family: ip or unix.", _sockfamily),
    _F("fd.connected", B, "The socket is connected.", _connected),
    _F("fd.name_changed", B, "Handling this event changed the fd's name.", _name_changed),
    _F("fd.dev", FieldType.UINT32, "Device number of the file.", _dev),
    _F("fd.ino", FieldType.INT64, "Inode number of the file.", _ino),
)
