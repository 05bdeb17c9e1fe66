"""The syslog output against real unix-datagram, UDP and TCP receivers."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanner.outputs import RetryPolicy, SyslogOutput
from lanner.outputs.lines import text_line

from .conftest import WAIT, make_alert, settled, wait_for

FAST = RetryPolicy(max_retries=-1, backoff_initial=0.01, backoff_max=0.1)
PRIORITIES = ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"]
RFC3164_LOCAL = re.compile(r"<(\d+)>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d "
                           r"lanner\[(\d+)\]: (.*)", re.S)
RFC5424 = re.compile(r"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) - - (.*)", re.S)


@pytest.fixture
def unix_receiver() -> Iterator[tuple[str, socket.socket]]:
    d = tempfile.mkdtemp(prefix="lanner-syslog-")  # short: unix socket paths are limited to 108 bytes
    path = os.path.join(d, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(WAIT)
    yield path, sock
    sock.close()
    for p in Path(d).iterdir():
        p.unlink()
    os.rmdir(d)


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    yield sock
    sock.close()


def test_unix_dgram_rfc3164_like_syslog3(unix_receiver: tuple[str, socket.socket]) -> None:
    path, sock = unix_receiver
    out = SyslogOutput(path, facility="local0")
    out.start()
    alert = make_alert(1, priority="Critical")
    out.emit(alert)
    m = RFC3164_LOCAL.fullmatch(sock.recv(65536).decode())
    assert m, "not an RFC 3164 message"
    assert int(m[1]) == 16 * 8 + 2  # local0.crit
    assert int(m[3]) == os.getpid()
    assert m[4] == text_line(alert)
    assert out.stop(WAIT)


def test_unix_receiver_restart_is_retried(unix_receiver: tuple[str, socket.socket]) -> None:
    path, sock = unix_receiver
    out = SyslogOutput(path, retry=FAST)
    out.start()
    try:
        out.emit(make_alert(1))
        assert b"seq=1 " in sock.recv(65536)
        sock.close()
        os.unlink(path)  # syslogd goes away...
        out.emit(make_alert(2))
        wait_for(lambda: out.stats().retries >= 2, "retries while the socket is gone")
        again = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # ...and comes back
        again.bind(path)
        again.settimeout(WAIT)
        try:
            assert b"seq=2 " in again.recv(65536)
        finally:
            again.close()
        s = settled(out)
        assert (s.delivered, s.failed) == (2, 0)
    finally:
        out.stop(WAIT)


@pytest.mark.parametrize(("priority", "severity"), [(p, i) for i, p in enumerate(PRIORITIES)] + [("Info", 6)])
def test_udp_rfc5424_priority_mapping(udp_receiver: socket.socket, priority: str, severity: int) -> None:
    host, port = udp_receiver.getsockname()
    out = SyslogOutput(f"udp://{host}:{port}", facility=4)
    out.start()
    alert = make_alert(3, priority=priority)
    out.emit(alert)
    m = RFC5424.fullmatch(udp_receiver.recv(65536).decode())
    assert m, "not an RFC 5424 message"
    assert int(m[1]) == 4 * 8 + severity
    assert m[2] == "2025-01-01T10:21:08.123456Z"
    assert (m[3], m[4], int(m[5])) == ("node1", "lanner", os.getpid())
    assert m[6] == text_line(alert)
    assert out.stop(WAIT)


def test_udp_json_body_and_rfc3164_with_hostname(udp_receiver: socket.socket) -> None:
    host, port = udp_receiver.getsockname()
    out = SyslogOutput(f"udp://{host}:{port}", rfc="3164", format="json", facility="daemon")
    out.start()
    alert = make_alert(4, priority="Warning")
    out.emit(alert)
    msg = udp_receiver.recv(65536).decode()
    m = re.fullmatch(r"<28>\w{3} [ \d]\d \d\d:\d\d:\d\d node1 lanner\[\d+\]: (.*)", msg)
    assert m, msg
    assert json.loads(m[1]) == alert.to_json()
    assert out.stop(WAIT)


@pytest.mark.parametrize("framing", ["octet-counting", "newline"])
def test_tcp_framing(framing: str) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(WAIT)
    port = server.getsockname()[1]
    out = SyslogOutput(f"tcp://127.0.0.1:{port}", framing=framing)  # type: ignore[arg-type]
    out.start()
    try:
        for i in range(3):
            out.emit(make_alert(i))
        conn, _ = server.accept()
        conn.settimeout(WAIT)
        assert out.stop(WAIT)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.close()
    finally:
        server.close()
    msgs: list[bytes] = []
    if framing == "newline":
        msgs = data.split(b"\n")[:-1]
    else:
        while data:
            length, _, rest = data.partition(b" ")
            msgs.append(rest[:int(length)])
            data = rest[int(length):]
    assert len(msgs) == 3
    for i, msg in enumerate(msgs):
        m = RFC5424.fullmatch(msg.decode())
        assert m
        assert m[6] == text_line(make_alert(i))
