"""Reading rules files: YAML documents into typed items with their locations.

This layer knows the shape of each item (keys and value types) and nothing about conditions.
Shape errors are LOAD_ERR_YAML_* errors; unknown keys and items are warnings, as in Falco.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lanner.rules.ruleset import LoadMessage, Location

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"

RULE_KEYS = frozenset({
    "rule", "desc", "condition", "output", "priority", "source", "enabled", "tags", "exceptions",
    "warn_evttypes", "skip-if-unknown-filter", "capture", "capture_duration", "append", "override",
    "required_engine_version", "required_plugin_versions", "action", "mode",
})
MACRO_KEYS = frozenset({"macro", "condition", "append", "override", "required_engine_version"})
LIST_KEYS = frozenset({"list", "items", "append", "override", "required_engine_version"})
OVERRIDE_APPEND_KEYS = {
    "rule": frozenset({"condition", "output", "desc", "tags", "exceptions"}),
    "macro": frozenset({"condition"}),
    "list": frozenset({"items"}),
}
OVERRIDE_REPLACE_KEYS = {
    "rule": frozenset({"condition", "output", "desc", "priority", "tags", "exceptions", "enabled",
                       "warn_evttypes", "skip-if-unknown-filter", "capture", "capture_duration", "action",
                       "mode"}),
    "macro": frozenset({"condition"}),
    "list": frozenset({"items"}),
}
_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ReadError(Exception):
    """A fatal error in one rules file; carries the load message."""

    def __init__(self, msg: LoadMessage) -> None:
        super().__init__(str(msg))
        self.msg = msg


@dataclass(slots=True)
class Item:
    """One top-level item of a rules file."""

    kind: str
    """rule, macro, list, required_engine_version, required_plugin_versions."""
    name: str
    values: dict[str, Any]
    location: Location
    key_locations: dict[str, Location] = field(default_factory=dict)

    def loc(self, key: str) -> Location:
        return self.key_locations.get(key, self.location)


def _loc(file: str, node: Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _raw(node: Node) -> Any:
    """A node with scalars kept as written (``443`` stays the string "443", as Falco reads it)."""
    if isinstance(node, ScalarNode):
        if node.tag == _NULL_TAG and node.value in ("", "~", "null", "Null", "NULL"):
            return None
        return node.value
    if isinstance(node, SequenceNode):
        return [_raw(n) for n in node.value]
    if isinstance(node, MappingNode):
        return {str(_raw(k)): _raw(v) for k, v in node.value}
    return None


def _bool(node: Node) -> bool | None:
    if isinstance(node, ScalarNode) and node.tag == _BOOL_TAG:
        return node.value.lower() in ("true", "yes", "on", "y")
    return None


class _Reader:
    def __init__(self, file: str, warnings: list[LoadMessage]) -> None:
        self.file = file
        self.warnings = warnings

    def fail(self, code: str, message: str, node: Node | None, kind: str = "", name: str = "") -> ReadError:
        loc = _loc(self.file, node) if node is not None else Location(self.file)
        return ReadError(LoadMessage(code, message, kind, name, loc))

    def warn(self, code: str, message: str, loc: Location, kind: str = "", name: str = "") -> None:
        self.warnings.append(LoadMessage(code, message, kind, name, loc))

    def read(self, text: str) -> list[Item]:
        try:
            docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            loc = Location(self.file, mark.line + 1, mark.column + 1) if mark else Location(self.file)
            raise ReadError(LoadMessage("LOAD_ERR_YAML_PARSE", f"invalid YAML: {e.problem or e}",
                                        location=loc)) from None
        except yaml.YAMLError as e:
            raise ReadError(LoadMessage("LOAD_ERR_YAML_PARSE", f"invalid YAML: {e}",
                                        location=Location(self.file))) from None
        docs = [d for d in docs if d is not None]
        if not docs:
            raise ReadError(LoadMessage("LOAD_ERR_YAML_VALIDATE",
                                        "rules content is empty: expected a list of list, macro and rule items",
                                        location=Location(self.file, 1, 1)))
        items: list[Item] = []
        for doc in docs:
            if not isinstance(doc, SequenceNode):
                raise self.fail("LOAD_ERR_YAML_VALIDATE",
                                "rules content is not a YAML array of objects", doc)
            for node in doc.value:
                item = self.item(node)
                if item is not None:
                    items.append(item)
        return items

    def item(self, node: Node) -> Item | None:
        if not isinstance(node, MappingNode):
            raise self.fail("LOAD_ERR_YAML_VALIDATE",
                            "unexpected element type: each element should be a YAML associative array", node)
        keys = {str(_raw(k)): (k, v) for k, v in node.value}
        for kind in ("rule", "macro", "list"):
            if kind in keys:
                return self.definition(kind, node, keys)
        for kind in ("required_engine_version", "required_plugin_versions"):
            if kind in keys:
                return Item(kind, kind, {kind: _raw(keys[kind][1])}, _loc(self.file, node))
        self.warn("LOAD_UNKNOWN_ITEM", "unknown top level item: " + ", ".join(sorted(keys)),
                  _loc(self.file, node))
        return None

    def definition(self, kind: str, node: MappingNode, keys: dict[str, tuple[Node, Node]]) -> Item:
        name_node = keys[kind][1]
        name = _raw(name_node)
        if not isinstance(name, str) or not name:
            raise self.fail("LOAD_ERR_YAML_VALIDATE", f"{kind} name must be a non-empty string",
                            name_node, kind)
        allowed = {"rule": RULE_KEYS, "macro": MACRO_KEYS, "list": LIST_KEYS}[kind]
        item = Item(kind, name, {}, _loc(self.file, node))
        for key, (knode, vnode) in keys.items():
            item.key_locations[key] = _loc(self.file, vnode)
            if key == kind:
                continue
            if key not in allowed:
                self.warn("LOAD_UNKNOWN_KEY", f"unknown key '{key}'", _loc(self.file, knode), kind, name)
                continue
            item.values[key] = self.value(kind, name, key, vnode)
        if kind == "macro" and not _NAME_RE.match(name):
            self.warn("LOAD_INVALID_MACRO_NAME", f"macro name '{name}' is not a valid identifier: "
                      "conditions cannot refer to it", item.location, kind, name)
        if kind == "list" and not _NAME_RE.match(name):
            self.warn("LOAD_INVALID_LIST_NAME", f"list name '{name}' is not a valid identifier: "
                      "conditions cannot refer to it", item.location, kind, name)
        return item

    def value(self, kind: str, name: str, key: str, node: Node) -> Any:
        def bad(expected: str) -> ReadError:
            return self.fail("LOAD_ERR_YAML_VALIDATE", f"'{key}' must be {expected}", node, kind, name)

        if key in ("condition", "output", "desc", "priority", "source", "action", "mode",
                   "required_engine_version"):
            val = _raw(node)
            if val is None:
                return ""
            if not isinstance(val, str):
                raise bad("a string")
            return val
        if key in ("enabled", "append", "warn_evttypes", "skip-if-unknown-filter", "capture"):
            b = _bool(node)
            if b is None:
                raise bad("true or false")
            return b
        if key == "capture_duration":
            val = _raw(node)
            if not (isinstance(val, str) and val.isdigit()):
                raise bad("a whole number of milliseconds")
            return int(val)
        if key in ("tags", "items"):
            val = _raw(node)
            if val is None:
                return []
            if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                raise bad("a list of strings")
            return val
        if key == "override":
            val = _raw(node)
            if not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values()):
                raise bad("a mapping of keys to 'append' or 'replace'")
            return val
        if key == "exceptions":
            val = _raw(node)
            if val is None:
                return []
            if not isinstance(val, list) or not all(isinstance(v, dict) for v in val):
                raise bad("a list of exception objects")
            return [self.exception(kind, name, ex, n) for ex, n in zip(val, node.value, strict=True)]
        return _raw(node)

    def exception(self, kind: str, name: str, ex: dict[str, Any], node: Node) -> dict[str, Any]:
        def bad(message: str) -> ReadError:
            return self.fail("LOAD_ERR_YAML_VALIDATE", f"exception: {message}", node, kind, name)

        unknown = set(ex) - {"name", "fields", "comps", "values"}
        if unknown:
            self.warn("LOAD_UNKNOWN_KEY", "unknown exception key(s): " + ", ".join(sorted(unknown)),
                      _loc(self.file, node), kind, name)
        if not isinstance(ex.get("name"), str) or not ex["name"]:
            raise bad("item must have a 'name' string")
        for key in ("fields", "comps"):
            v = ex.get(key)
            if v is not None and not (isinstance(v, str) or
                                      (isinstance(v, list) and all(isinstance(x, str) for x in v))):
                raise bad(f"'{key}' must be a string or a list of strings")
        values = ex.get("values")
        if values is not None and not isinstance(values, list):
            raise bad("'values' must be a list")
        return {"name": ex["name"], "fields": ex.get("fields"), "comps": ex.get("comps"),
                "values": values or [], "location": _loc(self.file, node)}


def read_source(src: str | Path, index: int, warnings: list[LoadMessage]) -> tuple[str, list[Item]]:
    """Read one rules file (a path) or rules text; returns its display name and items."""
    if isinstance(src, Path) or (src and "\n" not in src and not src.lstrip().startswith("-")):
        name = str(src)
        try:
            data = Path(src).read_bytes()
        except OSError as e:
            raise ReadError(LoadMessage("LOAD_ERR_YAML_PARSE", f"cannot read file: {e.strerror}",
                                        location=Location(name))) from None
        if b"\0" in data:
            raise ReadError(LoadMessage("LOAD_ERR_YAML_PARSE", "not a text file (contains NUL bytes)",
                                        location=Location(name)))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ReadError(LoadMessage("LOAD_ERR_YAML_PARSE", f"not UTF-8 text (byte offset {e.start})",
                                        location=Location(name))) from None
    else:
        name, text = f"<rules text {index + 1}>", src
    return name, _Reader(name, warnings).read(text)
