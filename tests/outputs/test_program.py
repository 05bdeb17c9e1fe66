"""The program output: alert lines into a shell command's stdin."""

from __future__ import annotations

import json
import os
import shlex
import signal
from pathlib import Path

from lanner.outputs import ProgramOutput, RetryPolicy

from .conftest import WAIT, make_alert, settled, wait_for

FAST = RetryPolicy(max_retries=-1, backoff_initial=0.01, backoff_max=0.1)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def seqs(path: Path) -> list[int]:
    return [json.loads(x)["output_fields"]["seq"] for x in lines(path)]


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie not yet reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_cat_receives_every_line(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    out = ProgramOutput(f"cat >> {shlex.quote(str(path))}")
    out.start()
    alerts = [make_alert(i) for i in range(50)]
    for a in alerts:
        out.emit(a)
    assert out.stop(WAIT)
    assert lines(path) == [a.to_json_line() for a in alerts]
    assert out.starts == 1


def test_a_dead_program_is_started_again(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    out = ProgramOutput(f"cat >> {shlex.quote(str(path))}", retry=FAST)
    out.start()
    try:
        for i in range(5):
            out.emit(make_alert(i))
        wait_for(lambda: len(lines(path)) == 5, "the first lines")
        pid = out.pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: gone(pid), "the program to die")
        for i in range(5, 10):
            out.emit(make_alert(i))
        wait_for(lambda: len(lines(path)) == 10, "lines after the restart")
        assert seqs(path) == list(range(10))
        assert out.starts == 2
        assert out.pid not in (None, pid)
        s = settled(out)
        assert (s.delivered, s.failed) == (10, 0)
    finally:
        assert out.stop(WAIT)


def test_text_format(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    out = ProgramOutput(f"cat >> {shlex.quote(str(path))}", format="text")
    out.start()
    out.emit(make_alert(1))
    assert out.stop(WAIT)
    assert lines(path) == [make_alert(1).output]


def test_one_program_per_alert_without_keep_alive(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    out = ProgramOutput(f"cat >> {shlex.quote(str(path))}", keep_alive=False)
    out.start()
    for i in range(3):
        out.emit(make_alert(i))
    assert out.stop(WAIT)
    assert seqs(path) == [0, 1, 2]
    assert out.starts == 3


def test_a_failing_one_shot_program_is_counted_not_rerun(tmp_path: Path) -> None:
    path = tmp_path / "runs"
    out = ProgramOutput(f"cat >/dev/null; echo run >> {shlex.quote(str(path))}; exit 3", keep_alive=False,
                        retry=FAST)
    out.start()
    out.emit(make_alert(1))
    s = settled(out)
    assert out.stop(WAIT)
    assert (s.delivered, s.failed, s.retries) == (0, 1, 0)
    assert "status 3" in (s.last_error or "")
    assert lines(path) == ["run"]
