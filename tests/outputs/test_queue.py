"""Queues and workers: a blocked output drops (counted) without holding back the others; stop flushes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from lanner.outputs import FileOutput, HttpOutput, OutputSet, build_outputs

from .conftest import WAIT, make_alert, settled, wait_for


def test_blocked_output_drops_counted_while_others_receive(tmp_path: Path) -> None:
    # A receiver that accepts connections in the kernel and never answers: the http worker hangs.
    hung = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        blocked = HttpOutput(f"http://127.0.0.1:{hung.getsockname()[1]}/", timeout=WAIT, queue_size=3)
        path = tmp_path / "alerts.json"
        healthy = FileOutput(str(path))
        outputs = OutputSet([blocked, healthy])
        outputs.start()

        assert outputs.emit(make_alert(0)) == 2
        wait_for(lambda: blocked.stats().in_flight == 1, "the http worker to take the first alert")
        for i in range(1, 4):
            assert outputs.emit(make_alert(i)) == 2  # fills the http queue (size 3)
        assert not blocked.emit(make_alert(4))
        for i in range(5, 10):
            assert outputs.emit(make_alert(i)) == 1  # only the file takes them

        s = blocked.stats()
        assert (s.accepted, s.dropped_queue_full, s.queue_depth, s.in_flight, s.delivered) == (4, 6, 3, 1, 0)
        wait_for(lambda: healthy.stats().delivered == 9, "the file output")
        assert [json.loads(x)["output_fields"]["seq"] for x in path.read_text().splitlines()] == [
            0, 1, 2, 3, 5, 6, 7, 8, 9]

        assert not outputs.stop(0.2)  # the hung output cannot flush: what it holds is counted failed
        s = blocked.stats()
        assert (s.accepted, s.delivered, s.failed, s.queue_depth, s.in_flight) == (4, 0, 4, 0, 0)
        assert "stop timeout" in (s.last_error or "")
        assert healthy.stats().failed == 0
        total = outputs.totals()
        assert (total.accepted, total.delivered, total.failed, total.dropped_queue_full) == (13, 9, 4, 6)
    finally:
        hung.close()


def test_stop_delivers_everything_accepted(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    out = FileOutput(str(path), queue_size=2000)
    for i in range(1000):
        assert out.emit(make_alert(i))
    out.start()
    for i in range(1000, 2000):
        assert out.emit(make_alert(i))
    assert out.stop(WAIT)
    assert [json.loads(x)["output_fields"]["seq"] for x in path.read_text().splitlines()] == list(range(2000))
    s = out.stats()
    assert (s.accepted, s.delivered, s.failed, s.queue_depth) == (2000, 2000, 0, 0)


def test_emit_after_stop_is_refused_and_counted(tmp_path: Path) -> None:
    out = FileOutput(str(tmp_path / "a.json"))
    out.start()
    assert out.stop(WAIT)
    assert not out.emit(make_alert(1))
    s = out.stats()
    assert (s.accepted, s.dropped_stopped, s.dropped_queue_full) == (0, 1, 0)


def test_stop_without_start_counts_the_queue_as_failed(tmp_path: Path) -> None:
    out = FileOutput(str(tmp_path / "a.json"))
    out.emit(make_alert(1))
    assert not out.stop(0.1)
    s = out.stats()
    assert (s.accepted, s.failed, s.queue_depth) == (1, 1, 0)


def test_output_set_fans_out_and_reopens(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.log"
    outputs = build_outputs([{"kind": "file", "name": "a", "path": str(a)},
                             {"kind": "file", "name": "b", "path": str(b), "format": "text"}])
    outputs.start()
    assert outputs.emit(make_alert(1)) == 2
    for o in outputs:
        settled(o)
    a.rename(tmp_path / "a.json.1")
    b.rename(tmp_path / "b.log.1")
    outputs.reopen()
    assert outputs.emit(make_alert(2)) == 2
    assert outputs.stop(WAIT)
    assert json.loads(a.read_text())["output_fields"]["seq"] == 2
    assert b.read_text() == make_alert(2).output + "\n"
    assert set(outputs.stats()) == {"a", "b"}
    assert outputs.totals().delivered == 4
    assert outputs["b"].stats().to_json()["delivered"] == 2
