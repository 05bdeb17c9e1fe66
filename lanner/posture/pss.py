"""The Pod Security Standards as Pod Security Admission implements them, by version.

Every control has the Kubernetes check id (``privileged``, ``runAsNonRoot``, …) and one or more
variants, each applying from a policy version (../shared/posture/PSS.md). :func:`evaluate`
returns the violations of a pod template at a level and version, with a fix and the
:class:`~lanner.posture.model.Op` list that makes the pod pass. Paths are relative to the pod
template (the mapping holding ``metadata`` and ``spec``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from lanner.posture.model import Op, Path

Version = tuple[int, int]
Level = Literal["baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("baseline", "restricted")
LATEST: Version = (1, 37)
CONTAINER_KEYS = ("initContainers", "containers", "ephemeralContainers")

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)$")


def parse_version(text: str) -> Version:
    """``v1.NN``, ``1.NN`` or ``latest``; versions after the newest one with checks are
    evaluated as the newest. Raises ValueError with a message for anything else."""
    t = text.strip()
    if t == "latest":
        return LATEST
    m = _VERSION_RE.match(t)
    if not m or int(m.group(1)) != 1:
        raise ValueError(f"invalid Pod Security Standards version {text!r}: use v1.NN (v1.0 … "
                         f"v{LATEST[0]}.{LATEST[1]}) or latest")
    return min((1, int(m.group(2))), LATEST)


def version_str(v: Version) -> str:
    return f"v{v[0]}.{v[1]}"


@dataclass
class Violation:
    control: str
    container: str | None
    path: Path
    message: str
    fix: str
    ops: list[Op] = field(default_factory=list)


@dataclass
class Container:
    key: str  # initContainers / containers / ephemeralContainers
    index: int
    data: dict[str, Any]

    @property
    def name(self) -> str:
        n = self.data.get("name")
        return str(n) if n else f"{self.key}[{self.index}]"

    @property
    def path(self) -> Path:
        return ("spec", self.key, self.index)

    @property
    def sc(self) -> dict[str, Any]:
        return _d(self.data.get("securityContext"))

    @property
    def sc_path(self) -> Path:
        return (*self.path, "securityContext")


@dataclass
class Pod:
    """A pod template, read tolerantly (wrong types count as unset)."""

    meta: dict[str, Any]
    spec: dict[str, Any]

    @property
    def sc(self) -> dict[str, Any]:
        return _d(self.spec.get("securityContext"))

    @property
    def annotations(self) -> dict[str, Any]:
        return _d(self.meta.get("annotations"))

    @property
    def windows(self) -> bool:
        return _d(self.spec.get("os")).get("name") == "windows"

    @property
    def host_users_false(self) -> bool:
        return self.spec.get("hostUsers") is False

    def containers(self) -> Iterator[Container]:
        for key in CONTAINER_KEYS:
            items = self.spec.get(key)
            if isinstance(items, list):
                for i, c in enumerate(items):
                    if isinstance(c, dict):
                        yield Container(key, i, c)


POD_SC: Path = ("spec", "securityContext")


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


CheckFn = Callable[[Pod, Version], list[Violation]]


@dataclass
class Control:
    id: str
    level: Level
    title: str
    variants: list[tuple[Version, CheckFn]]

    def variant(self, v: Version) -> CheckFn | None:
        fn = None
        for since, f in self.variants:
            if v >= since:
                fn = f
        return fn

    @property
    def since(self) -> Version:
        return self.variants[0][0]


# ---------------------------------------------------------------- baseline


def _privileged(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for c in pod.containers():
        if c.sc.get("privileged") is True:
            p = (*c.sc_path, "privileged")
            out.append(Violation("privileged", c.name, p,
                                 f'container "{c.name}" must not set securityContext.privileged=true',
                                 "set securityContext.privileged: false (or remove it)",
                                 [Op("set", p, False)]))
    return out


def _host_namespaces(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.spec.get(key) is True:
            p = ("spec", key)
            out.append(Violation("hostNamespaces", None, p, f"pod must not set {key}=true",
                                 f"set spec.{key}: false (or remove it)", [Op("set", p, False)]))
    return out


def _host_path_volumes(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for i, vol in enumerate(_l(pod.spec.get("volumes"))):
        if isinstance(vol, dict) and vol.get("hostPath") is not None:
            out.append(Violation("hostPathVolumes", None, ("spec", "volumes", i, "hostPath"),
                                 f'volume "{vol.get("name", i)}" must not use hostPath',
                                 "replace the hostPath volume with a configMap, secret, emptyDir or "
                                 "persistentVolumeClaim volume (not fixed automatically)"))
    return out


def _host_ports(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for c in pod.containers():
        for j, port in enumerate(_l(c.data.get("ports"))):
            hp = _d(port).get("hostPort")
            if isinstance(hp, int) and not isinstance(hp, bool) and hp != 0:
                p = (*c.path, "ports", j, "hostPort")
                out.append(Violation("hostPorts", c.name, p,
                                     f'container "{c.name}" must not use hostPort {hp}',
                                     "remove hostPort (expose the port through a Service)",
                                     [Op("delete", p)]))
    return out


_APPARMOR_TYPES = ("RuntimeDefault", "Localhost")
_APPARMOR_ANN = "container.apparmor.security.beta.kubernetes.io/"


def _apparmor(pod: Pod, v: Version) -> list[Violation]:
    out = []
    targets: list[tuple[str | None, dict[str, Any], Path, str]] = [(None, pod.sc, POD_SC, "pod")]
    targets += [(c.name, c.sc, c.sc_path, f'container "{c.name}"') for c in pod.containers()]
    for cname, sc, scp, who in targets:
        prof = sc.get("appArmorProfile")
        if isinstance(prof, dict) and prof.get("type") not in _APPARMOR_TYPES:
            p = (*scp, "appArmorProfile", "type")
            out.append(Violation("appArmorProfile", cname, p,
                                 f"{who} must not set securityContext.appArmorProfile.type="
                                 f"{prof.get('type')!r}",
                                 "set appArmorProfile.type: RuntimeDefault (or Localhost)",
                                 [Op("set", p, "RuntimeDefault")]))
    for key, val in pod.annotations.items():
        if isinstance(key, str) and key.startswith(_APPARMOR_ANN):
            sval = "" if val is None else str(val)
            if sval not in ("", "runtime/default") and not sval.startswith("localhost/"):
                p = ("metadata", "annotations", key)
                out.append(Violation("appArmorProfile", key[len(_APPARMOR_ANN):], p,
                                     f"annotation {key}={sval!r} is not allowed",
                                     "set the AppArmor annotation to runtime/default or localhost/<profile>",
                                     [Op("set", p, "runtime/default")]))
    return out


_SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_TYPES_1_31 = _SELINUX_TYPES_1_0 | {"container_engine_t"}


def _selinux(types: frozenset[str]) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        out = []
        targets: list[tuple[str | None, dict[str, Any], Path, str]] = [(None, pod.sc, POD_SC, "pod")]
        targets += [(c.name, c.sc, c.sc_path, f'container "{c.name}"') for c in pod.containers()]
        for cname, sc, scp, who in targets:
            opts = sc.get("seLinuxOptions")
            if not isinstance(opts, dict):
                continue
            t = opts.get("type")
            if t is not None and str(t) not in types:
                p = (*scp, "seLinuxOptions", "type")
                out.append(Violation("seLinuxOptions", cname, p,
                                     f"{who} must not set securityContext.seLinuxOptions.type={t!r}",
                                     "remove seLinuxOptions.type or use container_t",
                                     [Op("delete", p)]))
            for key in ("user", "role"):
                if opts.get(key):
                    p = (*scp, "seLinuxOptions", key)
                    out.append(Violation("seLinuxOptions", cname, p,
                                         f"{who} must not set securityContext.seLinuxOptions.{key}",
                                         f"remove seLinuxOptions.{key}", [Op("delete", p)]))
        return out
    return check


def _proc_mount(control: str, honour_host_users: bool) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        if honour_host_users and pod.host_users_false:
            return []
        out = []
        for c in pod.containers():
            pm = c.sc.get("procMount")
            if pm is not None and pm != "Default":
                p = (*c.sc_path, "procMount")
                out.append(Violation(control, c.name, p,
                                     f'container "{c.name}" must not set securityContext.procMount={pm!r}',
                                     "set securityContext.procMount: Default (or remove it)",
                                     [Op("set", p, "Default")]))
        return out
    return check


_SECCOMP_ANN_POD = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_ANN_CONTAINER = "container.seccomp.security.alpha.kubernetes.io/"
_SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def _seccomp_annotation_ok(val: Any) -> bool:
    s = "" if val is None else str(val)
    return s in ("runtime/default", "docker/default") or s.startswith("localhost/")


def _seccomp_baseline_1_0(pod: Pod, v: Version) -> list[Violation]:
    out = []
    ann = pod.annotations
    keys: list[tuple[str, str | None]] = [(_SECCOMP_ANN_POD, None)]
    keys += [(_SECCOMP_ANN_CONTAINER + c.name, c.name) for c in pod.containers()]
    for key, cname in keys:
        if key in ann and not _seccomp_annotation_ok(ann[key]):
            p = ("metadata", "annotations", key)
            out.append(Violation("seccompProfile_baseline", cname, p,
                                 f"annotation {key}={ann[key]!r} is not allowed",
                                 "set the seccomp annotation to runtime/default or localhost/<profile>",
                                 [Op("set", p, "runtime/default")]))
    return out


def _seccomp_fields_bad(pod: Pod, control: str) -> list[Violation]:
    out = []
    targets: list[tuple[str | None, dict[str, Any], Path, str]] = [(None, pod.sc, POD_SC, "pod")]
    targets += [(c.name, c.sc, c.sc_path, f'container "{c.name}"') for c in pod.containers()]
    for cname, sc, scp, who in targets:
        prof = sc.get("seccompProfile")
        if prof is not None and _d(prof).get("type") not in _SECCOMP_TYPES:
            p = (*scp, "seccompProfile", "type")
            out.append(Violation(control, cname, p,
                                 f"{who} must not set securityContext.seccompProfile.type="
                                 f"{_d(prof).get('type')!r}",
                                 "set seccompProfile.type: RuntimeDefault (or Localhost)",
                                 [Op("set", p, "RuntimeDefault")]))
    return out


def _seccomp_baseline_1_19(pod: Pod, v: Version) -> list[Violation]:
    return _seccomp_fields_bad(pod, "seccompProfile_baseline")


_SYSCTLS: list[tuple[Version, frozenset[str]]] = [
    ((1, 0), frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})),
    ((1, 27), frozenset({"net.ipv4.ip_local_reserved_ports"})),
    ((1, 29), frozenset({"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                         "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})),
    ((1, 32), frozenset({"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})),
    ((1, 37), frozenset({"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"})),
]


def allowed_sysctls(v: Version) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for since, names in _SYSCTLS:
        if v >= since:
            out |= names
    return out


def _sysctls(pod: Pod, v: Version) -> list[Violation]:
    allowed = allowed_sysctls(v)
    out = []
    items = _l(pod.sc.get("sysctls"))
    for i, s in enumerate(items):
        name = _d(s).get("name")
        if name not in allowed:
            p = (*POD_SC, "sysctls", i)
            out.append(Violation("sysctls", None, p,
                                 f"pod must not set sysctl {name!r} (not allowed at {version_str(v)})",
                                 f"remove sysctl {name!r} from securityContext.sysctls",
                                 [Op("remove_values", (*POD_SC, "sysctls"), [s])]))
    return out


BASELINE_CAPS = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                           "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def _caps_baseline(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for c in pod.containers():
        caps = _d(c.sc.get("capabilities"))
        bad = [x for x in _l(caps.get("add")) if x not in BASELINE_CAPS]
        if bad:
            p = (*c.sc_path, "capabilities", "add")
            out.append(Violation("capabilities_baseline", c.name, p,
                                 f'container "{c.name}" must not add capabilities {_names(bad)}',
                                 f"remove {_names(bad)} from securityContext.capabilities.add",
                                 [Op("remove_values", p, bad)]))
    return out


def _windows_host_process(pod: Pod, v: Version) -> list[Violation]:
    out = []
    targets: list[tuple[str | None, dict[str, Any], Path, str]] = [(None, pod.sc, POD_SC, "pod")]
    targets += [(c.name, c.sc, c.sc_path, f'container "{c.name}"') for c in pod.containers()]
    for cname, sc, scp, who in targets:
        if _d(sc.get("windowsOptions")).get("hostProcess") is True:
            p = (*scp, "windowsOptions", "hostProcess")
            out.append(Violation("windowsHostProcess", cname, p,
                                 f"{who} must not set securityContext.windowsOptions.hostProcess=true",
                                 "set windowsOptions.hostProcess: false (or remove it)",
                                 [Op("set", p, False)]))
    return out


def _host_probes(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for c in pod.containers():
        handlers: list[tuple[Path, Any]] = []
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            handlers.append(((*c.path, probe), c.data.get(probe)))
        lc = _d(c.data.get("lifecycle"))
        for hook in ("postStart", "preStop"):
            handlers.append(((*c.path, "lifecycle", hook), lc.get(hook)))
        for hpath, h in handlers:
            for kind in ("httpGet", "tcpSocket"):
                host = _d(_d(h).get(kind)).get("host")
                if host:
                    p = (*hpath, kind, "host")
                    out.append(Violation("hostProbesAndHostLifecycle", c.name, p,
                                         f'container "{c.name}" must not set {".".join(map(str, p[3:]))}'
                                         f"={host!r}",
                                         f"remove {kind}.host (probes and hooks then target the pod IP)",
                                         [Op("delete", p)]))
    return out


# ---------------------------------------------------------------- restricted

ALLOWED_VOLUME_TYPES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                                  "persistentVolumeClaim", "projected", "secret"})


def _restricted_volumes(pod: Pod, v: Version) -> list[Violation]:
    out = []
    for i, vol in enumerate(_l(pod.spec.get("volumes"))):
        if not isinstance(vol, dict):
            continue
        for key, val in vol.items():
            if key == "name" or val is None or key in ALLOWED_VOLUME_TYPES:
                continue
            out.append(Violation("restrictedVolumes", None, ("spec", "volumes", i, key),
                                 f'volume "{vol.get("name", i)}" must not use volume type {key}',
                                 "use only configMap, csi, downwardAPI, emptyDir, ephemeral, image, "
                                 "persistentVolumeClaim, projected or secret volumes (not fixed "
                                 "automatically)"))
    return out


def _allow_priv_esc(windows_exempt: bool) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        if windows_exempt and pod.windows:
            return []
        out = []
        for c in pod.containers():
            if c.sc.get("allowPrivilegeEscalation") is not False:
                p = (*c.sc_path, "allowPrivilegeEscalation")
                out.append(Violation("allowPrivilegeEscalation", c.name, p,
                                     f'container "{c.name}" must set securityContext.allowPrivilegeEscalation'
                                     "=false",
                                     "set securityContext.allowPrivilegeEscalation: false",
                                     [Op("set", p, False, additive="allowPrivilegeEscalation" not in c.sc)]))
        return out
    return check


def _run_as_non_root(honour_host_users: bool) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        if honour_host_users and pod.host_users_false:
            return []
        out = []
        pod_val = pod.sc.get("runAsNonRoot")
        p_pod = (*POD_SC, "runAsNonRoot")
        if pod_val is False:
            out.append(Violation("runAsNonRoot", None, p_pod,
                                 "pod must not set securityContext.runAsNonRoot=false",
                                 "set spec.securityContext.runAsNonRoot: true", [Op("set", p_pod, True)]))
        for c in pod.containers():
            val = c.sc.get("runAsNonRoot")
            p = (*c.sc_path, "runAsNonRoot")
            if val is False:
                out.append(Violation("runAsNonRoot", c.name, p,
                                     f'container "{c.name}" must not set securityContext.runAsNonRoot=false',
                                     "set securityContext.runAsNonRoot: true", [Op("set", p, True)]))
            elif val is None and pod_val is not True:
                out.append(Violation("runAsNonRoot", c.name, p,
                                     f'pod or container "{c.name}" must set '
                                     "securityContext.runAsNonRoot=true",
                                     "set spec.securityContext.runAsNonRoot: true (pod level, for every "
                                     "container) or the container's securityContext.runAsNonRoot: true",
                                     [Op("set", p_pod, True, additive=pod_val is None)]))
        return out
    return check


NON_ROOT_UID = 65532


def _run_as_user(honour_host_users: bool) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        if honour_host_users and pod.host_users_false:
            return []
        out = []
        targets: list[tuple[str | None, dict[str, Any], Path, str]] = [(None, pod.sc, POD_SC, "pod")]
        targets += [(c.name, c.sc, c.sc_path, f'container "{c.name}"') for c in pod.containers()]
        for cname, sc, scp, who in targets:
            uid = sc.get("runAsUser")
            if uid == 0 and not isinstance(uid, bool):
                p = (*scp, "runAsUser")
                out.append(Violation("runAsUser", cname, p, f"{who} must not set securityContext.runAsUser=0",
                                     f"set runAsUser to a non-zero UID (the fix uses {NON_ROOT_UID})",
                                     [Op("set", p, NON_ROOT_UID)]))
        return out
    return check


def _seccomp_restricted(windows_exempt: bool) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        if windows_exempt and pod.windows:
            return []
        out = _seccomp_fields_bad(pod, "seccompProfile_restricted")
        pod_prof = pod.sc.get("seccompProfile")
        pod_ok = pod_prof is not None and _d(pod_prof).get("type") in _SECCOMP_TYPES
        p_pod = (*POD_SC, "seccompProfile")
        for c in pod.containers():
            if c.sc.get("seccompProfile") is None and not pod_ok:
                msg = (f'pod or container "{c.name}" must set securityContext.seccompProfile.type '
                       'to "RuntimeDefault" or "Localhost"')
                fix = "set spec.securityContext.seccompProfile.type: RuntimeDefault (pod level)"
                op = Op("set", (*p_pod, "type"), "RuntimeDefault", additive=pod_prof is None)
                out.append(Violation("seccompProfile_restricted", c.name, (*c.sc_path, "seccompProfile"),
                                     msg, fix, [op]))
        return out
    return check


def _caps_restricted(windows_exempt: bool) -> CheckFn:
    def check(pod: Pod, v: Version) -> list[Violation]:
        if windows_exempt and pod.windows:
            return []
        out = []
        for c in pod.containers():
            caps = _d(c.sc.get("capabilities"))
            drop = _l(caps.get("drop"))
            cp = (*c.sc_path, "capabilities")
            if "ALL" not in drop:
                out.append(Violation("capabilities_restricted", c.name, (*cp, "drop"),
                                     f'container "{c.name}" must set '
                                     'securityContext.capabilities.drop=["ALL"]',
                                     'add "ALL" to securityContext.capabilities.drop',
                                     [Op("append", (*cp, "drop"), "ALL", additive=True)]))
            bad = [x for x in _l(caps.get("add")) if x != "NET_BIND_SERVICE"]
            if bad:
                out.append(Violation("capabilities_restricted", c.name, (*cp, "add"),
                                     f'container "{c.name}" must not add capabilities {_names(bad)} '
                                     "(only NET_BIND_SERVICE)",
                                     f"remove {_names(bad)} from securityContext.capabilities.add",
                                     [Op("remove_values", (*cp, "add"), bad)]))
        return out
    return check


def _names(items: list[Any]) -> str:
    return ", ".join(f'"{x}"' for x in items)


# ---------------------------------------------------------------- registry

CONTROLS: list[Control] = [
    Control("privileged", "baseline", "Privileged containers", [((1, 0), _privileged)]),
    Control("hostNamespaces", "baseline", "Host namespaces", [((1, 0), _host_namespaces)]),
    Control("hostPathVolumes", "baseline", "HostPath volumes", [((1, 0), _host_path_volumes)]),
    Control("hostPorts", "baseline", "Host ports", [((1, 0), _host_ports)]),
    Control("appArmorProfile", "baseline", "AppArmor", [((1, 0), _apparmor)]),
    Control("seLinuxOptions", "baseline", "SELinux",
            [((1, 0), _selinux(_SELINUX_TYPES_1_0)), ((1, 31), _selinux(_SELINUX_TYPES_1_31))]),
    Control("procMount", "baseline", "/proc mount type",
            [((1, 0), _proc_mount("procMount", False)), ((1, 35), _proc_mount("procMount", True))]),
    Control("seccompProfile_baseline", "baseline", "Seccomp",
            [((1, 0), _seccomp_baseline_1_0), ((1, 19), _seccomp_baseline_1_19)]),
    Control("sysctls", "baseline", "Sysctls", [((1, 0), _sysctls)]),
    Control("capabilities_baseline", "baseline", "Capabilities", [((1, 0), _caps_baseline)]),
    Control("windowsHostProcess", "baseline", "HostProcess", [((1, 0), _windows_host_process)]),
    Control("hostProbesAndHostLifecycle", "baseline", "Host probes and lifecycle hooks",
            [((1, 34), _host_probes)]),
    Control("restrictedVolumes", "restricted", "Volume types", [((1, 0), _restricted_volumes)]),
    Control("allowPrivilegeEscalation", "restricted", "Privilege escalation",
            [((1, 8), _allow_priv_esc(False)), ((1, 25), _allow_priv_esc(True))]),
    Control("runAsNonRoot", "restricted", "Running as non-root",
            [((1, 0), _run_as_non_root(False)), ((1, 35), _run_as_non_root(True))]),
    Control("runAsUser", "restricted", "Running as non-root user",
            [((1, 23), _run_as_user(False)), ((1, 35), _run_as_user(True))]),
    Control("seccompProfile_restricted", "restricted", "Seccomp (restricted)",
            [((1, 19), _seccomp_restricted(False)), ((1, 25), _seccomp_restricted(True))]),
    Control("capabilities_restricted", "restricted", "Capabilities (restricted)",
            [((1, 22), _caps_restricted(False)), ((1, 25), _caps_restricted(True))]),
    Control("procMount_restricted", "restricted", "/proc mount type (restricted)",
            [((1, 35), _proc_mount("procMount_restricted", False))]),
]
CONTROLS_BY_ID = {c.id: c for c in CONTROLS}

# restricted control → (baseline control it replaces at restricted level, from version)
OVERRIDES: dict[str, tuple[str, Version]] = {
    "restrictedVolumes": ("hostPathVolumes", (1, 0)),
    "seccompProfile_restricted": ("seccompProfile_baseline", (1, 19)),
    "capabilities_restricted": ("capabilities_baseline", (1, 22)),
    "procMount_restricted": ("procMount", (1, 35)),
}


def controls_for(level: Level, version: Version) -> list[tuple[Control, CheckFn]]:
    """The controls Kubernetes runs at ``level`` and ``version``, overrides applied."""
    chosen = [c for c in CONTROLS if c.level == "baseline" or level == "restricted"]
    skip: set[str] = set()
    if level == "restricted":
        for rid, (bid, since) in OVERRIDES.items():
            if version >= since and version >= CONTROLS_BY_ID[rid].since:
                skip.add(bid)
    out = []
    for c in chosen:
        fn = c.variant(version)
        if fn is not None and c.id not in skip:
            out.append((c, fn))
    return out


def evaluate(meta: dict[str, Any], spec: dict[str, Any], level: Level, version: Version) -> list[Violation]:
    pod = Pod(_d(meta), _d(spec))
    out: list[Violation] = []
    for _control, fn in controls_for(level, version):
        out.extend(fn(pod, version))
    return out
