"""The in-kernel open prefilter never hides an event a rule could match."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from lanner.config import DEFAULT_RULES
from lanner.engine import Engine
from lanner.eventfile import read_events
from lanner.events import Event, FdInfo
from lanner.paths import concatenate, normalize
from lanner.rules import load, parse_condition
from lanner.sensor.prefilter import (
    NEVER,
    OpenNeed,
    for_conditions,
    kernel_sends,
    need,
    open_filters,
    tcp_sends_unneeded,
)
from tests.conftest import FALCO_RULES

STABLE = FALCO_RULES / "falco_rules.yaml"


def n(cond: str) -> OpenNeed | None:
    return need(parse_condition(cond))


def test_bounds_of_single_comparisons() -> None:
    assert n("fd.name = /etc/shadow") == OpenNeed(exact=frozenset({"/etc/shadow"}))
    assert n("fd.name in (/etc/a, /etc/b/)") == OpenNeed(exact=frozenset({"/etc/a", "/etc/b"}))
    assert n("fd.name startswith /etc/") == OpenNeed(prefixes=frozenset({"/etc/"}))
    assert n("fd.name glob '/root/.ssh/*'") == OpenNeed(prefixes=frozenset({"/root/.ssh/"}))
    assert n("fd.name pmatch (/home/*/.aws/credentials, /srv)") == OpenNeed(prefixes=frozenset({"/home/", "/srv"}))
    assert n("fd.directory in (/etc/pam.d)") == OpenNeed(prefixes=frozenset({"/etc/pam.d/"}))
    assert n("fd.nameraw contains '../'") == NEVER            # only unnormalised paths, always sent
    assert n("evt.is_open_write = true") == OpenNeed(flags_any=os.O_WRONLY | os.O_RDWR)
    assert n("evt.arg.flags contains O_TRUNC") == OpenNeed(flags_any=os.O_TRUNC)


def test_what_cannot_be_bounded() -> None:
    for cond in ("fd.name endswith .log", "not fd.name = /etc/shadow", "fd.name contains shadow",
                 "proc.name = cat", "fd.name = relative/path", "evt.is_open_read = true",
                 "fd.name = /a or proc.name = b", "fd.name != /etc/shadow"):
        assert n(cond) is None, cond


def test_and_takes_the_tightest_side_or_takes_the_union() -> None:
    assert n("proc.name = cat and fd.name = /etc/shadow") == OpenNeed(exact=frozenset({"/etc/shadow"}))
    assert n("evt.is_open_write = true and evt.arg.flags contains O_TRUNC and fd.name endswith x") == \
        OpenNeed(flags_any=os.O_TRUNC)
    assert n("fd.name = /a or fd.name startswith /b/") == \
        OpenNeed(exact=frozenset({"/a"}), prefixes=frozenset({"/b/"}))
    assert n("fd.nameraw contains '../' and fd.name startswith /etc") == NEVER


def test_falco_stable_rules() -> None:
    engine = Engine(load([STABLE]))
    filters = open_filters(r.condition for r in engine.rules)
    assert set(filters) == {"open", "openat", "openat2"}
    f = filters["openat"]
    assert {"/etc/shadow", "/etc/sudoers", "/etc/pam.conf"} <= f.exact
    assert {"/etc/pam.d/", "/etc/sudoers.d/"} <= f.prefixes
    assert f.flags_any & os.O_TRUNC


def test_a_rule_the_analysis_cannot_bound_turns_the_filter_off() -> None:
    rs = load("- rule: any log\n  desc: d\n  condition: evt.type = openat and fd.name endswith .log\n"
              "  output: o\n  priority: WARNING\n")
    assert open_filters(r.condition for r in rs.rules.values()) == {"open": NEVER, "openat2": NEVER}


def test_kernel_decision_model() -> None:
    f = OpenNeed(exact=frozenset({"/etc/shadow"}), prefixes=frozenset({"/etc/pam.d/"}), flags_any=os.O_TRUNC)
    assert kernel_sends(f, "/etc/shadow", 0)
    assert not kernel_sends(f, "/etc/shadowx", 0)
    assert not kernel_sends(f, "/etc/hostname", os.O_WRONLY)
    assert kernel_sends(f, "/etc/hostname", os.O_WRONLY | os.O_TRUNC)
    assert kernel_sends(f, "/etc/pam.d/sshd", 0)
    assert not kernel_sends(f, "/etc/pam.d", 0)  # the directory itself is not below it
    for unjudged in ("etc/shadow", "/etc//shadow", "/etc/./shadow", "/tmp/../etc/shadow",
                     "/root/.ssh/id_rsa", "/etc/"):
        assert kernel_sends(f, unjudged, 0), unjudged


SEGMENTS = ["etc", "shadow", "sudoers", "sudoers.d", "pam.d", "pam.conf", "root", ".ssh", "id_rsa", "..", ".",
            "", "var", "log", "syslog", "release_agent", "security", "pwquality.conf"]
DEFAULT_SEGMENTS = ["etc", "shadow", "root", ".ssh", "id_ed25519", "authorized_keys", "..", "", "home", "usr",
                    "bin", "lib", "run", "secrets", "kubernetes.io", "serviceaccount", "token", ".aws", "credentials",
                    "var", "log", "auth.log", ".bash_history", "tmp"]
FLAGS = [0, os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_RDONLY | os.O_TRUNC,
         os.O_WRONLY | os.O_CREAT | os.O_APPEND, os.O_DIRECTORY]


@pytest.mark.parametrize("which", ["falco-stable", "lanner-default"])
def test_no_event_a_rule_matches_is_filtered(which: str) -> None:
    """Every path of up to three segments from a vocabulary of the rules' own names, absolute and
    relative, with every open mode, by a trusted-looking and an untrusted program, opened or not:
    whenever a rule matches, the kernel's decision must be to send it."""
    rules, seg = (STABLE, SEGMENTS) if which == "falco-stable" else (DEFAULT_RULES, DEFAULT_SEGMENTS)
    engine = Engine(load([rules]), rule_matching="all")
    filt = open_filters(r.condition for r in engine.rules)["openat"]
    paths = [a for a in seg] + [f"{a}/{b}" for a in seg for b in seg] + \
        [f"{a}/{b}/{c}" for a in seg[:10] for b in seg for c in seg]
    # a realistic process chain (cat below a login shell below sshd), from a hand-written trigger event
    sample = next(read_events(Path(__file__).parents[1] / "rules/stable/read-sensitive-file-untrusted.trigger.jsonl"))
    assert sample.proc is not None
    matched = filtered = num = 0
    for rel in paths:
        for path in (rel, "/" + rel):
            name = normalize(path) if path.startswith("/") else concatenate("/root/", path)
            for ok in (True, False):
                fd = FdInfo(3, "file", name, path) if ok else None
                for pname in ("cat", "nginx", "python3"):
                    proc = dataclasses.replace(sample.proc, name=pname, exepath=f"/usr/bin/{pname}")
                    for flags in FLAGS:
                        num += 1  # events are numbered from 1: Falco's never_true macro is evt.num=0
                        evt = Event("openat", ts=10**18, tid=10, res=3 if ok else -2, proc=proc, fd=fd, num=num,
                                    args={"fd": 3 if ok else -2, "dirfd": -100, "name": path, "flags": flags,
                                          "mode": 0})
                        sends = kernel_sends(filt, path, flags)
                        filtered += not sends
                        if engine.match(evt):
                            matched += 1
                            assert sends, (path, oct(flags), [r.name for r in engine.match(evt)])
    assert matched > 20 and filtered > 5_000  # the check had cases on both sides


def test_tcp_sends_are_unneeded_when_every_send_rule_excludes_tcp() -> None:
    engine = Engine(load([STABLE]))
    pf = for_conditions(r.condition for r in engine.rules)
    assert pf.tcp_sends == frozenset({"sendto", "sendmsg"})  # Falco's `outbound`: fd.l4proto != tcp
    c = [parse_condition("evt.type = sendto and fd.l4proto != tcp"),
         parse_condition("evt.type = sendmsg and (fd.l4proto = udp or fd.l4proto in (icmp, raw))")]
    assert tcp_sends_unneeded(c) == frozenset({"sendto", "sendmsg"})
    for cond in ("evt.type = sendto and fd.sport = 53", "evt.type = sendto and not fd.l4proto = tcp",
                 "evt.type in (sendto, sendmsg) and (fd.l4proto != tcp or proc.name = x)"):
        assert tcp_sends_unneeded([parse_condition(cond)]) != frozenset({"sendto", "sendmsg"}), cond
