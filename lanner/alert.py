"""The Alert record: what the engine produces and every output consumes."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any


def hostname() -> str:
    """FALCO_HOSTNAME when set (as Falco does), else the machine's name."""
    return os.environ.get("FALCO_HOSTNAME") or socket.gethostname()


def rfc3339_nano(ts_ns: int) -> str:
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


def local_clock(ts_ns: int) -> str:
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{ns:09d}"


@dataclass(slots=True)
class Alert:
    rule: str
    priority: str
    """As Falco prints it: Warning, Informational..."""
    message: str
    """The rendered output template, without time and priority."""
    output_fields: dict[str, Any]
    time_ns: int
    tags: tuple[str, ...] = ()
    source: str = "syscall"
    hostname: str = ""
    lanner: dict[str, Any] = field(default_factory=dict)
    """Lanner's own keys (action, mode, result, latency), under "lanner" in JSON."""

    @property
    def output(self) -> str:
        """Falco's output line: ``HH:MM:SS.nnnnnnnnn: Priority message``."""
        return f"{local_clock(self.time_ns)}: {self.priority} {self.message}"

    def to_json(self) -> dict[str, Any]:
        """Falco's json_output object (keys sorted, as nlohmann::json writes them) plus "lanner"."""
        fields = dict(self.output_fields)
        fields["evt.time"] = self.time_ns
        obj: dict[str, Any] = {
            "hostname": self.hostname,
            "output": self.output,
            "output_fields": dict(sorted(fields.items())),
            "priority": self.priority,
            "rule": self.rule,
            "source": self.source,
            "tags": sorted(self.tags),
            "time": rfc3339_nano(self.time_ns),
        }
        if self.lanner:
            obj["lanner"] = self.lanner
        return obj

    def to_json_line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)
