"""The Decision record: what an enforcement mechanism did (or, in monitor mode, would have done).

Every backend (fanotify, the exec guard, the network guard, the reactive actions) reports its
decisions as these plain records; the enforcer turns each into an alert of the rule that asked for
it. Backends know rules only by the integer id the enforcer gave them.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def result(self) -> str:
        """The word alerts and metrics use: blocked/killed, allowed (monitor), or failed."""
        if self.error:
            return "failed"
        if not self.enforced:
            return "allowed"
        return "killed" if self.mechanism == "exec-kill" else "blocked"
