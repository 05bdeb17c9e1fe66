"""Falco's stable rules (falco_rules.yaml) raised by real behaviour on this host, seen by the live sensor.

Each test performs, in child processes, what an attacker (or Falco's event-generator action of the same
name) does — reading /etc/shadow from a long-running server, spawning a shell from nginx, truncating a
log, shredding a file, ptrace, fileless execution, ssh to port 443... — and evaluates the events of
those children with all of falco_rules.yaml loaded (rule_matching="all"). It asserts that the rule
fires with the output fields a user looks for and, as a control, that the same behaviour with one
decisive detail changed (a trusted program name, a non-sensitive file, a standard port...) does not.

Only temporary files are created (under pytest's tmp_path, /var/tmp, /dev/shm) and all are removed;
system files are only read (the hard link to /etc/shadow lives in a temporary directory under /var/tmp
and is removed); the network behaviour stays inside a private network namespace. Programs with
server-like names (nginx, sshd, ssh...) are copies of /usr/bin/python3.11 in a temporary directory:
proc.name is the kernel comm, the basename of the executed file. The helper performing the syscalls is
tests/kernel/scenarios/behave.py.

Host-triggerable stable rules covered here: see HOST_RULES. The other stable rules need a container
(container.id != host, or a container image / overlay upper layer) and are covered by the container
suite, not here: Terminal shell in container, Contact K8S API Server From Container, Netcat Remote
Code Execution in Container, Packet socket created in container, Redirect STDOUT/STDIN to Network
Connection in Container, Linux Kernel Module Injection Detected, Debugfs Launched in Privileged
Container, Detect release_agent File Container Escapes, Drop and execute new binary in container.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lanner.alert import Alert
from lanner.engine import Engine
from lanner.events import Event
from lanner.rules import load
from tests.conftest import SHARED, require_or_skip
from tests.kernel._fields import extract as x
from tests.kernel._fields import text as t
from tests.kernel.conftest import Live

RULES_FILE = SHARED / "falco" / "rules" / "falco_rules.yaml"
BEHAVE = str(Path(__file__).with_name("scenarios") / "behave.py")
PY = "/usr/bin/python3"
PYTHON_REAL = "/usr/bin/python3.11"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

HOST_RULES = (
    "Directory traversal monitored file read",
    "Read sensitive file trusted after startup",
    "Read sensitive file untrusted",
    "Run shell untrusted",
    "System user interactive",
    "Search Private Keys or Passwords",
    "Clear Log Activities",
    "Remove Bulk Data from Disk",
    "Create Symlink Over Sensitive Files",
    "Create Hardlink Over Sensitive Files",
    "PTRACE attached to process",
    "PTRACE anti-debug attempt",
    "Find AWS Credentials",
    "Execution from /dev/shm",
    "Disallowed SSH Connection Non Standard Port",
    "Fileless execution via memfd_create",
)
CONTAINER_RULES = (
    "Terminal shell in container",
    "Contact K8S API Server From Container",
    "Netcat Remote Code Execution in Container",
    "Packet socket created in container",
    "Redirect STDOUT/STDIN to Network Connection in Container",
    "Linux Kernel Module Injection Detected",
    "Debugfs Launched in Privileged Container",
    "Detect release_agent File Container Escapes",
    "Drop and execute new binary in container",
)

# Fields shown for the events of a scenario when an expectation fails.
DIAG_FIELDS = ("proc.name", "proc.exe", "proc.exepath", "proc.pname", "proc.aname[2]", "proc.cmdline",
               "proc.cwd", "proc.duration", "user.name", "fd.name", "fd.nameraw", "fd.typechar", "fd.num",
               "evt.res", "evt.args")


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def engine() -> Engine:
    if not RULES_FILE.exists():
        pytest.fail(f"Falco reference rules not found: {RULES_FILE} (set LANNER_SHARED)")
    ruleset = load([RULES_FILE])
    assert not ruleset.errors, ruleset.errors
    return Engine(ruleset, rule_matching="all")


@pytest.fixture(scope="module")
def progs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of python3 copies under server-like (and neutral) names: comm = the file name."""
    d = tmp_path_factory.mktemp("progs")
    shutil.copy2(PYTHON_REAL, d / "myworker")
    for name in ("nginx", "postgres", "redis-server", "sshd", "ssh", "iptables"):
        os.link(d / "myworker", d / name)  # links between our own temporary files
    return d


def behave(live: Live, prog: str | Path, *args: str, **kw: Any) -> tuple[list[Event], dict[str, Any]]:
    """Run scenarios/behave.py ACTION ARGS under `prog`; its events and the JSON line it printed."""
    kw.setdefault("env", ENV)
    events = live.run([str(prog), BEHAVE, *args], **kw)
    lines = [line for line in live.last_stdout.splitlines() if line.startswith("{")]
    return events, (json.loads(lines[-1]) if lines else {})


def alerts_of(engine: Engine, events: Sequence[Event]) -> list[Alert]:
    return [a for evt in events for a in engine.process(evt)]


def describe(events: Sequence[Event], evtypes: Collection[str] | None = None, limit: int = 60) -> str:
    """The scenario's events (those of `evtypes`, if given) with the field values a rule sees."""
    if evtypes is not None:
        events = [e for e in events if e.type in evtypes]
    rows = []
    for evt in events[:limit]:
        vals = []
        for name in DIAG_FIELDS:
            try:
                vals.append(f"{name}={t(evt, name)}")
            except Exception as exc:  # a broken field must not hide the rest
                vals.append(f"{name}=!{type(exc).__name__}")
        rows.append(f"  {evt.type} pid={evt.proc.pid if evt.proc else None} " + " ".join(vals))
    more = f"\n  ... {len(events) - limit} more" if len(events) > limit else ""
    return "\n".join(rows) + more


def expect(engine: Engine, events: Sequence[Event], rule: str, **fields: Any) -> Alert:
    """The rule fired on the scenario's events; the first alert shows `fields` (output_fields values)."""
    assert events, "the scenario produced no events at all"
    hits = [a for a in alerts_of(engine, events) if a.rule == rule]
    types = next(r.evttypes for r in engine.rules if r.name == rule)
    assert hits, (f"{rule!r} did not fire; rules that did: {sorted({a.rule for a in alerts_of(engine, events)})}"
                  f"\nevents of the types it looks at ({', '.join(sorted(types or ['all']))}):\n"
                  f"{describe(events, types)}")
    for alert in hits:
        if all(alert.output_fields.get(k) == v for k, v in fields.items()):
            print(f"{alert.priority} {alert.message}")   # shown by pytest -rP and on failure
            return alert
    got = [{k: a.output_fields.get(k) for k in fields} for a in hits]
    raise AssertionError(f"{rule!r} fired but no alert has {fields}: {got}\n{hits[0].message}")


def fired_on(engine: Engine, events: Sequence[Event], rule: str) -> list[Event]:
    """The events of the scenario that raise `rule` (to look at fields that are not in its output)."""
    return [e for e in events if any(r.name == rule for r in engine.match(e))]


def silent(engine: Engine, events: Sequence[Event], rule: str, evtype: str, **seen: Any) -> None:
    """The rule did not fire, although the control made the event the rule looks at: one of type
    `evtype` with the field values `seen` (so the silence is not vacuous)."""
    made = [e for e in events if e.type == evtype and all(x(e, k) == v for k, v in seen.items())]
    assert made, f"the control made no {evtype} event with {seen}\n{evtype} events:\n{describe(events, [evtype])}"
    hits = [a for a in alerts_of(engine, events) if a.rule == rule]
    assert not hits, f"{rule!r} fired on the control: {hits[0].message}"


def _uid_of(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def field(alert: Alert, name: str) -> Any:
    assert name in alert.output_fields, f"{name} not in {sorted(alert.output_fields)}"
    return alert.output_fields[name]


@pytest.fixture()
def var_tmp() -> Iterator[Path]:
    """A temporary directory under /var/tmp (same filesystem as /etc, for hard links)."""
    d = Path(tempfile.mkdtemp(prefix="lanner-live-", dir="/var/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def shm_true() -> Iterator[Path]:
    """A copy of /usr/bin/true in /dev/shm under a random name, removed afterwards."""
    p = Path("/dev/shm") / f"lanner-live-{uuid.uuid4().hex[:10]}"
    shutil.copy2("/usr/bin/true", p)
    try:
        yield p
    finally:
        p.unlink(missing_ok=True)


def test_every_stable_rule_is_covered(engine: Engine) -> None:
    """Every rule of falco_rules.yaml is either triggered live here or left to the container suite."""
    names = {r.name for r in engine.rules}
    assert set(HOST_RULES) | set(CONTAINER_RULES) == names
    assert not set(HOST_RULES) & set(CONTAINER_RULES)


# --------------------------------------------------------------------------------------------------
# File reads


@pytest.mark.parametrize(("raw", "name", "opened"), [
    ("/etc/../etc/../etc/passwd", "/etc/passwd", True),
    ("/etc/./../etc/../etc/lanner-live-missing", "/etc/lanner-live-missing", False),   # open_file_failed
], ids=["passwd", "failed-open"])
def test_directory_traversal_monitored_file_read(live: Live, engine: Engine, raw: str, name: str,
                                                 opened: bool) -> None:
    events, out = behave(live, PY, "open_read", raw)
    assert (out["fd"] >= 0) is opened
    alert = expect(engine, events, "Directory traversal monitored file read", **{"fd.name": name, "fd.nameraw": raw})
    assert field(alert, "proc.name") == "python3"
    assert field(alert, "evt.type") == "openat"


@pytest.mark.parametrize("control", ["absolute-path", "shell-parent"])
def test_directory_traversal_controls(live: Live, engine: Engine, control: str) -> None:
    if control == "absolute-path":        # directory_traversal: no ../ in fd.nameraw
        events, _ = behave(live, PY, "open_read", "/etc/passwd")
        silent(engine, events, "Directory traversal monitored file read", "openat", **{"fd.name": "/etc/passwd"})
    else:                                  # not proc.pname in (shell_binaries): a shell's child
        events = live.run(["/bin/sh", "-c", f"{PY} {BEHAVE} open_read /etc/../etc/../etc/passwd; true"], env=ENV)
        silent(engine, events, "Directory traversal monitored file read", "openat",
               **{"fd.nameraw": "/etc/../etc/../etc/passwd", "proc.pname": "sh"})


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/pam.conf", "/etc/pam.d/common-auth"])
def test_read_sensitive_file_untrusted(live: Live, engine: Engine, path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} does not exist on this host")
    events, out = behave(live, PY, "open_read", path)
    assert out["fd"] >= 0
    alert = expect(engine, events, "Read sensitive file untrusted", **{"fd.name": path, "proc.name": "python3"})
    assert BEHAVE in field(alert, "proc.cmdline")
    silent(engine, events, "Read sensitive file trusted after startup", "openat", **{"fd.name": path})  # no server


def test_read_sensitive_file_untrusted_controls(live: Live, engine: Engine, progs: Path) -> None:
    # iptables is in read_sensitive_file_binaries: the same read is trusted.
    events, out = behave(live, progs / "iptables", "open_read", "/etc/shadow")
    assert out["fd"] >= 0
    silent(engine, events, "Read sensitive file untrusted", "openat",
           **{"fd.name": "/etc/shadow", "proc.name": "iptables"})
    # A file that is not sensitive.
    events, _ = behave(live, PY, "open_read", "/etc/hostname")
    silent(engine, events, "Read sensitive file untrusted", "openat", **{"fd.name": "/etc/hostname"})


def test_read_sensitive_file_trusted_after_startup(live: Live, engine: Engine, progs: Path) -> None:
    # Control first: nginx reading /etc/shadow right after it started (proc_is_new: duration <= 5 s).
    events, out = behave(live, progs / "nginx", "open_read", "/etc/shadow", "0")
    assert out["fd"] >= 0
    silent(engine, events, "Read sensitive file trusted after startup", "openat",
           **{"fd.name": "/etc/shadow", "proc.name": "nginx"})
    expect(engine, events, "Read sensitive file untrusted", **{"proc.name": "nginx"})   # the read was seen
    # The server, 5.5 s after it started, reads /etc/shadow.
    events, out = behave(live, progs / "nginx", "open_read", "/etc/shadow", "5.5")
    assert out["fd"] >= 0
    alert = expect(engine, events, "Read sensitive file trusted after startup",
                   **{"fd.name": "/etc/shadow", "proc.name": "nginx"})
    assert field(alert, "proc.exepath") == str(progs / "nginx")


# --------------------------------------------------------------------------------------------------
# Process spawns


@pytest.mark.parametrize("server", ["nginx", "postgres", "redis-server"])
def test_run_shell_untrusted(live: Live, engine: Engine, progs: Path, server: str) -> None:
    events, out = behave(live, progs / server, "spawn", "/bin/sh", "-c", "ls > /dev/null")
    assert out["returncode"] == 0
    alert = expect(engine, events, "Run shell untrusted",
                   **{"proc.name": "sh", "proc.pname": server, "proc.cmdline": "sh -c ls > /dev/null"})
    assert field(alert, "proc.pexepath") == str(progs / server)


@pytest.mark.parametrize("control", ["neutral-parent", "no-shell"])
def test_run_shell_untrusted_controls(live: Live, engine: Engine, progs: Path, control: str) -> None:
    if control == "neutral-parent":   # protected_shell_spawner: myworker is no server
        events, _ = behave(live, progs / "myworker", "spawn", "/bin/sh", "-c", "ls > /dev/null")
        seen = {"proc.name": "sh", "proc.pname": "myworker"}
    else:                             # shell_procs: nginx runs ls, not a shell
        events, _ = behave(live, progs / "nginx", "spawn", "/usr/bin/ls", "/")
        seen = {"proc.name": "ls", "proc.pname": "nginx"}
    silent(engine, events, "Run shell untrusted", "execve", **seen)


@pytest.mark.parametrize(("user", "uid"), [("nobody", 65534), ("daemon", 1), ("www-data", 33)])
def test_system_user_interactive(live: Live, engine: Engine, progs: Path, user: str, uid: int) -> None:
    if _uid_of(user) != uid:
        pytest.skip(f"no user {user} with uid {uid} on this host")
    events, out = behave(live, progs / "sshd", "as_user", str(uid), str(uid), "/usr/bin/true")
    assert out["status"] == 0
    alert = expect(engine, events, "System user interactive",
                   **{"user.name": user, "user.uid": uid, "proc.name": "true"})
    assert field(alert, "proc.pname") == "sshd"


@pytest.mark.parametrize("control", ["root", "no-sshd-ancestor"])
def test_system_user_interactive_controls(live: Live, engine: Engine, progs: Path, control: str) -> None:
    if control == "root":             # system_users: root is not one
        events, out = behave(live, progs / "sshd", "as_user", "0", "0", "/usr/bin/true")
        seen: dict[str, Any] = {"user.name": "root", "proc.pname": "sshd"}
    else:                             # interactive: no ancestor named sshd
        events, out = behave(live, progs / "myworker", "as_user", "65534", "65534", "/usr/bin/true")
        seen = {"user.name": "nobody", "proc.pname": "myworker"}
    assert out["status"] == 0
    silent(engine, events, "System user interactive", "execve", **{"proc.name": "true", **seen})


@pytest.mark.parametrize("tool", ["find", "grep"])
def test_search_private_keys_or_passwords(live: Live, engine: Engine, tmp_path: Path, tool: str) -> None:
    if tool == "find":
        argv = ["/usr/bin/find", str(tmp_path), "-maxdepth", "1", "-iname", "id_rsa"]
    else:
        argv = ["/usr/bin/grep", "-rl", "BEGIN OPENSSH PRIVATE", str(tmp_path)]
    events = live.run(argv, env=ENV, check=False)
    alert = expect(engine, events, "Search Private Keys or Passwords", **{"proc.name": tool})
    assert field(alert, "proc.cmdline") == " ".join([tool, *argv[1:]])
    # Control: the same tool looking for something else.
    argv[-1 if tool == "find" else -2] = "notes.txt"
    events = live.run(argv, env=ENV, check=False)
    silent(engine, events, "Search Private Keys or Passwords", "execve", **{"proc.name": tool})


@pytest.mark.parametrize("tool", ["find", "grep"])
def test_find_aws_credentials(live: Live, engine: Engine, tmp_path: Path, tool: str) -> None:
    if tool == "find":
        argv = ["/usr/bin/find", str(tmp_path), "-maxdepth", "1", "-iname", ".aws/credentials"]
    else:
        argv = ["/usr/bin/grep", "-ri", "aws_secret_access_key", str(tmp_path)]
    events = live.run(argv, env=ENV, check=False)
    alert = expect(engine, events, "Find AWS Credentials", **{"proc.name": tool})
    assert field(alert, "proc.cwd") == f"{os.getcwd().rstrip('/')}/"
    # Control: the same tool looking for a file merely named credentials / for another key.
    argv[-1 if tool == "find" else -2] = "credentials" if tool == "find" else "region"
    events = live.run(argv, env=ENV, check=False)
    silent(engine, events, "Find AWS Credentials", "execve", **{"proc.name": tool})


def test_remove_bulk_data_from_disk(live: Live, engine: Engine, tmp_path: Path) -> None:
    victim = tmp_path / "customers.sql"
    victim.write_bytes(os.urandom(4096))
    events = live.run(["/usr/bin/shred", "-u", "-n", "1", str(victim)], env=ENV)
    assert not victim.exists()
    expect(engine, events, "Remove Bulk Data from Disk",
           **{"proc.name": "shred", "proc.cmdline": f"shred -u -n 1 {victim}"})
    # Control: a plain rm of the same kind of file.
    victim.write_bytes(b"x")
    events = live.run(["/usr/bin/rm", str(victim)], env=ENV)
    assert not victim.exists()
    silent(engine, events, "Remove Bulk Data from Disk", "execve", **{"proc.name": "rm"})


# --------------------------------------------------------------------------------------------------
# File system changes


@pytest.mark.parametrize("target", ["/etc/shadow", "/etc", "/root"])
def test_create_symlink_over_sensitive_files(live: Live, engine: Engine, tmp_path: Path, target: str) -> None:
    link = tmp_path / "innocent_link"
    events = live.run(["/usr/bin/ln", "-s", target, str(link)], env=ENV)
    assert os.readlink(link) == target
    alert = expect(engine, events, "Create Symlink Over Sensitive Files",
                   **{"evt.arg.target": target, "proc.name": "ln"})
    assert field(alert, "evt.arg.linkpath") == str(link)
    # Control: a link to a file that is not sensitive.
    events = live.run(["/usr/bin/ln", "-s", "/etc/hostname", str(tmp_path / "other_link")], env=ENV)
    silent(engine, events, "Create Symlink Over Sensitive Files", "symlinkat", **{"evt.arg.target": "/etc/hostname"})


def test_create_hardlink_over_sensitive_files(live: Live, engine: Engine, var_tmp: Path) -> None:
    if os.stat(var_tmp).st_dev != os.stat("/etc/shadow").st_dev:
        pytest.skip("/var/tmp is not on the file system of /etc: no hard link to /etc/shadow possible")
    shadow = os.stat("/etc/shadow")
    link = var_tmp / "shadow_link"
    try:
        events = live.run(["/usr/bin/ln", "/etc/shadow", str(link)], env=ENV)
        assert os.stat(link).st_ino == shadow.st_ino
    finally:
        link.unlink(missing_ok=True)
    assert os.stat("/etc/shadow").st_nlink == shadow.st_nlink
    alert = expect(engine, events, "Create Hardlink Over Sensitive Files",
                   **{"evt.arg.oldpath": "/etc/shadow", "proc.name": "ln"})
    assert field(alert, "evt.arg.newpath") == str(link)
    # Control: a hard link to a file of our own.
    (var_tmp / "plain").write_text("x")
    events = live.run(["/usr/bin/ln", str(var_tmp / "plain"), str(var_tmp / "plain2")], env=ENV)
    silent(engine, events, "Create Hardlink Over Sensitive Files", "linkat", **{"proc.name": "ln"})


@pytest.mark.parametrize("name", ["syslog", "auth.log", "access_log"])
def test_clear_log_activities(live: Live, engine: Engine, tmp_path: Path, name: str) -> None:
    log = tmp_path / name
    log.write_text("Nov 27 11:53:00 host sshd[1]: Accepted password for root\n")
    events, out = behave(live, PY, "open_write", str(log), "trunc")
    assert out["fd"] >= 0 and log.stat().st_size == 0
    alert = expect(engine, events, "Clear Log Activities", **{"fd.name": str(log), "proc.name": "python3"})
    assert field(alert, "evt.type") == "openat"


@pytest.mark.parametrize("control", ["append", "not-a-log"])
def test_clear_log_activities_controls(live: Live, engine: Engine, tmp_path: Path, control: str) -> None:
    name = "syslog" if control == "append" else "notes.txt"
    if control == "append":            # evt.arg.flags contains O_TRUNC: appending to the log
        events, _ = behave(live, PY, "open_write", str(tmp_path / name), "append")
    else:                              # access_log_files: a file name not in log_files
        events, _ = behave(live, PY, "open_write", str(tmp_path / name), "trunc")
    silent(engine, events, "Clear Log Activities", "openat", **{"fd.name": str(tmp_path / name)})


# --------------------------------------------------------------------------------------------------
# ptrace


@pytest.mark.parametrize("request_", ["attach", "seize"])
def test_ptrace_attached_to_process(live: Live, engine: Engine, request_: str) -> None:
    events, out = behave(live, PY, "ptrace_attach", request_)
    assert out["res"] == 0
    alert = expect(engine, events, "PTRACE attached to process", **{"proc.name": "python3"})
    assert BEHAVE in field(alert, "proc.cmdline")
    silent(engine, events, "PTRACE anti-debug attempt", "ptrace")   # control: attaching is not TRACEME


def test_ptrace_anti_debug_attempt(live: Live, engine: Engine) -> None:
    events, out = behave(live, PY, "ptrace_traceme")
    assert out["status"] == 0
    alert = expect(engine, events, "PTRACE anti-debug attempt", **{"proc.name": "python3"})
    assert field(alert, "proc.pcmdline").startswith(f"python3 {BEHAVE} ptrace_traceme")
    silent(engine, events, "PTRACE attached to process", "ptrace")   # control: TRACEME is not an attach


# --------------------------------------------------------------------------------------------------
# Execution


@pytest.mark.parametrize("how", ["absolute", "relative-in-shm", "shell-c"])
def test_execution_from_dev_shm(live: Live, engine: Engine, shm_true: Path, how: str) -> None:
    if how == "absolute":             # proc.exe startswith /dev/shm/
        events = live.run([str(shm_true), "arg1"], env=ENV)
        exe, cwd = str(shm_true), f"{os.getcwd().rstrip('/')}/"
    elif how == "relative-in-shm":    # proc.cwd startswith /dev/shm/ and proc.exe startswith ./
        events = live.run([f"./{shm_true.name}"], cwd="/dev/shm", env=ENV)
        exe, cwd = f"./{shm_true.name}", "/dev/shm/"
    else:                             # shell_procs and proc.args startswith "-c /dev/shm"
        events = live.run(["/bin/sh", "-c", f"{shm_true} && true"], env=ENV)
        exe, cwd = "/bin/sh", f"{os.getcwd().rstrip('/')}/"
    name = shm_true.name[:15] if how != "shell-c" else "sh"
    alert = expect(engine, events, "Execution from /dev/shm", **{"proc.name": name, "proc.cwd": cwd})
    assert field(alert, "proc.exepath") == (str(shm_true) if how != "shell-c" else "/usr/bin/dash")
    assert exe in [x(e, "proc.exe") for e in fired_on(engine, events, "Execution from /dev/shm")]


def test_execution_from_dev_shm_control(live: Live, engine: Engine, tmp_path: Path) -> None:
    copy = tmp_path / "lanner-true"
    shutil.copy2("/usr/bin/true", copy)
    events = live.run([str(copy), "arg1"], env=ENV)
    silent(engine, events, "Execution from /dev/shm", "execve", **{"proc.exepath": str(copy)})


@pytest.mark.parametrize("how", ["fexecve", "procfd"])
def test_fileless_execution_via_memfd_create(live: Live, engine: Engine, how: str) -> None:
    # The memfd holds a copy of cat, run as `cat /proc/self/comm`: it prints its own kernel comm (for
    # fexecve the memfd's name "memfd:lanner-live" cut to 15 characters, for /proc/self/fd/N "N").
    events, out = behave(live, PY, "memfd_exec", how)
    assert out["status"] == 0
    comm = live.last_stdout.splitlines()[0]
    alert = expect(engine, events, "Fileless execution via memfd_create",
                   **{"proc.name": comm, "proc.cmdline": f"{comm} /proc/self/comm", "proc.pname": "python3"})
    assert field(alert, "proc.exepath") == "memfd:lanner-live"
    assert "EXE_FROM_MEMFD" in field(alert, "evt.arg.flags")
    assert [x(e, "proc.exe") for e in fired_on(engine, events, "Fileless execution via memfd_create")] == [
        "lanner-fileless"]


def test_fileless_execution_control(live: Live, engine: Engine) -> None:
    # The same memfd is made, but the child runs cat from the disk.
    events, out = behave(live, PY, "memfd_exec", "none")
    assert out["status"] == 0
    silent(engine, events, "Fileless execution via memfd_create", "execve", **{"proc.exepath": "/usr/bin/cat"})


# --------------------------------------------------------------------------------------------------
# Network (inside a private network namespace: nothing leaves the machine)

SSH_ADDR = "198.51.100.7"   # TEST-NET-2: not loopback, not RFC 1918, only on the namespace's lo


@pytest.fixture()
def ip_tool() -> None:
    if not Path("/usr/sbin/ip").exists():
        require_or_skip("/usr/sbin/ip (iproute2) is needed to set up the private network namespace")


@pytest.mark.usefixtures("ip_tool")
@pytest.mark.parametrize("port", [443, 4444])
def test_disallowed_ssh_connection_non_standard_port(live: Live, engine: Engine, progs: Path, port: int) -> None:
    events, out = behave(live, PY, "ssh_netns", SSH_ADDR, str(port), str(progs / "ssh"))
    cport = out["client"]["local"][1]
    alert = expect(engine, events, "Disallowed SSH Connection Non Standard Port",
                   **{"fd.name": f"{SSH_ADDR}:{cport}->{SSH_ADDR}:{port}", "proc.name": "ssh"})
    assert field(alert, "fd.rport") == port and field(alert, "fd.l4proto") == "tcp"


@pytest.mark.usefixtures("ip_tool")
@pytest.mark.parametrize("control", ["standard-port", "not-ssh"])
def test_disallowed_ssh_connection_controls(live: Live, engine: Engine, progs: Path, control: str) -> None:
    if control == "standard-port":      # ssh_non_standard_ports_network: port 2222 is not in the list
        client, port = "ssh", 2222
    else:                               # proc.exe endswith ssh: the client is myworker
        client, port = "myworker", 443
    events, _ = behave(live, PY, "ssh_netns", SSH_ADDR, str(port), str(progs / client))
    silent(engine, events, "Disallowed SSH Connection Non Standard Port", "connect",
           **{"proc.name": client, "fd.sport": port, "fd.sip": ipaddress.ip_address(SSH_ADDR)})

