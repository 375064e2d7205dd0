"""Docs that must not drift from the code: the generated CLI reference, the diagnostic codes,
and the README's two set-up commands that CI runs."""

from __future__ import annotations

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
