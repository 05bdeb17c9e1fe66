"""The agent's effective configuration: defaults, then the YAML file, then command-line flags.

Every key is checked: an unknown key or a bad value is a `ConfigError` naming the file, line and
key. `lanner config show` prints the result, so what the agent runs with is never a guess.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RULES = Path(__file__).resolve().parent / "rules" / "default" / "lanner_rules.yaml"
PRIORITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "info", "debug")


class ConfigError(ValueError):
    """A configuration problem, with where it is."""


@dataclass(slots=True)
class Throttle:
    rate: float = 0.0
    """Alerts per second a key may raise on average; 0 turns throttling off."""
    burst: int = 0
    """How many alerts a key may raise at once before the rate applies."""


@dataclass(slots=True)
class Enforcement:
    """How rules with an ``action:`` other than alert are applied (docs/enforcement.md)."""

    mode: str = "monitor"
    """For rules without their own ``mode:``: monitor (decide and alert, let everything through)
    or enforce."""
    namespaces: dict[str, str] = field(default_factory=dict)
    """Kubernetes namespace → mode, over ``mode`` for the workloads of that namespace."""
    monitor_only: bool = False
    """Nothing is enforced, whatever the rules and namespaces say (a dry-run deployment)."""
    protected_programs: list[str] = field(default_factory=list)
    """Executables whose processes are never blocked or killed (the agent, pid 1 and kernel
    threads always are protected)."""
    keep_on_exit: bool = False
    """Leave the kernel enforcement in place when the agent stops (see docs/enforcement.md)."""
    exec_deny: str = "fanotify"
    """The mechanism of exec deny lists: fanotify (the exec fails with EPERM) or kill (the process
    is killed before its first instruction)."""


@dataclass(slots=True)
class Config:
    rules_files: list[str] = field(default_factory=lambda: [str(DEFAULT_RULES)])
    min_priority: str = "debug"
    rule_matching: str = "first"
    outputs: list[dict[str, Any]] = field(default_factory=lambda: [{"kind": "stdout"}])
    ring_buffer_mb: int = 16
    prefilter: bool = True
    """Drop in the kernel the opens and sends no loaded rule can match (docs/sensor.md)."""
    raw_syscalls: bool = False
    """One kernel program on every syscall exit instead of one per needed syscall: also sees
    syscalls without a tracepoint, at a cost on all syscalls (docs/sensor.md)."""
    containers: bool = True
    """Container and pod context from the cgroup and the container runtime (docs/containers.md)."""
    cri_socket: str = ""
    """The runtime's CRI socket; empty tries containerd's then CRI-O's default."""
    container_metadata_wait_s: float = 2.0
    """How long a new container's first events may wait for its metadata before they are judged
    without it (counted)."""
    metrics_listen: str = "127.0.0.1:8765"
    """host:port of /metrics and /healthz; empty turns the endpoint off."""
    throttle_rule: Throttle = field(default_factory=lambda: Throttle(rate=50.0, burst=200))
    """Per rule."""
    throttle_container: Throttle = field(default_factory=lambda: Throttle(rate=20.0, burst=100))
    """Per rule and container (host processes share the container key "host")."""
    enforcement: Enforcement = field(default_factory=Enforcement)
    drop_alert_interval_s: float = 30.0
    shutdown_timeout_s: float = 30.0
    """How long a clean stop waits for the outputs to deliver what they accepted."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SCALARS: dict[str, tuple[type, ...]] = {
    "min_priority": (str,), "rule_matching": (str,), "ring_buffer_mb": (int,), "prefilter": (bool,),
    "raw_syscalls": (bool,), "containers": (bool,), "cri_socket": (str,), "container_metadata_wait_s": (int, float),
    "metrics_listen": (str,), "drop_alert_interval_s": (int, float), "shutdown_timeout_s": (int, float),
}


def _where(node: yaml.Node | None, path: str) -> str:
    if node is None:
        return path
    return f"{path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _child_nodes(node: yaml.Node) -> dict[str, yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return {k.value: k for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return {}


def load(path: str | Path | None = None) -> Config:
    """The defaults, overridden by the file at `path` when given."""
    cfg = Config()
    if path is None:
        return cfg
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return cfg
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(root, str(p))}: the configuration must be a mapping of keys")
    nodes = _child_nodes(root) if root is not None else {}
    apply(cfg, data, source=str(p), nodes=nodes)
    return cfg


def apply(cfg: Config, data: dict[str, Any], *, source: str = "flags",
          nodes: dict[str, yaml.Node] | None = None) -> None:
    """Set the keys of `data` on `cfg`, checking each; `source` names where they came from."""
    nodes = nodes or {}
    known = {f.name for f in dataclasses.fields(Config)}
    for key, value in data.items():
        where = _where(nodes.get(key), source)
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        if key in _SCALARS:
            if not isinstance(value, _SCALARS[key]) or (isinstance(value, bool) and bool not in _SCALARS[key]):
                kinds = " or ".join(t.__name__ for t in _SCALARS[key])
                raise ConfigError(f"{where}: {key} must be {kinds}, not {value!r}")
            setattr(cfg, key, value)
        elif key == "rules_files":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: rules_files must be a non-empty list of paths")
            cfg.rules_files = list(value)
        elif key == "outputs":
            if not isinstance(value, list) or not all(isinstance(v, dict) and "kind" in v for v in value):
                raise ConfigError(f"{where}: outputs must be a list of mappings, each with a 'kind'")
            cfg.outputs = [dict(v) for v in value]
        elif key in ("throttle_rule", "throttle_container"):
            setattr(cfg, key, _throttle(value, f"{where}: {key}"))
        elif key == "enforcement":
            cfg.enforcement = _enforcement(value, f"{where}: enforcement")
    validate(cfg, source)


def _throttle(value: Any, what: str) -> Throttle:
    if not isinstance(value, dict) or set(value) - {"rate", "burst"}:
        raise ConfigError(f"{what} must be a mapping with 'rate' and 'burst'")
    rate, burst = value.get("rate", 0), value.get("burst", 0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 0:
        raise ConfigError(f"{what}.rate must be a number >= 0")
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        raise ConfigError(f"{what}.burst must be an integer >= 0")
    if rate > 0 and burst < 1:
        raise ConfigError(f"{what}.burst must be at least 1 when rate is set")
    return Throttle(float(rate), burst)


ENFORCEMENT_MODES = ("monitor", "enforce")


def _enforcement(value: Any, what: str) -> Enforcement:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping")
    out = Enforcement()
    known = {f.name for f in dataclasses.fields(Enforcement)}
    for key, v in value.items():
        if key not in known:
            raise ConfigError(f"{what}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        if key == "mode" and v not in ENFORCEMENT_MODES:
            raise ConfigError(f"{what}.mode must be monitor or enforce, not {v!r}")
        if key == "exec_deny" and v not in ("fanotify", "kill"):
            raise ConfigError(f"{what}.exec_deny must be fanotify or kill, not {v!r}")
        if key in ("monitor_only", "keep_on_exit") and not isinstance(v, bool):
            raise ConfigError(f"{what}.{key} must be true or false, not {v!r}")
        if key == "namespaces" and (not isinstance(v, dict) or not all(
                isinstance(n, str) and m in ENFORCEMENT_MODES for n, m in v.items())):
            raise ConfigError(f"{what}.namespaces must map namespace names to monitor or enforce")
        if key == "protected_programs" and (not isinstance(v, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in v)):
            raise ConfigError(f"{what}.protected_programs must be a list of absolute paths")
        setattr(out, key, dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
    return out


def validate(cfg: Config, source: str = "configuration") -> None:
    if cfg.min_priority.lower() not in PRIORITIES:
        raise ConfigError(f"{source}: min_priority {cfg.min_priority!r} is not one of {', '.join(PRIORITIES)}")
    if cfg.rule_matching not in ("first", "all"):
        raise ConfigError(f"{source}: rule_matching must be 'first' or 'all', not {cfg.rule_matching!r}")
    mb = cfg.ring_buffer_mb
    if mb < 1 or mb > 1024 or mb & (mb - 1):
        raise ConfigError(f"{source}: ring_buffer_mb must be a power of two from 1 to 1024, not {mb}")
    if cfg.metrics_listen:
        _, sep, port = cfg.metrics_listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{source}: metrics_listen must be host:port, not {cfg.metrics_listen!r}")
    for key in ("drop_alert_interval_s", "shutdown_timeout_s", "container_metadata_wait_s"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{source}: {key} must be >= 0")


def show(cfg: Config) -> str:
    """The effective configuration as YAML, loadable again with `-c`."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)
