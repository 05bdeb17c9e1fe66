"""Scanning: documents → pod templates → PSS and extra checks → findings with positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lanner.posture.extras import EXTRA_BY_ID, EXTRA_CHECKS, evaluate_extras
from lanner.posture.loader import Document, LoadResult, load_paths
from lanner.posture.model import SEVERITY_RANK, Finding, InputError, Note, ObjectRef, Op, Severity
from lanner.posture.pss import CONTROLS, CONTROLS_BY_ID, LATEST, Level, Version, Violation, evaluate
from lanner.posture.workloads import PodTarget, pod_targets

SeverityOrOff = Severity | Literal["off"]
PSS_PREFIX = "pss."


def all_check_ids() -> list[str]:
    return [PSS_PREFIX + c.id for c in CONTROLS] + [c.id for c in EXTRA_CHECKS]


@dataclass
class ScanOptions:
    level: Level = "restricted"
    version: Version = LATEST
    # check id → severity or "off"; ids are "pss.<control>", "hardening.*", "extra.*"
    severities: dict[str, SeverityOrOff] = field(default_factory=dict)

    def severity(self, check: str, default: Severity) -> SeverityOrOff:
        return self.severities.get(check, default)


@dataclass
class ScannedObject:
    file: str
    line: int
    obj: ObjectRef
    doc_index: int


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    objects: list[ScannedObject] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    options: ScanOptions = field(default_factory=ScanOptions)

    def worst(self) -> int:
        return max((SEVERITY_RANK[f.severity] for f in self.findings), default=0)


def _prefix(ops: list[Op], base: tuple[Any, ...]) -> list[Op]:
    return [Op(o.kind, (*base, *o.path), o.value, o.additive) for o in ops]


def check_target(target: PodTarget, opts: ScanOptions, extras: bool = True) -> list[Finding]:
    """Findings for one pod template; paths are from the document root."""
    raw: list[tuple[Violation, Severity, str | None]] = []
    for v in evaluate(target.meta, target.spec, opts.level, opts.version):
        raw.append((v, "error", v.control))
    if opts.level == "baseline":
        for v in evaluate(target.meta, target.spec, "restricted", opts.version):
            if CONTROLS_BY_ID[v.control].level == "restricted":
                raw.append((v, "warning", v.control))
    if extras:
        skip = frozenset(k for k, s in opts.severities.items() if s == "off")
        for v in evaluate_extras(target.meta, target.spec, skip):
            raw.append((v, EXTRA_BY_ID[v.control].severity, None))

    best: dict[tuple[Any, ...], Finding] = {}
    order: list[tuple[Any, ...]] = []
    for v, default_sev, pss_control in raw:
        check = PSS_PREFIX + v.control if pss_control else v.control
        sev = opts.severity(check, default_sev)
        if sev == "off":
            continue
        path = (*target.base, *v.path)
        f = Finding(check=check, severity=sev, message=v.message, fix=v.fix, path=path, obj=target.obj,
                    container=v.container, pss_control=pss_control, ops=_prefix(v.ops, target.base))
        # One finding per place: a hardening check on the same field as a PSS control, or a
        # restricted control on the same field as a baseline one, keeps the most severe (the
        # first on a tie, PSS before the others).
        key = path
        old = best.get(key)
        if old is None:
            best[key] = f
            order.append(key)
        elif SEVERITY_RANK[sev] > SEVERITY_RANK[old.severity]:
            best[key] = f
    return [best[k] for k in order]


def scan_documents(docs: list[Document], opts: ScanOptions, result: ScanResult) -> None:
    for doc in docs:
        for t in pod_targets(doc.data):
            if isinstance(t, str):
                if t:
                    result.notes.append(Note(doc.file, t, doc.start_line))
                continue
            line, _ = doc.position(t.base) if t.base else (doc.start_line, 1)
            result.objects.append(ScannedObject(doc.file, line or doc.start_line, t.obj, doc.index))
            for f in check_target(t, opts):
                f.file = doc.file
                f.doc_index = doc.index
                f.line, f.column = doc.position(f.path)
                result.findings.append(f)


def scan_paths(paths: list[str], opts: ScanOptions) -> tuple[ScanResult, LoadResult]:
    loaded = load_paths(paths)
    result = ScanResult(errors=list(loaded.errors), notes=list(loaded.notes), files=list(loaded.files),
                        options=opts)
    scan_documents(loaded.documents, opts, result)
    return result, loaded


def default_version() -> Version:
    return LATEST
