"""How an alert becomes one line of text: Falco's text line or its json_output object."""

from __future__ import annotations

import json
import re
from typing import Literal

from lanner.alert import Alert

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_line(alert: Alert) -> str:
    """Falco's text line as stdout prints it: control characters, quotes and backslashes
    JSON-escaped, so one alert is always one line."""
    return json.dumps(alert.output, ensure_ascii=False)[1:-1]


def json_line(alert: Alert) -> str:
    return alert.to_json_line()


def render(alert: Alert, fmt: Format) -> str:
    """The alert as one line, without the newline."""
    return json_line(alert) if fmt == "json" else text_line(alert)


def sanitize(line: str) -> str:
    """A lone surrogate (undecodable input) becomes U+FFFD, as Falco replaces invalid UTF-8."""
    return _SURROGATE.sub("\ufffd", line)


def encode(line: str) -> bytes:
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        return sanitize(line).encode("utf-8")
