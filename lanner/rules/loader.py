"""Loading rules files with Falco's semantics.

Two phases, as in Falco: *collect* every item of every file in order (definitions, legacy
``append: true``, ``override:`` append/replace, enable-only items), then *compile*: lists are
substituted into condition text, exceptions are appended as ``and not (...)``, macros are
substituted in the syntax tree (a macro sees only macros defined before it), and each enabled
rule's condition is checked against the field registry and compiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanner.rules import compiler
from lanner.rules.ast import And, Expr, Identifier, Not, Or, walk
from lanner.rules.parser import LIST_OPS, OPERATORS, ConditionSyntaxError, parse_condition
from lanner.rules.reader import OVERRIDE_APPEND_KEYS, OVERRIDE_REPLACE_KEYS, Item, ReadError, read_source
from lanner.rules.ruleset import LoadMessage, Location, Priority, Rule, Ruleset

ENGINE_VERSION = (0, 63, 0)
"""The Falco rules-engine version whose language Lanner implements."""
BUILTIN_PLUGINS = {"container": (0, 7, 0)}
"""Plugins whose fields Lanner provides natively."""
ACTIONS = ("alert", "block", "kill", "stop", "isolate")
MODES = ("monitor", "enforce")


class _LoadError(Exception):
    def __init__(self, msg: LoadMessage) -> None:
        super().__init__(str(msg))
        self.msg = msg


@dataclass(slots=True)
class _ListInfo:
    name: str
    items: list[str]
    location: Location
    index: int
    visibility: int
    used: bool = False


@dataclass(slots=True)
class _MacroInfo:
    name: str
    cond: str
    location: Location
    cond_location: Location
    index: int
    visibility: int
    ast: Expr | None = None
    used: bool = False


@dataclass(slots=True)
class _RuleInfo:
    name: str
    location: Location
    index: int
    cond: str = ""
    cond_location: Location = Location("")
    output: str = ""
    output_location: Location = Location("")
    desc: str = ""
    priority: Priority = Priority.DEBUG
    source: str = "syscall"
    tags: list[str] = field(default_factory=list)
    enabled: bool = True
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    warn_evttypes: bool = True
    skip_if_unknown_filter: bool = False
    capture: bool = False
    action: str = "alert"
    mode: str | None = None


def _version(text: str) -> tuple[int, ...] | None:
    parts = str(text).strip().split(".")
    if not all(p.isdigit() for p in parts):
        return None
    nums = tuple(int(p) for p in parts)
    if len(nums) == 1:  # legacy integer engine versions: 13 means 0.13.0
        return (0, nums[0], 0)
    return (*nums, 0, 0)[:3]


def quote_item(item: str) -> str:
    """Falco quotes a list or exception item containing a space unless it is already quoted."""
    if " " in item and item[:1] not in ("'", '"'):
        return f'"{item}"'
    return item


_BLANKS = " \t\n\r"
_DELIMS = _BLANKS + "(),="


def substitute_list(cond: str, name: str, items: list[str]) -> tuple[str, bool]:
    """Replace every delimited occurrence of a list name by its items (Falco's text substitution)."""
    used = False
    start = cond.find(name)
    while start != -1:
        end = start + len(name)
        if (start == 0 or cond[start - 1] in _DELIMS) and (end >= len(cond) or cond[end] in _DELIMS):
            while start > 0 and cond[start - 1] in _BLANKS:
                start -= 1
            while end < len(cond) and cond[end] in _BLANKS:
                end += 1
            sub = ", ".join(items)
            if not sub:
                if start > 0 and cond[start - 1] == ",":
                    start -= 1
                elif end < len(cond) and cond[end] == ",":
                    end += 1
            prefix = cond[:start] + " " if start > 0 else ""
            cond = prefix + sub + " " + cond[end:]
            start = len(prefix) + len(sub)
            used = True
        start = cond.find(name, start + 1)
    return cond, used


def exception_condition(ex: dict[str, Any], loc: Location, kind: str, name: str) -> str:
    """The ``(...)`` text an exception adds after ``and not``; "" when it has no values."""
    def fail(message: str) -> _LoadError:
        return _LoadError(LoadMessage("LOAD_ERR_VALIDATE", f"exception '{ex['name']}': {message}", kind,
                                      name, ex.get("location", loc)))

    fields, comps, values = ex["fields"], ex["comps"], ex["values"]
    if isinstance(fields, str):
        for v in values:
            if isinstance(v, list):
                raise fail("expected the values array to contain a list of strings")
        if not values:
            return ""
        return f"({fields} {comps} (" + ", ".join(quote_item(str(v)) for v in values) + "))"
    groups: list[str] = []
    for tup in values:
        if not isinstance(tup, list):
            tup = [tup]
        if len(tup) != len(fields):
            raise fail("fields and values lists must have equal length")
        parts: list[str] = []
        for f, c, v in zip(fields, comps, tup, strict=True):
            if isinstance(v, list):
                val = "(" + ", ".join(quote_item(str(x)) for x in v) + ")"
            else:
                val = str(v)
                if c in LIST_OPS:
                    val = val if val.startswith("(") else f"({val})"
                else:
                    val = quote_item(val)
            parts.append(f" {f} {c} {val}")
        groups.append("(" + " and".join(parts) + ")")
    return "(" + " or ".join(groups) + ")" if groups else ""


class _Collector:
    def __init__(self, result: Ruleset) -> None:
        self.result = result
        self.lists: dict[str, _ListInfo] = {}
        self.macros: dict[str, _MacroInfo] = {}
        self.rules: dict[str, _RuleInfo] = {}
        self.index = 0

    def next_index(self) -> int:
        self.index += 1
        return self.index

    def error(self, code: str, message: str, item: Item, key: str = "") -> _LoadError:
        return _LoadError(LoadMessage(code, message, item.kind, item.name, item.loc(key) if key else item.location))

    def warn(self, code: str, message: str, item: Item) -> None:
        self.result.warnings.append(LoadMessage(code, message, item.kind, item.name, item.location))

    def add(self, item: Item) -> None:
        if item.kind == "required_engine_version":
            self.engine_version(item)
        elif item.kind == "required_plugin_versions":
            self.plugin_versions(item)
        else:
            self.result.counts[item.kind] = self.result.counts.get(item.kind, 0) + 1
            {"list": self.add_list, "macro": self.add_macro, "rule": self.add_rule}[item.kind](item)

    def engine_version(self, item: Item) -> None:
        text = str(item.values["required_engine_version"])
        ver = _version(text)
        if ver is None:
            raise self.error("LOAD_ERR_VALIDATE", f"invalid required_engine_version '{text}'", item)
        if ver > ENGINE_VERSION:
            have = ".".join(map(str, ENGINE_VERSION))
            raise self.error("LOAD_ERR_VALIDATE",
                             f"rules require engine version {text}, but engine version is {have}", item)
        self.result.required_engine_version = max(self.result.required_engine_version, text,
                                                  key=lambda t: _version(t) or (0,))

    def plugin_versions(self, item: Item) -> None:
        reqs = item.values["required_plugin_versions"]
        if not isinstance(reqs, list):
            raise self.error("LOAD_ERR_YAML_VALIDATE", "required_plugin_versions must be a list", item)
        for req in reqs:
            if not isinstance(req, dict) or not isinstance(req.get("name"), str) \
                    or not isinstance(req.get("version"), str):
                raise self.error("LOAD_ERR_YAML_VALIDATE",
                                 "each required plugin needs a 'name' and a 'version' string", item)
            alternatives = [req] + [a for a in req.get("alternatives") or [] if isinstance(a, dict)]
            satisfied = False
            for alt in alternatives:
                ver = _version(str(alt.get("version", "")))
                if ver is None:
                    raise self.error("LOAD_ERR_VALIDATE", f"invalid required version '{alt.get('version')}' "
                                     f"for plugin '{alt.get('name')}'", item)
                have = BUILTIN_PLUGINS.get(str(alt.get("name")))
                if have is not None and have >= ver and have[0] == ver[0]:
                    satisfied = True
            if not satisfied:
                self.warn("LOAD_WARNING_EXTENSION",
                          f"plugin '{req['name']}' {req['version']} is not built into Lanner; rules that use "
                          "its fields will not load", item)

    # --- lists ---

    def add_list(self, item: Item) -> None:
        v = item.values
        mode = self.update_mode(item, "items")
        items = [str(x) for x in v.get("items", [])]
        if mode is None:
            if "items" not in v:
                raise self.error("LOAD_ERR_YAML_VALIDATE", "list has no 'items'", item)
            idx = self.next_index()
            prev = self.lists.get(item.name)
            self.lists[item.name] = _ListInfo(item.name, items, item.location,
                                              prev.index if prev else idx, idx)
            return
        prev = self.lists.get(item.name)
        if prev is None:
            raise self.error("LOAD_ERR_VALIDATE", f"list has '{mode}' but no list named '{item.name}' "
                             "exists yet", item)
        if not items:
            self.warn("LOAD_APPEND_NO_VALUES", "overriding or appending a list with no values", item)
        prev.items = prev.items + items if mode == "append" else items
        prev.visibility = self.next_index()

    # --- macros ---

    def add_macro(self, item: Item) -> None:
        v = item.values
        mode = self.update_mode(item, "condition")
        cond = v.get("condition")
        if cond is None:
            raise self.error("LOAD_ERR_YAML_VALIDATE", "macro has no 'condition'", item)
        if mode is None:
            idx = self.next_index()
            prev = self.macros.get(item.name)
            self.macros[item.name] = _MacroInfo(item.name, cond, item.location, item.loc("condition"),
                                                prev.index if prev else idx, idx)
            return
        prev_m = self.macros.get(item.name)
        if prev_m is None:
            raise self.error("LOAD_ERR_VALIDATE", f"macro has '{mode}' but no macro named '{item.name}' "
                             "exists yet", item)
        prev_m.cond = prev_m.cond + " " + cond if mode == "append" else cond
        prev_m.visibility = self.next_index()

    # --- rules ---

    def update_kind(self, item: Item) -> str | None:
        """'append' (the deprecated key), 'override', or None for a definition."""
        v = item.values
        if v.get("append") and "override" in v:
            raise self.error("LOAD_ERR_VALIDATE", "'append' and 'override' cannot be used together", item)
        if v.get("append"):
            self.warn("LOAD_DEPRECATED_ITEM", "the 'append' key is deprecated: use 'override' instead", item)
            return "append"
        return "override" if "override" in v else None

    def update_mode(self, item: Item, main_key: str) -> str | None:
        """For a list or macro: None for a definition, else 'append' or 'replace' of ``main_key``."""
        kind = self.update_kind(item)
        if kind != "override":
            return kind
        ov = item.values["override"]
        if set(ov) != {main_key} or ov[main_key] not in ("append", "replace"):
            raise self.error("LOAD_ERR_VALIDATE", f"a {item.kind} can only override '{main_key}' "
                             "with 'append' or 'replace'", item, "override")
        return str(ov[main_key])

    def add_rule(self, item: Item) -> None:
        v = item.values
        kind = self.update_kind(item)
        if kind == "override":
            self.rule_override(item)
        elif kind == "append":
            self.rule_append(item, [k for k in ("condition", "output", "desc", "tags", "exceptions") if k in v])
        elif set(v) <= {"enabled"} and "enabled" in v:
            prev = self.rules.get(item.name)
            if prev is None:
                raise self.error("LOAD_ERR_VALIDATE", f"rule has 'enabled' but no rule named '{item.name}' "
                                 "exists yet", item)
            prev.enabled = bool(v["enabled"])
        else:
            self.rule_define(item)

    def rule_define(self, item: Item) -> None:
        v = item.values
        for key in ("condition", "output", "desc", "priority"):
            if key not in v:
                raise self.error("LOAD_ERR_YAML_VALIDATE", f"rule has no '{key}'", item)
        prev = self.rules.get(item.name)
        source = v.get("source") or "syscall"
        if prev is not None and prev.source != source:
            raise self.error("LOAD_ERR_VALIDATE", "rule has been re-defined with a different source", item)
        idx = self.next_index()
        info = _RuleInfo(item.name, item.location, prev.index if prev else idx)
        info.source = source
        self.apply(info, item, list(v), replace=True)
        self.rules[item.name] = info

    def rule_append(self, item: Item, keys: list[str]) -> None:
        prev = self.rules.get(item.name)
        if prev is None:
            raise self.error("LOAD_ERR_VALIDATE", f"rule has 'append' but no rule named '{item.name}' "
                             "exists yet", item)
        if not keys:
            raise self.error("LOAD_ERR_VALIDATE", "appended rule must have exceptions or condition property",
                             item)
        self.apply(prev, item, keys, replace=False)
        self.next_index()

    def rule_override(self, item: Item) -> None:
        v = item.values
        ov = v["override"]
        prev = self.rules.get(item.name)
        if prev is None:
            raise self.error("LOAD_ERR_VALIDATE", f"rule has 'override' but no rule named '{item.name}' "
                             "exists yet", item)
        appends, replaces = [], []
        for key, how in ov.items():
            if key not in v:
                raise self.error("LOAD_ERR_VALIDATE", f"'override' names '{key}', which the item does not set",
                                 item, "override")
            if how == "append" and key in OVERRIDE_APPEND_KEYS["rule"]:
                appends.append(key)
            elif how == "replace" and key in OVERRIDE_REPLACE_KEYS["rule"]:
                replaces.append(key)
            else:
                raise self.error("LOAD_ERR_VALIDATE", f"key '{key}' cannot be overridden with '{how}'",
                                 item, "override")
        extra = set(v) - set(ov) - {"override"}
        if extra:
            raise self.error("LOAD_ERR_VALIDATE", "keys without an override entry: " + ", ".join(sorted(extra)),
                             item, "override")
        self.apply(prev, item, appends, replace=False)
        self.apply(prev, item, replaces, replace=True)
        self.next_index()

    def apply(self, info: _RuleInfo, item: Item, keys: list[str], replace: bool) -> None:
        v = item.values
        for key in keys:
            val = v[key]
            if key == "condition":
                if replace or not info.cond:
                    info.cond, info.cond_location = val, item.loc("condition")
                elif val:
                    info.cond += " " + val
            elif key == "output":
                info.output = val if replace else (info.output + " " + val if val else info.output)
                info.output_location = item.loc("output")
            elif key == "desc":
                info.desc = val if replace else (info.desc + " " + val if val else info.desc)
            elif key == "priority":
                try:
                    info.priority = Priority.parse(val)
                except ValueError as e:
                    raise self.error("LOAD_ERR_YAML_VALIDATE", str(e), item, "priority") from None
            elif key == "tags":
                info.tags = list(val) if replace else info.tags + [t for t in val if t not in info.tags]
            elif key == "exceptions":
                self.exceptions(info, item, val, replace)
            elif key == "enabled":
                info.enabled = bool(val)
            elif key == "warn_evttypes":
                info.warn_evttypes = bool(val)
            elif key == "skip-if-unknown-filter":
                info.skip_if_unknown_filter = bool(val)
            elif key == "capture":
                info.capture = bool(val)
            elif key == "action":
                if val not in ACTIONS:
                    raise self.error("LOAD_ERR_YAML_VALIDATE", f"invalid action '{val}': expected one of "
                                     + ", ".join(ACTIONS), item, "action")
                info.action = val
            elif key == "mode":
                if val not in MODES:
                    raise self.error("LOAD_ERR_YAML_VALIDATE", f"invalid mode '{val}': expected one of "
                                     + ", ".join(MODES), item, "mode")
                info.mode = val

    def exceptions(self, info: _RuleInfo, item: Item, new: list[dict[str, Any]], replace: bool) -> None:
        if replace:
            info.exceptions = []
        for ex in new:
            prev = next((e for e in info.exceptions if e["name"] == ex["name"]), None)
            if prev is not None and not replace:
                if ex["fields"] is not None or ex["comps"] is not None:
                    raise self.error("LOAD_ERR_VALIDATE", f"exception '{ex['name']}': can not append fields "
                                     "or comps to an existing exception, only values", item, "exceptions")
                prev["values"] = prev["values"] + ex["values"]
                continue
            if prev is not None:
                self.warn("LOAD_EXCEPTION_NAME_NOT_UNIQUE", f"exception name '{ex['name']}' is not unique", item)
            self.validate_exception(ex, item)
            info.exceptions.append(dict(ex))

    def validate_exception(self, ex: dict[str, Any], item: Item) -> None:
        def fail(message: str) -> _LoadError:
            return _LoadError(LoadMessage("LOAD_ERR_VALIDATE", f"exception '{ex['name']}': {message}",
                                          item.kind, item.name, ex["location"]))

        fields, comps = ex["fields"], ex["comps"]
        if fields is None:
            raise fail("rule exception item must have fields property with a list of fields")
        if isinstance(fields, list):
            if comps is None:
                comps = ["="] * len(fields)
            if not isinstance(comps, list) or len(comps) != len(fields):
                raise fail("fields and comps lists must have equal length")
            for c in comps:
                if c not in OPERATORS:
                    raise fail(f"'{c}' is not a supported comparison operator")
        else:
            comps = comps if comps is not None else "in"
            if isinstance(comps, list):
                raise fail("fields and comps must both be strings")
            if comps not in ("in", "pmatch", "intersects"):
                raise fail("when fields is a single value, comps must be one of (in, pmatch, intersects)")
        for f in fields if isinstance(fields, list) else [fields]:
            if compiler.lookup_field(f) is None:
                raise fail(f"'{f}' is not a supported filter field")
        ex["comps"] = comps


class _Resolver:
    """Substitutes macros into condition trees; a macro sees only macros defined before it."""

    def __init__(self, macros: dict[str, _MacroInfo]) -> None:
        self.macros = macros

    def resolve(self, node: Expr, visibility: int | None) -> Expr:
        for n in walk(node):
            if isinstance(n, Identifier):
                m = self.macros.get(n.name)
                if m is None or m.ast is None or (visibility is not None and m.index >= visibility):
                    hint = ""
                    if m is not None:
                        hint = " (a macro can only use macros defined before it: circular or forward reference)"
                    raise ValueError(f"Undefined macro '{n.name}' used in filter{hint}.")
                m.used = True
        return self.substitute(node, visibility)

    def substitute(self, node: Expr, visibility: int | None) -> Expr:
        if isinstance(node, Identifier):
            m = self.macros[node.name]
            assert m.ast is not None
            return m.ast
        if isinstance(node, And):
            return And(tuple(self.substitute(i, visibility) for i in node.items), node.pos)
        if isinstance(node, Or):
            return Or(tuple(self.substitute(i, visibility) for i in node.items), node.pos)
        if isinstance(node, Not):
            return Not(self.substitute(node.item, visibility), node.pos)
        return node


def _condition_error(e: ConditionSyntaxError, base: Location, kind: str, name: str) -> LoadMessage:
    return LoadMessage("LOAD_ERR_COMPILE_CONDITION", f"{e.message} (at column {e.pos.col} of the "
                       f"expanded condition, line {e.pos.line})", kind, name, base)


class _Compiler:
    def __init__(self, col: _Collector, result: Ruleset, min_priority: Priority) -> None:
        self.col = col
        self.result = result
        self.min_priority = min_priority
        self.tests = compiler.TestCache()
        result.tests = self.tests

    def run(self) -> None:
        lists = self.expand_lists()
        macros = sorted(self.col.macros.values(), key=lambda m: m.index)
        for m in macros:
            try:
                m.ast = parse_condition(self.substitute_lists(m.cond, lists))
            except ConditionSyntaxError as e:
                self.result.errors.append(_condition_error(e, m.cond_location, "macro", m.name))
        if self.result.errors:
            return
        resolver = _Resolver(self.col.macros)
        for m in macros:
            assert m.ast is not None
            try:
                m.ast = resolver.resolve(m.ast, m.visibility)
            except ValueError as e:
                self.result.errors.append(LoadMessage("LOAD_ERR_VALIDATE", str(e), "macro", m.name, m.location))
        if self.result.errors:
            return
        for info in sorted(self.col.rules.values(), key=lambda r: r.index):
            try:
                self.rule(info, lists, resolver)
            except _LoadError as e:
                self.result.errors.append(e.msg)
        for m in macros:
            assert m.ast is not None
            self.result.macros[m.name] = m.ast
            if not m.used:
                self.result.warnings.append(LoadMessage("LOAD_UNUSED_MACRO", "macro not referred to by any "
                                                        "other rule/macro", "macro", m.name, m.location))
        for li in self.col.lists.values():
            self.result.lists[li.name] = tuple(lists[li.name])
            if not li.used:
                self.result.warnings.append(LoadMessage("LOAD_UNUSED_LIST", "list not referred to by any "
                                                        "other rule/macro", "list", li.name, li.location))

    def expand_lists(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for li in sorted(self.col.lists.values(), key=lambda x: x.index):
            items: list[str] = []
            for it in li.items:
                ref = self.col.lists.get(it)
                if ref is not None and ref.index < li.visibility and ref is not li and ref.name in out:
                    ref.used = True
                    items.extend(out[ref.name])
                else:
                    items.append(quote_item(it))
            out[li.name] = items
        return out

    def substitute_lists(self, cond: str, lists: dict[str, list[str]]) -> str:
        for li in sorted(self.col.lists.values(), key=lambda x: x.index):
            if li.name in cond:
                cond, used = substitute_list(cond, li.name, lists[li.name])
                li.used = li.used or used
        return cond

    def rule(self, info: _RuleInfo, lists: dict[str, list[str]], resolver: _Resolver) -> None:
        if info.priority > self.min_priority:
            return
        if info.source != "syscall":
            self.result.warnings.append(LoadMessage("LOAD_UNKNOWN_SOURCE", f"unknown source {info.source}, "
                                                    "skipping", "rule", info.name, info.location))
            return
        cond = info.cond
        for ex in info.exceptions:
            text = exception_condition(ex, info.location, "rule", info.name)
            if text:
                cond += " and not " + text
        try:
            tree = parse_condition(self.substitute_lists(cond, lists))
        except ConditionSyntaxError as e:
            raise _LoadError(_condition_error(e, info.cond_location, "rule", info.name)) from None
        try:
            tree = resolver.resolve(tree, None)
        except ValueError as e:
            raise _LoadError(LoadMessage("LOAD_ERR_VALIDATE", str(e), "rule", info.name,
                                         info.cond_location)) from None
        rule = Rule(name=info.name, condition=tree, output=info.output.strip(), priority=info.priority,
                    desc=info.desc, source=info.source, tags=tuple(info.tags), enabled=info.enabled,
                    action=info.action, mode=info.mode, capture=info.capture, location=info.location,
                    index=info.index)
        try:
            compiler.compile_rule(rule, self.tests)
        except compiler.UnknownFieldError as e:
            if info.skip_if_unknown_filter:
                self.result.warnings.append(LoadMessage("LOAD_UNKNOWN_FILTER", str(e), "rule", info.name,
                                                        info.cond_location))
                return
            raise _LoadError(LoadMessage("LOAD_ERR_COMPILE_CONDITION", str(e), "rule", info.name,
                                         info.cond_location)) from None
        except compiler.CompileError as e:
            raise _LoadError(LoadMessage("LOAD_ERR_COMPILE_CONDITION", str(e), "rule", info.name,
                                         info.cond_location)) from None
        try:
            compiler.compile_output(rule)
        except compiler.CompileError as e:
            raise _LoadError(LoadMessage("LOAD_ERR_COMPILE_OUTPUT", str(e), "rule", info.name,
                                         info.output_location or info.location)) from None
        for code, message in compiler.condition_warnings(rule):
            self.result.warnings.append(LoadMessage(code, message, "rule", info.name, info.cond_location))
        if rule.evttypes is None and info.warn_evttypes and rule.enabled:
            self.result.warnings.append(LoadMessage(
                "LOAD_NO_EVTTYPE", "rule matches too many evt.type values; this has a significant "
                "performance penalty", "rule", info.name, info.location))
        self.result.rules[rule.name] = rule


def load(sources: Sequence[str | Path] | str | Path,
         min_priority: Priority | str = Priority.DEBUG) -> Ruleset:
    """Load rules files (paths) or rules texts, in order, with Falco's override semantics.

    Never raises for bad input: problems are in ``Ruleset.errors`` and ``Ruleset.warnings``.
    """
    if isinstance(sources, str | Path):
        sources = [sources]
    if isinstance(min_priority, str):
        min_priority = Priority.parse(min_priority)
    result = Ruleset()
    col = _Collector(result)
    for i, src in enumerate(sources):
        try:
            _, items = read_source(src, i, result.warnings)
        except ReadError as e:
            result.errors.append(e.msg)
            continue
        for item in items:
            try:
                col.add(item)
            except _LoadError as e:
                result.errors.append(e.msg)
                break
    if result.errors:
        return result
    _Compiler(col, result, min_priority).run()
    if result.errors:
        result.rules.clear()
    return result

