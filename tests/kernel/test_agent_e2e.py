"""The agent end to end with Lanner's default rules: real behaviour in, alerts out of every channel.

One `lanner run` (python -m lanner run, the default rules: no -r) runs for the module, configured as a user
would configure it: text alerts on stdout, Falco JSON in a file, an HTTP output to a local falcosidekick
stand-in, metrics on a free port, throttling off. For every default rule whose behaviour can be performed on
this host, a child process performs it for real — temporary files only (a uniquely named file below /etc,
/usr/local/bin or /var/log, removed afterwards; a uniquely named home below /home for the SSH and cloud
credential files; copies of /usr/bin/true and python3 under attacker-like names), network only on loopback or
inside a private network namespace, the service-account token inside a private mount namespace — and the test
finds the alert

  (a) on the agent's stdout, as Falco's text line (the same line as the JSON's "output"),
  (b) in the JSON file, with the rule, priority and the output fields the rule promises (user, command line,
      file or connection...),
  (c) at the HTTP receiver, the same JSON object,
  (d) counted in /metrics as lanner_alerts_total{rule=...,priority=...}.

Rules that need a container (container.id != host) cannot fire on the host: CONTAINER_RULES lists them with
the reason, and test_every_default_rule_is_accounted_for checks that, together with HOST_SCENARIOS and
NOT_ON_THIS_KERNEL, they are exactly the rules of the default file. Last, `make run` — the README's promise —
is started as a user starts it and shows a `Write below etc` alert on its stdout.

The behaviours are performed by tests/kernel/e2e/act.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agent_support import Agent, Receiver, free_port, require_agent_machine, wait_until
from tests.conftest import ROOT, require_or_skip

DEFAULT_RULES = ROOT / "lanner" / "rules" / "default" / "lanner_rules.yaml"
ACT = str(Path(__file__).with_name("e2e") / "act.py")
PY = "/usr/bin/python3"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
TAG = f"lanner-e2e-{uuid.uuid4().hex[:10]}"  # in every file and program name this module creates
OUTBOUND_ADDR = "198.51.100.7"  # TEST-NET-2: not internal for the rule; only on a private namespace's lo

# Rules that can only fire for a process in a container (container.id != host): performed in real
# pods, through the agent and its four channels, by tests/containers/test_container_rules.py.
CONTAINER_RULES: dict[str, str] = {
    "Drifted binary executed in container": "needs container.id != host and an overlayfs upper layer",
    "Interactive shell in container": "needs container.id != host (a shell started by the container runtime)",
    "Sudo or su executed in container": "needs container.id != host",
    "Package manager executed in container": "needs container.id != host",
    "Kernel module loaded from container": "needs container.id != host",
    "Container contacting Kubernetes API server": "needs container.id != host",
}
# Rules whose behaviour this kernel cannot perform at all.
NOT_ON_THIS_KERNEL: dict[str, str] = {
    "Kernel module loaded on host": (
        "the rule needs a successful init_module/finit_module; this kernel has no module support (both return "
        "ENOSYS) and has no tracepoint for them (the sensor sees them only with raw_syscalls: true). "
        "test_kernel_module_attempts_are_events_in_raw_mode shows the attempts reach the agent."),
}


# --------------------------------------------------------------------------------------------------
# The agent and its channels


@dataclass
class E2E:
    agent: Agent
    receiver: Receiver
    home: Path
    """A uniquely named home below /home (the rules look at /home/*/.ssh and /home/*/.aws)."""
    bin: Path
    """Copies of /usr/bin/true and python3 under the names the rules look for."""


@pytest.fixture(scope="module")
def kernel_ready() -> None:
    require_agent_machine()


@pytest.fixture(scope="module")
def e2e(kernel_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    tmp = tmp_path_factory.mktemp("e2e")
    home = Path("/home") / TAG
    home.mkdir(mode=0o700)
    receiver = Receiver(free_port())
    receiver.start()
    agent: Agent | None = None
    try:
        bindir = home / "bin"
        bindir.mkdir()
        for name in ("nc", "nmap"):
            shutil.copy2("/usr/bin/true", bindir / name)
        shutil.copy2(os.path.realpath(PY), bindir / "nginx")
        agent = Agent(tmp, "agent", outputs=(
            f"  - kind: http\n    name: falcosidekick\n    url: http://127.0.0.1:{receiver.port}/\n"
            "    max_retries: -1\n    backoff_initial: 0.05\n    backoff_max: 0.5\n"))
        print(f"agent running after {agent.start_s:.2f} s")
        yield E2E(agent, receiver, home, bindir)
    finally:
        try:
            if agent is not None:
                rc = agent.stop()
                assert rc == 0, f"the agent exited {rc}: {agent.stderr}"
                assert not [x for x in agent.stderr if "Traceback" in x], agent.stderr
        finally:
            receiver.stop()
            shutil.rmtree(home, ignore_errors=True)


def act(*args: str, prog: str | Path = PY, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run act.py ACTION ARGS under `prog` as a child; the JSON line it printed."""
    res = subprocess.run([str(prog), ACT, *args], capture_output=True, text=True, env=env or ENV, timeout=30)
    assert res.returncode == 0, f"act.py {args} exited {res.returncode}: {res.stderr}"
    out: dict[str, Any] = json.loads([x for x in res.stdout.splitlines() if x.startswith("{")][-1])
    return out


def run(*argv: str | Path, cwd: str | None = None) -> int:
    """Run a program as a child and return its pid (it has exited)."""
    proc = subprocess.Popen([str(a) for a in argv], env=ENV, cwd=cwd, stdout=subprocess.DEVNULL)
    proc.wait(timeout=30)
    return proc.pid


def expect(e2e: E2E, rule: str, priority: str, fields: dict[str, Any], shows: tuple[str, ...] = ()) -> dict[str, Any]:
    """The alert of `rule` whose output fields include `fields`, found in all four channels; it shows `shows`."""
    agent = e2e.agent

    def find() -> dict[str, Any] | None:
        return next((a for a in agent.json_alerts()
                     if a["rule"] == rule and all(a["output_fields"].get(k) == v for k, v in fields.items())), None)

    try:
        alert: dict[str, Any] = wait_until(find, f"a {rule!r} alert with {fields} in {agent.json_file}")
    except AssertionError as exc:
        same_rule = [a["output"] for a in agent.json_alerts() if a["rule"] == rule][-5:]
        recent = [f"{a['rule']}: {a['output']}" for a in agent.json_alerts()[-10:]]
        raise AssertionError(f"{exc}\nalerts of that rule: {same_rule}\nlatest alerts: {recent}\n"
                             f"agent stderr: {agent.stderr[-10:]}") from None
    # (b) the JSON file: Falco's shape with the rule's priority and the promised fields
    assert alert["priority"] == priority, alert
    assert alert["source"] == "syscall" and alert["hostname"] == socket.gethostname(), alert
    assert alert["output"].split(": ", 1)[1].startswith(f"{priority} "), alert["output"]
    for snippet in shows:
        assert snippet in alert["output"], f"{snippet!r} not in {alert['output']!r}"
    # (a) stdout: Falco's text line, the same line as the JSON's "output"
    wait_until(lambda: alert["output"] in agent.stdout, f"the alert on stdout: {alert['output']}")
    # (c) the HTTP receiver: the same JSON object
    wait_until(lambda: any(body == alert for body in list(e2e.receiver.bodies)), "the alert at the HTTP receiver")
    # (d) /metrics: counted by rule and priority (the counter is bumped before the alert is handed to the outputs)
    in_file = sum(1 for a in agent.json_alerts() if a["rule"] == rule)
    counted = agent.alerts_counted(rule, priority)
    assert counted >= in_file >= 1, f'lanner_alerts_total{{priority="{priority}",rule="{rule}"}} is {counted}, ' \
                                    f"{in_file} alerts of the rule in the file"
    print(alert["output"])
    return alert


def cmdline(name: str, *args: str | Path) -> str:
    """proc.cmdline as Falco renders it: the process name and its arguments."""
    return " ".join([name, *(str(a) for a in args)])


@pytest.fixture()
def unique_file(request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], Path]]:
    """make(dir, suffix): a unique path in `dir` (nothing is created); whatever exists there is removed after."""
    made: list[Path] = []

    def make(directory: str, suffix: str = "") -> Path:
        p = Path(directory) / f"{TAG}-{uuid.uuid4().hex[:6]}{suffix}"
        assert not p.exists() and not p.is_symlink()
        made.append(p)
        return p

    yield make
    for p in made:
        p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# One scenario per default rule that the host can perform

Scenario = Callable[[E2E, Callable[[str, str], Path]], None]
HOST_SCENARIOS: dict[str, Scenario] = {}


def scenario(rule: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        HOST_SCENARIOS[rule] = fn
        return fn
    return register


@scenario("Write below etc")
def _write_below_etc(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    path = unique("/etc", ".conf")
    out = act("write", str(path), "append")
    cmd = cmdline("python3", ACT, "write", path, "append")
    alert = expect(e2e, "Write below etc", "Error",
                   {"fd.name": str(path), "proc.pid": out["pid"], "user.name": "root", "proc.cmdline": cmd},
                   shows=(f"file={path} ", "user=root ", f"command={cmd} ", "evt_type=openat"))
    assert "O_CREAT" in alert["output_fields"]["evt.arg.flags"], alert


@scenario("Write below binary or library directory")
def _write_below_binary_dir(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    path = unique("/usr/local/bin", "")
    out = act("write", str(path), "trunc")
    cmd = cmdline("python3", ACT, "write", path, "trunc")
    expect(e2e, "Write below binary or library directory", "Error",
           {"fd.name": str(path), "proc.pid": out["pid"], "user.name": "root", "proc.cmdline": cmd},
           shows=(f"file={path} ", "user=root ", f"command={cmd} "))


@scenario("SSH authorized keys modified")
def _ssh_authorized_keys(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    ssh = e2e.home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    path = ssh / "authorized_keys"
    out = act("write", str(path), "append", env={**ENV, "HOME": str(e2e.home)})
    cmd = cmdline("python3", ACT, "write", path, "append")
    expect(e2e, "SSH authorized keys modified", "Warning",
           {"fd.name": str(path), "proc.pid": out["pid"], "user.name": "root", "proc.cmdline": cmd},
           shows=(f"file={path} ", "user=root ", f"command={cmd} "))


@scenario("Read sensitive file by untrusted program")
def _read_sensitive_file(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    out = act("read", "/etc/shadow")
    cmd = cmdline("python3", ACT, "read", "/etc/shadow")
    expect(e2e, "Read sensitive file by untrusted program", "Warning",
           {"fd.name": "/etc/shadow", "proc.pid": out["pid"], "user.name": "root", "proc.cmdline": cmd},
           shows=("file=/etc/shadow ", "user=root ", f"command={cmd} "))


@scenario("Read Kubernetes service account token with shell tool")
def _read_k8s_token(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    token_dir = "/run/secrets/kubernetes.io/serviceaccount"   # inside a private mount namespace's tmpfs
    on_host = Path(token_dir).exists()
    out = act("k8s_token", token_dir, "/usr/bin/cat")
    assert out["returncode"] == 0
    token = f"{token_dir}/token"
    cmd = cmdline("cat", token)
    expect(e2e, "Read Kubernetes service account token with shell tool", "Warning",
           {"fd.name": token, "proc.pid": out["child"], "proc.name": "cat", "user.name": "root",
            "proc.cmdline": cmd, "proc.pname": "python3"},
           shows=(f"file={token} ", "user=root ", f"command={cmd} "))
    assert Path(token_dir).exists() is on_host, "the token lived only in the private mount namespace"


@scenario("Read cloud credentials with shell tool")
def _read_cloud_credentials(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    aws = e2e.home / ".aws"
    aws.mkdir(mode=0o700, exist_ok=True)
    creds = aws / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = lanner-e2e\n")
    pid = run("/usr/bin/cat", creds)
    cmd = cmdline("cat", creds)
    expect(e2e, "Read cloud credentials with shell tool", "Warning",
           {"fd.name": str(creds), "proc.pid": pid, "user.name": "root", "proc.cmdline": cmd},
           shows=(f"file={creds} ", "user=root ", f"command={cmd} "))


@scenario("Fileless execution from memfd")
def _fileless_memfd(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    out = act("memfd_exec", name)
    assert out["status"] == 0
    alert = expect(e2e, "Fileless execution from memfd", "Critical",
                   {"proc.exepath": f"memfd:{name}", "proc.pid": out["child"], "user.name": "root",
                    "proc.pname": "python3"},
                   shows=(f"proc_exepath=memfd:{name} ", "user=root ", "parent=python3 "))
    assert alert["output_fields"]["proc.cmdline"].endswith(f" {name}"), alert


@scenario("Reverse shell tool executed")
def _reverse_shell_tool(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    pid = run(e2e.bin / "nc", "-e", "/bin/sh", "127.0.0.1", "4444")   # a copy of true: nothing listens or runs
    cmd = cmdline("nc", "-e", "/bin/sh", "127.0.0.1", "4444")
    expect(e2e, "Reverse shell tool executed", "Critical",
           {"proc.pid": pid, "proc.name": "nc", "user.name": "root", "proc.cmdline": cmd,
            "proc.exepath": str(e2e.bin / "nc")},
           shows=("user=root ", f"command={cmd} ", f"proc_exepath={e2e.bin / 'nc'} "))


@scenario("Shell spawned by server process")
def _shell_spawned_by_server(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    out = act("spawn", "/bin/sh", "-c", "exit 0", prog=e2e.bin / "nginx")   # python3 named nginx
    assert out["returncode"] == 0
    cmd = cmdline("sh", "-c", "exit 0")
    expect(e2e, "Shell spawned by server process", "Error",
           {"proc.pid": out["child"], "proc.name": "sh", "proc.pname": "nginx", "user.name": "root",
            "proc.cmdline": cmd, "proc.pexepath": str(e2e.bin / "nginx")},
           shows=("user=root ", f"command={cmd} ", "parent=nginx ", f"parent_exepath={e2e.bin / 'nginx'} "))


@scenario("Suspicious network tool executed")
def _network_tool(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    pid = run(e2e.bin / "nmap", "-sT", "-p", "1-1024", "127.0.0.1")   # a copy of true: nothing is scanned
    cmd = cmdline("nmap", "-sT", "-p", "1-1024", "127.0.0.1")
    expect(e2e, "Suspicious network tool executed", "Warning",
           {"proc.pid": pid, "proc.name": "nmap", "user.name": "root", "proc.cmdline": cmd},
           shows=("user=root ", f"command={cmd} "))


@scenario("Executable run from temporary directory")
def _temp_dir_exec(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    exe = unique("/dev/shm", "")
    shutil.copy2("/usr/bin/true", exe)
    pid = run(exe, "--payload")
    cmd = cmdline(exe.name[:15], "--payload")
    expect(e2e, "Executable run from temporary directory", "Warning",
           {"proc.pid": pid, "proc.exepath": str(exe), "user.name": "root", "proc.cmdline": cmd},
           shows=(f"proc_exepath={exe} ", "user=root ", f"command={cmd} "))


@scenario("Setuid to root by non-root process")
def _setuid_root(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    out = act("setuid_root", "65534")
    assert out["errno"] == 1, out   # EPERM: nobody cannot become root
    alert = expect(e2e, "Setuid to root by non-root process", "Error",
                   {"proc.pid": out["child"], "user.name": "nobody", "evt.res": "EPERM", "evt.type": "setuid"},
                   shows=("res=EPERM ", "user=nobody ", "user_uid=65534 ",
                          f"command={cmdline('python3', ACT, 'setuid_root', '65534')} "))
    assert alert["output_fields"]["proc.cmdline"] == cmdline("python3", ACT, "setuid_root", "65534")


@scenario("Ptrace attach to process")
def _ptrace_attach(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    out = act("ptrace_attach")
    assert out["res"] == 0
    cmd = cmdline("python3", ACT, "ptrace_attach")
    expect(e2e, "Ptrace attach to process", "Warning",
           {"proc.pid": out["pid"], "evt.arg.request": "PTRACE_ATTACH", "evt.rawarg.pid": out["target"],
            "user.name": "root", "proc.cmdline": cmd},
           shows=("request=PTRACE_ATTACH ", f"target_pid={out['target']} ", "user=root ", f"command={cmd} "))


@scenario("Log file truncated")
def _log_truncated(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    log = unique("/var/log", ".log")
    act("write", str(log), "append")          # the log, with a line in it
    pid = run("/bin/sh", "-c", f": > {log}")  # emptied with a shell redirection
    assert log.stat().st_size == 0
    cmd = cmdline("sh", "-c", f": > {log}")
    alert = expect(e2e, "Log file truncated", "Warning",
                   {"fd.name": str(log), "proc.pid": pid, "user.name": "root", "proc.cmdline": cmd},
                   shows=(f"file={log} ", "user=root ", f"command={cmd} "))
    assert "O_TRUNC" in alert["output_fields"]["evt.arg.flags"], alert


@scenario("Log file deleted")
def _log_deleted(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    log = unique("/var/log", ".log")
    act("write", str(log), "append")
    pid = run("/usr/bin/rm", log)
    assert not log.exists()
    cmd = cmdline("rm", log)
    expect(e2e, "Log file deleted", "Warning",
           {"evt.arg.name": str(log), "proc.pid": pid, "user.name": "root", "proc.cmdline": cmd},
           shows=(f"name={log} ", "user=root ", f"command={cmd} "))


@scenario("Shell history cleared")
def _shell_history_cleared(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    history = e2e.home / ".bash_history"
    history.unlink(missing_ok=True)
    try:
        pid = run("/usr/bin/ln", "-sf", "/dev/null", history)
        assert os.readlink(history) == "/dev/null"
    finally:
        history.unlink(missing_ok=True)
    cmd = cmdline("ln", "-sf", "/dev/null", history)
    alert = expect(e2e, "Shell history cleared", "Warning",
                   {"proc.pid": pid, "user.name": "root", "proc.cmdline": cmd},
                   shows=("user=root ", f"command={cmd} "))
    assert alert["output_fields"]["evt.type"] in ("symlink", "symlinkat"), alert
    assert "/dev/null" in alert["output_fields"]["evt.args"] and str(history) in alert["output_fields"]["evt.args"]


@scenario("Outbound connection to unexpected port")
def _outbound_unexpected_port(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    if not Path("/usr/sbin/ip").exists():
        require_or_skip("/usr/sbin/ip (iproute2) sets up the private network namespace")
    out = act("netns_connect", OUTBOUND_ADDR, "4444")
    conn = f"{OUTBOUND_ADDR}:{out['local'][1]}->{OUTBOUND_ADDR}:4444"
    cmd = cmdline("python3", ACT, "netns_connect", OUTBOUND_ADDR, "4444")
    expect(e2e, "Outbound connection to unexpected port", "Notice",
           {"fd.name": conn, "proc.pid": out["pid"], "fd.sport": 4444, "fd.l4proto": "tcp", "user.name": "root",
            "proc.cmdline": cmd},
           shows=(f"connection={conn} ", f"server_ip={OUTBOUND_ADDR} ", "server_port=4444 ", "user=root ",
                  f"command={cmd} "))


@scenario("Standard streams redirected to network socket")
def _stdio_to_socket(e2e: E2E, unique: Callable[[str, str], Path]) -> None:
    out = act("stdio_socket")
    assert out["res"] == 0
    conn = f"127.0.0.1:{out['local'][1]}->127.0.0.1:{out['remote'][1]}"
    cmd = cmdline("python3", ACT, "stdio_socket")
    expect(e2e, "Standard streams redirected to network socket", "Critical",
           {"fd.name": conn, "proc.pid": out["pid"], "evt.rawres": 0, "user.name": "root", "proc.cmdline": cmd},
           shows=(f"connection={conn} ", "fd_num=0 ", "proto=tcp ", "user=root ", f"command={cmd} "))


# --------------------------------------------------------------------------------------------------
# Tests


def _rules_in_default_file() -> list[str]:
    return [item["rule"] for item in yaml.safe_load(DEFAULT_RULES.read_text()) if "rule" in item]


def test_every_default_rule_is_accounted_for() -> None:
    """Each default rule is shown live here, or listed with the reason it cannot be."""
    names = _rules_in_default_file()
    assert len(names) == len(set(names)) == 25
    groups = [set(HOST_SCENARIOS), set(CONTAINER_RULES), set(NOT_ON_THIS_KERNEL)]
    assert set().union(*groups) == set(names)
    assert sum(len(g) for g in groups) == len(names), "a rule is in two groups"


@pytest.mark.parametrize("rule", list(HOST_SCENARIOS))
def test_default_rule_alerts_on_every_channel(e2e: E2E, unique_file: Callable[[str, str], Path], rule: str) -> None:
    HOST_SCENARIOS[rule](e2e, unique_file)


def test_agent_names_what_it_cannot_capture(e2e: E2E) -> None:
    """Without raw_syscalls, syscalls without an exit tracepoint (here the module syscalls) are not captured, and
    the agent says so at start-up."""
    line = next((x for x in e2e.agent.stderr if "no exit tracepoint for " in x), "")
    named = set(line.split("no exit tracepoint for ", 1)[-1].split(":", 1)[0].split(", ")) if line else set()
    for name in ("init_module", "finit_module"):
        has_tracepoint = Path(f"/sys/kernel/tracing/events/syscalls/sys_exit_{name}").exists()
        assert (name in named) is not has_tracepoint, (name, e2e.agent.stderr)
    if line:
        assert "raw_syscalls: true" in line, line
    m = e2e.agent.metrics()
    assert m[("lanner_rules_loaded", ())] == 25


def test_kernel_module_attempts_are_events_in_raw_mode(kernel_ready: None, tmp_path: Path,
                                                       unique_file: Callable[[str, str], Path]) -> None:
    """"Kernel module loaded on host" cannot fire on this kernel (no module support: ENOSYS). A second agent in
    raw mode sees both attempts as events and, rightly, raises nothing for them; a later write below /etc
    proves the events before it were all evaluated."""
    raw = Agent(tmp_path, "raw", extra_config="raw_syscalls: true\n")
    try:
        assert not [x for x in raw.stderr if "no exit tracepoint" in x], raw.stderr
        module = tmp_path / "lanner_e2e.ko"
        module.write_bytes(b"\x7fELF" + bytes(60))
        out = act("load_module", str(module))
        assert out["finit_module"] == out["init_module"] == -38, (
            f"{out}: this kernel answers something else than ENOSYS; if it can load modules, show "
            "'Kernel module loaded on host' live and remove it from NOT_ON_THIS_KERNEL")
        path = unique_file("/etc", ".conf")
        marker = act("write", str(path), "append")
        wait_until(lambda: any(a["rule"] == "Write below etc" and a["output_fields"]["proc.pid"] == marker["pid"]
                               for a in raw.json_alerts()), "the marker alert of the raw-mode agent")
        m = raw.metrics()
        assert m.get(("lanner_events_total", (("type", "finit_module"),)), 0) >= 1, m
        assert m.get(("lanner_events_total", (("type", "init_module"),)), 0) >= 1, m
        assert not [a for a in raw.json_alerts() if "Kernel module" in a["rule"]]
    finally:
        assert raw.stop() == 0, raw.stderr


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_run_shows_write_below_etc(kernel_ready: None, unique_file: Callable[[str, str], Path]) -> None:
    """The README's promise: `make run`, then a write below /etc is an alert on its stdout."""
    cmd = ["make", "run"]
    if not _port_free(8765):
        # `make run` serves metrics on 127.0.0.1:8765 and has no other setting: when the port is taken here,
        # run it in a private network namespace (the sensor sees the whole machine anyway).
        print("127.0.0.1:8765 is busy: make run runs in a private network namespace")
        cmd = ["unshare", "--net", "sh", "-c", "ip link set lo up && exec make run"]
    stdout: list[str] = []
    stderr: list[str] = []
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    readers = [threading.Thread(target=Agent._read, args=(s, d), daemon=True)
               for s, d in ((proc.stdout, stdout), (proc.stderr, stderr))]
    for t in readers:
        t.start()
    try:
        wait_until(lambda: proc.poll() is not None or any(x.startswith("lanner: running") for x in stderr),
                   "make run's running line", timeout=180)
        assert proc.poll() is None, f"make run exited {proc.returncode}: {stderr}"
        running = next(x for x in stderr if x.startswith("lanner: running"))
        assert f"25 rules from {DEFAULT_RULES}" in running and "127.0.0.1:8765" in running, running
        path = unique_file("/etc", ".conf")
        out = act("write", str(path), "append")
        want = (": Error File below /etc opened for writing | ", f"file={path} ", "user=root ",
                f"command={cmdline('python3', ACT, 'write', path, 'append')} ", f"pid={out['pid']} ")
        line = wait_until(lambda: next((x for x in stdout if all(w in x for w in want)), None),
                          f"a Write below etc line for {path} on make run's stdout")
        print(line)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
            for t in readers:
                t.join(timeout=60)   # until the agent (which holds the pipes) has exited too
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)   # nothing may outlive the test
    assert any("lanner: stopped" in x for x in stderr), stderr
