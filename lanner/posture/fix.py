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


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the text uses them; (2, 2, 0) when
    unsure. ``containers:`` / ``  - name: x`` is (2, 4, 2); ``containers:`` / ``- name: x`` is
    (2, 2, 0); ``containers:`` / ``-   name: x`` is (?, 4, 0)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    mapping, seq, offset = 0, 0, -1
    for a, b in itertools.pairwise(lines):
        ia = len(a) - len(a.lstrip(" "))
        ib = len(b) - len(b.lstrip(" "))
        sa, sb = a.strip(), b.strip()
        if not sa.endswith(":") or sa.startswith("- "):
            continue
        if sb.startswith("- "):
            if offset < 0:
                offset = ib - ia
                rest = sb[1:]
                seq = ib + 1 + (len(rest) - len(rest.lstrip(" "))) - ia
        elif ib > ia and not mapping:
            mapping = ib - ia
    mapping = mapping or 2
    offset = max(offset, 0)
    seq = seq if seq >= offset + 2 else max(mapping, offset + 2)
    return (mapping, seq, offset)


def _ops_by_doc(result: ScanResult) -> dict[str, dict[int, list[Op]]]:
    out: dict[str, dict[int, list[Op]]] = {}
    for f in result.findings:
        if f.severity == "error" and f.ops and f.file != "<stdin>":
            out.setdefault(f.file, {}).setdefault(f.doc_index, []).extend(f.ops)
    return out


def _document_spans(text: str) -> list[tuple[int, int] | None]:
    """For each document (numbered as the loader numbers them), the character span of its
    root node, or None for an empty document. Text outside these spans — comments between
    documents, ``---`` markers — is never rewritten."""
    import yaml

    loader = yaml.SafeLoader(text)  # pure-Python loader: its marks count characters
    spans: list[tuple[int, int] | None] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            is_null = isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")
            spans.append(None if is_null else (node.start_mark.index, node.end_mark.index))
    finally:
        loader.dispose()
    return spans


def fix_text(text: str, ops_by_doc: dict[int, list[Op]]) -> tuple[str, int]:
    """Applies the ops to a YAML text (documents by index); returns the new text and the count
    of changes. Each changed document's root node goes through a ruamel.yaml round trip with
    the indentation it had; the rest of the text is kept byte for byte."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    spans = _document_spans(text)
    changed = 0
    pieces: list[tuple[int, int, str]] = []
    for index in sorted(ops_by_doc):
        span = spans[index] if index < len(spans) else None
        if span is None:
            continue
        start, end = span
        # a root block mapping starts at its first key: take the whole line from column 0
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].strip():
            continue  # "--- {inline}" documents are left alone
        chunk = text[line_start:end]
        yaml = YAML(typ="rt")
        yaml.preserve_quotes = True
        yaml.width = 4096
        mapping, seq, offset = guess_indent(chunk)
        yaml.indent(mapping=mapping, sequence=seq, offset=offset)
        data = yaml.load(chunk)
        n = 0
        for op in ops_by_doc[index]:
            if apply_op(data, op, CommentedMap, _flow_seq(CommentedSeq)):
                n += 1
        if not n:
            continue
        buf = io.StringIO()
        yaml.dump(data, buf)
        new = buf.getvalue()
        if not chunk.endswith("\n"):
            new = new.rstrip("\n")
        pieces.append((line_start, end, new))
        changed += n
    if not changed:
        return text, 0
    out = text
    for start, end, new in sorted(pieces, reverse=True):
        out = out[:start] + new + out[end:]
    return out, changed


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
