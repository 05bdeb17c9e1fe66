"""The network guard on the real kernel (root): denied connects and datagrams fail with EPERM.

The test process is the "agent" (protected), so every connect and sendto happens in a child.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from lanner.response.net_guard import Isolation, NetDeny, NetGuard, NetTable, compile_net_table
from lanner.state.cgroups import find_cgroup2_mount
from tests.conftest import require_or_skip
from tests.response.conftest import Cgroup, Decisions, loaded_guard, require_bpf

# One network call in a child: prints "ok" or the errno.
PROBE = r"""
import socket, sys
kind, fam, addr, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(fam, socket.SOCK_STREAM if kind == "connect" else socket.SOCK_DGRAM)
try:
    if kind == "connect":
        s.connect((addr, port))
    else:
        s.sendto(b"x", (addr, port))
    print("ok")
except OSError as e:
    print(e.errno)
"""

V4, V6 = socket.AF_INET, socket.AF_INET6


def probe(kind: str, fam: int, addr: str, port: int, cgroup: Cgroup | None = None) -> tuple[int, str]:
    """(child pid, "ok" or the errno as text)."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", PROBE, kind, str(fam), addr, str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=cgroup.enter if cgroup else None)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return p.pid, out.strip()


EPERM = str(errno.EPERM)


class Listeners:
    """TCP listeners on 127.0.0.1 and ::1 (connect needs no accept: the backlog takes it)."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def listen(self, fam: int, addr: str) -> int:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.bind((addr, 0))
        s.listen(64)
        self.socks.append(s)
        return int(s.getsockname()[1])

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def ports() -> Iterator[Listeners]:
    ls = Listeners()
    yield ls
    ls.close()


@pytest.fixture
def guard() -> Iterator[NetGuard]:
    if find_cgroup2_mount() is None:
        require_or_skip("no cgroup2 hierarchy is mounted")
    yield from loaded_guard(NetGuard, "net_guard.bpf.o")


def test_connect_to_a_denied_port_fails_with_eperm(guard: NetGuard, ports: Listeners) -> None:
    deny4, open4 = ports.listen(V4, "127.0.0.1"), ports.listen(V4, "127.0.0.1")
    deny6, open6 = ports.listen(V6, "::1"), ports.listen(V6, "::1")
    guard.apply(NetTable(deny=[NetDeny(1, addrs=["127.0.0.1"], ports=[deny4]),
                               NetDeny(2, addrs=["::1"], ports=[deny6])]))
    dec = Decisions(guard)
    before = time.time_ns()
    pid, res = probe("connect", V4, "127.0.0.1", deny4)
    assert res == EPERM
    (d,) = dec.of(pid)
    assert (d.mechanism, d.kind, d.rule_id, d.enforced, d.error, d.result) == (
        "cgroup-net", "connect", 1, True, "", "blocked")
    assert (d.tgid, d.tid, d.family, d.addr, d.port, d.comm) == (pid, pid, V4, "127.0.0.1", deny4, "python3")
    assert d.cgroup_id > 0 and before <= d.ts_ns <= time.time_ns()
    assert probe("connect", V4, "127.0.0.1", open4)[1] == "ok"

    pid, res = probe("connect", V6, "::1", deny6)
    assert res == EPERM
    (d,) = dec.of(pid)
    assert (d.rule_id, d.family, d.addr, d.port) == (2, V6, "::1", deny6)
    assert probe("connect", V6, "::1", open6)[1] == "ok"

    # an IPv4 rule holds for a v6 socket that names the address IPv4-mapped
    pid, res = probe("connect", V6, "::ffff:127.0.0.1", deny4)
    assert res == EPERM
    (d,) = dec.of(pid)
    assert (d.rule_id, d.family, d.addr) == (1, V4, "127.0.0.1")
    assert probe("connect", V6, "::ffff:127.0.0.1", open4)[1] == "ok"
    assert guard.dropped() == 0


def test_sendto_a_denied_port_fails_with_eperm(guard: NetGuard) -> None:
    guard.apply(NetTable(deny=[NetDeny(3, addrs=["127.0.0.1", "::1"], ports=[9999])]))
    dec = Decisions(guard)
    pid, res = probe("sendto", V4, "127.0.0.1", 9999)
    assert res == EPERM
    (d,) = dec.of(pid)
    assert (d.kind, d.rule_id, d.family, d.addr, d.port) == ("sendmsg", 3, V4, "127.0.0.1", 9999)
    assert probe("sendto", V6, "::1", 9999)[1] == EPERM
    assert probe("sendto", V6, "::ffff:127.0.0.1", 9999)[1] == EPERM
    assert probe("sendto", V4, "127.0.0.1", 9998)[1] == "ok"
    assert probe("sendto", V6, "::1", 9998)[1] == "ok"


def test_any_port_any_address_and_call_kinds(guard: NetGuard, ports: Listeners) -> None:
    p1, p2 = ports.listen(V4, "127.0.0.1"), ports.listen(V4, "127.0.0.1")
    guard.apply(NetTable(deny=[
        NetDeny(4, addrs=["127.0.0.2"]),                 # any port of one address
        NetDeny(5, ports=[p1], families=[4]),            # one port of any IPv4 address
        NetDeny(6, ports=[9997], connect=False),         # datagrams only
    ]))
    assert probe("connect", V4, "127.0.0.1", p1)[1] == EPERM
    assert probe("connect", V6, "::1", p1)[1] != EPERM  # IPv4 only: refused, not denied
    assert probe("connect", V4, "127.0.0.1", p2)[1] == "ok"
    assert probe("sendto", V4, "127.0.0.2", 1234)[1] == EPERM
    assert probe("sendto", V4, "127.0.0.1", 9997)[1] == EPERM
    assert probe("connect", V4, "127.0.0.1", 9997)[1] == str(errno.ECONNREFUSED)  # not denied


def test_monitor_mode_lets_it_through_and_reports(guard: NetGuard, ports: Listeners) -> None:
    port = ports.listen(V4, "127.0.0.1")
    guard.apply(NetTable(deny=[NetDeny(7, addrs=["127.0.0.1"], ports=[port], enforce=False)]))
    pid, res = probe("connect", V4, "127.0.0.1", port)
    assert res == "ok"
    dec = Decisions(guard)
    (d,) = dec.of(pid)
    assert (d.rule_id, d.enforced, d.error, d.result) == (7, False, "", "allowed")

    # a monitoring entry does not hide an enforcing one of another shape
    guard.apply(NetTable(deny=[NetDeny(7, addrs=["127.0.0.1"], ports=[port], enforce=False),
                               NetDeny(8, addrs=["127.0.0.1"])]))
    pid, res = probe("connect", V4, "127.0.0.1", port)
    assert res == EPERM
    (d,) = dec.of(pid)
    assert (d.rule_id, d.enforced) == (8, True)


def test_isolate_cuts_one_cgroup_off(guard: NetGuard, ports: Listeners, test_cgroup: Cgroup) -> None:
    p4, p6 = ports.listen(V4, "127.0.0.1"), ports.listen(V6, "::1")
    guard.apply(NetTable())
    guard.isolate(test_cgroup.id, rule_id=8)
    assert guard.isolated == [test_cgroup.id]
    dec = Decisions(guard)
    pid, res = probe("connect", V4, "127.0.0.1", p4, test_cgroup)
    assert res == EPERM
    (d,) = dec.of(pid)
    assert (d.rule_id, d.cgroup_id) == (8, test_cgroup.id)
    assert probe("connect", V6, "::1", p6, test_cgroup)[1] == EPERM
    assert probe("sendto", V4, "127.0.0.1", 9999, test_cgroup)[1] == EPERM
    assert probe("connect", V4, "127.0.0.1", p4)[1] == "ok"  # outside the cgroup

    guard.apply(NetTable(deny=[NetDeny(9, ports=[9999])]))  # a policy change keeps the isolation
    assert probe("connect", V4, "127.0.0.1", p4, test_cgroup)[1] == EPERM
    guard.unisolate(test_cgroup.id)
    assert probe("connect", V4, "127.0.0.1", p4, test_cgroup)[1] == "ok"
    assert probe("sendto", V4, "127.0.0.1", 9999, test_cgroup)[1] == EPERM  # the table's entry stays

    # isolation as part of a table
    guard.apply(NetTable(isolate=[Isolation(test_cgroup.id, 10)]))
    assert probe("connect", V6, "::1", p6, test_cgroup)[1] == EPERM


def test_the_agent_and_protected_processes_are_never_denied(guard: NetGuard, ports: Listeners) -> None:
    port = ports.listen(V4, "127.0.0.1")
    waiting = subprocess.Popen(["/usr/bin/python3", "-c",
                                "import socket, sys; sys.stdin.readline(); "
                                f"socket.create_connection(('127.0.0.1', {port})); print('ok')"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    guard.apply(NetTable(deny=[NetDeny(11, addrs=["127.0.0.1"], ports=[port])], protected_tgids=[waiting.pid]))
    out, _ = waiting.communicate("go\n", timeout=30)
    assert out.strip() == "ok"
    dec = Decisions(guard)
    (d,) = dec.of(waiting.pid)
    assert (d.rule_id, d.enforced, d.protected, d.result) == (11, False, "protected process", "protected")
    socket.create_connection(("127.0.0.1", port)).close()  # the agent itself
    assert probe("connect", V4, "127.0.0.1", port)[1] == EPERM


def test_apply_swaps_policies_atomically(guard: NetGuard, ports: Listeners) -> None:
    a, b = ports.listen(V4, "127.0.0.1"), ports.listen(V4, "127.0.0.1")
    guard.apply(NetTable(deny=[NetDeny(12, addrs=["127.0.0.1"], ports=[a])]))
    assert probe("connect", V4, "127.0.0.1", a)[1] == EPERM
    assert probe("connect", V4, "127.0.0.1", b)[1] == "ok"
    guard.apply(NetTable(deny=[NetDeny(13, addrs=["127.0.0.1"], ports=[b])]))
    assert probe("connect", V4, "127.0.0.1", a)[1] == "ok"    # old entry gone
    assert probe("connect", V4, "127.0.0.1", b)[1] == EPERM   # new one in force
    assert len(guard._maps["deny"].keys(32)) == 1
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address"):
        guard.apply(NetTable(deny=[NetDeny(14, addrs=["localhost"])]))
    assert probe("connect", V4, "127.0.0.1", b)[1] == EPERM   # a bad table changes nothing


def _attached(root: str) -> set[int]:
    r = subprocess.run(["bpftool", "-j", "cgroup", "show", root], capture_output=True, text=True, check=True)
    return {int(p["id"]) for p in json.loads(r.stdout.strip() or "[]")}


def test_close_detaches_and_keep_hands_over(ports: Listeners) -> None:
    require_bpf("net_guard.bpf.o")
    root = find_cgroup2_mount()
    if root is None or shutil.which("bpftool") is None:
        require_or_skip("needs cgroup2 and bpftool")
        return
    port = ports.listen(V4, "127.0.0.1")
    pin = f"/sys/fs/bpf/lanner-test-{os.getpid()}-{secrets.token_hex(3)}"
    first, second = NetGuard(pin_dir=pin), NetGuard(pin_dir=pin)
    try:
        first.load()
        first.attach()
        first.apply(NetTable(deny=[NetDeny(15, addrs=["127.0.0.1"], ports=[port])]))
        ids = set(first.prog_ids())
        assert len(ids) == 4 and ids <= _attached(root)
        first.close(keep=True)
        assert ids <= _attached(root)
        assert probe("connect", V4, "127.0.0.1", port)[1] == EPERM  # still enforced with no agent

        second.load()
        assert second.took_over
        second.attach()
        assert not ids & _attached(root)  # the old programs were replaced...
        assert probe("connect", V4, "127.0.0.1", port)[1] == EPERM  # ...and the policy kept
        second.apply(NetTable())
        assert probe("connect", V4, "127.0.0.1", port)[1] == "ok"
        ids = set(second.prog_ids())
        second.close()
        assert not ids & _attached(root)
        assert not os.path.exists(pin)
    finally:
        first.close()
        second.close()
        shutil.rmtree(pin, ignore_errors=True)


def test_bad_entries_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="rule 1: 'nope' is not an IPv4 or IPv6 address"):
        compile_net_table(NetTable(deny=[NetDeny(1, addrs=["nope"])]))
    with pytest.raises(ValueError, match="port"):
        compile_net_table(NetTable(deny=[NetDeny(2, ports=[70000])]))
    with pytest.raises(ValueError, match="family"):
        compile_net_table(NetTable(deny=[NetDeny(3, families=[5])]))
    with pytest.raises(ValueError, match="isolate needs a cgroup id"):
        compile_net_table(NetTable(isolate=[Isolation(0, 4)]))
    with pytest.raises(ValueError, match="the wildcard"):
        compile_net_table(NetTable(deny=[NetDeny(5, addrs=["0.0.0.0"])]))
    with pytest.raises(ValueError, match="not the string"):
        compile_net_table(NetTable(deny=[NetDeny(6, addrs="127.0.0.1")]))
