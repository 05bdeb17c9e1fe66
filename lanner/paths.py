"""Path helpers with libs' semantics (``concatenate_paths``, ``remove_duplicate_path_separators``).

Lexical only: ``.``, ``..`` and repeated ``/`` are resolved, a trailing ``/`` is dropped, symlinks
are never followed (FIELDS.md §8.2). The common case, an already clean path, costs a few
substring tests.
"""

from __future__ import annotations


def normalize(path: str) -> str:
    """Resolve ``.``, ``..`` and repeated ``/``; drop a trailing ``/``."""
    absolute = path.startswith("/")
    if absolute and "//" not in path and "/." not in path and (len(path) == 1 or not path.endswith("/")):
        return path
    parts: list[str] = []
    for comp in path.split("/"):
        if comp == "" or comp == ".":
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append(comp)
            continue
        parts.append(comp)
    joined = "/".join(parts)
    return "/" + joined if absolute else (joined or ".")


def concatenate(base: str, path: str) -> str:
    """An absolute ``path`` stands alone; a relative one is joined to ``base``; then normalised."""
    if path.startswith("/"):
        return normalize(path)
    if (base.startswith("/") and not path.startswith(".") and "/." not in path and "//" not in path
            and not path.endswith("/") and "//" not in base and "/." not in base and path):
        return (base + path) if base.endswith("/") else (base + "/" + path)
    return normalize(base + "/" + path)


def collapse_slashes(path: str) -> str:
    """Repeated ``/`` collapsed to one (``fd.nameraw``)."""
    while "//" in path:
        path = path.replace("//", "/")
    return path
