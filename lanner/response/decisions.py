"""The Decision record: what an enforcement mechanism did (or, in monitor mode, would have done).

Every backend (fanotify, the exec guard, the network guard, the reactive actions) reports its
decisions as these plain records; the enforcer turns each into an alert of the rule that asked for
it. Backends know rules only by the integer id the enforcer gave them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace

from lanner.events import Container, Event, FdInfo, Process
from lanner.paths import concatenate

MECHANISMS = ("fanotify", "exec-kill", "cgroup-net", "reactive")
KINDS = ("exec", "open", "connect", "sendmsg", "process", "container")


@dataclass(frozen=True, slots=True)
class Decision:
    mechanism: str
    """Which backend decided: one of MECHANISMS."""
    kind: str
    """What was attempted: one of KINDS."""
    rule_id: int
    """The id the enforcer gave the rule when it installed the policy."""
    enforced: bool
    """True: the action was denied or the process killed. False: monitor mode let it through."""
    ts_ns: int
    """When the mechanism decided, ns since the epoch."""
    tid: int
    tgid: int
    cgroup_id: int = 0
    """The cgroup2 (unified) id of the process, 0 when the mechanism does not know it."""
    path: str = ""
    """The file or executable as the mechanism saw it (container-relative inside a container)."""
    dev: int = 0
    """The file's device in the kernel's encoding (major << 20 | minor), with ino."""
    ino: int = 0
    flags: int = 0
    """open(2) flags of a denied open."""
    family: int = 0
    """AF_INET or AF_INET6 for network decisions."""
    addr: str = ""
    port: int = 0
    comm: str = ""
    error: str = ""
    """Why an enforcement the policy asked for failed (e.g. bpf_send_signal's error); empty if it worked."""
    protected: str = ""
    """Why the policy's enforcement was not carried out on a protected process (pid 1, a kernel
    thread, a protected process or program); empty otherwise."""

    @property
    def result(self) -> str:
        """The word alerts and metrics use: blocked/killed, allowed (monitor), or failed."""
        if self.protected:
            return "protected"
        if self.error:
            return "failed"
        if not self.enforced:
            return "allowed"
        return "killed" if self.mechanism == "exec-kill" else "blocked"


_EVENT_TYPE = {"exec": "execve", "open": "openat", "connect": "connect", "sendmsg": "sendto"}


def as_event(d: Decision, caller: Process | None, container: Container | None) -> Event:
    """The event a decision stands for, so the rule's own output template renders its alert.

    ``caller`` is the process as the agent's state knows it. For an exec, the event's process is
    the program that was (or would have been) started — its path from the decision, its parent the
    caller — which is what a rule's ``%proc.exepath`` / ``%proc.pname`` mean for an exec.
    """
    proc = caller
    if d.kind == "exec":
        base = caller if caller is not None else Process(pid=d.tgid, name=d.comm)
        path = d.path if d.path.startswith("/") else concatenate(base.cwd, d.path)  # ./x as the caller ran it
        proc = replace(base, exepath=path, exe=d.path, name=(path.rsplit("/", 1)[-1] or d.comm)[:15],
                       parent=base if d.mechanism == "fanotify" else base.parent, args=[])
    elif proc is None:
        proc = Process(pid=d.tgid, name=d.comm)
    if container is not None and proc.container_id != container.id:
        # the mechanism knew the cgroup; the state may not have seen this process in it yet
        proc = replace(proc, container_id=container.id)
    fd: FdInfo | None = None
    args: dict[str, object] = {}
    if d.kind == "open":
        fd = FdInfo(num=-1, type="file", name=d.path, nameraw=d.path, dev=d.dev, ino=d.ino)
        args = {"name": d.path, "flags": d.flags}
    elif d.kind in ("connect", "sendmsg"):
        v4 = d.family == socket.AF_INET
        name = f"->{d.addr}:{d.port}" if v4 else f"->[{d.addr}]:{d.port}"
        fd = FdInfo(num=-1, type="ipv4" if v4 else "ipv6", name=name, sip=d.addr, sport=d.port,
                    role="client")
    elif d.kind == "exec":
        args = {"exe": d.path, "filename": proc.exepath if proc is not None else d.path}
    res = -1 if d.enforced and d.mechanism != "exec-kill" else 0  # -EPERM
    return Event(type=_EVENT_TYPE.get(d.kind, d.kind), ts=d.ts_ns, tid=d.tid, res=res, args=args, proc=proc,
                 fd=fd, container=container)
