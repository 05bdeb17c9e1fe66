"""The engine: event-type indexing, rule_matching, priorities, alert output shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lanner.engine import Engine
from lanner.events import Event, FdInfo, Process
from lanner.rules import load

RULES = """
- macro: open_write
  condition: evt.type in (open, openat, openat2) and evt.is_open_write=true and fd.typechar='f'
- rule: Write below etc
  desc: a write below /etc
  condition: open_write and fd.name startswith /etc/
  output: "File below /etc opened for writing (user=%user.name command=%proc.cmdline file=%fd.name)"
  priority: ERROR
  tags: [filesystem, T1]
- rule: Any write
  desc: any write
  condition: open_write
  output: "write %fd.name by %proc.aname[1]"
  priority: NOTICE
- rule: Exec shell
  desc: shell
  condition: evt.type = execve and proc.name in (bash, sh)
  output: "shell %proc.name parent=%proc.pname gp=%proc.aname[2]"
  priority: WARNING
- rule: Not a type rule
  desc: no evt.type
  condition: proc.name = never-seen
  output: x
  priority: DEBUG
  warn_evttypes: false
"""


def _open_write(path: str) -> Event:
    parent = Process(pid=10, name="bash", exe="bash", exepath="/usr/bin/bash")
    proc = Process(pid=11, name="tee", exe="tee", exepath="/usr/bin/tee", args=[path], uid=0, parent=parent)
    return Event(type="openat", ts=1_735_726_868_123_456_789, tid=11, res=3, proc=proc,
                 args={"fd": 3, "dirfd": -100, "name": path, "flags": 0o1 | 0o100, "mode": 0o644},
                 fd=FdInfo(num=3, type="file", name=path, nameraw=path))


def test_rules_are_indexed_by_event_type() -> None:
    rs = load(RULES)
    assert rs.errors == []
    assert rs.rules["Write below etc"].evttypes == frozenset({"open", "openat", "openat2"})
    assert rs.rules["Exec shell"].evttypes == frozenset({"execve"})
    assert rs.rules["Not a type rule"].evttypes is None


def test_first_match_wins_in_load_order() -> None:
    engine = Engine(load(RULES))
    alerts = engine.process(_open_write("/etc/shadow"))
    assert [a.rule for a in alerts] == ["Write below etc"]
    assert [a.rule for a in engine.process(_open_write("/tmp/x"))] == ["Any write"]


def test_rule_matching_all() -> None:
    engine = Engine(load(RULES), rule_matching="all")
    assert [a.rule for a in engine.process(_open_write("/etc/shadow"))] == ["Write below etc", "Any write"]


def test_min_priority_filters_rules() -> None:
    engine = Engine(load(RULES), rule_matching="all", min_priority="warning")
    assert [a.rule for a in engine.process(_open_write("/etc/shadow"))] == ["Write below etc"]
    assert engine.process(_open_write("/tmp/x")) == []


def test_read_only_open_does_not_match() -> None:
    evt = _open_write("/etc/shadow")
    evt.args["flags"] = 0
    assert Engine(load(RULES), rule_matching="all").process(evt) == []


def test_alert_text_and_json_shape() -> None:
    alert = Engine(load(RULES)).process(_open_write("/etc/shadow"))[0]
    assert alert.priority == "Error"
    assert "user=root command=tee /etc/shadow file=/etc/shadow" in alert.message
    assert alert.message.endswith("container_id=host container_name=host container_image_repository= "
                                  "container_image_tag= k8s_pod_name=<NA> k8s_ns_name=<NA>")
    obj = alert.to_json()
    assert list(obj) == ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"]
    assert obj["time"] == "2025-01-01T10:21:08.123456789Z"
    assert obj["tags"] == ["T1", "filesystem"]
    assert obj["source"] == "syscall"
    fields = obj["output_fields"]
    assert fields["evt.time"] == 1_735_726_868_123_456_789
    assert fields["fd.name"] == "/etc/shadow" and fields["k8s.pod.name"] is None
    assert list(fields) == sorted(fields)


def test_missing_fields_render_na() -> None:
    engine = Engine(load(RULES))
    evt = Event(type="execve", ts=1, res=0, proc=Process(pid=5, name="sh", parent=None))
    alert = engine.process(evt)[0]
    assert "parent=<NA> gp=<NA>" in alert.message
    assert alert.output_fields["proc.pname"] is None


def test_replay_command_json(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"type": "openat", "ts": 5, "res": 3,
                                  "args": {"fd": 3, "dirfd": -100, "name": "/etc/hosts", "flags": "O_WRONLY"},
                                  "proc": {"pid": 3, "name": "vi", "args": ["/etc/hosts"]},
                                  "fd": {"num": 3, "type": "file", "name": "/etc/hosts"}}) + "\n")
    res = subprocess.run([sys.executable, "-m", "lanner", "replay", str(events), "-r", str(rules), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["rule"] for x in lines] == ["Write below etc"]
    assert "command=vi /etc/hosts" in lines[0]["output"]


def test_replay_bad_event_file(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    events = tmp_path / "e.jsonl"
    events.write_text('{"type": "openat"}\n{"type": 5}\n')
    res = subprocess.run([sys.executable, "-m", "lanner", "replay", str(events), "-r", str(rules)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert f"{events}:2" in res.stderr and "Traceback" not in res.stderr


COMPARE_RULES = """
- rule: Same name as parent
  desc: val() reads the right side from the event
  condition: evt.type = execve and proc.name = val(proc.pname)
  output: "%proc.name"
  priority: INFO
- rule: Spawned under sshd
  desc: proc.aname without an index is any ancestor from the parent up
  condition: evt.type = execve and proc.aname = sshd
  output: "%proc.aname"
  priority: INFO
- rule: Not under cron
  desc: on an ancestor field != is existential too (some ancestor differs)
  condition: evt.type = execve and proc.aname != cron
  output: x
  priority: INFO
"""


def _exec(name: str, *ancestors: str) -> Event:
    parent = None
    for anc in reversed(ancestors):
        parent = Process(pid=len(anc), name=anc, parent=parent)
    return Event(type="execve", ts=1, res=0, proc=Process(pid=99, name=name, parent=parent))


def test_val_and_ancestor_comparisons() -> None:
    engine = Engine(load(COMPARE_RULES), rule_matching="all")

    def rules(evt: Event) -> list[str]:
        return [a.rule for a in engine.process(evt)]

    assert rules(_exec("bash", "bash", "sshd")) == ["Same name as parent", "Spawned under sshd", "Not under cron"]
    assert rules(_exec("ls", "bash", "init")) == ["Not under cron"]
    assert rules(_exec("ls", "cron")) == []  # the only ancestor is cron: no ancestor differs
    assert rules(_exec("ls")) == []  # no ancestors: every ancestor comparison is false
    alert = Engine(load(COMPARE_RULES)).process(_exec("sh", "bash", "sshd"))[0]
    assert alert.rule == "Spawned under sshd" and alert.message.startswith("bash sshd ")


def test_rulesets_compile_independently() -> None:
    a, b = load(RULES), load(RULES)
    assert a.tests is not None and b.tests is not None and a.tests is not b.tests
