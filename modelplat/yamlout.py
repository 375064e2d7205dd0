"""Deterministic YAML emitter for plain data (dict, list, str, int, float, bool, None).

Why not ruamel's emitter: it costs ~2 ms a document here, ~6 documents a model, so it alone would
blow the 1,000-model budget. This emitter quotes every string that is not unmistakably plain with
JSON escapes (a subset of YAML double-quoted style), so no value can change the document's shape;
tests/test_yamlout.py proves ruamel reads back exactly the data, for arbitrary input (hypothesis).
"""

from __future__ import annotations

import json
import math
import re

# A string is written plain only when no YAML 1.1 or 1.2 reader could take it for anything but
# this string: it starts with a letter, '_' or '/', uses no indicator characters, and is not a
# boolean or null word. Everything else is double-quoted.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@:+-]*")
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
# Characters JSON leaves as they are but YAML does not accept raw in a double-quoted scalar
# (non-printables, line/paragraph separators, the BOM); JSON's surrogate-pair escapes for
# characters beyond the BMP are not valid YAML either, hence ensure_ascii=False plus this.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


_STRINGS: dict[str, str] = {}  # keys and common values repeat across thousands of documents
# The first strings met fill it, the keys and common values among them; past the bound, names a
# model alone uses would only cost memory, in every worker process.
STRINGS_MAX = 20_000


class Block:
    """Lines already emitted (e.g. the values, shared by values.yaml and the HelmRelease)."""

    __slots__ = ("lines", "inline")

    def __init__(self, data: dict | list):
        self.lines: list[str] = []
        self.inline = _inline(data) if not data else ""  # an empty mapping or list stays on the key's line
        if data:
            _emit(data, 0, self.lines)


def scalar(value: object) -> str:
    if value.__class__ is str:
        cached = _STRINGS.get(value)
        if cached is None:
            cached = _string(value)
            if len(_STRINGS) < STRINGS_MAX:
                _STRINGS[value] = cached
        return cached
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("NaN and infinity are not emitted")
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def _string(value: str) -> str:
    if _PLAIN.fullmatch(value) and value.lower() not in _RESERVED and not value.endswith(":"):
        return value
    quoted = json.dumps(value, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _emit(value: object, indent: int, out: list[str]) -> None:
    # The hot loop of every render (~1M lines for 1,000 models): exact-type dispatch first, the
    # isinstance() fallbacks only for subclasses; list items are emitted in place and their first
    # line given its dash afterwards.
    pad = " " * indent
    strings = _STRINGS
    if value.__class__ is dict or isinstance(value, dict):
        for key, item in value.items():
            text = strings.get(key) if key.__class__ is str else None
            if text is None:
                if not isinstance(key, str):
                    raise TypeError("mapping keys must be strings")
                text = scalar(key)
            cls = item.__class__
            if cls is str:
                shown = strings.get(item)
                out.append(f"{pad}{text}: {shown if shown is not None else scalar(item)}")
            elif cls is dict or cls is list:
                if item:
                    out.append(f"{pad}{text}:")
                    _emit(item, indent + 2, out)
                else:
                    out.append(f"{pad}{text}: {{}}" if cls is dict else f"{pad}{text}: []")
            elif cls is Block:
                if item.inline:
                    out.append(f"{pad}{text}: {item.inline}")
                else:
                    out.append(f"{pad}{text}:")
                    inner = " " * (indent + 2)
                    out.extend(inner + line for line in item.lines)
            elif isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{text}:")
                _emit(item, indent + 2, out)
            else:
                out.append(f"{pad}{text}: {_inline(item)}")
    elif value.__class__ is list or isinstance(value, list):
        cut = indent + 2
        for item in value:
            cls = item.__class__
            if (cls is dict or cls is list or isinstance(item, (dict, list))) and item:
                first = len(out)
                _emit(item, cut, out)
                out[first] = f"{pad}- {out[first][cut:]}"
            elif cls is str:
                shown = strings.get(item)
                out.append(f"{pad}- {shown if shown is not None else scalar(item)}")
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + scalar(value))


def _inline(value: object) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def comment(header: str) -> str:
    """`header`'s lines as the comment lines dump() puts before a document."""
    return "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())


def dump(data: object, header: str = "") -> str:
    """One YAML document; `header` lines become comments at the top (comment(header))."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    if data.__class__ is Block:
        out.extend(data.lines or [data.inline])
    elif isinstance(data, (dict, list)) and data:
        _emit(data, 0, out)
    else:
        out.append(_inline(data))
    return "\n".join(out) + "\n"


def dump_all(documents: list, header: str = "") -> str:
    """Several YAML documents in one stream, `---` between them; `header` comments the first."""
    return "---\n".join(dump(data, header if at == 0 else "") for at, data in enumerate(documents))
