"""Docs that must not drift from the code: the generated CLI reference, the diagnostic codes,
every values or platform key the docs name, and the README's two set-up commands that CI runs."""

from __future__ import annotations

import json
import re

from modelplat import clidoc

from conftest import REPO

CODE_CALL = re.compile(r'(?:\.diagnostic\(|Diagnostic\()(?:[^()"]|\([^()]*\))*?"([a-z0-9]+(?:-[a-z0-9]+)+)"', re.S)


def test_cli_reference_is_generated_from_the_code():
    committed = (REPO / "docs/cli-reference.md").read_text()
    assert committed == clidoc.reference(), "docs/cli-reference.md is stale: python -m modelplat.clidoc > docs/cli-reference.md"
    for command in ("render", "lint", "schema", "init", "explain", "diff", "import", "version"):
        assert f"## modelplat {command}\n" in committed


def test_every_diagnostic_code_is_documented():
    codes = set()
    for path in (REPO / "modelplat").glob("*.py"):
        codes |= set(CODE_CALL.findall(path.read_text()))
    assert len(codes) > 40, sorted(codes)
    documented = (REPO / "docs/cli.md").read_text() + (REPO / "docs/troubleshooting.md").read_text()
    missing = sorted(c for c in codes if f"`{c}`" not in documented)
    assert not missing, f"undocumented diagnostic codes: {missing}"


def test_readme_holds_the_two_setup_commands_ci_runs():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert "make render\n" in blocks and "make test\n" in blocks
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in ci


# A dotted key in backticks (`resources.requestGPU`, `metrics.port: 9000`).
DOTTED_KEY = re.compile(r"`([a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_-]+)+)(?::[^`]*)?`")
# Dotted names in the docs that are another tool's keys, not modelplat's.
NOT_OURS = {"resources.overrides": "a prometheus-adapter rule key (docs/platform.md)"}


def _schema_has(root: dict, path: list[str]) -> bool:
    """Whether a JSON Schema (as exported: $defs, anyOf, items, additionalProperties) has that key path."""

    def variants(node: dict) -> list[dict]:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        found = [node]
        for key in ("anyOf", "oneOf", "allOf"):
            for alternative in node.get(key, []):
                found += variants(alternative)
        items = node.get("items")
        return found + (variants(items) if isinstance(items, dict) else [])

    def child(node: dict, part: str) -> dict | None:
        if part in (node.get("properties") or {}):
            return node["properties"][part]
        for pattern, schema in (node.get("patternProperties") or {}).items():
            if re.search(pattern, part):
                return schema
        extra = node.get("additionalProperties")
        return extra if isinstance(extra, dict) else None

    nodes = [root]
    for part in path:
        nodes = [found for node in nodes for n in variants(node) if (found := child(n, part)) is not None]
        if not nodes:
            return False
    return True


def test_every_values_and_platform_key_the_docs_name_exists():
    """A key renamed or removed in the schema must not live on in the docs (the docs named
    canary.trafficPercent, which explain then refused)."""
    schemas = [json.loads((REPO / "schemas" / name).read_text())
               for name in ("model-values.schema.json", "platform.schema.json")]
    tops = {key for schema in schemas for key in schema["properties"]}
    missing = {}
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for match in DOTTED_KEY.finditer(doc.read_text()):
            key = match.group(1)
            if key.split(".")[0] in tops and key not in NOT_OURS and \
                    not any(_schema_has(schema, key.split(".")) for schema in schemas):
                missing.setdefault(key, []).append(str(doc.relative_to(REPO)))
    assert missing == {}, missing
    assert _schema_has(schemas[0], ["canary", "headerMatch", "x-model-canary"])
    assert not _schema_has(schemas[0], ["canary", "trafficPercent"])
