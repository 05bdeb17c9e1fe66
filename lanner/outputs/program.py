"""``program``: each alert line written to the stdin of a shell command (Falco's program_output).

With ``keep_alive`` (the default here) one long-running command reads every alert, and it is
started again, before the next alert, whenever it has exited. Without it the command is started
for each alert and gets that one line (Falco's default). The command runs in its own session, so a
Ctrl-C meant for the agent does not kill it before ``stop`` has flushed the queue into it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

from lanner.alert import Alert
from lanner.outputs.base import DEFAULT_QUEUE_SIZE, Output, PermanentError, RetryPolicy
from lanner.outputs.lines import Format, encode, render

log = logging.getLogger("lanner.outputs")

EXIT_GRACE = 5.0
"""Seconds a command gets to exit after its stdin is closed, before it is killed."""


class ProgramOutput(Output):
    kind = "program"

    def __init__(self, command: str, *, format: Format = "json", keep_alive: bool = True, name: str | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, retry: RetryPolicy | None = None) -> None:
        super().__init__(name, queue_size=queue_size, retry=retry)
        self.command = command
        self.format = format
        self.keep_alive = keep_alive
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        """How many times the command has been started."""

    @property
    def pid(self) -> int | None:
        """The running command's process id (the shell's)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        return subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE, start_new_session=True)

    def _send(self, alert: Alert) -> None:
        data = encode(render(alert, self.format) + "\n")
        if not self.keep_alive:
            self._run_once(data)
            return
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            log.warning("output %s: command exited with status %s, starting it again", self.name, proc.returncode)
            self._close()
            proc = None
        if proc is None:
            proc = self._proc = self._spawn()
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except OSError:
            self._close()
            raise

    def _run_once(self, data: bytes) -> None:
        proc = self._proc = self._spawn()
        try:
            proc.communicate(data)
        finally:
            self._proc = None
        if proc.returncode != 0:
            # It has read the line; running it again could act on the alert twice.
            raise PermanentError(f"command exited with status {proc.returncode}")

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("output %s: command did not exit after its input closed; killing it", self.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
