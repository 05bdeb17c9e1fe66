"""``json``: Falco's json_output objects on standard output, one per line."""

from __future__ import annotations

from typing import ClassVar

from lanner.outputs.lines import Format
from lanner.outputs.stdout import StdoutOutput


class JsonOutput(StdoutOutput):
    kind = "json"
    format: ClassVar[Format] = "json"
