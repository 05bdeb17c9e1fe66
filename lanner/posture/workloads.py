"""Finding the pod templates in Kubernetes objects: where each kind keeps its pod spec."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lanner.posture.model import ObjectRef, Path

# kind → path from the object to its pod template (the object holding metadata and spec)
TEMPLATE_PATHS: dict[str, Path] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}

# Kinds without a pod template, skipped without a note.
QUIET_KINDS = frozenset({
    "Service", "ConfigMap", "Secret", "ServiceAccount", "Namespace", "Role", "ClusterRole",
    "RoleBinding", "ClusterRoleBinding", "Ingress", "IngressClass", "NetworkPolicy",
    "PersistentVolumeClaim", "PersistentVolume", "StorageClass", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "CustomResourceDefinition", "LimitRange", "ResourceQuota", "Endpoints",
    "EndpointSlice", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService", "Lease", "VerticalPodAutoscaler",
    "ServiceMonitor", "PodMonitor", "PrometheusRule", "Certificate", "Issuer", "ClusterIssuer",
})


@dataclass
class PodTarget:
    """One pod template to check: its object, metadata and spec, and where they sit."""

    obj: ObjectRef
    meta: dict[str, Any]
    spec: dict[str, Any]
    base: Path  # path of the template (holds metadata and spec) from the document root

    @property
    def spec_path(self) -> Path:
        return (*self.base, "spec")

    @property
    def meta_path(self) -> Path:
        return (*self.base, "metadata")


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def object_ref(obj: dict[str, Any]) -> ObjectRef:
    meta = _dict(obj.get("metadata"))
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    return ObjectRef(str(obj.get("kind") or "?"), str(meta.get("namespace") or ""), str(name))


def pod_targets(obj: dict[str, Any], base: Path = ()) -> Iterator[PodTarget | str]:
    """Yields each pod template in ``obj`` (recursing into List kinds), or a string saying why
    an object was skipped (``""`` for kinds skipped quietly)."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        yield "document has no kind: skipped"
        return
    if kind == "List" or kind.endswith("List"):
        items = obj.get("items")
        if not isinstance(items, list):
            yield f"{kind} has no items list: skipped"
            return
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield from pod_targets(item, (*base, "items", i))
            else:
                yield f"{kind} item {i} is not an object: skipped"
        return
    rel = TEMPLATE_PATHS.get(kind)
    if rel is None:
        yield "" if kind in QUIET_KINDS else f"kind {kind} has no pod template that lanner knows: skipped"
        return
    template: Any = obj
    for key in rel:
        template = template.get(key) if isinstance(template, dict) else None
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        where = ".".join(str(k) for k in (*rel, "spec"))
        yield f"{kind} {object_ref(obj).name} has no {where}: skipped"
        return
    yield PodTarget(object_ref(obj), _dict(template.get("metadata")), template["spec"], (*base, *rel))
