"""``lanner learn``: record which programs a workload runs, and write them as an allow-list rule.

The command listens to live exec events (through the sensor, with process state and container
metadata, like ``lanner capture``), keeps the successful execs of the selected workload, and writes a
self-contained Falco-syntax rules file: one list of the programs seen and one rule with
``action: block`` and ``mode: monitor`` that fires for any other program (``action: alert`` for
``--host``: a host-wide allow-list is not enforceable; ``enabled: false`` when nothing was seen). The
text is made by :func:`allowlist_yaml`, a pure function, so it can be tested without the kernel.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click
import yaml

from lanner.events import Event
from lanner.state.cgroups import CgroupResolver
from lanner.state.containers import ContainerDirectory

PROG = "lanner learn"

EXEC_TYPES = ("execve", "execveat")

# Kubernetes label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63
# characters (alphanumerics with '-', '_', '.' inside). Anything else cannot be a pod label.
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_LABEL_KEY = re.compile(rf"(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*/)?{_LABEL_NAME}")
_NAMESPACE = re.compile(_DNS_LABEL)
# What Falco's parser takes as a bare string; anything else in a value must be quoted.
_BARE_STR = re.compile(r"[^ \t\b\r\n(),=\"']+")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


class LearnError(Exception):
    """A bad argument or an unusable machine: one line for the user, exit code 2."""


# ---------------------------------------------------------------------------------------------------
# The selector


@dataclass(frozen=True, slots=True)
class Selector:
    """Which workload is learned. Every part given must hold (AND)."""

    image: str | None = None
    """container.image.repository"""
    namespace: str | None = None
    """k8s.ns.name"""
    labels: tuple[tuple[str, str], ...] = ()
    """k8s.pod.label[key] = value"""
    host: bool = False
    """Processes outside containers (container.id = host)."""

    def clauses(self) -> list[str]:
        """The condition clauses that scope a rule to this workload."""
        if self.host:
            return ["container.id = host"]
        out: list[str] = []
        if self.image is not None:
            out.append(f"container.image.repository = {quote_value(self.image)}")
        if self.namespace is not None:
            out.append(f"k8s.ns.name = {quote_value(self.namespace)}")
        out += [f"k8s.pod.label[{key}] = {quote_value(value)}" for key, value in self.labels]
        return out

    def human(self) -> str:
        """How messages and the rule name call the workload: 'image nginx, namespace shop'."""
        if self.host:
            return "host processes"
        parts: list[str] = []
        if self.image is not None:
            parts.append(f"image {self.image}")
        if self.namespace is not None:
            parts.append(f"namespace {self.namespace}")
        if self.labels:
            parts.append("pods labelled " + ",".join(f"{k}={v}" for k, v in self.labels))
        return ", ".join(parts)

    def slug(self) -> str:
        """The list name's suffix: lanner_allowed_<slug>."""
        if self.host:
            return "host"
        parts: list[str] = []
        if self.image is not None:
            parts.append(self.image)
        if self.namespace is not None:
            parts.append(f"ns_{self.namespace}")
        parts += [f"{k}_{v}" for k, v in self.labels]
        return slugify("_".join(parts)) or "workload"

    @property
    def in_containers(self) -> bool:
        return not self.host


def slugify(text: str) -> str:
    """Lower-case letters, digits and single '_': a valid part of a Falco list name."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def parse_labels(text: str) -> list[tuple[str, str]]:
    """``key=value[,key=value]`` (``==`` is taken as ``=``, as in Kubernetes' selectors)."""
    out: list[tuple[str, str]] = []
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if value.startswith("="):
            value = value[1:]
        key = key.strip()
        if not eq or key.endswith("!"):
            raise LearnError(f"--selector {text!r}: expected key=value[,key=value], got {part!r}")
        if not _LABEL_KEY.fullmatch(key):
            raise LearnError(f"--selector {text!r}: {key!r} is not a Kubernetes label key")
        out.append((key, value))
    return out


def make_selector(image: str | None, namespace: str | None, selectors: Sequence[str], host: bool) -> Selector:
    """Check the selection options; raises LearnError naming what is wrong."""
    from lanner.rules.fields.container import split_image

    if not (image is not None or namespace is not None or selectors or host):
        raise LearnError("choose what to learn: --image REPO, --namespace NS, --selector key=value or --host")
    if host and (image is not None or namespace is not None or selectors):
        raise LearnError("--host selects processes outside containers: it cannot be combined with "
                         "--image, --namespace or --selector")
    if image is not None:
        repo, tag, digest = split_image(image)
        if not repo or any(c.isspace() for c in image):
            raise LearnError(f"--image {image!r} is not an image repository")
        if tag or digest:
            # container.image.repository never carries them: a rule with one would match nothing.
            raise LearnError(f"--image takes a repository without tag or digest: use --image {repo}")
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        raise LearnError(f"--namespace {namespace!r} is not a Kubernetes namespace name")
    labels: dict[str, str] = {}
    for text in selectors:
        for key, value in parse_labels(text):
            if labels.get(key, value) != value:
                raise LearnError(f"--selector: label {key} given twice with different values")
            labels[key] = value
    return Selector(image, namespace, tuple(sorted(labels.items())), host)


# ---------------------------------------------------------------------------------------------------
# Quoting


def quote_value(value: str) -> str:
    """A Falco condition string literal that the parser reads back as exactly ``value``.

    A backslash is written as ``\\x5c``: Falco's lexer ends a quoted string at the first quote not
    preceded by a backslash, so a value ending in ``\\\\`` would swallow its closing quote.
    """
    out: list[str] = ['"']
    for c in value:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\x5c")
        elif c in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def list_item(path: str) -> str:
    """A list item as Falco substitutes it into ``in (...)``: bare when its lexer allows, else quoted.

    Falco quotes only items that contain a space; a comma, parenthesis, '=' or quote would still
    break the condition, so such items are written already quoted (Falco leaves those alone).
    """
    return path if _BARE_STR.fullmatch(path) else quote_value(path)


def yaml_scalar(text: str, *, in_flow: bool = False) -> str:
    """``text`` as YAML reads it back: plain when that round-trips, else double-quoted."""
    try:
        doc = f"[{text}]" if in_flow else f"k: {text}"
        back = yaml.safe_load(doc)
        if back == ([text] if in_flow else {"k": text}) and "\n" not in text:
            return text
    except yaml.YAMLError:
        pass
    return yaml.safe_dump(text, default_style='"', allow_unicode=True, width=1 << 30).rstrip("\n")


def _output_text(text: str) -> str:
    # In an output format '%name' is a field; a '%' from a label value or --name must stay text.
    return text.replace("%", "\uff05")


# ---------------------------------------------------------------------------------------------------
# The rules file


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def allowlist_yaml(observed: Mapping[str, int], selector: Selector, *, hostname: str, start: datetime,
                   end: datetime, name: str | None = None) -> str:
    """The allow-list rules file for the programs in ``observed`` (exepath -> successful execs).

    ``name`` (``--name``) replaces the selector's slug and human name. The list is sorted; the rule
    is scoped by the selector's clauses and allows exactly the listed programs.
    """
    human = name.strip() if name is not None else selector.human()
    slug = slugify(name) if name is not None else selector.slug()
    if not slug:
        raise LearnError(f"--name {name!r} gives an empty list name: use letters or digits")
    list_name = f"lanner_allowed_{slug}"
    execs = sum(observed.values())
    programs = sorted(observed)
    items = ", ".join(yaml_scalar(list_item(p), in_flow=True) for p in programs)
    condition = " and ".join(["evt.type in (execve, execveat)", *selector.clauses(),
                              f"not proc.exepath in ({list_name})"])
    output = (f"Unapproved program started in {_output_text(human)} (proc.exepath=%proc.exepath "
              "proc.cmdline=%proc.cmdline container.id=%container.id "
              "container.image.repository=%container.image.repository k8s.ns.name=%k8s.ns.name "
              "k8s.pod.name=%k8s.pod.name)")
    lines = [
        f"# Learned by `lanner learn` on {hostname} from {_utc(start)} to {_utc(end)} "
        f"({execs} execs seen, {len(programs)} programs).",
    ]
    if selector.host:
        # Lanner refuses to enforce a host-wide allow-list (it would stop every program not
        # listed, on the whole machine): the host's list can only be watched.
        lines += ["# Review: every program the host may run must be listed. A host-wide allow-list is not",
                  "# enforced (it would stop every program not listed on the machine), so this rule alerts."]
    else:
        lines += ["# Review before enforcing: every program a workload may run must be listed; change mode to",
                  "# enforce once the list is complete."]
    if not programs:
        lines += [f"# Nothing was seen: no program of {human.replace(chr(10), ' ')} started while learning, so this "
                  "list allows nothing.",
                  f"# The rule is disabled (an empty list would {'report' if selector.host else 'stop'} every "
                  "program): check the selection,",
                  "# learn again or add the programs, then remove 'enabled: false'."]
    lines += [
        f"- list: {list_name}",
        f"  items: [{items}]",
        f"- rule: {yaml_scalar(f'Unapproved program in {human}')}",
        f"  desc: {yaml_scalar(f'Only the programs learned for {human} may run (lanner learn, {end:%Y-%m-%d}).')}",
        f"  condition: {yaml_scalar(condition)}",
        f"  output: {yaml_scalar(output)}",
        "  priority: WARNING",
        *(["  action: alert"] if selector.host else ["  action: block", "  mode: monitor"]),
        *(["  enabled: false"] if not programs else []),
        "  tags: [lanner, allowlist]",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Learning


class Learner:
    """Counts the successful execs of the selected workload, by proc.exepath.

    The selection is the same condition the written rule is scoped by, checked by the rules engine,
    so what is learned is exactly what the rule will look at.
    """

    def __init__(self, selector: Selector) -> None:
        from lanner.capture import filter_ruleset
        from lanner.engine import Engine

        condition = " and ".join(["evt.type in (execve, execveat)", *selector.clauses()])
        rs = filter_ruleset(condition)
        if not rs.ok:  # the clauses are built from checked options: this is a bug, say which
            raise LearnError(f"internal: selection condition {condition!r} does not load: "
                             + "; ".join(m.message for m in rs.errors))
        self.engine = Engine(rs)
        self.in_containers = selector.in_containers
        self.counts: dict[str, int] = {}
        self.execs = 0
        self.without_metadata = 0
        """Container execs that could not be judged: the runtime had not described the container."""

    def add(self, evt: Event) -> str | None:
        """Count one event; returns its exepath when it is a program not seen before."""
        if evt.type not in EXEC_TYPES or evt.res != 0 or evt.proc is None or not evt.proc.exepath:
            return None
        if self.in_containers and evt.container is None and evt.proc.container_id:
            self.without_metadata += 1
            return None
        if not self.engine.match(evt):
            return None
        path = evt.proc.exepath
        self.execs += 1
        n = self.counts.get(path, 0)
        self.counts[path] = n + 1
        return path if n == 0 else None


def _cmdline(evt: Event, limit: int = 80) -> str:
    assert evt.proc is not None
    text = " ".join([evt.proc.name or evt.proc.exe, *evt.proc.args])
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fail(message: str) -> NoReturn:
    click.echo(f"{PROG}: {message}", err=True)
    sys.exit(2)


class _OneLineErrors(click.Command):
    """Usage errors as one line (``lanner learn: ...``) and exit code 2, like the checks below."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            # sys.exit, not ctx.exit: `lanner`'s non-standalone main would turn Exit(2) into 0
            _fail(f"{exc.format_message()} (see `lanner learn --help`)")


def _check_output(path: str | None) -> None:
    if path is None or path == "-":
        return
    parent = Path(path).resolve().parent
    if Path(path).is_dir():
        _fail(f"-o {path}: is a folder")
    if not parent.is_dir():
        _fail(f"-o {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        _fail(f"-o {path}: folder {parent} is not writable")


def _write(path: str | None, text: str) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # Written whole or not at all: a reviewed file is never left half-replaced.
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _fail(f"cannot write {path}: {exc}")


def _container_context(socket: str | None) -> tuple[CgroupResolver, ContainerDirectory]:
    """Container ids from cgroups and metadata from the runtime: container selectors need both."""
    from lanner.capture import container_context
    from lanner.cri import DEFAULT_SOCKETS, CriClient, CriSetupError

    if socket is None:
        if not any(os.path.exists(s) for s in DEFAULT_SOCKETS):
            _fail(f"container selectors need the container runtime, and no CRI socket was found "
                  f"({', '.join(DEFAULT_SOCKETS)}): pass --cri-socket PATH")
        cgroups, found = container_context()
        if found is None:
            _fail("container metadata unavailable (above): container selectors need it")
        return cgroups, found
    if not os.path.exists(socket):
        _fail(f"--cri-socket {socket}: no such socket")
    try:
        return CgroupResolver(), ContainerDirectory(CriClient(socket))
    except CriSetupError as exc:
        _fail(f"container metadata unavailable: {exc}")


def _summary(counts: Mapping[str, int]) -> Iterator[str]:
    for path, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        yield f"  {n:>7}  {path}"


@click.command("learn", cls=_OneLineErrors)
@click.option("--duration", type=float, default=None, metavar="S",
              help="Learn for S seconds (Ctrl-C ends earlier and still writes the file).")
@click.option("--image", default=None, metavar="REPO", help="Containers of this image repository (no tag).")
@click.option("--namespace", default=None, metavar="NS", help="Pods in this Kubernetes namespace.")
@click.option("--selector", "selectors", multiple=True, metavar="key=value[,key=value]",
              help="Pods with these labels (repeatable; all must hold).")
@click.option("--host", is_flag=True, help="Processes outside containers.")
@click.option("-o", "--output", "out_path", default=None, metavar="FILE",
              help="Rules file to write (default: stdout).")
@click.option("--name", default=None, help="Name of the workload in the list and rule names.")
@click.option("--cri-socket", default=None, metavar="PATH",
              help="The container runtime's CRI socket (default: containerd's, then CRI-O's).")
def learn_command(duration: float | None, image: str | None, namespace: str | None, selectors: tuple[str, ...],
                  host: bool, out_path: str | None, name: str | None, cri_socket: str | None) -> None:
    """Record the programs a workload runs and write them as an allow-list rule (monitor mode).

    The selection options combine with AND. Exit code 0 when programs were seen, 1 when none was
    (the file is written anyway), 2 for bad arguments or a machine that cannot run the sensor.
    """
    from lanner.alert import hostname
    from lanner.doctor import require_sensor
    from lanner.sensor.loader import SensorError
    from lanner.sensor.source import LiveSource

    try:
        if duration is None:
            raise LearnError("--duration S is required (seconds to learn)")
        if not duration > 0 or duration == float("inf"):
            raise LearnError(f"--duration must be a number of seconds above 0, not {duration:g}")
        selector = make_selector(image, namespace, selectors, host)
        if name is not None and not slugify(name):
            raise LearnError(f"--name {name!r}: needs a letter or digit (the list is named after it)")
        learner = Learner(selector)
    except LearnError as exc:
        _fail(str(exc))
    _check_output(out_path)
    human = name.strip() if name is not None else selector.human()

    directory: ContainerDirectory | None = None
    try:
        require_sensor()
        if selector.in_containers:
            cgroups, directory = _container_context(cri_socket)
            directory.prefetch()  # running containers are known before their first exec
        else:
            cgroups = CgroupResolver()  # container.id = host needs only the cgroup ids
        source = LiveSource(EXEC_TYPES, cgroups=cgroups, containers=directory)
    except (SensorError, OSError) as exc:
        if directory is not None:
            directory.close()
        _fail(str(exc))

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start = datetime.now(UTC)
    t0 = time.monotonic()
    end_at = t0 + duration
    next_status = t0 + 10.0
    click.echo(f"{PROG}: learning the programs of {human} for {duration:g} s on {hostname()} "
               "(Ctrl-C ends early)", err=True)

    def take(events: list[Event]) -> None:
        for evt in events:
            path = learner.add(evt)
            if path is not None:
                click.echo(f"{PROG}: [{time.monotonic() - t0:6.1f} s] new program {path}  ({_cmdline(evt)})",
                           err=True)

    try:
        with source:
            while not stopping and time.monotonic() < end_at:
                take(source.poll(100))
                now = time.monotonic()
                if now >= next_status:
                    next_status = now + 10.0
                    click.echo(f"{PROG}: [{now - t0:6.1f} s of {duration:g}] {learner.execs} execs, "
                               f"{len(learner.counts)} programs", err=True)
            take(source.poll(0))
            take(source.flush_held())
            counters = source.counters()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if directory is not None:
            directory.close()
    end = datetime.now(UTC)
    elapsed = time.monotonic() - t0

    text = allowlist_yaml(learner.counts, selector, hostname=hostname(), start=start, end=end, name=name)
    _write(out_path, text)
    how = "interrupted after" if stopping else "in"
    click.echo(f"{PROG}: {learner.execs} execs of {len(learner.counts)} programs by {human} "
               f"{how} {elapsed:.1f} s", err=True)
    for line in _summary(learner.counts):
        click.echo(line, err=True)
    if counters.lost:
        click.echo(f"{PROG}: warning: the kernel lost {counters.lost} events: the list may be incomplete",
                   err=True)
    if learner.without_metadata:
        click.echo(f"{PROG}: warning: {learner.without_metadata} execs in containers the runtime did not "
                   "describe in time were not counted: the list may be incomplete", err=True)
    where = "stdout" if out_path in (None, "-") else out_path
    if not learner.counts:
        click.echo(f"{PROG}: nothing seen; wrote an empty allow-list to {where}", err=True)
        sys.exit(1)
    click.echo(f"{PROG}: wrote {len(learner.counts)} programs to {where}: review the list, then set "
               "mode: enforce", err=True)
