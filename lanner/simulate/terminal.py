"""Run a program on a pseudo-terminal of ours: what a `kubectl exec -it` gives a process, without one."""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence


class TerminalTimeout(Exception):
    """The program was still running at the deadline; it has been killed. ``output``: what it wrote."""

    def __init__(self, output: bytes) -> None:
        super().__init__("still running at the deadline")
        self.output = output


def run_on_terminal(argv: Sequence[str], timeout_s: float,
                    env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """(exit code, terminal output with CRLF turned back into LF, stderr). The program's stdin and
    stdout are the terminal; its stderr is kept apart; it runs in a session of its own."""
    master, slave = os.openpty()
    try:
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=err, start_new_session=True,
                                        env=dict(env) if env is not None else None)
            finally:
                os.close(slave)
            out = bytearray()
            deadline = time.monotonic() + timeout_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    proc.kill()
                    proc.wait()
                    raise TerminalTimeout(bytes(out))
                ready, _, _ = select.select([master], [], [], min(left, 0.5))
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    break
                if not chunk:
                    break
                out += chunk
            try:
                rc = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise TerminalTimeout(bytes(out)) from None
            err.seek(0)
            stderr = err.read().decode(errors="replace")
    finally:
        os.close(master)
    return rc, out.decode(errors="replace").replace("\r\n", "\n"), stderr
