"""Text and JSON reports of a scan."""

from __future__ import annotations

import json
from typing import Any

from lanner import __version__
from lanner.posture.pss import version_str
from lanner.posture.scan import ScanResult

_SEV_ORDER = {"error": 0, "warning": 1, "note": 2}


def sorted_findings(result: ScanResult) -> list[Any]:
    return sorted(result.findings, key=lambda f: (f.file, f.line, f.column, _SEV_ORDER[f.severity], f.check))


def summary(result: ScanResult) -> dict[str, int]:
    out = {"files": len(result.files), "objects": len(result.objects), "error": 0, "warning": 0, "note": 0,
           "input_errors": len(result.errors)}
    for f in result.findings:
        out[f.severity] += 1
    return out


def to_json(result: ScanResult) -> str:
    opts = result.options
    doc = {
        "tool": {"name": "lanner", "version": __version__},
        "level": opts.level,
        "pss_version": version_str(opts.version),
        "summary": summary(result),
        "findings": [f.to_json() for f in sorted_findings(result)],
        "errors": [e.to_json() for e in result.errors],
        "notes": [n.to_json() for n in result.notes],
    }
    return json.dumps(doc, indent=2) + "\n"


def to_text(result: ScanResult, color: bool = False) -> str:
    rows = []
    for f in sorted_findings(result):
        rows.append((f"{f.file}:{f.line}" if f.line else f.file, str(f.obj), f.container or "-", f.severity,
                     f.check, f.message, f.fix))
    lines: list[str] = []
    if rows:
        head = ("LOCATION", "OBJECT", "CONTAINER", "SEVERITY", "CHECK")
        widths = [max(len(head[i]), *(min(len(r[i]), 48) for r in rows)) for i in range(5)]
        lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(head)) + "  MESSAGE")
        for r in rows:
            sev = r[3]
            cells = [r[i].ljust(widths[i]) for i in range(5)]
            if color:
                code = {"error": "31", "warning": "33", "note": "36"}[sev]
                cells[3] = f"\x1b[{code}m{cells[3]}\x1b[0m"
            lines.append("  ".join(cells) + "  " + r[5])
            lines.append(" " * (sum(widths) + 2 * 5) + "fix: " + r[6])
    s = summary(result)
    verdict = (f"{s['objects']} object(s) in {s['files']} file(s) checked at {result.options.level} "
               f"{version_str(result.options.version)}: {s['error']} error(s), {s['warning']} warning(s)")
    if s["note"]:
        verdict += f", {s['note']} note(s)"
    if result.errors:
        verdict += f", {len(result.errors)} unreadable input(s)"
    lines.append(verdict)
    return "\n".join(lines) + "\n"
