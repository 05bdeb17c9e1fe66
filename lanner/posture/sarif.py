"""SARIF 2.1.0 output (GitHub code scanning and other SARIF consumers)."""

from __future__ import annotations

import json
from typing import Any

from lanner import __version__
from lanner.posture.extras import EXTRA_CHECKS
from lanner.posture.pss import CONTROLS, version_str
from lanner.posture.scan import PSS_PREFIX, ScanResult

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
PSS_DOC = "https://kubernetes.io/docs/concepts/security/pod-security-standards/"


def _uri(file: str) -> str:
    if file == "<stdin>":
        return "stdin"
    from pathlib import PurePosixPath

    return str(PurePosixPath(file.replace("\\", "/"))).replace(" ", "%20")


def rules(result: ScanResult) -> list[dict[str, Any]]:
    level = result.options.level
    out: list[dict[str, Any]] = []
    for c in CONTROLS:
        default = "error" if (c.level == "baseline" or level == "restricted") else "warning"
        out.append({
            "id": PSS_PREFIX + c.id,
            "name": c.id,
            "shortDescription": {"text": f"Pod Security Standards ({c.level}): {c.title}"},
            "fullDescription": {"text": f"The {c.level} Pod Security Standard control {c.id}, from "
                                        f"{version_str(c.since)}."},
            "helpUri": PSS_DOC,
            "defaultConfiguration": {"level": default},
            "properties": {"pss_control": c.id, "pss_level": c.level, "tags": ["security", "kubernetes"]},
        })
    for e in EXTRA_CHECKS:
        out.append({
            "id": e.id,
            "name": e.id.split(".", 1)[1],
            "shortDescription": {"text": e.title},
            "fullDescription": {"text": e.help},
            "defaultConfiguration": {"level": e.severity},
            "properties": {"tags": ["security", "kubernetes"]},
        })
    return out


def to_sarif(result: ScanResult) -> str:
    rule_list = rules(result)
    index = {r["id"]: i for i, r in enumerate(rule_list)}
    results = []
    for f in result.findings:
        loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(f.file)}}}
        if f.line:
            loc["physicalLocation"]["region"] = {"startLine": f.line, "startColumn": max(f.column, 1)}
        fq = str(f.obj) + (f"/{f.container}" if f.container else "")
        loc["logicalLocations"] = [{"fullyQualifiedName": fq, "kind": "object"}]
        props: dict[str, Any] = {"object": {"kind": f.obj.kind, "namespace": f.obj.namespace,
                                            "name": f.obj.name},
                                 "container": f.container, "fix": f.fix, "path": _path(f.path)}
        if f.pss_control:
            props["pss_control"] = f.pss_control
        results.append({
            "ruleId": f.check,
            "ruleIndex": index[f.check],
            "level": f.severity,
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [loc],
            "properties": props,
        })
    notifications = [{"level": "error", "message": {"text": str(e)},
                      "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(e.file)},
                                                          **({"region": {"startLine": e.line}} if e.line
                                                             else {})}}]}
                     for e in result.errors]
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "lanner", "version": __version__, "semanticVersion": __version__,
                            "informationUri": PSS_DOC, "rules": rule_list}},
        "invocations": [{"executionSuccessful": not result.errors,
                         "toolExecutionNotifications": notifications}],
        "results": results,
        "properties": {"level": result.options.level, "pss_version": version_str(result.options.version)},
    }
    return json.dumps({"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}, indent=2) + "\n"


def _path(path: tuple[Any, ...]) -> str:
    from lanner.posture.model import path_str

    return path_str(path)
