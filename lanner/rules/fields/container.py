"""Classes ``container`` and ``k8s``, as the container plugin provides them (FIELDS.md §9).

Host processes (``proc.container_id == ""``) see the built-in host entry. A containerised
process whose metadata is not known yet (``Event.container is None``) has only container.id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from lanner.events import Container, Event, Mount
from lanner.rules.fieldtypes import MISSING, ArgMode, Field, FieldType

_HOST: Final = object()
"""Marker returned by _entry for host processes."""


def _entry(ev: Event) -> Any:
    """The container entry: a Container, _HOST, or MISSING."""
    p = ev.proc
    if p is None:
        return MISSING
    if not p.container_id:
        return _HOST
    c = ev.container
    return MISSING if c is None else c


def _field(host_value: Any, get: Callable[[Container], Any]) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        c = _entry(ev)
        if c is _HOST:
            return host_value
        if c is MISSING:
            return MISSING
        return get(c)
    return extract


def _id(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    cid = p.container_id
    return cid[:12] if cid else "host"


def _full_id(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None:
        return MISSING
    return p.container_id or "host"


def split_image(image: str) -> tuple[str, str, str]:
    """``repo:tag@digest`` -> (repository, tag, digest); a registry port is not a tag."""
    repo, _, digest = image.partition("@")
    tag = ""
    colon = repo.rfind(":")
    if colon > repo.rfind("/"):
        repo, tag = repo[:colon], repo[colon + 1:]
    return repo, tag, digest


def _repository(c: Container) -> str:
    return c.image_repository or split_image(c.image)[0]


def _tag(c: Container) -> str:
    return c.image_tag or split_image(c.image)[1]


def _digest(c: Container) -> str:
    return c.image_digest or split_image(c.image)[2]


def _mount_text(m: Mount) -> str:
    return f"{m.source}:{m.dest}:{m.mode}:{'true' if m.rw else 'false'}:{m.propagation}"


def _mounts(c: Container) -> str:
    return ",".join(_mount_text(m) for m in c.mounts)


@lru_cache(maxsize=256)
def _pattern(key: str) -> re.Pattern[str]:
    return re.compile(key)


def check_mount_key(key: str | None) -> None:
    """Load-time validation of a ``container.mount.*[KEY]`` argument."""
    if key is None:
        raise ValueError("a mount key or index is required")
    if not key.isdigit():
        try:
            _pattern(key)
        except re.error as e:
            raise ValueError(f"invalid mount pattern {key!r}: {e}") from None


def _find_mount(c: Container, key: str, by_dest: bool) -> Mount | None:
    mounts = c.mounts
    if key.isdigit():
        i = int(key)
        return mounts[i] if i < len(mounts) else None
    # The key is a regular expression searched in the mount source (dest for mount.source).
    search = _pattern(key).search
    for m in mounts:
        if search(m.dest if by_dest else m.source):
            return m
    return None


def _mount_field(get: Callable[[Mount], Any], by_dest: bool = False) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        c = _entry(ev)
        if c is MISSING or c is _HOST or arg is None:
            return MISSING
        m = _find_mount(c, arg, by_dest)
        return MISSING if m is None else get(m)
    return extract


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in labels.items())


def _keyed(mapping: Callable[[Container], dict[str, str]]) -> Callable[[Event, str | None], Any]:
    """One label by key (``container.label[app]``); missing on the host and without metadata."""
    def extract(ev: Event, arg: str | None = None) -> Any:
        c = _entry(ev)
        if c is MISSING or c is _HOST or arg is None:
            return MISSING
        v = mapping(c).get(arg)
        return MISSING if v is None else v
    return extract


_label = _keyed(lambda c: c.labels)
_pod_label = _keyed(lambda c: c.pod_labels)


def _start_ts(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or not p.pidns_start_ts:
        return MISSING
    return p.pidns_start_ts


def _duration(ev: Event, arg: str | None = None) -> Any:
    p = ev.proc
    if p is None or not p.pidns_start_ts:
        return MISSING
    return ev.ts - p.pidns_start_ts


def _k8s(attr: Callable[[Container], str | None], label: str | None) -> Callable[[Event, str | None], Any]:
    def extract(ev: Event, arg: str | None = None) -> Any:
        c = _entry(ev)
        if c is MISSING or c is _HOST:
            return MISSING
        v = attr(c)
        if v is None and label is not None:
            v = c.labels.get(label)
        return MISSING if v is None else v
    return extract


def _pod_labels(ev: Event, arg: str | None = None) -> Any:
    c = _entry(ev)
    if c is MISSING or c is _HOST or not c.pod_labels:
        return MISSING
    return _labels_text(c.pod_labels)


def _F(name: str, typ: FieldType, desc: str, fn: Callable[[Event, str | None], Any],
       arg: ArgMode = ArgMode.NONE) -> Field:
    return Field(name=name, type=typ, desc=desc, extract=fn, arg=arg)


C, B, AT, RT = FieldType.CHARBUF, FieldType.BOOL, FieldType.ABSTIME, FieldType.RELTIME
KEY = ArgMode.REQUIRED_KEY

FIELDS: Final[tuple[Field, ...]] = (
    _F("container.id", C, "Short (12-character) container id; 'host' for host processes.", _id),
    _F("container.full_id", C, "Full container id; 'host' for host processes.", _full_id),
    _F("container.name", C, "Container name; 'host' for host processes.", _field("host", lambda c: c.name)),
    _F("container.image", C, "Image reference as the runtime reports it.",
       _field("", lambda c: c.image)),
    _F("container.image.repository", C, "Image repository, without tag or digest.",
       _field("", _repository)),
    _F("container.image.tag", C, "Image tag.", _field("", _tag)),
    _F("container.image.digest", C, "Image digest.", _field("", _digest)),
    _F("container.privileged", B, "The container runs privileged.", _field(False, lambda c: c.privileged)),
    _F("container.mounts", C, "Mounts as source:dest:mode:rdwr:propagation, comma separated.",
       _field("", _mounts)),
    _F("container.mount", C, "One mount (by index, or regex on its source) as source:dest:mode:rdwr:prop.",
       _mount_field(_mount_text), KEY),
    _F("container.mount.dest", C, "Destination of the first mount whose source matches the regex KEY.",
       _mount_field(lambda m: m.dest), KEY),
    _F("container.mount.source", C, "Source of the first mount whose destination matches the regex KEY.",
       _mount_field(lambda m: m.source, by_dest=True), KEY),
    _F("container.mount.mode", C, "Mode of the first mount whose source matches KEY.",
       _mount_field(lambda m: m.mode), KEY),
    _F("container.mount.rdwr", C, "Read-write flag (true/false) of the first mount whose source matches KEY.",
       _mount_field(lambda m: "true" if m.rw else "false"), KEY),
    _F("container.mount.propagation", C, "Propagation of the first mount whose source matches KEY.",
       _mount_field(lambda m: m.propagation), KEY),
    _F("container.label", C, "A container label by key.", _label, KEY),
    _F("container.labels", C, "Container labels as key:value, comma separated.",
       _field("", lambda c: _labels_text(c.labels))),
    _F("container.start_ts", AT, "Start of the process's pid namespace, ns since the epoch.", _start_ts),
    _F("container.duration", RT, "Nanoseconds since the container started.", _duration),
    _F("k8s.pod.name", C, "Kubernetes pod name.", _k8s(lambda c: c.pod_name, "io.kubernetes.pod.name")),
    _F("k8s.ns.name", C, "Kubernetes namespace name.",
       _k8s(lambda c: c.pod_namespace, "io.kubernetes.pod.namespace")),
    _F("k8s.pod.uid", C, "Kubernetes pod UID.", _k8s(lambda c: c.pod_uid, "io.kubernetes.pod.uid")),
    _F("k8s.pod.ip", C, "Kubernetes pod IP address.", _k8s(lambda c: c.pod_ip, None)),
    _F("k8s.pod.label", C, "A pod label by key.", _pod_label, KEY),
    _F("k8s.pod.labels", C, "Pod labels as key:value, comma separated.", _pod_labels),
)
