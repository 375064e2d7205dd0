#!/usr/bin/env python3
"""Writes kubeconform JSON schemas from CustomResourceDefinition YAML files.

For every served version of every CRD in the files (multi-document YAML; other kinds are
skipped) it writes <outdir>/<group>/<kind, lowercased>_<version>.json from the version's
openAPIV3Schema, in the style of vendor/crd-schemas/ (openapi2jsonschema's): the schema's own keys
in their own order, 2-space indent, a trailing newline, and these changes:

- strict: `"additionalProperties": false` (appended last) on every object schema below the root
  that declares `properties` and has neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields: true` (the API server keeps unknown fields there, so they
  stay allowed). Not inside anyOf/oneOf/allOf/not, which are copied as they are. The root is left
  open, like the existing files;
- `x-kubernetes-int-or-string: true` (or the old `format: int-or-string`) without an anyOf/oneOf
  gets `"oneOf": [{"type": "string"}, {"type": "integer"}]`; controller-gen's
  `anyOf: [{type: integer}, {type: string}]` is kept as it is;
- `nullable: true` becomes a `"null"` in `type` (and in `enum`, and in the int-or-string
  alternatives), and the `nullable` key is dropped: JSON Schema does not know it;
- an `x-kubernetes-embedded-resource` object that lists properties also allows apiVersion, kind
  and metadata, which the API server always accepts there;
- the root gets apiVersion, kind (strings) and metadata (object) if a CRD lacks them.

Everything else (descriptions, formats, defaults, x-kubernetes-validations, ...) is copied: JSON
Schema validators ignore what they do not know. The output is a pure function of the input bytes.

Usage: scripts/crd2schema.py [-o OUTDIR] [--check] CRD_FILE_OR_DIR...
  -o/--out  where to write (default: vendor/crd-schemas of this repository)
  --check   write nothing; exit 1 and name each file that is missing or differs
A directory argument means its *.yaml and *.yml files, sorted by name.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "vendor" / "crd-schemas"
CRD_API_GROUP = "apiextensions.k8s.io"

# --- YAML ------------------------------------------------------------------------------------------
# ruamel's full safe loader takes ~2.3 s on one 2 MB controller-gen CRD; building the plain data
# straight from the C parser's events, each plain scalar resolved (once per distinct text) by
# ruamel's own YAML 1.2 resolver and constructor, takes ~0.4 s and gives the same data. Anything
# unusual (tags, anchors, aliases, directives, complex or duplicate keys, a syntax error) falls
# back to the full loader, which then also reports the errors.


class _Unusual(Exception):
    pass


_PLAIN_TAGS = frozenset("tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null"))


class _ScalarResolver:
    def __init__(self) -> None:
        from ruamel.yaml import YAML

        self._yaml = YAML(typ="safe")  # never loads anything: stays on YAML 1.2
        self._cache: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        try:
            return self._cache[text]
        except KeyError:
            pass
        from ruamel.yaml.nodes import ScalarNode

        tag = self._yaml.resolver.resolve(ScalarNode, text, (True, False))
        if str(tag) not in _PLAIN_TAGS:  # a timestamp, a merge key, ...
            raise _Unusual
        value = self._yaml.constructor.construct_non_recursive_object(ScalarNode(tag, text))
        self._cache[text] = value
        return value


def _fast_documents(text: str) -> list[Any]:
    from ruamel.yaml import events

    try:
        from ruamel.yaml.cyaml import CParser
    except ImportError:  # no ruamel.yaml.clib: the full (pure Python) loader, slower
        raise _Unusual from None

    resolve = _ScalarResolver()
    scalar_event, mapping_start, sequence_start = events.ScalarEvent, events.MappingStartEvent, events.SequenceStartEvent
    mapping_end, sequence_end = events.MappingEndEvent, events.SequenceEndEvent
    document_start, document_end, stream_end = events.DocumentStartEvent, events.DocumentEndEvent, events.StreamEndEvent
    no_key = object()
    documents: list[Any] = []
    parser = CParser(text)
    try:
        parser.get_event()  # stream start
        while True:
            event = parser.get_event()
            if event.__class__ is stream_end:
                return documents
            if event.__class__ is not document_start or getattr(event, "version", None) or getattr(event, "tags", None):
                raise _Unusual
            root: list = []
            stack: list = [root]
            keys: list = [no_key]
            while True:
                event = parser.get_event()
                cls = event.__class__
                if cls is document_end:
                    break
                if cls is scalar_event:
                    if event.anchor is not None or event.tag is not None:
                        raise _Unusual
                    value = resolve(event.value) if event.implicit[0] else event.value
                elif cls is mapping_start or cls is sequence_start:
                    if event.anchor is not None or event.tag is not None:
                        raise _Unusual
                    value = {} if cls is mapping_start else []
                elif cls is mapping_end or cls is sequence_end:
                    stack.pop()
                    keys.pop()
                    continue
                else:  # an alias
                    raise _Unusual
                container = stack[-1]
                if container.__class__ is dict:
                    key = keys[-1]
                    if key is no_key:
                        if value.__class__ in (dict, list):
                            raise _Unusual
                        keys[-1] = value
                    else:
                        if key in container:
                            raise _Unusual
                        container[key] = value
                        keys[-1] = no_key
                else:
                    container.append(value)
                if value.__class__ is dict or value.__class__ is list:
                    stack.append(value)
                    keys.append(no_key)
            documents.append(root[0] if root else None)
    except _Unusual:
        raise
    except Exception:
        raise _Unusual from None


def load_documents(text: str) -> list[Any]:
    """The documents of a YAML stream as plain data (YAML 1.2, ruamel's safe loader's results)."""
    try:
        return _fast_documents(text)
    except _Unusual:
        from ruamel.yaml import YAML

        return list(YAML(typ="safe").load_all(text))


# --- CRD → JSON schema -----------------------------------------------------------------------------


def _is_crd(doc: Any) -> bool:
    return (isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
            and str(doc.get("apiVersion", "")).startswith(CRD_API_GROUP + "/"))


def _allow_null(schema: dict) -> None:
    types = schema.get("type")
    if isinstance(types, str):
        schema["type"] = [types, "null"]
    elif isinstance(types, list) and "null" not in types:
        schema["type"] = [*types, "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    for alternatives in ("anyOf", "oneOf"):
        # Only the int-or-string pair: any other anyOf/oneOf sits beside a `type`, which now
        # admits null, and is a further constraint that null would wrongly have to meet.
        if schema.get("x-kubernetes-int-or-string") is True and isinstance(schema.get(alternatives), list):
            if {"type": "null"} not in schema[alternatives]:
                schema[alternatives] = [*schema[alternatives], {"type": "null"}]


def _convert(schema: Any, root: bool = False) -> Any:
    """A JSON schema of one openAPIV3Schema node (a new object; the input is not changed)."""
    if isinstance(schema, list):
        return [_convert(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _convert(sub) for name, sub in value.items()}  # names, not keywords
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value)
        else:
            # Data (default, enum, x-kubernetes-*) and the junctors anyOf/oneOf/allOf/not, copied
            # as they are: in a structural schema those only constrain the fields declared
            # beside them, so an alternative that names some of the fields must not forbid the
            # others (Gateway's spec.addresses[] oneOf).
            out[key] = copy.deepcopy(value)
    int_or_string = out.get("x-kubernetes-int-or-string") is True or out.get("format") == "int-or-string"
    if int_or_string and "anyOf" not in out and "oneOf" not in out:
        if out.get("format") == "int-or-string":
            del out["format"]
        out.pop("type", None)  # the alternatives carry the types
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if out.pop("nullable", False) is True:
        _allow_null(out)
    if out.get("x-kubernetes-embedded-resource") is True and isinstance(out.get("properties"), dict):
        for name, sub in (("apiVersion", {"type": "string"}), ("kind", {"type": "string"}),
                          ("metadata", {"type": "object"})):
            out["properties"].setdefault(name, sub)
    if (not root and isinstance(out.get("properties"), dict) and "additionalProperties" not in out
            and out.get("x-kubernetes-preserve-unknown-fields") is not True):
        out["additionalProperties"] = False
    return out


def version_schema(open_api_v3: dict) -> dict:
    """The kubeconform schema of one CRD version's openAPIV3Schema."""
    out = _convert(open_api_v3, root=True)
    properties = out.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties.setdefault("metadata", {"type": "object"})
    out.setdefault("type", "object")
    return out


def dump(schema: dict) -> str:
    return json.dumps(schema, indent=2) + "\n"  # ASCII only (\uXXXX escapes), like the existing files


def crd_schemas(doc: dict, origin: str = "") -> Iterator[tuple[str, str]]:
    """(relative path, JSON text) for each served version of one CRD."""
    spec = doc.get("spec") or {}
    group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
    if not group or not kind:
        raise ValueError(f"{origin}: a CRD without spec.group or spec.names.kind")
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")
                  or (spec.get("validation") or {}).get("openAPIV3Schema"))
        if not schema:
            raise ValueError(f"{origin}: {kind} {version.get('name')} has no openAPIV3Schema")
        yield f"{group}/{kind.lower()}_{version['name']}.json", dump(version_schema(schema))


def input_files(arguments: list[Path]) -> list[Path]:
    files: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            files += sorted(p for p in argument.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files.append(argument)
    return files


def schemas_of(files: list[Path]) -> dict[str, str]:
    """Relative path → JSON text for every served CRD version in the files (file order; a later
    copy of the same group/kind/version replaces an earlier one, as a later apply would)."""
    result: dict[str, str] = {}
    for path in files:
        for doc in load_documents(path.read_text(encoding="utf-8")):
            if _is_crd(doc):
                result.update(crd_schemas(doc, str(path)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, metavar="CRD_FILE_OR_DIR")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a missing or different file")
    args = parser.parse_args(argv)
    schemas = schemas_of(input_files(args.inputs))
    if not schemas:
        print("crd2schema: no served CRD version in the input", file=sys.stderr)
        return 1
    stale = []
    for relative, text in sorted(schemas.items()):
        target = args.out / relative
        current = target.read_bytes() if target.is_file() else None
        if current == text.encode("utf-8"):
            continue
        if args.check:
            stale.append(relative)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
        print(f"wrote {target}")
    for relative in stale:
        print(f"stale or missing: {args.out / relative}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
