"""Parsing of condition literals into field values (FIELDS.md §1)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Final

from lanner.rules.fieldtypes import STRING_TYPES, Field, FieldType

_SIGNED_BITS: Final = {FieldType.INT64: 64, FieldType.INT32: 32, FieldType.PID: 64,
                       FieldType.FD: 64, FieldType.ERRNO: 64}
_UNSIGNED_BITS: Final = {FieldType.UINT32: 32, FieldType.UINT64: 64, FieldType.RELTIME: 64,
                         FieldType.ABSTIME: 64}
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _decimal(text: str, what: str) -> int:
    digits = text[1:] if text.startswith("-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{text!r} is not a valid {what} (decimal digits only)")
    return int(text)


def parse_literal(field: Field, text: str) -> Any:
    """Convert the literal ``text`` compared with ``field`` to a value of the field's type.

    Raises ValueError with a message fit for a load error.
    """
    if "\0" in text:
        raise ValueError(f"literal for {field.name} contains a NUL byte")
    t = field.type
    if t in STRING_TYPES:
        return text
    bits = _SIGNED_BITS.get(t)
    if bits is not None:
        v = _decimal(text, f"number for {field.name}")
        if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
            raise ValueError(f"{text!r} is out of range for {field.name} ({t.value})")
        return v
    bits = _UNSIGNED_BITS.get(t)
    if bits is not None:
        v = _decimal(text, f"number for {field.name}")
        if v >= 1 << bits or v < -(1 << bits):
            raise ValueError(f"{text!r} is out of range for {field.name} ({t.value})")
        # A leading '-' wraps, as sscanf into an unsigned does ("-1" -> 4294967295).
        return v % (1 << bits)
    if t is FieldType.PORT:
        return parse_port(text)
    if t is FieldType.BOOL:
        if text == "true":
            return True
        if text == "false":
            return False
        raise ValueError(f"{text!r} is not a boolean for {field.name} (use true or false)")
    if t is FieldType.IPADDR:
        try:
            if "." in text:
                return ipaddress.IPv4Address(text)
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid IP address for {field.name}") from None
    if t is FieldType.IPNET:
        if "/" not in text:
            raise ValueError(f"{text!r} is not a network for {field.name} (expected address/prefix)")
        try:
            if "." in text:
                return ipaddress.IPv4Network(text, strict=False)
            return ipaddress.IPv6Network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid network for {field.name}") from None
    if t is FieldType.BYTEBUF:
        return text.encode("utf-8", "surrogateescape")
    raise ValueError(f"no literal syntax for {field.name} ({t.value})")


def parse_port(text: str) -> int:
    """A port number, or a service name looked up like getservbyname (``ssh`` -> 22)."""
    if text == "":
        return 0
    if text.isascii() and text.isdigit():
        v = int(text)
        if v > 0xFFFF:
            raise ValueError(f"{text!r} is out of range for a port")
        return v
    try:
        return socket.getservbyname(text)
    except OSError:
        raise ValueError(f"{text!r} is neither a port number nor a known service name") from None


def parse_hex_literal(text: str) -> bytes:
    """The hex string operand of ``bcontains``/``bstartswith`` (``cafebabe`` -> 4 bytes)."""
    if len(text) % 2 or not all(c in _HEX for c in text):
        raise ValueError(f"{text!r} is not a hex string (an even number of hex digits)")
    return bytes.fromhex(text)
