"""A non-editable install from the built wheel renders and lints: templates, schemas and the
vendored CRD schemas ship inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelplat.lint import TOOLS as LINT_TOOLS

from conftest import EXAMPLES, REPO, need_tool


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("modelplat-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", str(wheel)], check=True, capture_output=True)
    return venv


@pytest.mark.slow
def test_wheel_contains_the_data_folders(installed):
    (wheel,) = (installed.parent / "dist").glob("modelplat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("modelplat/templates/chart/templates/inferenceservice.yaml.j2",
                     "modelplat/schemas/chart-values.schema.json",
                     "modelplat/vendor/crd-schemas/serving.kserve.io/inferenceservice_v1beta1.json",
                     "modelplat/vendor/crd-schemas/LICENSE"):
        assert required in names
    # The upstream CRDs feed only the tests' API server; users' clusters have their own.
    assert not [n for n in names if "crd-manifests" in n]


@pytest.mark.slow
def test_installed_wheel_renders_and_lints_outside_the_checkout(installed, tmp_path):
    for tool in LINT_TOOLS:  # everything --require-tools asks for
        need_tool(tool)
    exe = installed / "bin/modelplat"
    out = tmp_path / "charts-out"
    render = subprocess.run([str(exe), "render", str(EXAMPLES), "--out", str(out)], cwd=tmp_path,
                            capture_output=True, text=True)
    assert render.returncode == 0, render.stderr
    assert (out / "llm/qwen-chat/chart/templates/inferenceservice.yaml").is_file()
    # Byte-identical to the committed output: the installed package renders what the checkout does.
    for path in (REPO / "charts-out").rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(REPO / "charts-out")).read_bytes() == path.read_bytes(), path
    lint = subprocess.run([str(exe), "lint", str(EXAMPLES), "--require-tools"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    imported = subprocess.run([str(installed / "bin/python"), "-c", "import modelplat.resources as r; print(r.templates_dir())"],
                              cwd=tmp_path, capture_output=True, text=True)
    assert str(installed) in imported.stdout, "the wheel's own templates are used, not the checkout's"
