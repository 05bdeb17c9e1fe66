"""Applying :class:`~lanner.posture.model.Op` changes to plain or ruamel documents, and turning
them into RFC 6902 JSON Patch operations for the mutating webhook."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from lanner.posture.model import Op, Path

Factory = Callable[[], Any]


def _walk(doc: Any, path: Path, create: bool, new_map: Factory) -> Any:
    node = doc
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                return None
            node = node[key]
        else:
            if not isinstance(node, dict):
                return None
            nxt = node.get(key)
            if nxt is None:
                if not create:
                    return None
                nxt = new_map()
                node[key] = nxt
            node = nxt
    return node


def apply_op(doc: Any, op: Op, new_map: Factory = dict, new_list: Factory = list) -> bool:
    """Applies ``op`` to ``doc`` in place; returns whether anything changed."""
    parent_path, last = op.path[:-1], op.path[-1]
    if op.kind == "set":
        parent = _walk(doc, parent_path, True, new_map)
        if isinstance(parent, dict) and isinstance(last, str):
            if last in parent and parent[last] == op.value and type(parent[last]) is type(op.value):
                return False
            parent[last] = op.value
            return True
        return False
    if op.kind == "delete":
        parent = _walk(doc, parent_path, False, new_map)
        if isinstance(parent, dict) and last in parent:
            del parent[last]
            return True
        return False
    target = _walk(doc, op.path, False, new_map)
    if op.kind == "remove_values":
        if not isinstance(target, list):
            return False
        changed = False
        for i in range(len(target) - 1, -1, -1):
            if target[i] in op.value:
                del target[i]
                changed = True
        return changed
    if op.kind == "append":
        if target is None:
            parent = _walk(doc, parent_path, True, new_map)
            if not isinstance(parent, dict) or not isinstance(last, str):
                return False
            target = new_list()
            parent[last] = target
        if not isinstance(target, list) or op.value in target:
            return False
        target.append(op.value)
        return True
    raise ValueError(f"unknown op {op.kind}")


def _pointer(path: Path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def json_patch(doc: Any, ops: list[Op]) -> list[dict[str, Any]]:
    """RFC 6902 operations that take ``doc`` to the result of applying ``ops`` in order.
    ``doc`` is not changed."""
    work = copy.deepcopy(doc)
    patch: list[dict[str, Any]] = []
    for op in ops:
        parent_path, last = op.path[:-1], op.path[-1]
        if op.kind in ("set", "append"):
            # create missing ancestors with one "add" of the first missing one
            node = work
            for i, key in enumerate(parent_path):
                if isinstance(key, int):
                    if not isinstance(node, list) or key >= len(node):
                        break
                    node = node[key]
                    continue
                if not isinstance(node, dict):
                    break
                if node.get(key) is None:
                    node[key] = {}
                    patch.append({"op": "add", "path": _pointer(parent_path[: i + 1]), "value": {}})
                node = node[key]
        if op.kind == "set":
            parent = _walk(work, parent_path, False, dict)
            if (isinstance(parent, dict) and isinstance(last, str)
                    and (last not in parent or parent[last] != op.value)):
                kind = "replace" if last in parent else "add"
                parent[last] = op.value
                patch.append({"op": kind, "path": _pointer(op.path), "value": op.value})
        elif op.kind == "delete":
            parent = _walk(work, parent_path, False, dict)
            if isinstance(parent, dict) and last in parent:
                del parent[last]
                patch.append({"op": "remove", "path": _pointer(op.path)})
        elif op.kind == "remove_values":
            target = _walk(work, op.path, False, dict)
            if isinstance(target, list):
                for i in range(len(target) - 1, -1, -1):
                    if target[i] in op.value:
                        del target[i]
                        patch.append({"op": "remove", "path": _pointer((*op.path, i))})
        elif op.kind == "append":
            target = _walk(work, op.path, False, dict)
            if target is None:
                parent = _walk(work, parent_path, False, dict)
                if isinstance(parent, dict) and isinstance(last, str):
                    parent[last] = [op.value]
                    patch.append({"op": "add", "path": _pointer(op.path), "value": [op.value]})
            elif isinstance(target, list) and op.value not in target:
                target.append(op.value)
                patch.append({"op": "add", "path": _pointer(op.path) + "/-", "value": op.value})
    return patch
