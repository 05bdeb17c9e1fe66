"""Plain data shared by the posture modules: paths, findings, fix operations, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PathElem = str | int
Path = tuple[PathElem, ...]

Severity = Literal["error", "warning", "note"]
SEVERITY_RANK: dict[str, int] = {"note": 1, "warning": 2, "error": 3}


def path_str(path: Path) -> str:
    """``("spec", "containers", 0, "image")`` → ``spec.containers[0].image``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


@dataclass(frozen=True)
class Op:
    """One change to a document, addressed by a path from the document root.

    ``set`` writes ``value`` at ``path`` (creating missing mappings on the way); ``delete``
    removes the key; ``remove_values`` removes the listed values from the list at ``path``;
    ``append`` adds ``value`` to the list at ``path`` unless it is there already (creating the
    list). ``additive`` is true when the op only fills in something that was not set, which is
    what the mutating webhook is allowed to do.
    """

    kind: Literal["set", "delete", "remove_values", "append"]
    path: Path
    value: Any = None
    additive: bool = False


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


@dataclass
class Finding:
    """One failed check. ``path`` is relative to the document root; ``line``/``column`` are
    1-based (0 when unknown, e.g. at admission)."""

    check: str
    severity: Severity
    message: str
    fix: str
    path: Path
    obj: ObjectRef
    container: str | None = None
    pss_control: str | None = None
    file: str = ""
    line: int = 0
    column: int = 0
    doc_index: int = 0
    ops: list[Op] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "object": {"kind": self.obj.kind, "namespace": self.obj.namespace, "name": self.obj.name},
            "container": self.container,
            "check": self.check,
            "pss_control": self.pss_control,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "path": path_str(self.path),
        }


@dataclass
class InputError:
    """Input that could not be read: a file, a position (1-based, 0 when unknown), a reason."""

    file: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message}


@dataclass
class Note:
    """Something worth saying that is not a finding (a skipped document, an empty file)."""

    file: str
    message: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}
