"""Describes one key of the model values file (type, default, bounds, examples) from its JSON Schema.

Reads only the schema that modelplat publishes, so it can never disagree with it; no printing, no I/O.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from .errors import InvalidInput

SCHEMA_FILE = "model-values.schema.json"

_SCALAR_NAMES = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean", "null": "null"}

_schema_cache: dict | None = None


def _schema() -> dict:
    global _schema_cache
    if _schema_cache is None:
        from . import schemas

        _schema_cache = schemas.build(SCHEMA_FILE)
    return _schema_cache


def _resolve(node: dict, root: dict) -> dict:
    """Follow $ref, keeping the referring node's own description/default over the target's."""
    seen = 0
    while "$ref" in node and seen < 20:
        seen += 1
        target = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _non_null(node: dict, root: dict) -> tuple[dict, bool]:
    """Optional[X] is exported as anyOf [X, null]: explain X. Returns (X, nullable)."""
    node = _resolve(node, root)
    options = node.get("anyOf")
    if not options:
        return node, False
    rest = [o for o in options if _resolve(o, root).get("type") != "null"]
    if len(rest) != 1 or len(rest) == len(options):
        return node, False
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    inner = _resolve(rest[0], root)
    # A nested anyOf (a Quantity made Optional) stays as it is: _type_name recognises it.
    return {**inner, **outer}, True


def _is_quantity(node: dict, root: dict) -> bool:
    from .values import QUANTITY

    options = [_resolve(o, root) for o in node.get("anyOf", [])]
    return {o.get("type") for o in options} == {"string", "number"} and any(o.get("pattern") == QUANTITY for o in options)


def _ref_name(node: dict) -> str:
    ref = node.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else ""


def _type_name(node: dict, root: dict) -> str:
    if _is_quantity(node, root):
        return "quantity (string or number)"
    raw = node.get("items") if node.get("type") == "array" else None
    if raw is not None:
        item, _ = _non_null(raw, root)
        if item.get("properties"):
            return f"list of {_ref_name(raw) or item.get('title', 'mapping')}"
        return f"list of {_type_name(item, root)}"
    if "anyOf" in node:
        names = []
        for option in node["anyOf"]:
            name = _type_name(_resolve(option, root), root)
            if name not in names:
                names.append(name)
        return " or ".join(names)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        if node.get("properties"):
            return "mapping"
        value = _map_value(node)
        if value is not None:
            return f"mapping of string to {_type_name(_non_null(value, root)[0], root)}"
        return "mapping"
    if isinstance(kind, list):
        return " or ".join(_SCALAR_NAMES.get(k, k) for k in kind)
    if kind in _SCALAR_NAMES:
        return _SCALAR_NAMES[kind]
    if "enum" in node or "const" in node:
        return "string"
    return "any"


def _map_value(node: dict) -> dict | None:
    """The value schema of a free-form mapping (labels, nodeSelector, ...), if it is one."""
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1:
        return next(iter(patterns.values()))
    return None


def _find(node: dict, attribute: str) -> Any:
    """A keyword from the node itself or, for quantities and other unions, from its first option."""
    if attribute in node:
        return node[attribute]
    for option in node.get("anyOf", []):
        if attribute in option:
            return option[attribute]
    return None


def _all_paths(root: dict) -> list[str]:
    """Every named key path, for suggesting a key that exists under another section."""
    out: list[str] = []
    stack: list[tuple[str, dict, int]] = [("", root, 0)]
    while stack:
        prefix, node, depth = stack.pop()
        node, _ = _non_null(node, root)
        if node.get("type") == "array" and "items" in node:
            stack.append((prefix, node["items"], depth + 1))
            continue
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            out.append(path)
            if depth < 8:
                stack.append((path, child, depth + 1))
    return sorted(set(out))


def _unknown(key: str, part: str, siblings: list[str], parent: str, root: dict) -> InvalidInput:
    close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.6)
    if not close:  # seed files often differ only by case (requestGpu)
        close = [s for s in siblings if s.lower() == part.lower()][:1]
    if close:
        suggestion = f"{parent}.{close[0]}" if parent else close[0]
    else:
        # The right name in the wrong section, e.g. canary.primaryLoad (it is top-level).
        same = [p for p in _all_paths(root) if p.rsplit(".", 1)[-1].lower() == part.lower()]
        suggestion = same[0] if len(same) == 1 else ""
    where = f"under '{parent}'" if parent else "at the top level"
    message = f"unknown key '{key}': there is no '{part}' {where}"
    if suggestion:
        message += f"; did you mean '{suggestion}'?"
    elif siblings:
        message += f"; keys there: {', '.join(siblings)}"
    return InvalidInput(message)


def explain(key: str) -> dict:
    """What the values file accepts at `key` (dotted; list indexes optional, e.g. env.0.value)."""
    root = _schema()
    parts = [p for p in key.strip().split(".")] if key.strip() else []
    if any(p == "" for p in parts):
        raise InvalidInput(f"'{key}' is not a dotted key such as resources.requestGPU")
    node, nullable = root, False
    walked: list[str] = []
    required = True
    for part in parts:
        node, _ = _non_null(node, root)
        # Lists are walked through: env.value and env.0.value both mean an item's value.
        while node.get("type") == "array" and "items" in node:
            if part.isdigit():
                break
            node, _ = _non_null(node["items"], root)
        if part.isdigit():
            if node.get("type") != "array":
                raise InvalidInput(f"'{'.'.join(walked) or key}' is not a list, so '{part}' cannot index it")
            node, nullable = _non_null(node["items"], root)
            walked.append(part)
            continue
        properties = node.get("properties")
        if properties:
            if part not in properties:
                raise _unknown(key, part, list(properties), ".".join(w for w in walked if not w.isdigit()), root)
            required = part in node.get("required", [])
            node, nullable = _non_null(properties[part], root)
        else:
            value = _map_value(node)
            if value is None:
                parent = ".".join(walked)
                raise InvalidInput(f"'{parent}' is of type {_type_name(node, root)}; it has no key '{part}'")
            required = False
            node, nullable = _non_null(value, root)
        walked.append(part)
    info = _describe(key.strip(), node, nullable, required, root)
    if "default" not in info:
        factory = _factory_default([p for p in parts if not p.isdigit()])
        if factory is not None:
            info["default"] = factory
    return info


def _factory_default(parts: list[str]) -> Any:
    """A list or mapping default built by a default_factory, which pydantic leaves out of the schema.

    Sections (resources, canary, ...) are skipped: their default is simply each key's own default.
    """
    from pydantic import BaseModel

    from .validate import unwrap
    from .values import ModelValues

    current: Any = ModelValues
    field = None
    for part in parts:
        current = unwrap(current)
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        field = fields[part]
        current = field.annotation
    if field is None or field.default_factory is None:
        return None
    value = field.default_factory()
    return None if isinstance(value, BaseModel) else value


def _describe(key: str, node: dict, nullable: bool, required: bool, root: dict) -> dict:
    info: dict[str, Any] = {"key": key, "description": node.get("description", "")}
    info["type"] = _type_name(node, root)
    if key:
        info["required"] = required and "default" not in node
    if "default" in node:
        info["default"] = node["default"]
    allowed = _find(node, "enum")
    const = _find(node, "const")
    info["allowed"] = list(allowed) if allowed is not None else ([const] if const is not None else [])
    examples = node.get("examples")
    if examples is None:
        for option in node.get("anyOf", []):
            if "examples" in option:
                examples = option["examples"]
                break
    info["examples"] = list(examples or [])
    for attribute in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "maxLength", "pattern"):
        value = _find(node, attribute)
        if value is not None:
            info[attribute] = value
    if nullable:
        info["nullable"] = True
    # A list of sections (env, rdma.networks) is addressed through its items, so show their keys.
    target = node
    if target.get("type") == "array" and "items" in target:
        target, _ = _non_null(target["items"], root)
    children = list(target.get("properties", {}))
    if children or info["type"].startswith(("mapping", "list of")):
        info["children"] = children
    return info


def _show(value: Any) -> str:
    from .yamlout import scalar

    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return scalar(value)


def explain_text(info: dict) -> str:
    """Plain-text rendering of explain()'s result for a terminal."""
    lines = [info["key"] or "(model values file)"]
    if info.get("description"):
        lines.append("  " + info["description"].replace("\n\n", "\n").replace("\n", "\n  "))
    lines.append("")
    rows: list[tuple[str, str]] = [("type", info["type"])]
    if info.get("required"):
        rows.append(("required", "yes"))
    if "default" in info:
        rows.append(("default", "unset" if info["default"] is None else _show(info["default"])))
    if info.get("allowed"):
        rows.append(("allowed", ", ".join(_show(v) for v in info["allowed"])))
    for attribute, label in (("minimum", "minimum"), ("exclusiveMinimum", "greater than"), ("maximum", "maximum"),
                             ("exclusiveMaximum", "less than"), ("maxLength", "max length"), ("pattern", "pattern")):
        if attribute in info:
            rows.append((label, _show(info[attribute]) if attribute != "pattern" else info[attribute]))
    if info.get("examples"):
        rows.append(("examples", ", ".join(_show(v) for v in info["examples"])))
    if info.get("children"):
        rows.append(("keys", ", ".join(info["children"])))
    width = max(len(label) for label, _ in rows) + 1
    lines.extend(f"  {label + ':':<{width}} {value}" for label, value in rows)
    return "\n".join(lines) + "\n"
