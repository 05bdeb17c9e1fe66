"""The registry of simulated behaviours: what each does, which rule should catch it, and the code doing it.

Every action is safe to run on a production node: it works in a uniquely named temporary directory (below
/home, where the rules look for SSH and cloud credential files) that is removed afterwards; a file it must
create in a watched system directory (/etc, /usr/local/bin, /var/log, /dev/shm) is uniquely named and removed;
system files are only read; network traffic goes to a listener the action started itself, on loopback or on
an address of a private network namespace that vanishes with the action; programs with attacker-like or
server-like names are copies of /usr/bin/true and of the Python interpreter in the temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHILD = str(Path(__file__).with_name("child.py"))
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
TAG = "lanner-simulate"
NETNS_ADDR = "198.51.100.7"
"""TEST-NET-2 (documentation range): not internal for the rules; only ever on a private namespace's lo."""


class SimulateError(Exception):
    """An action could not be performed on this machine (a missing tool, a file system layout)."""


def _python() -> str:
    """An interpreter that still works when copied elsewhere under another name (its prefix is built in)."""
    for cand in ("/usr/bin/python3",):
        if os.path.exists(cand):
            return os.path.realpath(cand)
    import sys

    return os.path.realpath(sys.executable)


class Workspace:
    """The temporary directory of a run, with copies of programs under the names the rules look for."""

    def __init__(self) -> None:
        base = "/home" if os.path.isdir("/home") else None
        self.root = Path(tempfile.mkdtemp(prefix=f"{TAG}-", dir=base))
        self.bin = self.root / "bin"
        self.bin.mkdir()
        self.python = _python()
        self._made: list[Path] = []

    def prog(self, name: str, source: str = "python") -> str:
        """A copy of the interpreter (or of /usr/bin/true) named `name` in the workspace."""
        dst = self.bin / name
        if not dst.exists():
            shutil.copy2(self.python if source == "python" else source, dst)
        return str(dst)

    def unique(self, directory: str, suffix: str = "") -> Path:
        """A unique path in `directory` (nothing is created); removed by cleanup() if it exists then."""
        p = Path(directory) / f"{TAG}-{uuid.uuid4().hex[:10]}{suffix}"
        self._made.append(p)
        return p

    def child(self, behaviour: str, *args: str, prog: str = "", timeout: float = 30) -> float:
        """Run child.py BEHAVIOUR ARGS under `prog` (default the interpreter); the trigger time it reported."""
        res = subprocess.run([prog or self.python, CHILD, behaviour, *args], capture_output=True, text=True,
                             env=ENV, timeout=timeout, check=False)
        lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
        if res.returncode != 0 or not lines:
            raise SimulateError(f"{behaviour} exited {res.returncode}: {res.stderr.strip()[-500:]}")
        t: float = json.loads(lines[-1])["t"]
        return t

    def run(self, *argv: str | Path, check: bool = True) -> float:
        """Run a program and wait for it; the time it was started."""
        t = time.monotonic()
        res = subprocess.run([str(a) for a in argv], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=30, check=False)
        if check and res.returncode != 0:
            raise SimulateError(f"{argv[0]} exited {res.returncode}: {res.stderr.strip()[-300:]}")
        return t

    def cleanup(self) -> None:
        for p in self._made:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


Perform = Callable[[Workspace], "float | None"]


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    falco_rule: str | None
    """The rule of Falco's rules files expected to fire (stable, incubating or sandbox)."""
    lanner_rule: str | None
    """The rule of Lanner's default rules expected to fire."""
    perform: Perform | None
    """Does it for real; returns the time of the decisive system call (None: the action's start)."""
    container_only: bool = False
    event_generator: bool = False
    """A default-enabled action of Falco's event generator (same name)."""

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for r in (self.falco_rule, self.lanner_rule) if r))


ACTIONS: dict[str, Action] = {}


def action(name: str, description: str, *, falco: str | None = None, lanner: str | None = None,
           event_generator: bool = False) -> Callable[[Perform], Perform]:
    def register(fn: Perform) -> Perform:
        ACTIONS[name] = Action(name, description, falco, lanner, fn, event_generator=event_generator)
        return fn
    return register


def container_action(name: str, description: str, *, falco: str | None = None, lanner: str | None = None,
                     event_generator: bool = False) -> None:
    ACTIONS[name] = Action(name, description, falco, lanner, None, container_only=True,
                           event_generator=event_generator)


def _create(path: Path, data: bytes) -> None:
    """Create a new file without O_TRUNC (the simulation itself must not look like the behaviour it prepares)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _same_fs_dir(ws: Workspace, target: str) -> Path:
    """A temporary directory on the file system of `target` (a hard link cannot cross file systems)."""
    dev = os.stat(target).st_dev
    for cand in (ws.root, Path("/var/tmp"), Path(tempfile.gettempdir())):
        if cand.is_dir() and os.stat(cand).st_dev == dev:
            if cand == ws.root:
                return cand
            d = ws.unique(str(cand))
            d.mkdir(mode=0o700)
            return d
    raise SimulateError(f"no temporary directory on the file system of {target}")


# --------------------------------------------------------------------------------------------------
# Falco's event generator: the default-enabled actions that run on a host without leaving the machine


@action("ClearLogActivities", "truncate a temporary file named syslog (O_TRUNC)",
        falco="Clear Log Activities", event_generator=True)
def _clear_log(ws: Workspace) -> float | None:
    log = ws.root / "syslog"
    _create(log, b"Nov 27 11:53:00 host sshd[1]: Accepted password for root\n")
    return ws.child("write", str(log), "trunc")


@action("CreateHardlinkOverSensitiveFiles", "ln /etc/shadow into a temporary directory, then remove the link",
        falco="Create Hardlink Over Sensitive Files", event_generator=True)
def _hardlink(ws: Workspace) -> float | None:
    link = _same_fs_dir(ws, "/etc/shadow") / "shadow_link"
    try:
        return ws.run("/usr/bin/ln", "/etc/shadow", link)
    finally:
        link.unlink(missing_ok=True)


@action("CreateSymlinkOverSensitiveFiles", "ln -s /etc into a temporary directory",
        falco="Create Symlink Over Sensitive Files", event_generator=True)
def _symlink(ws: Workspace) -> float | None:
    return ws.run("/usr/bin/ln", "-s", "/etc", ws.root / "etc_link")


@action("DirectoryTraversalMonitoredFileRead", "open /etc/../etc/../etc/shadow for reading",
        falco="Directory traversal monitored file read", event_generator=True)
def _traversal(ws: Workspace) -> float | None:
    return ws.child("read", "/etc/../etc/../etc/shadow")


@action("DisallowedSSHConnectionNonStandardPort",
        "a program named ssh connects to port 443 of a listener of our own in a private network namespace",
        falco="Disallowed SSH Connection Non Standard Port", event_generator=True)
def _ssh_443(ws: Workspace) -> float | None:
    if not os.path.exists("/usr/sbin/ip"):
        raise SimulateError("/usr/sbin/ip (iproute2) is needed to set up the private network namespace")
    return ws.child("netns_connect", NETNS_ADDR, "443", ws.prog("ssh"))


@action("ExecutionFromDevShm", "run a copy of /usr/bin/true from /dev/shm, then remove it",
        falco="Execution from /dev/shm", lanner="Executable run from temporary directory", event_generator=True)
def _dev_shm(ws: Workspace) -> float | None:
    exe = ws.unique("/dev/shm")
    shutil.copy2("/usr/bin/true", exe)
    return ws.run(exe, "--payload")


@action("FilelessExecutionViaMemfdCreate", "copy /usr/bin/true into a memfd and execute it from there",
        falco="Fileless execution via memfd_create", lanner="Fileless execution from memfd", event_generator=True)
def _memfd(ws: Workspace) -> float | None:
    return ws.child("memfd_exec", f"{TAG}-{uuid.uuid4().hex[:6]}")


@action("FindAwsCredentials", "find TMPDIR -iname .aws/credentials", falco="Find AWS Credentials",
        event_generator=True)
def _find_aws(ws: Workspace) -> float | None:
    return ws.run("/usr/bin/find", ws.root, "-maxdepth", "1", "-iname", ".aws/credentials")


@action("LaunchSuspiciousNetworkToolOnHost", "run a copy of /usr/bin/true named nmap with scan arguments",
        falco="Launch Suspicious Network Tool on Host", lanner="Suspicious network tool executed",
        event_generator=True)
def _nmap(ws: Workspace) -> float | None:
    return ws.run(ws.prog("nmap", "/usr/bin/true"), "-sT", "-p", "1-1024", "127.0.0.1")


@action("PtraceAntiDebugAttempt", "a child process calls ptrace(PTRACE_TRACEME)", falco="PTRACE anti-debug attempt",
        event_generator=True)
def _traceme(ws: Workspace) -> float | None:
    return ws.child("ptrace_traceme")


@action("PtraceAttachedToProcess", "ptrace(PTRACE_ATTACH) to a sleeping child of our own, detach, kill it",
        falco="PTRACE attached to process", lanner="Ptrace attach to process", event_generator=True)
def _ptrace_attach(ws: Workspace) -> float | None:
    return ws.child("ptrace_attach")


@action("ReadSensitiveFileTrustedAfterStartup", "a program named nginx reads /etc/shadow 6 s after it started",
        falco="Read sensitive file trusted after startup", event_generator=True)
def _shadow_after_startup(ws: Workspace) -> float | None:
    return ws.child("read", "/etc/shadow", "6", prog=ws.prog("nginx"))


@action("ReadSensitiveFileUntrusted", "open /etc/shadow for reading", falco="Read sensitive file untrusted",
        lanner="Read sensitive file by untrusted program", event_generator=True)
def _shadow(ws: Workspace) -> float | None:
    return ws.child("read", "/etc/shadow")


@action("RemoveBulkDataFromDisk", "shred -u a temporary file", falco="Remove Bulk Data from Disk",
        event_generator=True)
def _shred(ws: Workspace) -> float | None:
    victim = ws.root / "customers.sql"
    _create(victim, os.urandom(4096))
    return ws.run("/usr/bin/shred", "-u", "-n", "1", victim)


@action("RunShellUntrusted", "a program named nginx runs sh -c 'ls > /dev/null'", falco="Run shell untrusted",
        lanner="Shell spawned by server process", event_generator=True)
def _nginx_shell(ws: Workspace) -> float | None:
    return ws.child("spawn", "/bin/sh", "-c", "ls > /dev/null", prog=ws.prog("nginx"))


@action("SearchPrivateKeysOrPasswords", "find TMPDIR -iname id_rsa", falco="Search Private Keys or Passwords",
        event_generator=True)
def _find_keys(ws: Workspace) -> float | None:
    return ws.run("/usr/bin/find", ws.root, "-maxdepth", "1", "-iname", "id_rsa")


@action("SystemUserInteractive", "a program named sshd runs /usr/bin/true as nobody (uid 65534)",
        falco="System user interactive", event_generator=True)
def _system_user(ws: Workspace) -> float | None:
    return ws.child("as_user", "65534", "/usr/bin/true", prog=ws.prog("sshd"))


# --------------------------------------------------------------------------------------------------
# Lanner's default rules (those not already covered above)


@action("WriteBelowEtc", "create a uniquely named file below /etc, then remove it", falco="Write below etc",
        lanner="Write below etc")
def _etc(ws: Workspace) -> float | None:
    return ws.child("write", str(ws.unique("/etc", ".conf")), "append")


@action("WriteBelowBinaryDir", "create a uniquely named file in /usr/local/bin, then remove it",
        lanner="Write below binary or library directory")
def _bindir(ws: Workspace) -> float | None:
    return ws.child("write", str(ws.unique("/usr/local/bin")), "trunc")


@action("AddingSshKeysToAuthorizedKeys", "write .ssh/authorized_keys in a temporary home below /home",
        falco="Adding ssh keys to authorized_keys", lanner="SSH authorized keys modified")
def _authorized_keys(ws: Workspace) -> float | None:
    ssh = ws.root / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    return ws.child("write", str(ssh / "authorized_keys"), "append")


@action("ReadServiceAccountToken",
        "cat a Kubernetes service-account token, inside a private mount namespace with a tmpfs over /run",
        lanner="Read Kubernetes service account token with shell tool")
def _k8s_token(ws: Workspace) -> float | None:
    return ws.child("k8s_token", "/run/secrets/kubernetes.io/serviceaccount", "/usr/bin/cat")


@action("ReadCloudCredentials", "cat .aws/credentials of a temporary home below /home",
        lanner="Read cloud credentials with shell tool")
def _aws_creds(ws: Workspace) -> float | None:
    aws = ws.root / ".aws"
    aws.mkdir(mode=0o700, exist_ok=True)
    creds = aws / "credentials"
    _create(creds, b"[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = lanner-simulate\n")
    return ws.run("/usr/bin/cat", creds)


@action("ReverseShellTool", "run a copy of /usr/bin/true named nc as nc -e /bin/sh 127.0.0.1 4444",
        lanner="Reverse shell tool executed")
def _nc(ws: Workspace) -> float | None:
    return ws.run(ws.prog("nc", "/usr/bin/true"), "-e", "/bin/sh", "127.0.0.1", "4444")


@action("SetuidToRootByNonRoot", "a child becomes nobody and calls setuid(0) (fails with EPERM)",
        lanner="Setuid to root by non-root process")
def _setuid(ws: Workspace) -> float | None:
    return ws.child("setuid_root", "65534")


@action("LogFileTruncated", "create a uniquely named log in /var/log, empty it with sh -c ': > LOG', remove it",
        lanner="Log file truncated")
def _log_truncated(ws: Workspace) -> float | None:
    log = ws.unique("/var/log", ".log")
    _create(log, b"lanner simulate\n")
    return ws.run("/bin/sh", "-c", f": > {log}")


@action("LogFileDeleted", "create a uniquely named log in /var/log and delete it with rm",
        lanner="Log file deleted")
def _log_deleted(ws: Workspace) -> float | None:
    log = ws.unique("/var/log", ".log")
    _create(log, b"lanner simulate\n")
    return ws.run("/usr/bin/rm", log)


@action("ShellHistoryCleared", "ln -sf /dev/null .bash_history in a temporary home below /home",
        lanner="Shell history cleared")
def _history(ws: Workspace) -> float | None:
    return ws.run("/usr/bin/ln", "-sf", "/dev/null", ws.root / ".bash_history")


@action("OutboundConnectionUnexpectedPort",
        f"connect to {NETNS_ADDR}:4444, a listener of our own in a private network namespace",
        lanner="Outbound connection to unexpected port")
def _outbound(ws: Workspace) -> float | None:
    if not os.path.exists("/usr/sbin/ip"):
        raise SimulateError("/usr/sbin/ip (iproute2) is needed to set up the private network namespace")
    return ws.child("netns_connect", NETNS_ADDR, "4444")


@action("StdioRedirectedToSocket", "dup2 a loopback TCP connection to a listener of our own onto stdin",
        lanner="Standard streams redirected to network socket")
def _stdio(ws: Workspace) -> float | None:
    return ws.child("stdio_socket")


# --------------------------------------------------------------------------------------------------
# Container-only: the rules need container.id != host (--in-pod performs them in a pod: lanner/simulate/pod.py)

container_action("DropAndExecuteNewBinaryInContainer", "copy ls into the container's /bin and run it",
                 falco="Drop and execute new binary in container", lanner="Drifted binary executed in container",
                 event_generator=True)
container_action("TerminalShellInContainer", "an interactive shell started in the container",
                 falco="Terminal shell in container", lanner="Interactive shell in container")
container_action("SudoInContainer", "sudo or su run in the container", lanner="Sudo or su executed in container")
container_action("LaunchPackageManagementProcessInContainer", "apt-get --version in the container",
                 falco="Launch Package Management Process in Container",
                 lanner="Package manager executed in container")
container_action("KernelModuleFromContainer", "finit_module of a bogus module from the container",
                 falco="Linux Kernel Module Injection Detected", lanner="Kernel module loaded from container")
container_action("ContactK8sApiServerFromContainer", "connect to the kubernetes service address from the container",
                 falco="Contact K8S API Server From Container", lanner="Container contacting Kubernetes API server")
container_action("PacketSocketCreatedInContainer", "socket(AF_PACKET) in the container",
                 falco="Packet socket created in container", event_generator=True)
container_action("DebugfsLaunchedInPrivilegedContainer", "debugfs -V in a privileged container",
                 falco="Debugfs Launched in Privileged Container", event_generator=True)
container_action("DetectReleaseAgentFileContainerEscapes", "write a file named release_agent in the container",
                 falco="Detect release_agent File Container Escapes", event_generator=True)
container_action("MountLaunchedInPrivilegedContainer", "mount run in a privileged container",
                 falco="Mount Launched in Privileged Container", event_generator=True)
container_action("NetcatRemoteCodeExecutionInContainer", "nc -e /bin/sh to a listener of our own, in the container",
                 falco="Netcat Remote Code Execution in Container", event_generator=True)

NOT_SIMULATED: dict[str, str] = {
    "Kernel module loaded on host": "the rule needs a kernel module actually loaded, which is not safe to do on a "
                                    "production node",
}
"""Lanner default rules no action performs, with the reason."""
