"""``lanner scan --fix``: the smallest securityContext changes that make manifests pass.

YAML files go through a ruamel.yaml round trip, which keeps comments, key order, quoting and
the file's indentation; JSON files are rewritten with their indentation. Only findings of
severity error that carry fix operations are applied; others (hostPath volumes, …) stay for a
person to decide.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from typing import Any

from lanner.posture.model import Op
from lanner.posture.ops import apply_op
from lanner.posture.scan import ScanOptions, ScanResult


def guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as the file uses them; (2, 0) when unsure."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    mapping, offset = 0, -1
    for a, b in itertools.pairwise(lines):
        ia = len(a) - len(a.lstrip(" "))
        ib = len(b) - len(b.lstrip(" "))
        sa, sb = a.strip(), b.strip()
        if not sa.endswith(":") or sa.startswith("- "):
            continue
        if sb.startswith("- ") or sb == "-":
            if offset < 0:
                offset = ib - ia
        elif ib > ia and not mapping:
            mapping = ib - ia
    return (mapping or 2, max(offset, 0))


def _ops_by_doc(result: ScanResult) -> dict[str, dict[int, list[Op]]]:
    out: dict[str, dict[int, list[Op]]] = {}
    for f in result.findings:
        if f.severity == "error" and f.ops and f.file != "<stdin>":
            out.setdefault(f.file, {}).setdefault(f.doc_index, []).extend(f.ops)
    return out


def fix_text(text: str, ops_by_doc: dict[int, list[Op]]) -> tuple[str, int]:
    """Applies the ops to a YAML text (documents by index); returns the new text and the count
    of changes."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    mapping, offset = guess_indent(text)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    docs = list(yaml.load_all(text))
    changed = 0
    # PyYAML numbers documents including empty ones; ruamel yields None for those as well.
    for index, ops in ops_by_doc.items():
        if index >= len(docs):
            continue
        for op in ops:
            if apply_op(docs[index], op, CommentedMap, _flow_seq(CommentedSeq)):
                changed += 1
    if not changed:
        return text, 0
    buf = io.StringIO()
    starts_with_marker = text.lstrip().startswith("---")
    yaml.explicit_start = starts_with_marker or None
    yaml.dump_all(docs, buf)
    return buf.getvalue(), changed


def _flow_seq(cls: Any) -> Any:
    def make() -> Any:
        seq = cls()
        seq.fa.set_flow_style()
        return seq
    return make


def fix_json(text: str, ops: list[Op]) -> tuple[str, int]:
    doc = json.loads(text)
    changed = sum(1 for op in ops if apply_op(doc, op))
    if not changed:
        return text, 0
    m = re.search(r"\n([ \t]+)\S", text)
    indent: int | str | None = None
    if m:
        indent = m.group(1) if "\t" in m.group(1) else len(m.group(1))
    return json.dumps(doc, indent=indent) + "\n", changed


def fix_files(result: ScanResult, opts: ScanOptions) -> dict[str, int]:
    """Rewrites each file with fixable errors; returns file → number of changes."""
    done: dict[str, int] = {}
    for name, by_doc in _ops_by_doc(result).items():
        with open(name, encoding="utf-8-sig") as f:
            text = f.read()
        if name.endswith(".json") and text.lstrip().startswith(("{", "[")):
            new, count = fix_json(text, [op for ops in by_doc.values() for op in ops])
        else:
            new, count = fix_text(text, by_doc)
        if count:
            with open(name, "w", encoding="utf-8") as f:
                f.write(new)
            done[name] = count
    return done
