"""``stdout``: Falco's text line per alert on standard output."""

from __future__ import annotations

import sys
from typing import ClassVar, TextIO

from lanner.alert import Alert
from lanner.outputs.base import DEFAULT_QUEUE_SIZE, Output, RetryPolicy
from lanner.outputs.lines import Format, render, sanitize


class StdoutOutput(Output):
    kind = "stdout"
    format: ClassVar[Format] = "text"

    def __init__(self, name: str | None = None, *, stream: TextIO | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, retry: RetryPolicy | None = None) -> None:
        super().__init__(name, queue_size=queue_size, retry=retry)
        self._stream = stream
        """None: whatever ``sys.stdout`` is at the time of writing."""

    def _send(self, alert: Alert) -> None:
        stream = self._stream or sys.stdout
        stream.write(sanitize(render(alert, self.format)) + "\n")
        stream.flush()
