"""Runtime helpers for comparisons that are more than one Python operator.

The generated matcher code calls these; each is built once per literal at compile time.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import ipaddress
import os.path
import re
from collections.abc import Callable, Sequence
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=1024)
def glob_matcher(pattern: str, ignore_case: bool = False) -> Callable[[str], bool]:
    """``fnmatch(pattern, value, 0)``: a full match where ``*`` and ``?`` also match ``/``."""
    rx = re.compile(fnmatch.translate(pattern), re.DOTALL | (re.IGNORECASE if ignore_case else 0))
    match = rx.match
    return lambda v: match(v) is not None


def regex_matcher(pattern: str) -> Callable[[str], bool]:
    rx = re.compile(pattern)
    search = rx.search
    return lambda v: search(v) is not None


class PathPrefixes:
    """``pmatch``: is some prefix's component list a prefix of the value's components?

    Components are split on '/', empty ones dropped; a prefix component with glob characters
    matches exactly one value component with fnmatch.
    """

    __slots__ = ("exact", "globbed")

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.exact: dict[tuple[str, ...], None] = {}
        self.globbed: list[list[Callable[[str], bool] | str]] = []
        for p in prefixes:
            comps = tuple(c for c in p.split("/") if c)
            if any(ch in c for c in comps for ch in "*?["):
                self.globbed.append([glob_matcher(c) if any(ch in c for ch in "*?[") else c for c in comps])
            else:
                self.exact[comps] = None

    def __call__(self, value: str) -> bool:
        comps = [c for c in value.split("/") if c]
        exact = self.exact
        if () in exact:
            return True
        for n in range(1, len(comps) + 1):
            if tuple(comps[:n]) in exact:
                return True
        for pat in self.globbed:
            if len(pat) <= len(comps) and all(
                (c == comps[i]) if isinstance(c, str) else c(comps[i]) for i, c in enumerate(pat)
            ):
                return True
        return False


def in_networks(nets: Sequence[IPNetwork]) -> Callable[[Any], bool]:
    def test(addr: Any) -> bool:
        return any(addr.version == n.version and addr in n for n in nets)
    return test


def to_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return str(v)


def t_tolower(v: Any) -> Any:
    return to_str(v).lower()


def t_toupper(v: Any) -> Any:
    return to_str(v).upper()


def t_b64(v: Any) -> Any:
    """Decode base64; a value that is not valid base64 has no value."""
    try:
        return base64.b64decode(to_str(v), validate=True).decode("latin-1")
    except ValueError:
        return None


def t_basename(v: Any) -> Any:
    return os.path.basename(to_str(v))


def t_len(v: Any) -> Any:
    return len(v) if isinstance(v, str | bytes | list | tuple) else len(to_str(v))


def getopt_values(args: Sequence[str], optstring: str) -> dict[str, list[str]]:
    """POSIX getopt over an argument list: option → its arguments ('' for a flag)."""
    out: dict[str, list[str]] = {}
    takes = {optstring[i] for i in range(len(optstring) - 1) if optstring[i + 1] == ":" and optstring[i] != ":"}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        if not a.startswith("-") or a == "-":
            i += 1
            continue
        j = 1
        while j < len(a):
            opt = a[j]
            if opt in takes:
                if j + 1 < len(a):
                    out.setdefault(opt, []).append(a[j + 1:])
                elif i + 1 < len(args):
                    i += 1
                    out.setdefault(opt, []).append(args[i])
                else:
                    out.setdefault(":" if optstring.startswith(":") else "?", []).append("")
                break
            if opt in optstring and opt != ":":
                out.setdefault(opt, []).append("")
            else:
                out.setdefault("?", []).append("")
            j += 1
        i += 1
    return out
