"""Resource-level difference between a committed output tree and a fresh render: what Flux would change.

Compares parsed Kubernetes objects, not text, and only reads trees; it never writes output or prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import Diagnostic, InvalidInput
from .loader import LoadError, parse_all

# A rendered file (the rate limit ConfigMap grows with the models) may be far larger than a
# values file; a bound still keeps a hand-made giant from exhausting memory.
MAX_OUTPUT_FILE_BYTES = 64 << 20

CHART_DIR = "chart"
_MISSING = object()


def committed_tree(out: Path) -> dict[str, bytes]:
    """Relative path → bytes of every file in an output folder (empty when it does not exist)."""
    from .output import read_tree

    return {rel: path.read_bytes() for rel, path in read_tree(out).items()}


def _chart_model(rel: str) -> str | None:
    """'<project>/<model>' when rel lies in a model's chart folder, else None."""
    parts = rel.split("/")
    # Only a folder named chart counts, so a file called chart.yaml elsewhere stays a resource.
    for index, part in enumerate(parts[:-1]):
        if part == CHART_DIR and index > 0:
            return "/".join(parts[:index])
    return None


def _resources(files: dict[str, bytes], side: str) -> dict[tuple, tuple[str, dict]]:
    """Identity → (file, object) for every document of every YAML file outside the charts."""
    out: dict[tuple, tuple[str, dict]] = {}
    problems: list[Diagnostic] = []
    for rel in sorted(files):
        if _chart_model(rel) is not None or not rel.endswith((".yaml", ".yml")):
            continue
        try:
            documents = parse_all(files[rel].decode("utf-8"), rel, max_bytes=MAX_OUTPUT_FILE_BYTES)
        except UnicodeDecodeError as exc:
            problems.append(Diagnostic(rel, 1, 1, "unreadable-output", f"{side} file is not UTF-8: {exc}".splitlines()[0]))
            continue
        except LoadError as exc:
            d = exc.diagnostic
            problems.append(Diagnostic(rel, d.line or 1, d.column or 1, "unreadable-output",
                                       f"{side} file: {d.message}", d.hint))
            continue
        for index, document in enumerate(documents):
            if not isinstance(document, dict):
                problems.append(Diagnostic(rel, 0, 0, "unreadable-output", f"{side} document {index + 1} is not a mapping"))
                continue
            ident = _identity(document, rel)
            if ident in out:  # never merge two objects silently; keep both, told apart by file
                ident = ident + (f"{rel}#{index}",)
            out[ident] = (rel, document)
    if problems:
        raise InvalidInput(f"cannot compare: {len(problems)} {side} file(s) could not be read", problems)
    return out


def _identity(document: dict, rel: str) -> tuple[str, str, str, str]:
    """(API group, kind, namespace, name): what Kubernetes identifies an object by.

    The API version is left out on purpose: v2beta2 → v2 of a HelmRelease updates the same
    object, so it shows as a changed apiVersion field rather than a removal plus an addition.
    """
    api = str(document.get("apiVersion", ""))
    group = api.rsplit("/", 1)[0] if "/" in api else ""
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    name = metadata.get("name")
    # A kustomize Kustomization file has no name: Flux knows it only by its path.
    return group, str(document.get("kind", "")), str(metadata.get("namespace") or ""), str(name) if name else rel


def _path(prefix: str, key: Any) -> str:
    text = str(key)
    if "." in text or "[" in text or not text:
        text = f'["{text}"]'
        return prefix + text if prefix else text
    return f"{prefix}.{text}" if prefix else text


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, list)) and bool(value)


def _fields(old: Any, new: Any, prefix: str, out: list[dict]) -> None:
    """Every leaf that differs, as {"path", "old"?, "new"?} (a side is absent when the key is)."""
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            _fields(old.get(key, _MISSING), new.get(key, _MISSING), _path(prefix, key), out)
        return
    if isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            _fields(old[index] if index < len(old) else _MISSING, new[index] if index < len(new) else _MISSING,
                    _path(prefix, index), out)
        return
    # A whole mapping or list appearing or disappearing: list its leaves, so nothing hides inside.
    if old is _MISSING and _is_container(new):
        _fields({} if isinstance(new, dict) else [], new, prefix, out)
        return
    if new is _MISSING and _is_container(old):
        _fields(old, {} if isinstance(old, dict) else [], prefix, out)
        return
    entry: dict[str, Any] = {"path": prefix}
    if old is not _MISSING:
        entry["old"] = old
    if new is not _MISSING:
        entry["new"] = new
    out.append(entry)


def _chart_entries(committed: dict[str, bytes], fresh: dict[str, bytes]) -> list[dict]:
    by_model: dict[str, dict[str, list[str]]] = {}
    for rel in sorted(set(committed) | set(fresh)):
        model = _chart_model(rel)
        if model is None:
            continue
        if rel not in committed:
            status = "added"
        elif rel not in fresh:
            status = "removed"
        elif committed[rel] != fresh[rel]:
            status = "changed"
        else:
            continue
        by_model.setdefault(model, {"added": [], "removed": [], "changed": []})[status].append(rel)
    return [
        {"change": "chart-changed", "model": model, "files": sorted(s["added"] + s["removed"] + s["changed"]), **s}
        for model, s in sorted(by_model.items())
    ]


def _other_files(committed: dict[str, bytes], fresh: dict[str, bytes]) -> list[dict]:
    """Files that are neither charts nor YAML: reported by name, so no difference goes unmentioned."""
    out = []
    for rel in sorted(set(committed) | set(fresh)):
        if _chart_model(rel) is not None or rel.endswith((".yaml", ".yml")):
            continue
        if committed.get(rel) != fresh.get(rel):
            status = "added" if rel not in committed else "removed" if rel not in fresh else "changed"
            out.append({"change": "file-changed", "file": rel, "status": status})
    return out


def resource_diff(committed: dict[str, bytes], fresh: dict[str, bytes]) -> list[dict]:
    """What applying `fresh` over `committed` changes: resources, then charts, then other files."""
    old = _resources(committed, "committed")
    new = _resources(fresh, "fresh")
    entries: list[dict] = []
    for ident in sorted(set(old) | set(new)):
        _, kind, namespace, name = ident[:4]
        base = {"kind": kind, "namespace": namespace, "name": name}
        if ident not in old:
            file = new[ident][0]
            entries.append({"change": "added", **base, "file": file, "fields": []})
        elif ident not in new:
            file = old[ident][0]
            entries.append({"change": "removed", **base, "file": file, "fields": []})
        else:
            old_file, old_doc = old[ident]
            file, new_doc = new[ident]
            fields: list[dict] = []
            _fields(old_doc, new_doc, "", fields)
            if fields:
                entry = {"change": "changed", **base, "file": file, "fields": fields}
                if old_file != file:
                    entry["oldFile"] = old_file
                entries.append(entry)
    entries.sort(key=lambda e: (e["namespace"], e["kind"], e["name"], e["file"]))
    return entries + _chart_entries(committed, fresh) + _other_files(committed, fresh)


# --- text -------------------------------------------------------------------------------------

_MARK = {"added": "+", "removed": "-", "changed": "~"}


def _value(entry: dict, side: str) -> str:
    from .yamlout import scalar

    if side not in entry:
        return "(unset)"
    value = entry[side]
    if isinstance(value, dict):
        return "{}" if not value else "{...}"
    if isinstance(value, list):
        return "[]" if not value else "[...]"
    try:
        return scalar(value)
    except (TypeError, ValueError):
        return repr(value)


def _field_text(field: dict) -> str:
    return f"{field['path']} {_value(field, 'old')} → {_value(field, 'new')}"


def diff_text(entries: list[dict]) -> str:
    """Terminal lines such as '~ HelmRelease llm/qwen-chat: spec.values.replicaCount 1 → 2'."""
    if not entries:
        return "no changes\n"
    lines: list[str] = []
    counts = {"added": 0, "removed": 0, "changed": 0, "chart-changed": 0, "file-changed": 0}
    for entry in entries:
        change = entry["change"]
        counts[change] = counts.get(change, 0) + 1
        if change == "chart-changed":
            files = [rel.split(f"/{CHART_DIR}/", 1)[-1] for rel in entry["files"]]
            mark = "+" if not entry["removed"] and not entry["changed"] else \
                "-" if not entry["added"] and not entry["changed"] else "~"
            shown = ", ".join(files[:6]) + (f", ... ({len(files) - 6} more)" if len(files) > 6 else "")
            lines.append(f"{mark} chart {entry['model']}: {shown}")
            continue
        if change == "file-changed":
            lines.append(f"{_MARK[entry['status']]} file {entry['file']}")
            continue
        who = f"{entry['namespace']}/{entry['name']}" if entry["namespace"] else entry["name"]
        head = f"{_MARK[change]} {entry['kind'] or 'object'} {who}"
        fields = entry.get("fields") or []
        if change != "changed":
            lines.append(head if entry["file"] == entry["name"] else f"{head} ({entry['file']})")
        elif len(fields) == 1:
            lines.append(f"{head}: {_field_text(fields[0])}")
        else:
            lines.append(f"{head}: {len(fields)} fields")
            lines.extend(f"    {_field_text(field)}" for field in fields)
    summary = (f"{counts['added']} added, {counts['changed']} changed, {counts['removed']} removed resources; "
               f"{counts['chart-changed']} chart(s) changed")
    if counts["file-changed"]:
        summary += f"; {counts['file-changed']} other file(s)"
    lines.append(summary)
    return "\n".join(lines) + "\n"
