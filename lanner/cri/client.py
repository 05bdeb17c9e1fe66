"""A CRI (Kubernetes Container Runtime Interface, ``runtime.v1``) client over gRPC on the runtime's
unix socket: container id → ``lanner.events.Container`` with its pod.

One lookup is ``ContainerStatus(verbose)`` then ``PodSandboxStatus`` of its pod (plus
``ListContainers(filter.id)`` when the verbose info does not name the sandbox). An id that is not a
container may be a pod sandbox (the pause process): ``PodSandboxStatus(verbose)`` answers for it.
Every call has a deadline; no error leaves this module as an exception — a lookup reports
FOUND, NOT_FOUND or ERROR and the client counts what went wrong (``stats()``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Final

import grpc  # type: ignore[import-untyped, unused-ignore]

from lanner.events import Container, Mount
from lanner.rules.fields.container import split_image
from lanner.state.containers import Lookup, LookupStatus

from .stubs import load_stubs

__all__ = [
    "DEFAULT_SOCKETS",
    "DEFAULT_TIMEOUT_S",
    "CriClient",
    "Lookup",
    "LookupStatus",
    "container_from_status",
    "parse_image",
    "sandbox_container",
]

DEFAULT_SOCKETS: Final[tuple[str, ...]] = ("/run/containerd/containerd.sock", "/run/crio/crio.sock")
"""Tried in order when no socket is given: containerd, then CRI-O."""

DEFAULT_TIMEOUT_S: Final = 2.0
"""Deadline of one lookup (all its calls together)."""

SANDBOX_LABEL: Final = "io.kubernetes.sandbox.id"
POD_NAME_LABEL: Final = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL: Final = "io.kubernetes.pod.namespace"
POD_UID_LABEL: Final = "io.kubernetes.pod.uid"

# Annotations (containerd, CRI-O) that name the image when the status only has an image id.
_IMAGE_ANNOTATIONS: Final = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName",
                             "io.kubernetes.cri-o.Image")
# Annotations that name the sandbox of a container.
_SANDBOX_ANNOTATIONS: Final = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")

# MountPropagation enum values of runtime.v1 -> the names Falco prints.
_PROPAGATION: Final = {0: "private", 1: "rslave", 2: "rshared"}

_DIGEST: Final = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


# --- turning CRI messages into Container ------------------------------------------------------------------

def parse_image(image: str, image_ref: str = "") -> tuple[str, str, str]:
    """(repository, tag, digest) of an image reference as FIELDS.md §9 splits it (``@digest``
    removed, then a ``:tag`` after the last ``/``; a registry port is kept). When the reference
    carries no digest, ``image_ref`` gives it if it is one (``repo@sha256:…`` or a bare
    ``sha256:…``, which containerd reports for images without a registry digest)."""
    repo, tag, digest = split_image(image)
    if not digest and image_ref:
        ref_repo, at, ref_digest = image_ref.rpartition("@")
        if at and _DIGEST.fullmatch(ref_digest):
            digest = ref_digest
            if not repo:
                repo = split_image(ref_repo)[0]
        elif _DIGEST.fullmatch(image_ref):
            digest = image_ref
    return repo, tag, digest


def _info(response: Any) -> dict[str, Any]:
    """The verbose ``info["info"]`` JSON object of a status response ({} when absent or invalid)."""
    try:
        raw = response.info.get("info")
        data = json.loads(raw) if raw else {}
    except (ValueError, TypeError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def _get(obj: Any, *keys: str) -> Any:
    """A nested JSON value; each key also tried in camelCase (``security_context``/``securityContext``)."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        value = obj.get(key)
        if value is None and "_" in key:
            head, *rest = key.split("_")
            value = obj.get(head + "".join(w.title() for w in rest))
        obj = value
    return obj


def _privileged(info: dict[str, Any]) -> bool:
    """The container's privileged flag from the verbose info: the CRI config's security context
    (containerd), the OCI runtime spec's (as Falco also reads it), or the top-level flag (CRI-O)."""
    for value in (_get(info, "config", "linux", "security_context", "privileged"),
                  _get(info, "runtimeSpec", "linux", "security_context", "privileged"),
                  info.get("privileged")):
        if isinstance(value, bool):
            return value
    return False


def _annotations(info: dict[str, Any], status_annotations: Any) -> dict[str, str]:
    spec = _get(info, "runtimeSpec", "annotations")
    out: dict[str, str] = dict(status_annotations) if status_annotations else {}
    if isinstance(spec, dict):
        out.update({str(k): str(v) for k, v in spec.items()})
    return out


def _image_name(status_image: str, image_ref: str, info: dict[str, Any], annotations: dict[str, str]) -> str:
    """The image reference as the runtime reports it; when that is empty or only an image id
    (``sha256:…``), the name the container was created with (annotations, CRI config)."""
    image = status_image
    if not image or _DIGEST.fullmatch(image):
        for key in _IMAGE_ANNOTATIONS:
            if annotations.get(key):
                return annotations[key]
        configured = _get(info, "config", "image", "image")
        if isinstance(configured, str) and configured and not _DIGEST.fullmatch(configured):
            return configured
        if "@" in image_ref:
            return image_ref
    return image


def _mounts(mounts: Any) -> list[Mount]:
    return [Mount(source=m.host_path, dest=m.container_path, mode="", rw=not m.readonly,
                  propagation=_PROPAGATION.get(int(m.propagation), "unknown")) for m in mounts]


def sandbox_id_of(info: dict[str, Any], annotations: dict[str, str]) -> str:
    """The pod sandbox id a container's verbose info names ("" when it does not)."""
    sid = info.get("sandboxID")
    if isinstance(sid, str) and sid:
        return sid
    for key in _SANDBOX_ANNOTATIONS:
        if annotations.get(key):
            return annotations[key]
    return ""


def _pod_fields(c: Container, sandbox: Any, sandbox_id: str) -> None:
    """Pod name/namespace/uid/ip/labels from a PodSandboxStatus (None: from the container labels)."""
    labels = c.labels
    if sandbox is not None:
        md = sandbox.metadata
        c.pod_name = md.name or None
        c.pod_namespace = md.namespace or None
        c.pod_uid = md.uid or None
        c.pod_ip = sandbox.network.ip or None
        c.pod_labels = dict(sandbox.labels)
    c.pod_name = c.pod_name or labels.get(POD_NAME_LABEL)
    c.pod_namespace = c.pod_namespace or labels.get(POD_NAMESPACE_LABEL)
    c.pod_uid = c.pod_uid or labels.get(POD_UID_LABEL)
    # As Falco's container plugin: the sandbox id and the pod identity are also container labels.
    if sandbox_id:
        labels[SANDBOX_LABEL] = sandbox_id
    for key, value in ((POD_UID_LABEL, c.pod_uid), (POD_NAME_LABEL, c.pod_name),
                       (POD_NAMESPACE_LABEL, c.pod_namespace)):
        if value:
            labels[key] = value


def container_from_status(response: Any, sandbox: Any, sandbox_id: str) -> Container:
    """A Container from a ``ContainerStatusResponse`` (verbose) and its pod's ``PodSandboxStatus``
    (None when unknown)."""
    st = response.status
    info = _info(response)
    annotations = _annotations(info, st.annotations)
    image = _image_name(st.image.image, st.image_ref, info, annotations)
    repo, tag, digest = parse_image(image, st.image_ref)
    c = Container(
        id=st.id, name=st.metadata.name, image=image, image_repository=repo, image_tag=tag,
        image_digest=digest, privileged=_privileged(info), mounts=_mounts(st.mounts), labels=dict(st.labels),
        start_ts=int(st.started_at or st.created_at),
    )
    _pod_fields(c, sandbox, sandbox_id)
    return c


def sandbox_container(response: Any) -> Container:
    """A Container for a pod sandbox (the pause process) from ``PodSandboxStatusResponse`` (verbose):
    named after the pod, its image the sandbox image, its labels the pod's."""
    st = response.status
    info = _info(response)
    annotations = _annotations(info, st.annotations)
    image = info.get("image") if isinstance(info.get("image"), str) else ""
    if not image:
        image = _image_name("", "", info, annotations)
    repo, tag, digest = parse_image(image)
    c = Container(id=st.id, name=st.metadata.name, image=image, image_repository=repo, image_tag=tag,
                  image_digest=digest, privileged=_privileged(info), labels=dict(st.labels),
                  start_ts=int(st.created_at))
    _pod_fields(c, st, st.id)
    return c


# --- the client ----------------------------------------------------------------------------------------------

class _Failure(Exception):
    def __init__(self, status: LookupStatus) -> None:
        super().__init__(status.value)
        self.status = status


class CriClient:
    """CRI RuntimeService client. ``socket``: the runtime's unix socket path (or a ``unix:`` target);
    None = the first of ``sockets`` that exists, checked again on each call until one does.
    ``timeout_s``: default deadline of one lookup. Thread-safe. Raises CriSetupError at
    construction when grpcio or the generated stubs are missing (``make setup``)."""

    def __init__(self, socket: str | None = None, *, sockets: Sequence[str] = DEFAULT_SOCKETS,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._pb, self._pbg = load_stubs()
        self._explicit = socket
        self.sockets = tuple(sockets)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._channel: Any = None
        self._stub: Any = None
        self._target: str | None = None
        self.counters: dict[str, int] = {
            "lookups": 0, "calls": 0, "errors": 0, "not_found": 0, "timeouts": 0, "unavailable": 0,
        }
        self.last_error = ""
        """The text of the last error (for logs and `lanner doctor`)."""

    @property
    def pb(self) -> ModuleType:
        """The generated ``api_pb2`` module."""
        return self._pb

    @property
    def socket(self) -> str | None:
        """The socket in use (None until one is found)."""
        if self._explicit is not None:
            return self._explicit
        return self._target

    # --- public calls -------------------------------------------------------------------------------

    def container(self, container_id: str, *, timeout_s: float | None = None) -> Container | None:
        """The container (or pod sandbox) with this full id; None when unknown or on error."""
        return self.lookup(container_id, timeout_s=timeout_s).container

    def lookup(self, container_id: str, *, timeout_s: float | None = None) -> Lookup:
        """Like container(), telling NOT_FOUND from ERROR (a caller retries only errors)."""
        self.counters["lookups"] += 1
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        try:
            return Lookup(LookupStatus.FOUND, self._lookup(container_id, deadline))
        except _Failure as f:
            if f.status is LookupStatus.NOT_FOUND:
                self.counters["not_found"] += 1
            return Lookup(f.status)
        except Exception as e:  # malformed answers: never into the event path
            self._count_error("errors", f"{type(e).__name__}: {e}")
            return Lookup(LookupStatus.ERROR)

    def list_ids(self, *, timeout_s: float | None = None) -> set[str] | None:
        """The ids of every container and pod sandbox the runtime knows (any state); None on error."""
        pb = self._pb
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        try:
            containers = self._call("ListContainers", pb.ListContainersRequest(), deadline)
            sandboxes = self._call("ListPodSandbox", pb.ListPodSandboxRequest(), deadline)
        except _Failure:
            return None
        except Exception as e:
            self._count_error("errors", f"{type(e).__name__}: {e}")
            return None
        return {c.id for c in containers.containers} | {s.id for s in sandboxes.items}

    def stop_container(self, container_id: str, *, grace_s: int = 0, timeout_s: float | None = None) -> str:
        """StopContainer (the `stop` response action): "" when the runtime stopped it, else why not.
        ``grace_s``: how long the runtime waits after SIGTERM before SIGKILL (0: at once)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s) + grace_s
        try:
            self._call("StopContainer", self._pb.StopContainerRequest(container_id=container_id, timeout=grace_s),
                       deadline)
        except _Failure as f:
            return "no such container" if f.status is LookupStatus.NOT_FOUND else self.last_error
        except Exception as e:
            self._count_error("errors", f"{type(e).__name__}: {e}")
            return self.last_error
        return ""

    def version(self, *, timeout_s: float | None = None) -> dict[str, str] | None:
        """runtime_name, runtime_version, runtime_api_version; None when the runtime does not answer."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        try:
            v = self._call("Version", self._pb.VersionRequest(version="v1"), deadline)
        except _Failure:
            return None
        except Exception as e:
            self._count_error("errors", f"{type(e).__name__}: {e}")
            return None
        return {"runtime_name": v.runtime_name, "runtime_version": v.runtime_version,
                "runtime_api_version": v.runtime_api_version}

    def stats(self) -> dict[str, int]:
        """lookups; calls (RPCs); errors (failed calls and malformed answers; NOT_FOUND is not an
        error), of which timeouts and unavailable (no socket, connection refused); not_found
        (lookups of ids the runtime does not know)."""
        return dict(self.counters)

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------------

    def _lookup(self, cid: str, deadline: float) -> Container:
        pb = self._pb
        try:
            resp = self._call("ContainerStatus", pb.ContainerStatusRequest(container_id=cid, verbose=True), deadline)
        except _Failure as f:
            if f.status is not LookupStatus.NOT_FOUND:
                raise
            # Not a container: the pause process of a pod has the sandbox's id (CONTAINERD.md §7).
            sandbox = self._call("PodSandboxStatus",
                                 pb.PodSandboxStatusRequest(pod_sandbox_id=cid, verbose=True), deadline)
            return sandbox_container(sandbox)
        info = _info(resp)
        sandbox_id = sandbox_id_of(info, _annotations(info, resp.status.annotations))
        if not sandbox_id:
            found = self._call("ListContainers", pb.ListContainersRequest(filter=pb.ContainerFilter(id=cid)),
                               deadline)
            sandbox_id = found.containers[0].pod_sandbox_id if found.containers else ""
        sandbox = None
        if sandbox_id:
            try:
                sandbox = self._call("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id),
                                     deadline).status
            except _Failure as f:
                if f.status is not LookupStatus.NOT_FOUND:
                    raise  # retry later rather than cache a container without its pod
        return container_from_status(resp, sandbox, sandbox_id)

    def _target_now(self) -> str | None:
        if self._explicit is not None:
            s = self._explicit
            return s if ":" in s.split("/", 1)[0] else "unix:" + os.path.abspath(s)
        for s in self.sockets:
            if os.path.exists(s):
                return "unix:" + os.path.abspath(s)
        return None

    def _runtime_stub(self) -> Any:
        stub = self._stub
        if stub is not None:
            return stub
        with self._lock:
            if self._stub is None:
                target = self._target_now()
                if target is None:
                    return None
                self._channel = grpc.insecure_channel(target, options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 2000),
                    ("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.enable_http_proxy", 0),
                ])
                self._stub = self._pbg.RuntimeServiceStub(self._channel)
                self._target = target.removeprefix("unix:")
            return self._stub

    def _call(self, method: str, request: Any, deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._count_error("timeouts", f"{method}: lookup deadline exceeded")
            raise _Failure(LookupStatus.ERROR)
        stub = self._runtime_stub()
        if stub is None:
            self._count_error("unavailable", f"no CRI socket among {', '.join(self.sockets)}")
            raise _Failure(LookupStatus.ERROR)
        self.counters["calls"] += 1
        try:
            return getattr(stub, method)(request, timeout=remaining)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code == grpc.StatusCode.NOT_FOUND:
                raise _Failure(LookupStatus.NOT_FOUND) from None
            text = f"{method}: {code.name if code is not None else 'error'}: " \
                   f"{e.details() if isinstance(e, grpc.Call) else e}"
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self._count_error("timeouts", text)
            elif code == grpc.StatusCode.UNAVAILABLE:
                self._count_error("unavailable", text)
            else:
                self._count_error("errors", text)
            raise _Failure(LookupStatus.ERROR) from None

    def _count_error(self, kind: str, text: str) -> None:
        if kind != "errors":
            self.counters[kind] += 1
        self.counters["errors"] += 1
        self.last_error = text
