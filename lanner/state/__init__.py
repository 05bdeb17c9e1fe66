"""Runtime state: processes, fds and user names kept from the kernel sensor's records.

``StateTracker`` is the public object: ``seed()`` reads /proc once at start, ``handle(record)``
applies each kernel record and returns the Falco exit ``Event`` to evaluate.
"""

from __future__ import annotations

from .fds import FdTable, FdTables
from .processes import ProcessTable, read_proc
from .tracker import StateTracker
from .users import NameDb, NameSource, UserDirectory

__all__ = [
    "FdTable",
    "FdTables",
    "NameDb",
    "NameSource",
    "ProcessTable",
    "StateTracker",
    "UserDirectory",
    "read_proc",
]
