"""Block rules compile into exactly what the kernel enforces, or are refused naming the clause."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lanner.events import Container
from lanner.rules import load
from lanner.rules.policy import (
    ExecAllow,
    ExecDeny,
    ExecDrift,
    NetDeny,
    OpenDeny,
    Policy,
    Scope,
    compile_ruleset,
)

PRELUDE = """
- macro: container
  condition: (container.id != host)
- macro: open_write
  condition: (evt.type in (open,openat,openat2) and evt.is_open_write=true and fd.typechar='f' and fd.num>=0)
- macro: spawned_process
  condition: (evt.type in (execve, execveat))
"""


def _rules(condition: str, **extra: str) -> str:
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o %proc.name", "priority": "WARNING",
            "action": "block", **extra}
    return PRELUDE + yaml.safe_dump([rule], sort_keys=False)


def compile_one(condition: str, **extra: str) -> Policy:
    rs = load(_rules(condition, **extra))
    assert rs.ok, rs.errors
    policies, errors = compile_ruleset(rs)
    assert not errors, [str(e) for e in errors]
    assert len(policies) == 1
    return policies[0]


def refusal(condition: str) -> str:
    rs = load(_rules(condition))
    assert rs.ok, rs.errors
    policies, errors = compile_ruleset(rs)
    assert not policies and len(errors) == 1
    assert errors[0].code == "LOAD_ERR_VALIDATE" and errors[0].item_name == "r"
    return errors[0].message


def test_exec_deny_set_with_exceptions() -> None:
    p = compile_one("spawned_process and proc.exepath in (/usr/bin/nc, /usr/bin/ncat, /bin/x) "
                    "and not proc.exepath in (/bin/x)")
    assert p.target == ExecDeny(frozenset({"/usr/bin/nc", "/usr/bin/ncat"}))
    assert p.scope.everywhere and p.mechanism == "fanotify" and p.mode is None


def test_allow_list_needs_named_workloads() -> None:
    p = compile_one('spawned_process and container.image.repository = "docker.io/library/app" '
                    'and k8s.ns.name in (prod, stage) and k8s.pod.label[app] = web '
                    'and not proc.exepath in (/bin/sh, /app/server)', mode="enforce")
    assert p.target == ExecAllow(frozenset({"/bin/sh", "/app/server"}))
    assert p.scope == Scope(images=frozenset({"docker.io/library/app"}), namespaces=frozenset({"prod", "stage"}),
                            labels=(("app", "web"),))
    assert p.mode == "enforce" and p.mechanism == "exec-kill"
    assert "must name its workloads" in refusal("spawned_process and not proc.exepath in (/bin/sh)")


def test_drift() -> None:
    p = compile_one("spawned_process and container and proc.is_exe_upper_layer = true")
    assert p.target == ExecDrift() and p.scope.containers_only


def test_open_write_below_directories() -> None:
    p = compile_one("open_write and (fd.name startswith /etc/ or fd.name pmatch (/usr/bin, /srv/data/))")
    assert p.target == OpenDeny(frozenset({"/etc", "/usr/bin", "/srv/data"}), write=True, read=False)
    both = compile_one("evt.type = openat and fd.name startswith /secret/")
    assert both.target == OpenDeny(frozenset({"/secret"}), write=True, read=True)


def test_network() -> None:
    p = compile_one('evt.type in (connect, sendto) and fd.sip in (127.0.0.1, "::1") and fd.sport = 9999')
    assert p.target == NetDeny(connect=True, send=True,
                               addrs=frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}),
                               ports=frozenset({9999}), families=frozenset({4, 6}))
    v6 = compile_one("evt.type = connect and fd.typechar = 6 and fd.sport in (22, 23)")
    assert isinstance(v6.target, NetDeny) and v6.target.families == {6} and v6.target.addrs is None


@pytest.mark.parametrize("condition, words", [
    ("spawned_process and proc.name = nc", "clause 'proc.name = nc'"),
    ("spawned_process and proc.exe = /usr/bin/nc", "proc.exe is the first argument"),
    ("open_write and fd.name startswith /etc", "also matches siblings"),
    ("evt.type = connect and fd.sip = 1.2.3.4 and user.name = root", "clause 'user.name = root'"),
    ("evt.type = connect and fd.snet = 10.0.0.0/8", "has 16777216"),
    ("evt.type in (execve, openat) and proc.exepath = /x", "mixes system calls"),
    ("proc.exepath = /usr/bin/nc", "name the system calls"),
    ("spawned_process and (proc.exepath = /a or fd.name = /b)", "'or' between different fields"),
    ("spawned_process and proc.exepath = /a and fd.name startswith /etc/", "belongs to an open block"),
    ("evt.type = connect and fd.l4proto = tcp and fd.sport = 1", "clause 'fd.l4proto = tcp'"),
    ("evt.type = connect and container", "use action isolate"),
])
def test_refusals_name_the_clause_and_why(condition: str, words: str) -> None:
    assert words in refusal(condition)


def test_scope_matches_containers() -> None:
    web = Container(id="a" * 64, image_repository="docker.io/library/app", pod_namespace="prod",
                    pod_labels={"app": "web", "tier": "1"})
    other = Container(id="b" * 64, image_repository="docker.io/library/app", pod_namespace="dev")
    scope = Scope(images=frozenset({"docker.io/library/app"}), namespaces=frozenset({"prod"}),
                  labels=(("app", "web"),))
    assert scope.matches(web) and not scope.matches(other) and not scope.matches(None)
    assert Scope().matches(None) and Scope().matches(web)
    assert not Scope(containers_only=True).matches(None) and Scope(containers_only=True).matches(other)
    assert Scope(host_only=True).matches(None) and not Scope(host_only=True).matches(web)
    assert Scope(container_ids=frozenset({"a" * 12})).matches(web)


def test_alert_rules_are_not_compiled() -> None:
    rs = load(PRELUDE + yaml.safe_dump([{"rule": "a", "desc": "d", "condition": "proc.name = nc",
                                         "output": "o", "priority": "INFO"}]))
    assert compile_ruleset(rs) == ([], [])


def test_rules_validate_reports_the_clause(tmp_path: Path) -> None:
    f = tmp_path / "block.yaml"
    f.write_text(_rules("spawned_process and proc.name = nc"))
    out = subprocess.run([sys.executable, "-m", "lanner", "rules", "validate", "-r", str(f), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert not result["ok"]
    (err,) = result["errors"]
    assert err["code"] == "LOAD_ERR_VALIDATE" and err["item_name"] == "r" and err["line"] > 0
    assert "proc.name = nc" in err["message"] and "proc.exepath" in err["message"]
