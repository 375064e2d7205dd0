"""Exports the JSON Schemas of the model values, the platform settings and the chart values.

The committed copies under schemas/ are what editors, Helm (values.schema.json) and CI use;
tests/test_schemas.py fails when they drift from the pydantic models. Writes nothing itself.
"""

from __future__ import annotations

import json
import re

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://modelplat.dev/schemas/"

# file name → (module, class, title)
SCHEMAS = {
    "model-values.schema.json": ("modelplat.values", "ModelValues", "modelplat model values"),
    "platform.schema.json": ("modelplat.config", "PlatformSettings", "modelplat platform settings"),
    "chart-values.schema.json": ("modelplat.values", "ChartValues", "modelplat chart values"),
}


def build(file_name: str) -> dict:
    import importlib

    module, cls, title = SCHEMAS[file_name]
    model = getattr(importlib.import_module(module), cls)
    body = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": DRAFT, "$id": BASE_ID + file_name, "title": title} | {
        k: v for k, v in body.items() if k != "title"
    }


# Invisible characters a pattern names (C1 controls, bidi and other format characters) are
# written as JSON escapes: a reader (or a code review) sees what they are, and no editor or
# forge flags the schema for hidden bidi text. JSON parsers give the pattern the same characters.
_INVISIBLE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def text(file_name: str) -> str:
    body = json.dumps(build(file_name), indent=2, ensure_ascii=False) + "\n"
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", body)


def all_texts() -> dict[str, str]:
    return {name: text(name) for name in SCHEMAS}
