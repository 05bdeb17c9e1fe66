"""Alert outputs: stdout, json, file, syslog, http, program — each with its own bounded queue and worker.

    outputs = build_outputs([{"kind": "stdout"}, {"kind": "http", "url": "http://falcosidekick:2801/"}])
    outputs.start()
    outputs.emit(alert)          # never blocks; refused alerts are counted per output
    outputs.reopen()             # on SIGHUP
    outputs.stop(timeout=5)      # flush, then close
"""

from lanner.outputs.base import (
    DEFAULT_QUEUE_SIZE,
    DEFAULT_STOP_TIMEOUT,
    Output,
    OutputError,
    OutputStats,
    PermanentError,
    RetryLater,
    RetryPolicy,
)
from lanner.outputs.config import KINDS, OutputConfigError, build_output, build_outputs
from lanner.outputs.fanout import OutputSet
from lanner.outputs.file import FileOutput
from lanner.outputs.http import HttpOutput
from lanner.outputs.json import JsonOutput
from lanner.outputs.program import ProgramOutput
from lanner.outputs.stdout import StdoutOutput
from lanner.outputs.syslog import SyslogOutput

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_STOP_TIMEOUT",
    "KINDS",
    "FileOutput",
    "HttpOutput",
    "JsonOutput",
    "Output",
    "OutputConfigError",
    "OutputError",
    "OutputSet",
    "OutputStats",
    "PermanentError",
    "ProgramOutput",
    "RetryLater",
    "RetryPolicy",
    "StdoutOutput",
    "SyslogOutput",
    "build_output",
    "build_outputs",
]
