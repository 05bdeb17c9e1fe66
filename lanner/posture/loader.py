"""Reading Kubernetes manifests (YAML or JSON; files, directories, stdin) with line numbers.

Each document becomes a :class:`Document`: its data as plain Python values plus an index from
every path in it to the (line, column) where it starts, so a finding can point at the key a
user would edit. Unreadable input becomes an :class:`~lanner.posture.model.InputError` with a
position, never an exception escaping to the user.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lanner.posture.model import InputError, Note, Path

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN_NAME = "<stdin>"


@dataclass
class Document:
    file: str
    index: int
    data: dict[str, Any]
    lines: dict[Path, tuple[int, int]] = field(default_factory=dict)
    start_line: int = 0

    def position(self, path: Path) -> tuple[int, int]:
        """Where ``path`` starts, or its nearest ancestor that exists in the text."""
        p = path
        while p:
            pos = self.lines.get(p)
            if pos is not None:
                return pos
            p = p[:-1]
        return (self.start_line, 1) if self.start_line else (0, 0)


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def expand_paths(paths: list[str], result: LoadResult) -> Iterator[str]:
    """Files to read: each file as given, each directory walked for *.yaml, *.yml, *.json."""
    for p in paths:
        if p == "-":
            yield p
        elif os.path.isdir(p):
            found = False
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                        found = True
                        yield os.path.join(root, name)
            if not found:
                result.notes.append(Note(p, "directory holds no .yaml, .yml or .json file"))
        elif os.path.exists(p):
            yield p
        else:
            result.errors.append(InputError(p, "no such file or directory"))


def load_paths(paths: list[str]) -> LoadResult:
    result = LoadResult()
    for p in expand_paths(paths, result):
        name = STDIN_NAME if p == "-" else p
        try:
            raw = sys.stdin.buffer.read() if p == "-" else _read(p)
        except OSError as e:
            result.errors.append(InputError(name, f"cannot read: {e.strerror or e}"))
            continue
        result.files.append(name)
        load_bytes(raw, name, result)
    return result


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode(raw: bytes, name: str) -> str | InputError:
    if b"\x00" in raw:
        return InputError(name, "binary data (NUL bytes): not a YAML or JSON manifest")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return InputError(name, f"not UTF-8 text (byte 0x{raw[e.start]:02x}): not a YAML or JSON manifest",
                          line, col)


def load_bytes(raw: bytes, name: str, result: LoadResult) -> None:
    text = decode(raw, name)
    if isinstance(text, InputError):
        result.errors.append(text)
        return
    load_text(text, name, result)


def load_text(text: str, name: str, result: LoadResult) -> None:
    if not text.strip():
        if name == STDIN_NAME:  # most likely the command before the pipe failed
            result.errors.append(InputError(name, "standard input is empty: did the command before the "
                                                  "pipe (helm template, kubectl kustomize…) fail?"))
        else:
            result.notes.append(Note(name, "empty: nothing to check"))
        return
    docs = _parse_yaml(text, name)
    if isinstance(docs, InputError):
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                result.errors.append(InputError(name, f"invalid JSON: {e.msg}", e.lineno, e.colno))
                return
            docs = [(data, {}, 1)]
        else:
            result.errors.append(docs)
            return
    seen = 0
    for i, (data, lines, start) in enumerate(docs):
        if data is None:
            continue
        if not isinstance(data, dict):
            what = "a list" if isinstance(data, list) else f"a {type(data).__name__} value"
            result.errors.append(InputError(
                name, f"document {i + 1} is {what}, not a Kubernetes object (a mapping with "
                f"apiVersion and kind)", start, 1))
            continue
        seen += 1
        result.documents.append(Document(name, i, data, lines, start))
    if not seen and not any(e.file == name for e in result.errors):
        result.notes.append(Note(name, "no Kubernetes object in it (only empty documents or comments)"))


def _parse_yaml(text: str, name: str) -> list[tuple[Any, dict[Path, tuple[int, int]], int]] | InputError:
    import yaml

    loader_cls: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    out: list[tuple[Any, dict[Path, tuple[int, int]], int]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            lines: dict[Path, tuple[int, int]] = {}
            _index(node, data, (), lines)
            out.append((data, lines, node.start_mark.line + 1))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = e.problem or "syntax error"
        if e.context:
            msg = f"{msg} ({e.context}"
            if e.context_mark is not None and e.problem_mark is not None:
                msg += f" at line {e.context_mark.line + 1} column {e.context_mark.column + 1}"
            msg += ")"
        if mark is None:
            return InputError(name, f"invalid YAML: {msg}")
        return InputError(name, f"invalid YAML: {msg}", mark.line + 1, mark.column + 1)
    except yaml.YAMLError as e:
        return InputError(name, f"invalid YAML: {e}")
    except (ValueError, TypeError, RecursionError) as e:
        return InputError(name, f"invalid YAML: {e}")
    finally:
        loader.dispose()
    return out


def _index(node: Any, data: Any, path: Path, out: dict[Path, tuple[int, int]]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for knode, vnode in node.value:
            key = getattr(knode, "value", None)
            if not isinstance(key, str) or key not in data:
                continue
            sub = (*path, key)
            if sub in out:  # a merge key (<<) or a duplicate: keep the first
                continue
            out[sub] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            _index(vnode, data[key], sub, out)
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for i, (item_node, item) in enumerate(zip(node.value, data, strict=False)):
            sub = (*path, i)
            out[sub] = (item_node.start_mark.line + 1, item_node.start_mark.column + 1)
            _index(item_node, item, sub, out)
