"""Checks beyond the Pod Security Standards: hardening settings and common mistakes.

Each check has an id (``hardening.*`` or ``extra.*``), a title, a default severity and a
function returning :class:`~lanner.posture.pss.Violation` objects (``control`` holds the check
id). Paths are relative to the pod template, like the PSS checks.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lanner.posture.model import Op, Severity
from lanner.posture.pss import POD_SC, Pod, Violation, _d, _l


@dataclass(frozen=True)
class ExtraCheck:
    id: str
    title: str
    severity: Severity
    help: str
    fn: Callable[[Pod], list[Violation]]


def _run_as_user(pod: Pod) -> list[Violation]:
    out = []
    pod_uid = pod.sc.get("runAsUser")
    for c in pod.containers():
        uid = c.sc.get("runAsUser", pod_uid)
        if uid == 0 and not isinstance(uid, bool):
            own = "runAsUser" in c.sc
            p = (*c.sc_path, "runAsUser") if own else (*POD_SC, "runAsUser")
            out.append(Violation("hardening.runAsUser", c.name, p,
                                 f'container "{c.name}" runs as UID 0 (root)'
                                 + ("" if own else " from the pod's securityContext"),
                                 "set runAsUser to a non-zero UID", [Op("set", p, 65532)]))
    return out


def _allow_priv_esc(pod: Pod) -> list[Violation]:
    out = []
    for c in pod.containers():
        if c.sc.get("allowPrivilegeEscalation") is not False:
            p = (*c.sc_path, "allowPrivilegeEscalation")
            out.append(Violation("hardening.allowPrivilegeEscalation", c.name, p,
                                 f'container "{c.name}" does not set allowPrivilegeEscalation: false',
                                 "set securityContext.allowPrivilegeEscalation: false",
                                 [Op("set", p, False, additive="allowPrivilegeEscalation" not in c.sc)]))
    return out


def _read_only_root(pod: Pod) -> list[Violation]:
    out = []
    for c in pod.containers():
        if c.key == "ephemeralContainers":
            continue
        if c.sc.get("readOnlyRootFilesystem") is not True:
            p = (*c.sc_path, "readOnlyRootFilesystem")
            out.append(Violation("hardening.readOnlyRootFilesystem", c.name, p,
                                 f'container "{c.name}" has a writable root filesystem',
                                 "set securityContext.readOnlyRootFilesystem: true (mount an emptyDir where "
                                 "the program writes)",
                                 [Op("set", p, True, additive="readOnlyRootFilesystem" not in c.sc)]))
    return out


RUNTIME_SOCKETS = (
    "/var/run/docker.sock", "/run/docker.sock", "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock", "/var/run/crio/crio.sock", "/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock", "/run/cri-dockerd.sock", "/var/run/podman/podman.sock",
    "/run/podman/podman.sock", "/run/k3s/containerd/containerd.sock",
)
SENSITIVE_DIRS = (
    "/", "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/home", "/var/run", "/run",
    "/var/lib/kubelet", "/var/lib/docker", "/var/lib/containerd", "/var/lib/etcd", "/etc/kubernetes",
    "/var/log", "/usr", "/lib", "/bin", "/sbin",
)


def sensitive_host_path(path: str) -> str | None:
    """Why a hostPath is sensitive, or None."""
    p = posixpath.normpath(path) if path else ""
    if p.startswith("//"):
        p = p[1:]
    for sock in RUNTIME_SOCKETS:
        if p == sock:
            return "the container runtime socket (control of every container on the node)"
        if sock.startswith(p.rstrip("/") + "/"):
            return f"a directory holding the container runtime socket {sock}"
    for d in SENSITIVE_DIRS:
        if p == d or (d != "/" and p.startswith(d + "/")):
            return f"the host's {d} (sensitive host files)"
    return None


def _host_path(pod: Pod) -> list[Violation]:
    out = []
    mounts: dict[str, list[str]] = {}
    for c in pod.containers():
        for m in _l(c.data.get("volumeMounts")):
            n = _d(m).get("name")
            if isinstance(n, str):
                mounts.setdefault(n, []).append(c.name)
    for i, vol in enumerate(_l(pod.spec.get("volumes"))):
        hp = _d(_d(vol).get("hostPath"))
        path = hp.get("path")
        if not isinstance(path, str):
            continue
        why = sensitive_host_path(path)
        if why:
            name = str(_d(vol).get("name", i))
            users = mounts.get(name, [])
            out.append(Violation("extra.sensitiveHostPath", ",".join(users) or None,
                                 ("spec", "volumes", i, "hostPath", "path"),
                                 f'volume "{name}" mounts hostPath {path}: {why}',
                                 "do not mount this host path; talk to the runtime through a dedicated "
                                 "API or use a narrower path, read-only"))
    return out


def image_tag_problem(image: str) -> str | None:
    if "@" in image:
        return None  # pinned by digest
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means :latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the :latest tag"
    return None


def _image_tag(pod: Pod) -> list[Violation]:
    out = []
    for c in pod.containers():
        image = c.data.get("image")
        if not isinstance(image, str) or not image:
            continue
        why = image_tag_problem(image)
        if why:
            out.append(Violation("extra.imageTag", c.name, (*c.path, "image"),
                                 f'container "{c.name}" image {image} {why}',
                                 "pin the image to a version tag or, better, a digest (@sha256:…)"))
    return out


def _resource_limits(pod: Pod) -> list[Violation]:
    out = []
    for c in pod.containers():
        if c.key == "ephemeralContainers":
            continue
        limits = _d(_d(c.data.get("resources")).get("limits"))
        missing = [r for r in ("cpu", "memory") if limits.get(r) in (None, "")]
        if missing:
            out.append(Violation("extra.resourceLimits", c.name, (*c.path, "resources", "limits"),
                                 f'container "{c.name}" has no {" or ".join(missing)} limit',
                                 f"set resources.limits.{' and resources.limits.'.join(missing)}"))
    return out


def _sa_token(pod: Pod) -> list[Violation]:
    if pod.spec.get("automountServiceAccountToken") is False:
        return []
    p = ("spec", "automountServiceAccountToken")
    return [Violation("extra.serviceAccountToken", None, p,
                      "the service account token is mounted into the pod (automountServiceAccountToken is "
                      "not false)",
                      "set spec.automountServiceAccountToken: false unless the pod calls the Kubernetes API",
                      [Op("set", p, False, additive=True)])]


_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH_?KEY|"
    r"(^|_)PASS$|(^|_)PWD$|CLIENT_?SECRET|SIGNING_?KEY|ENCRYPTION_?KEY)", re.IGNORECASE)
_NOT_SECRET_SUFFIX = re.compile(r"(_FILE|_PATH|_DIR|_URL|_URI|_ENDPOINT|_HOST|_PORT|_NAME|_USER|_ID|_TYPE|"
                                r"_ENABLED|_LENGTH|_TTL|_EXPIRY|_TIMEOUT)$", re.IGNORECASE)
_URL_CREDS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def secret_like(name: str, value: str) -> str | None:
    if not value or value.startswith("$("):
        return None
    if name.upper() != "PWD" and _SECRET_NAME.search(name) and not _NOT_SECRET_SUFFIX.search(name):
        return "its name looks like a secret"
    if _URL_CREDS.match(value):
        return "its value is a URL with a password in it"
    return None


def _secret_env(pod: Pod) -> list[Violation]:
    out = []
    for c in pod.containers():
        for j, e in enumerate(_l(c.data.get("env"))):
            ed = _d(e)
            name, value = ed.get("name"), ed.get("value")
            if not isinstance(name, str) or value is None or "valueFrom" in ed:
                continue
            why = secret_like(name, str(value))
            if why:
                msg = f'container "{c.name}" sets environment variable {name} to a literal value and {why}'
                fix = f"move the value into a Secret and use env[].valueFrom.secretKeyRef for {name}"
                out.append(Violation("extra.secretEnv", c.name, (*c.path, "env", j, "value"), msg, fix))
    return out


EXTRA_CHECKS: list[ExtraCheck] = [
    ExtraCheck("hardening.runAsUser", "Container runs as UID 0", "warning",
               "A container whose effective runAsUser (its own, else the pod's) is 0 runs as root.",
               _run_as_user),
    ExtraCheck("hardening.allowPrivilegeEscalation", "Privilege escalation allowed", "warning",
               "Without allowPrivilegeEscalation: false a process can gain privileges (setuid binaries, "
               "file capabilities).", _allow_priv_esc),
    ExtraCheck("hardening.readOnlyRootFilesystem", "Writable root filesystem", "warning",
               "readOnlyRootFilesystem: true stops an intruder from changing the container's files.",
               _read_only_root),
    ExtraCheck("extra.sensitiveHostPath", "Sensitive hostPath mount", "warning",
               "A hostPath volume on the container runtime socket (docker, containerd, CRI-O, podman) or a "
               "sensitive host directory gives the pod control of the node.", _host_path),
    ExtraCheck("extra.imageTag", "Image without a pinned tag", "warning",
               "An image with no tag or :latest changes under you; pin a version or a digest.", _image_tag),
    ExtraCheck("extra.resourceLimits", "Missing resource limits", "warning",
               "A container without CPU and memory limits can starve its node.", _resource_limits),
    ExtraCheck("extra.serviceAccountToken", "Service account token mounted", "warning",
               "Unless automountServiceAccountToken is false, the pod gets an API token an intruder can use.",
               _sa_token),
    ExtraCheck("extra.secretEnv", "Secret in an environment variable", "warning",
               "A literal value in an environment variable whose name looks like a secret ends up in the "
               "manifest, in git and in `kubectl describe`.", _secret_env),
]
EXTRA_BY_ID = {c.id: c for c in EXTRA_CHECKS}


def evaluate_extras(meta: dict[str, Any], spec: dict[str, Any], skip: frozenset[str] = frozenset()
                    ) -> list[Violation]:
    pod = Pod(_d(meta), _d(spec))
    out: list[Violation] = []
    for check in EXTRA_CHECKS:
        if check.id not in skip:
            out.extend(check.fn(pod))
    return out
