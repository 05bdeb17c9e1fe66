"""`lanner learn` without the kernel: the allow-list writer (shape, sorting, quoting, empty case,
names), that what it writes loads, validates (as `lanner rules validate` does) and matches the right
exec events, and the command's errors and flow with a stand-in sensor."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

import lanner.doctor
import lanner.learn
import lanner.sensor.source
from lanner.cli import cli
from lanner.engine import Engine
from lanner.events import Container, Event, Process
from lanner.learn import Learner, Selector, allowlist_yaml, list_item, make_selector, quote_value, slugify
from lanner.rules import Ruleset, load, parse_condition
from lanner.rules.ast import Compare, Literal
from lanner.rules.policy import ExecAllow, check
from lanner.sensor.loader import SensorError
from lanner.sensor.source import SourceCounters

START = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
END = datetime(2026, 11, 27, 9, 10, 0, tzinfo=UTC)
CID = "a" * 64
OTHER_CID = "b" * 64

EXPECTED = """\
# Learned by `lanner learn` on node-1 from 2026-11-27T09:00:00Z to 2026-11-27T09:10:00Z (7 execs seen, 2 programs).
# Review before enforcing: every program a workload may run must be listed; change mode to
# enforce once the list is complete.
- list: lanner_allowed_registry_example_com_5000_shop_web
  items: [/bin/sh, /usr/bin/app]
- rule: Unapproved program in image registry.example.com:5000/shop/web
  desc: Only the programs learned for image registry.example.com:5000/shop/web may run (lanner learn, 2026-11-27).
  condition: evt.type in (execve, execveat) and container.image.repository = "registry.example.com:5000/shop/web" \
and not proc.exepath in (lanner_allowed_registry_example_com_5000_shop_web)
  output: Unapproved program started in image registry.example.com:5000/shop/web (proc.exepath=%proc.exepath \
proc.cmdline=%proc.cmdline container.id=%container.id container.image.repository=%container.image.repository \
k8s.ns.name=%k8s.ns.name k8s.pod.name=%k8s.pod.name)
  priority: WARNING
  action: block
  mode: monitor
  tags: [lanner, allowlist]
"""

AWKWARD_PATHS = [
    "/opt/my app/bin/run",  # a space: Falco would quote it itself
    "/opt/a,b/x",  # a comma would split the list
    "/opt/p(1)/x",  # parentheses would end it
    "/opt/k=v/x",
    '/opt/say "hi"/x',
    "/opt/it's/x",
    "/opt/back\\slash\\",  # a trailing backslash would swallow a closing quote
    "/opt/x: y #z/x",  # YAML-significant in a flow sequence
    "/opt/ünïcode/x",
    "-/lead",
    "*star",
    "[bracket]",
]


def _yaml(observed: dict[str, int], selector: Selector, name: str | None = None) -> str:
    return allowlist_yaml(observed, selector, hostname="node-1", start=START, end=END, name=name)


def _validated(text: str) -> Ruleset:
    """Loaded and checked as `lanner rules validate` does (block rules the kernel cannot enforce are errors)."""
    rs = load(text)
    check(rs)
    assert rs.errors == [], [m.message for m in rs.errors]
    unexpected = [m for m in rs.warnings if not (m.code == "LOAD_UNKNOWN_KEY" and ("action" in m.message
                                                                                  or "mode" in m.message))]
    assert unexpected == [], [(m.code, m.message) for m in unexpected]
    return rs


def _exec(path: str, container: Container | None = None, res: int = 0) -> Event:
    parent = Process(pid=10, name="sh", exe="sh", exepath="/bin/sh")
    proc = Process(pid=11, name=os.path.basename(path)[:15], exe=path, exepath=path, args=["--x"], parent=parent,
                   container_id=container.id if container is not None else "")
    return Event(type="execve", ts=1_764_234_000_000_000_000, tid=11, res=res, proc=proc, container=container,
                 args={"res": res, "exe": path})


def _pod(image: str = "registry.example.com:5000/shop/web", namespace: str = "shop",
         labels: dict[str, str] | None = None, cid: str = CID) -> Container:
    return Container(id=cid, name="main", image=f"{image}:1.0", image_repository=image, image_tag="1.0",
                     pod_name="web-0", pod_namespace=namespace, pod_uid="u-1", pod_labels=dict(labels or {}))


def _rule_engine(text: str) -> Engine:
    return Engine(_validated(text))


# --- the writer ----------------------------------------------------------------------------------


def test_shape_is_exact() -> None:
    text = _yaml({"/usr/bin/app": 4, "/bin/sh": 3}, Selector(image="registry.example.com:5000/shop/web"))
    assert text == EXPECTED
    _validated(text)


def test_items_are_sorted_and_each_path_is_allowed_exactly() -> None:
    paths = ["/usr/bin/zz", "/bin/sh", "/usr/local/bin/aa", *AWKWARD_PATHS]
    text = _yaml(dict.fromkeys(paths, 1), Selector(image="web"))
    doc = yaml.safe_load(text)
    items = doc[0]["items"]
    assert len(items) == len(paths)
    # sorted by path; the items that need it are Falco-quoted for the condition
    assert items == [list_item(p) for p in sorted(paths)]
    rs = _validated(text)
    [policy] = check(rs)
    assert policy.target == ExecAllow(frozenset(paths))
    engine = Engine(rs)
    pod = _pod(image="web")
    for p in paths:
        assert engine.match(_exec(p, pod)) == [], p
        assert engine.match(_exec(p + "-not-listed", pod)), p


def test_plain_paths_are_not_quoted() -> None:
    text = _yaml({"/usr/bin/python3.11": 1, "/usr/lib/jvm/java-17/bin/java": 1, "/bin/[": 1}, Selector(image="a"))
    line = next(ln for ln in text.splitlines() if ln.startswith("  items:"))
    assert line == '  items: ["/bin/[", /usr/bin/python3.11, /usr/lib/jvm/java-17/bin/java]'


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_quote_value_reads_back(value: str) -> None:
    cond = parse_condition(f"k8s.ns.name = {quote_value(value)}")
    assert isinstance(cond, Compare) and isinstance(cond.rhs, Literal)
    assert cond.rhs.value == value


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1,
               max_size=30))
def test_any_path_round_trips_through_yaml_and_falco(path: str) -> None:
    rs = load(_yaml({path: 1}, Selector(image="web")))
    assert rs.errors == []
    [policy] = check(rs)
    assert policy.target == ExecAllow(frozenset({path}))


def test_rule_matches_unlisted_program_of_the_image_only() -> None:
    sel = Selector(image="registry.example.com:5000/shop/web")
    engine = _rule_engine(_yaml({"/bin/sh": 1, "/usr/bin/app": 1}, sel))
    pod = _pod()
    [rule] = engine.match(_exec("/usr/bin/curl", pod))
    assert rule.name == "Unapproved program in image registry.example.com:5000/shop/web"
    assert rule.action == "block" and rule.mode == "monitor"
    alert = engine.process(_exec("/usr/bin/curl", pod))[0]
    assert alert.message.startswith("Unapproved program started in image registry.example.com:5000/shop/web "
                                    "(proc.exepath=/usr/bin/curl proc.cmdline=curl --x container.id=aaaaaaaaaaaa")
    assert engine.match(_exec("/usr/bin/app", pod)) == []
    assert engine.match(_exec("/bin/sh", pod)) == []
    assert engine.match(_exec("/usr/bin/curl", _pod(image="other/image"))) == []
    assert engine.match(_exec("/usr/bin/curl")) == []  # the host


def test_namespace_and_labels_combine_with_and() -> None:
    labels = (("app.kubernetes.io/name", 'my "web" app'), ("tier", "front end"))
    sel = Selector(namespace="shop", labels=labels)
    assert sel.clauses() == ['k8s.ns.name = "shop"',
                             'k8s.pod.label[app.kubernetes.io/name] = "my \\"web\\" app"',
                             'k8s.pod.label[tier] = "front end"']
    engine = _rule_engine(_yaml({"/bin/sh": 1}, sel))
    right = {"app.kubernetes.io/name": 'my "web" app', "tier": "front end", "extra": "x"}
    assert engine.match(_exec("/bin/nc", _pod(labels=right)))
    assert engine.match(_exec("/bin/sh", _pod(labels=right))) == []
    assert engine.match(_exec("/bin/nc", _pod(labels={**right, "tier": "front"}))) == []
    assert engine.match(_exec("/bin/nc", _pod(labels={"app.kubernetes.io/name": 'my "web" app'}))) == []
    assert engine.match(_exec("/bin/nc", _pod(labels=right, namespace="dev"))) == []


def test_host_rule_alerts_on_host_processes_only() -> None:
    text = _yaml({"/usr/bin/ls": 2}, Selector(host=True))
    assert "  condition: evt.type in (execve, execveat) and container.id = host and " \
           "not proc.exepath in (lanner_allowed_host)\n" in text
    # a host-wide allow-list is refused for enforcement (rules validate), so it is an alert rule
    assert "  action: alert\n" in text and "mode:" not in text and "is not\n# enforced" in text
    engine = _rule_engine(text)
    assert engine.match(_exec("/usr/bin/nc"))
    assert engine.match(_exec("/usr/bin/ls")) == []
    assert engine.match(_exec("/usr/bin/nc", _pod())) == []


def test_empty_case_writes_a_disabled_rule_with_an_empty_list() -> None:
    text = _yaml({}, Selector(image="web"))
    assert "(0 execs seen, 0 programs)." in text
    assert "# Nothing was seen: no program of image web started while learning" in text
    assert "  items: []\n" in text and "  enabled: false\n" in text
    rs = _validated(text)
    assert not rs.rules["Unapproved program in image web"].enabled


def test_slugs_and_names() -> None:
    assert Selector(image="docker.io/library/nginx").slug() == "docker_io_library_nginx"
    assert Selector(namespace="kube-system").slug() == "ns_kube_system"
    assert Selector(image="Web", namespace="shop", labels=(("app", "x y"),)).slug() == "web_ns_shop_app_x_y"
    assert Selector(host=True).slug() == "host"
    assert Selector(image="a", namespace="b", labels=(("k", "v"),)).human() == "image a, namespace b, pods labelled k=v"
    assert slugify("  Payments API (prod)!") == "payments_api_prod"
    text = _yaml({"/bin/sh": 1}, Selector(image="web"), name="Payments API (prod)")
    assert "- list: lanner_allowed_payments_api_prod\n" in text
    assert "- rule: Unapproved program in Payments API (prod)\n" in text
    assert "Unapproved program started in Payments API (prod) (proc.exepath" in text
    # the scope stays the selector's
    assert 'container.image.repository = "web"' in text
    _validated(text)


def test_odd_names_still_load() -> None:
    for name in ("50% of: web #1", "x'y\"z", "line\nbreak"):
        rs = _validated(_yaml({"/bin/sh": 1}, Selector(image="web"), name=name))
        assert len(rs.rules) == 1


def test_selector_checks() -> None:
    assert make_selector("web", None, ("app=web,tier==front", "z="), False).labels == (
        ("app", "web"), ("tier", "front"), ("z", ""))
    for args, message in [
        ((None, None, (), False), "choose what to learn"),
        (("web", None, (), True), "cannot be combined"),
        (("nginx:1.25", None, (), False), "use --image nginx"),
        (("nginx@sha256:" + "0" * 64, None, (), False), "use --image nginx"),
        (("", None, (), False), "not an image repository"),
        ((None, "Not_A_Namespace", (), False), "not a Kubernetes namespace"),
        ((None, None, ("app",), False), "expected key=value"),
        ((None, None, ("app!=web",), False), "expected key=value"),
        ((None, None, ("=web",), False), "not a Kubernetes label key"),
        ((None, None, ("a b=web",), False), "not a Kubernetes label key"),
        ((None, None, ("app=a", "app=b"), False), "given twice"),
    ]:
        with pytest.raises(lanner.learn.LearnError, match=message):
            make_selector(*args)


def test_learner_counts_successful_execs_of_the_workload() -> None:
    learner = Learner(Selector(image="registry.example.com:5000/shop/web"))
    pod = _pod()
    assert learner.add(_exec("/bin/sh", pod)) == "/bin/sh"
    assert learner.add(_exec("/bin/sh", pod)) is None  # seen before
    assert learner.add(_exec("/bin/ls", pod, res=-2)) is None  # failed exec
    assert learner.add(_exec("/bin/ls", _pod(image="other"))) is None
    assert learner.add(_exec("/bin/ls")) is None  # host
    assert learner.add(_exec("/bin/ls", Container(id=CID))) is None  # metadata without an image
    nometa = _exec("/bin/ls")
    assert nometa.proc is not None
    nometa.proc.container_id = OTHER_CID
    assert learner.add(nometa) is None
    other = Event(type="openat", res=3, proc=Process(pid=1, exepath="/bin/x", container_id=CID), container=pod)
    assert learner.add(other) is None
    assert learner.counts == {"/bin/sh": 2} and learner.execs == 2 and learner.without_metadata == 1


# --- the command ---------------------------------------------------------------------------------


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, ["learn", *args])


def _one_line_error(res: Result, fragment: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lanner learn: ") and fragment in lines[0], res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["--duration", "5"], "choose what to learn"),
    (["--host"], "--duration S is required"),
    (["--duration", "0", "--host"], "above 0"),
    (["--duration", "-3", "--host"], "above 0"),
    (["--duration", "nan", "--host"], "above 0"),
    (["--duration", "soon", "--host"], "'soon' is not a valid float"),
    (["--duration", "5", "--selector", "app"], "expected key=value"),
    (["--duration", "5", "--selector", "app=web,oops"], "expected key=value"),
    (["--duration", "5", "--host", "--namespace", "shop"], "cannot be combined"),
    (["--duration", "5", "--image", "nginx:latest"], "use --image nginx"),
    (["--duration", "5", "--host", "--name", "!!!"], "--name"),
    (["--duration", "5", "--host", "-o", "/nonexistent-dir/x.yaml"], "does not exist"),
    (["--duration", "5", "--host", "--bogus"], "No such option"),
])
def test_bad_arguments(args: list[str], fragment: str) -> None:
    _one_line_error(_invoke(args), fragment)


def test_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    _one_line_error(_invoke(["--duration", "5", "--host"]), "not root")


def test_sensor_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **kw: Any) -> None:
        raise SensorError("BPF objects not built (build/bpf/sensor.bpf.o missing): run `make setup`")

    monkeypatch.setattr(lanner.doctor, "require_sensor", lambda: None)
    monkeypatch.setattr(lanner.sensor.source, "LiveSource", broken)
    _one_line_error(_invoke(["--duration", "5", "--host"]), "BPF objects not built")


def test_container_selector_without_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lanner.doctor, "require_sensor", lambda: None)
    _one_line_error(_invoke(["--duration", "5", "--image", "web", "--cri-socket", str(tmp_path / "none.sock")]),
                    "no such socket")


class FakeSource:
    """Stands in for LiveSource: hands out the given batches, one per poll."""

    def __init__(self, batches: list[list[Event]], interrupt: bool = False) -> None:
        self.batches = batches
        self.interrupt = interrupt

    def poll(self, timeout_ms: int = 2) -> list[Event]:
        if self.batches:
            return self.batches.pop(0)
        if self.interrupt:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        return []

    def flush_held(self) -> list[Event]:
        return []

    def counters(self) -> SourceCounters:
        return SourceCounters(sent=10, events=10)

    def __enter__(self) -> FakeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeDirectory:
    def prefetch(self) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.fixture
def fake_sensor(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Patches the sensor; append a FakeSource to the yielded list to use it."""
    made: list[Any] = []

    def source(event_types: Any = None, **kw: Any) -> FakeSource:
        assert set(event_types) == {"execve", "execveat"}
        assert (kw["containers"] is None) == made[1], kw  # CRI for container selectors only
        src: FakeSource = made[0]
        return src

    monkeypatch.setattr(lanner.doctor, "require_sensor", lambda: None)
    monkeypatch.setattr(lanner.sensor.source, "LiveSource", source)
    monkeypatch.setattr(lanner.learn, "_container_context", lambda socket: (None, FakeDirectory()))
    yield made


def test_learns_and_writes_the_file(fake_sensor: list[Any], tmp_path: Path) -> None:
    pod = _pod()
    fake_sensor += [FakeSource([[_exec("/bin/sh", pod), _exec("/usr/bin/app", pod)],
                                [_exec("/bin/sh", pod), _exec("/bin/evil", _pod(image="x")), _exec("/bin/ls")]]),
                    False]
    out = tmp_path / "allow.yaml"
    res = _invoke(["--duration", "0.3", "--image", "registry.example.com:5000/shop/web", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "new program /bin/sh" in res.stderr and "new program /usr/bin/app" in res.stderr
    assert "3 execs of 2 programs by image registry.example.com:5000/shop/web in" in res.stderr
    assert "        2  /bin/sh\n        1  /usr/bin/app\n" in res.stderr
    assert res.stdout == ""
    text = out.read_text()
    assert "(3 execs seen, 2 programs)." in text and "  items: [/bin/sh, /usr/bin/app]\n" in text
    _validated(text)


def test_stdout_and_nothing_seen(fake_sensor: list[Any]) -> None:
    fake_sensor += [FakeSource([[_exec("/bin/ls")]]), False]
    res = _invoke(["--duration", "0.2", "--namespace", "shop"])
    assert res.exit_code == 1, res.output
    assert res.stdout.startswith("# Learned by `lanner learn`") and "  items: []\n" in res.stdout
    assert "nothing seen" in res.stderr
    _validated(res.stdout)


def test_ctrl_c_ends_early_and_still_writes(fake_sensor: list[Any], tmp_path: Path) -> None:
    fake_sensor += [FakeSource([[_exec("/usr/bin/true")]], interrupt=True), True]
    out = tmp_path / "host.yaml"
    before = signal.getsignal(signal.SIGINT)
    res = _invoke(["--duration", "600", "--host", "-o", str(out), "--name", "build box"])
    assert res.exit_code == 0, res.output
    assert "interrupted after" in res.stderr
    text = out.read_text()
    assert "- list: lanner_allowed_build_box\n  items: [/usr/bin/true]\n" in text
    assert signal.getsignal(signal.SIGINT) is before  # restored
    _validated(text)
