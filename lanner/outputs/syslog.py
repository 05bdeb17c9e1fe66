"""``syslog``: alerts as syslog messages (RFC 5424 or RFC 3164) over a unix socket, UDP or TCP.

The severity comes from the alert's Falco priority (Emergency..Debug are syslog's own eight levels);
the facility is configured. Over a unix socket (``/dev/log``) the RFC 3164 form is what syslog(3)
sends (no hostname); over the network the RFC 3164 form carries the hostname. TCP frames messages
with octet counting (RFC 6587) or a trailing newline."""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Literal
from urllib.parse import urlsplit

from lanner.alert import Alert, hostname
from lanner.outputs.base import DEFAULT_QUEUE_SIZE, Output, PermanentError, RetryPolicy
from lanner.outputs.lines import Format, encode, render

Rfc = Literal["5424", "3164"]
Framing = Literal["octet-counting", "newline"]

SEVERITIES = {"emergency": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4, "notice": 5,
              "informational": 6, "info": 6, "debug": 7}
"""Falco priority (case-insensitive) → syslog severity."""

FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
              "solaris-cron": 15, **{f"local{i}": 16 + i for i in range(8)}}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def severity(priority: str) -> int:
    """Unknown priorities are sent as Informational."""
    return SEVERITIES.get(priority.lower(), 6)


def facility_number(facility: str | int) -> int:
    """A facility name (``local0``) or number (0..23). Raises ValueError."""
    number = FACILITIES.get(facility) if isinstance(facility, str) else facility
    if number is None or not 0 <= number <= 23:
        raise ValueError(f"expected one of {', '.join(FACILITIES)} or a number 0..23, got {facility!r}")
    return number


def parse_address(address: str) -> tuple[str, str, int]:
    """``/dev/log`` or ``unix:///dev/log`` → ("unix", path, 0); ``udp://host:514``, ``tcp://host:601`` →
    (transport, host, port). Raises ValueError."""
    if address.startswith("/"):
        return "unix", address, 0
    parts = urlsplit(address)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs an absolute path, e.g. unix:///dev/log")
        return "unix", parts.path, 0
    if parts.scheme in ("udp", "tcp"):
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad port in {address!r}") from None
        if not parts.hostname:
            raise ValueError(f"no host in {address!r}")
        return parts.scheme, parts.hostname, port or (514 if parts.scheme == "udp" else 601)
    raise ValueError(f"expected a path, unix:///path, udp://host[:port] or tcp://host[:port], got {address!r}")


class SyslogOutput(Output):
    kind = "syslog"

    def __init__(self, address: str = "/dev/log", *, rfc: Rfc | None = None, facility: str | int = "user",
                 app_name: str = "lanner", format: Format = "text", framing: Framing = "octet-counting",
                 timeout: float = 5.0, name: str | None = None, queue_size: int = DEFAULT_QUEUE_SIZE,
                 retry: RetryPolicy | None = None) -> None:
        super().__init__(name, queue_size=queue_size, retry=retry)
        self.address = address
        self.transport, self.host, self.port = parse_address(address)
        self.rfc: Rfc = rfc or ("3164" if self.transport == "unix" else "5424")
        self.facility = facility_number(facility)
        self.app_name = app_name
        self.format = format
        self.framing = framing
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._stream = False

    def message(self, alert: Alert) -> bytes:
        """The syslog message for ``alert``, without transport framing."""
        pri = self.facility * 8 + severity(alert.priority)
        body = render(alert, self.format)
        secs, ns = divmod(alert.time_ns, 1_000_000_000)
        host = _printable(alert.hostname or hostname())
        if self.rfc == "5424":
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns // 1000:06d}Z"
            header = f"<{pri}>1 {ts} {host[:255]} {_printable(self.app_name)[:48]} {os.getpid()} - -"
        else:
            t = time.localtime(secs)
            ts = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            tag = f"{self.app_name}[{os.getpid()}]:"
            header = f"<{pri}>{ts} {tag}" if self.transport == "unix" else f"<{pri}>{ts} {host} {tag}"
        return encode(f"{header} {body}")

    def _connect(self) -> socket.socket:
        if self.transport == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(self.host)
                self._stream = False
            except OSError as e:
                sock.close()
                if e.errno != errno.EPROTOTYPE:
                    raise
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(self.host)
                except OSError:
                    sock.close()
                    raise
                self._stream = True
        elif self.transport == "udp":
            family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.connect(addr)
            except OSError:
                sock.close()
                raise
            self._stream = False
        else:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._stream = True
        sock.settimeout(self.timeout)
        return sock

    def _send(self, alert: Alert) -> None:
        msg = self.message(alert)
        if self._sock is None:
            self._sock = self._connect()
        try:
            if not self._stream:
                self._sock.send(msg)
            elif self.transport == "unix":
                self._sock.sendall(msg + b"\0")  # what syslog(3) does on a stream socket
            elif self.framing == "octet-counting":
                self._sock.sendall(b"%d %s" % (len(msg), msg))
            else:
                self._sock.sendall(msg + b"\n")
        except OSError as e:
            self._close()
            if e.errno == errno.EMSGSIZE:
                raise PermanentError(f"message of {len(msg)} bytes too large for a datagram") from None
            raise

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _printable(text: str) -> str:
    """RFC 5424 header fields: printable US-ASCII without spaces, "-" when empty."""
    out = "".join(c for c in text if "!" <= c <= "~")
    return out or "-"
