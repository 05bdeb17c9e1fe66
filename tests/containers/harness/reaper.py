"""Run a command under a child subreaper: `python -S reaper.py CMD ARG...`.

containerd's shims detach from containerd and would be re-parented to PID 1 (on these machines the
lab's init, which reaps them only seconds later). Started under this process instead, every shim
becomes its child and is reaped at once. It forwards SIGTERM/SIGINT to the command and exits
with the command's status once every child, the command and all shims, has exited. When its own
parent (the test process) dies without having stopped it, it kills everything below it (the
command, the shims and the container processes) rather than leave pods running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 2
    # SIGHUP comes whenever the thread that started us exits; the test process is gone only when
    # we have been re-parented.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)
    parent = int(os.environ.pop("LANNER_REAPER_PARENT", "0")) or os.getppid()
    child_pid = [0]
    orphaned = [False]

    def forward(sig: int, _frame: object) -> None:
        if child_pid[0] > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid[0], sig)

    def parent_gone(_sig: int, _frame: object) -> None:
        if os.getppid() != parent:
            orphaned[0] = True
            _kill_children()

    # Signals wait (blocked) until the child's pid is known; the child restores them before exec.
    our_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, parent_gone)
    signal.pthread_sigmask(signal.SIG_BLOCK, our_signals)
    pid = os.fork()
    if pid == 0:
        try:
            for sig in our_signals:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, our_signals)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    child_pid[0] = pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, our_signals)
    parent_gone(signal.SIGHUP, None)  # the test process may have died before PDEATHSIG was armed
    status: int | None = None
    while True:
        try:
            child, wstatus = os.wait()
        except ChildProcessError:
            break
        if child == pid:
            status = wstatus
        if orphaned[0]:  # also the container processes that the killed shims leave to us
            _kill_children()
    if status is None:
        return 1
    return os.waitstatus_to_exitcode(status)


def _kill_children() -> None:
    """SIGKILL every child: the command, its shims, and container processes re-parented to us."""
    for child in _children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def _children() -> list[int]:
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                out.append(int(name))
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
