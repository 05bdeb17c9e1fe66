"""``file``: alerts appended to a file, one line each (JSON lines or Falco's text line).

The file is reopened before the next write after ``reopen()`` (SIGHUP), and also whenever the path
no longer names the open file (renamed or deleted by logrotate), so rotation works with or without
a signal."""

from __future__ import annotations

import os

from lanner.alert import Alert
from lanner.outputs.base import DEFAULT_QUEUE_SIZE, Output, OutputError, RetryPolicy
from lanner.outputs.lines import Format, encode, render

FILE_MODE = 0o640


class FileOutput(Output):
    kind = "file"

    def __init__(self, path: str, *, format: Format = "json", fsync: bool = False, name: str | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, retry: RetryPolicy | None = None) -> None:
        super().__init__(name, queue_size=queue_size, retry=retry)
        self.path = path
        self.format = format
        self.fsync = fsync
        self._fd: int | None = None

    def _open(self) -> None:
        try:
            self._fd = self._open_file()
        except OSError as e:
            raise OutputError(f"output {self.name!r}: cannot open {self.path}: {e.strerror}") from None

    def _open_file(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)

    def _send(self, alert: Alert) -> None:
        data = encode(render(alert, self.format) + "\n")
        if self._fd is not None and self._moved(self._fd):
            self._close()
        if self._fd is None:
            self._fd = self._open_file()
        # O_APPEND and one write per line: lines from several writers never interleave.
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        if self.fsync:
            os.fsync(self._fd)

    def _moved(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
