"""The file output: appends, JSON lines or text, reopened for logrotate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lanner.alert import Alert
from lanner.outputs import FileOutput, OutputError
from lanner.outputs.lines import text_line

from .conftest import WAIT, make_alert, settled, wait_for


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text('{"earlier": true}\n')
    out = FileOutput(str(path), fsync=True)
    out.start()
    alerts = [make_alert(i) for i in range(3)]
    for a in alerts:
        out.emit(a)
    assert out.stop(WAIT)
    got = lines(path)
    assert got[0] == '{"earlier": true}'
    assert [json.loads(line) for line in got[1:]] == [a.to_json() for a in alerts]
    assert got[1] == alerts[0].to_json_line()
    assert out.stats().delivered == 3


def test_text_lines_are_falco_text_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    out = FileOutput(str(path), format="text")
    out.start()
    tricky = Alert(rule="r", priority="Error", message='cmd=echo "a\nb" \\ x\x01', output_fields={}, time_ns=10**18)
    out.emit(make_alert(1))
    out.emit(tricky)
    assert out.stop(WAIT)
    got = lines(path)
    assert got == [make_alert(1).output, text_line(tricky)]
    assert got[1].endswith(r'Error cmd=echo \"a\nb\" \\ x\u0001')


@pytest.mark.parametrize("signal_reopen", [True, False], ids=["reopen", "rename-detected"])
def test_logrotate_rename_then_new_file(tmp_path: Path, signal_reopen: bool) -> None:
    path = tmp_path / "alerts.json"
    out = FileOutput(str(path))
    out.start()
    try:
        for i in range(3):
            out.emit(make_alert(i))
        settled(out)
        rotated = tmp_path / "alerts.json.1"
        path.rename(rotated)  # what logrotate does, then it sends SIGHUP
        if signal_reopen:
            out.reopen()
        for i in range(3, 5):
            out.emit(make_alert(i))
        wait_for(lambda: len(lines(path)) == 2, "the new file")
        assert [json.loads(x)["output_fields"]["seq"] for x in lines(rotated)] == [0, 1, 2]
        assert [json.loads(x)["output_fields"]["seq"] for x in lines(path)] == [3, 4]
    finally:
        assert out.stop(WAIT)


def test_unwritable_path_fails_at_start(tmp_path: Path) -> None:
    out = FileOutput(str(tmp_path / "no" / "such" / "dir" / "alerts.json"))
    with pytest.raises(OutputError, match="cannot open"):
        out.start()


def test_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    out = FileOutput(str(path))
    out.start()
    out.stop(WAIT)
    assert path.exists()
    assert os.stat(path).st_mode & 0o007 == 0
