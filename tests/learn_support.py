"""`lanner learn` as a subprocess, shared by the live-kernel and in-pod learning tests."""

from __future__ import annotations

import subprocess
import sys
import threading

from tests.conftest import ROOT

READY = "lanner learn: learning the programs of"


class Learn:
    """`lanner learn` as a subprocess; `ready` is set once it listens (its first stderr line)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lanner", "learn", *args], cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr: list[str] = []
        self.ready = threading.Event()
        self.stdout: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        # stdout too, in a thread of its own: a full pipe would stall the command
        self.out_thread = threading.Thread(target=lambda: self.stdout.extend(self.proc.stdout or ()), daemon=True)
        self.out_thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if line.startswith(READY):
                self.ready.set()
        self.ready.set()  # it exited: the waiter looks at the exit code

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.ready.wait(timeout), "lanner learn did not start listening"
        assert self.proc.poll() is None, f"lanner learn exited {self.proc.returncode}: {''.join(self.stderr)}"

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        # not communicate(): the reader threads own the pipes
        rc = self.proc.wait(timeout=timeout)
        self.thread.join(timeout=5)
        self.out_thread.join(timeout=5)
        return rc, "".join(self.stdout), "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
