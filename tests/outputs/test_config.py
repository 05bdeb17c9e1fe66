"""build_outputs: every kind from its spec; every mistake named (output, key, problem); docs list every key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lanner.outputs import (
    KINDS,
    FileOutput,
    HttpOutput,
    JsonOutput,
    OutputConfigError,
    ProgramOutput,
    StdoutOutput,
    SyslogOutput,
    build_outputs,
)
from lanner.outputs.config import COMMON_KEYS, RETRY_KEYS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "outputs.md"


def test_every_kind_builds(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    outputs = build_outputs([
        {"kind": "stdout"},
        {"kind": "json", "queue_size": 10},
        {"kind": "file", "path": str(tmp_path / "a.json"), "format": "text", "fsync": True},
        {"kind": "syslog", "address": "tcp://logs.example:6514", "rfc": 3164, "facility": "local3",
         "framing": "newline", "app_name": "lanner-node", "timeout": 2},
        {"kind": "http", "name": "sidekick", "url": "https://sidekick:2801/", "headers": {"X-A": "b"},
         "ca_file": str(ca), "insecure": False, "timeout": 1.5, "max_retries": -1, "backoff_initial": 0.1,
         "backoff_max": 10},
        {"kind": "program", "command": "jq .", "keep_alive": False},
        {"kind": "stdout", "name": "off", "enabled": False},
    ])
    kinds = [type(o) for o in outputs]
    assert kinds == [StdoutOutput, JsonOutput, FileOutput, SyslogOutput, HttpOutput, ProgramOutput]
    assert [o.name for o in outputs] == ["stdout", "json", "file", "syslog", "sidekick", "program"]
    assert outputs["json"].queue_size == 10
    f = outputs["file"]
    assert isinstance(f, FileOutput) and (f.format, f.fsync) == ("text", True)
    s = outputs["syslog"]
    assert isinstance(s, SyslogOutput)
    assert (s.transport, s.host, s.port, s.rfc, s.facility, s.framing) == ("tcp", "logs.example", 6514, "3164", 19,
                                                                           "newline")
    h = outputs["sidekick"]
    assert isinstance(h, HttpOutput)
    assert h.headers["X-A"] == "b" and h.timeout == 1.5
    assert (h.retry.max_retries, h.retry.backoff_initial, h.retry.backoff_max) == (-1, 0.1, 10)
    p = outputs["program"]
    assert isinstance(p, ProgramOutput) and not p.keep_alive


BAD: list[tuple[Any, str]] = [
    ({"kind": "kafka"}, r"output #1: key 'kind': unknown kind 'kafka'; expected one of stdout, json, file"),
    ({"name": "x"}, r"output 'x' \(#1\): key 'kind': missing"),
    ("stdout", r"output #1: expected a mapping"),
    ({"kind": "file"}, r"output #1 \(file\): key 'path': missing \(required\)"),
    ({"kind": "file", "path": "/x", "pth": "/y"}, r"key 'pth': unknown key; did you mean 'path'\?"),
    ({"kind": "stdout", "colour": True}, r"key 'colour': unknown key; known keys: backoff_initial, "),
    ({"kind": "file", "path": "/x", "format": "xml"}, r"key 'format': expected one of text, json, got 'xml'"),
    ({"kind": "file", "path": "/x", "fsync": "yes"}, r"key 'fsync': expected true or false, got 'yes' \(str\)"),
    ({"kind": "json", "queue_size": 0}, r"key 'queue_size': expected an integer >= 1, got 0"),
    ({"kind": "json", "max_retries": -2}, r"key 'max_retries': expected an integer >= -1"),
    ({"kind": "json", "backoff_initial": 5, "backoff_max": 1}, r"key 'backoff_initial': must not be greater"),
    ({"kind": "http", "name": "sidekick", "url": "http://h/", "timeout": "abc"},
     r"output 'sidekick' \(#1, http\): key 'timeout': expected a positive number of seconds, got 'abc'"),
    ({"kind": "http", "url": "ftp://h/"}, r"key 'url': expected an http:// or https:// URL"),
    ({"kind": "http", "url": "https://h:99999/"}, r"key 'url': bad port"),
    ({"kind": "http", "url": "https://h/", "ca_file": "/no/such/ca.pem"}, r"key 'ca_file': no such file"),
    ({"kind": "http", "url": "http://h/", "insecure": True}, r"key 'insecure': only applies to an https:// url"),
    ({"kind": "http", "url": "https://h/", "headers": {"X": "a\nb"}}, r"key 'headers': header 'X'"),
    ({"kind": "http", "url": "https://h/", "headers": ["X: a"]}, r"key 'headers': expected a mapping"),
    ({"kind": "syslog", "facility": "local9"}, r"key 'facility': expected one of kern, user"),
    ({"kind": "syslog", "facility": 24}, r"key 'facility': expected one of .* 0..23, got 24"),
    ({"kind": "syslog", "address": "udp://:514"}, r"key 'address': no host"),
    ({"kind": "syslog", "address": "dev/log"}, r"key 'address': expected a path, unix:///path"),
    ({"kind": "syslog", "framing": "newline"}, r"key 'framing': only applies to a tcp:// address"),
    ({"kind": "syslog", "rfc": 5425}, r"key 'rfc': expected one of 5424, 3164, got 5425"),
    ({"kind": "program", "command": ""}, r"key 'command': expected a non-empty string"),
]


@pytest.mark.parametrize(("spec", "message"), BAD)
def test_bad_specs_are_named(spec: Any, message: str) -> None:
    with pytest.raises(OutputConfigError, match=message):
        build_outputs([spec])


def test_error_carries_output_and_key() -> None:
    with pytest.raises(OutputConfigError) as e:
        build_outputs([{"kind": "stdout"}, {"kind": "http", "name": "a", "url": "http://h/", "timeout": -1}])
    assert (e.value.label, e.value.key) == ("output 'a' (#2, http)", "timeout")


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(OutputConfigError, match=r"output 'stdout' \(#2\): key 'name': another output"):
        build_outputs([{"kind": "stdout"}, {"kind": "stdout"}])
    assert len(build_outputs([{"kind": "stdout"}, {"kind": "stdout", "name": "second"}])) == 2


def test_not_a_list() -> None:
    with pytest.raises(OutputConfigError, match="expected a list"):
        build_outputs({"kind": "stdout"})  # type: ignore[arg-type]


def test_docs_describe_every_key() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    keys = set(COMMON_KEYS) | set(RETRY_KEYS) | {k for kind in KINDS.values() for k in kind.keys}
    assert keys - documented == set()
    for kind in KINDS:
        assert f"`kind: {kind}`" in text
