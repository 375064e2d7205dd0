"""The CI templates in docs/ci: valid for their CI systems, and they install and find the tools
the one way modelplat documents (`modelplat tools install`, keyed on `modelplat tools list`)."""

from __future__ import annotations

import subprocess

from ruamel.yaml import YAML

from modelplat import tools

from conftest import REPO, need_tool

CI = REPO / "docs/ci"


def test_actionlint_accepts_the_github_workflow():
    actionlint = need_tool("actionlint")
    result = subprocess.run([actionlint, "-no-color", str(CI / "github-actions.yml")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tools.version("actionlint") != "missing"


def test_actionlint_refuses_a_broken_workflow(tmp_path):
    """The check can fail: a step that reads an output no step sets."""
    actionlint = need_tool("actionlint")
    broken = (CI / "github-actions.yml").read_text().replace("steps.tools.outputs.key", "steps.tool.outputs.key")
    (tmp_path / "broken.yml").write_text(broken)
    result = subprocess.run([actionlint, "-no-color", str(tmp_path / "broken.yml")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "steps.tool" in result.stdout


def test_every_template_builds_with_modelplat_tools_and_keys_its_cache_on_the_pins():
    for name in ("github-actions.yml", "gitlab-ci.yml", "azure-pipelines.yml"):
        text = (CI / name).read_text()
        YAML(typ="safe").load(text)  # well-formed YAML
        assert "modelplat tools install lint" in text, name
        assert "install-tools.sh" not in text and "_VERSION=" not in text, name  # no copied script, no pins
        assert "modelplat lint models --require-tools" in text, name
    for name in ("github-actions.yml", "azure-pipelines.yml"):
        assert "modelplat tools list --format json" in (CI / name).read_text(), name


def test_the_pins_live_in_one_place():
    pins = (REPO / "toolchain/pins.env").read_text()
    assert "HELM_VERSION=" in pins
    for path in (REPO / "toolchain/install-tools.sh", REPO / "scripts/install-tools.sh", REPO / "Makefile",
                 REPO / ".ci/run"):
        text = path.read_text()
        assert not [line for line in text.splitlines() if line.split("=")[0].strip().endswith("_VERSION")
                    and "=" in line and not line.lstrip().startswith("#")], path
