"""The stdout and json outputs."""

from __future__ import annotations

import io
import json

import pytest

from lanner.alert import Alert
from lanner.outputs import JsonOutput, StdoutOutput, build_outputs

from .conftest import WAIT, make_alert


def test_stdout_prints_falco_text_lines(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = build_outputs([{"kind": "stdout"}])
    outputs.start()
    for i in range(3):
        outputs.emit(make_alert(i))
    assert outputs.stop(WAIT)
    assert capsys.readouterr().out.splitlines() == [make_alert(i).output for i in range(3)]


def test_json_prints_falco_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = build_outputs([{"kind": "json"}])
    outputs.start()
    alerts = [make_alert(i) for i in range(3)]
    for a in alerts:
        outputs.emit(a)
    assert outputs.stop(WAIT)
    got = capsys.readouterr().out.splitlines()
    assert got == [a.to_json_line() for a in alerts]
    assert json.loads(got[0])["output_fields"]["seq"] == 0


def test_newlines_and_bad_utf8_never_break_a_line() -> None:
    stream = io.StringIO()
    out = StdoutOutput(stream=stream)
    out.start()
    out.emit(Alert(rule="r", priority="Notice", message="a\nb \udcff", output_fields={}, time_ns=0))
    assert out.stop(WAIT)
    line, = stream.getvalue().splitlines()
    assert line.endswith("Notice a\\nb \ufffd")


def test_json_bad_utf8_is_replaced() -> None:
    stream = io.StringIO()
    out = JsonOutput(stream=stream)
    out.start()
    out.emit(Alert(rule="r", priority="Notice", message="m", output_fields={"fd.name": "/tmp/\udcff"}, time_ns=0))
    assert out.stop(WAIT)
    assert json.loads(stream.getvalue())["output_fields"]["fd.name"] == "/tmp/\ufffd"
