"""A non-editable install from the built wheel renders and lints: templates, schemas and the
vendored CRD schemas ship inside the package."""

from __future__ import annotations

import os
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
                     "modelplat/vendor/crd-schemas/LICENSE",
                     "modelplat/toolchain/pins.env", "modelplat/toolchain/install-tools.sh",
                     "modelplat/toolchain/sidecar-config/main.go"):
        assert required in names
    # The upstream CRDs `lint --engines` installs ship too: they are small once compressed.
    assert "modelplat/vendor/crd-manifests/serving.kserve.io_inferenceservices.yaml" in names
    assert wheel.stat().st_size < 3 * 1024 * 1024, wheel.stat().st_size


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
    crds = subprocess.run([str(installed / "bin/python"), "-c",
                           "from modelplat.engines.apiserver import crd_manifests; print(crd_manifests())"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert crds.returncode == 0 and crds.stdout.startswith(str(installed)), crds.stdout + crds.stderr


@pytest.mark.slow
def test_installed_wheel_lists_builds_and_finds_its_tools(installed, tmp_path):
    """`modelplat tools`: the pins ship in the package; `tools install` builds one into an empty
    cache (the others of lint already built there, as a CI cache restore leaves them), and lint
    --require-tools runs exactly the tools `tools list` reports, with nothing else on PATH."""
    import json

    from modelplat import toolbuild

    tools_bin = {tool: need_tool(tool) for tool in LINT_TOOLS}
    exe = str(installed / "bin/modelplat")
    cache = tmp_path / "tools-cache"
    cache.mkdir()
    for tool in LINT_TOOLS:  # restored from "CI's cache": every lint tool but kubeconform
        if tool != "kubeconform":
            built = Path(os.path.realpath(tools_bin[tool])).parent
            (cache / built.name).symlink_to(built)
    go = Path(need_tool("go")).parent
    env = {"PATH": os.pathsep.join([str(installed / "bin"), str(go), "/usr/bin", "/bin"]),
           "HOME": os.environ["HOME"], "MODELPLAT_TOOLS_CACHE": str(cache)}
    for variable in ("GOPATH", "GOMODCACHE", "GOCACHE", "GOFLAGS", "GOPROXY", "XDG_CACHE_HOME", "MODELPLAT_CACHE_DIR"):
        if variable in os.environ:
            env[variable] = os.environ[variable]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)

    listed = json.loads(run("tools", "list", "--format", "json").stdout)["tools"]
    pins = {t["tool"]: t["pinned"] for t in listed}
    assert pins["kubeconform"] == toolbuild.pins()["KUBECONFORM"] and pins["helm"] == toolbuild.pins()["HELM"]
    assert next(t for t in listed if t["tool"] == "kubeconform")["path"] is None
    assert run("tools", "path").stdout.strip() == str(cache / "bin")

    built = run("tools", "install", "kubeconform")
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == str(cache / "bin")
    assert "building kubeconform" in built.stderr
    again = run("tools", "install", "lint")  # every lint tool is there now: nothing to build
    assert again.returncode == 0 and "building" not in again.stderr, again.stderr
    listed = {t["tool"]: t for t in json.loads(run("tools", "list", "--format", "json").stdout)["tools"]}
    for tool in LINT_TOOLS:
        assert listed[tool]["path"] == str(cache / "bin" / tool) and listed[tool]["pinnedBuild"], listed[tool]
    lint = run("lint", str(EXAMPLES), "--require-tools", "--format", "json")
    assert lint.returncode == 0, lint.stdout[-2000:] + lint.stderr
    assert json.loads(lint.stdout)["missingTools"] == []


@pytest.mark.slow
def test_a_missing_prerequisite_is_named_before_anything_runs(installed, tmp_path):
    env = {"PATH": os.pathsep.join([str(installed / "bin"), "/usr/bin", "/bin"]), "HOME": str(tmp_path),
           "MODELPLAT_TOOLS_CACHE": str(tmp_path / "empty-cache")}
    result = subprocess.run([str(installed / "bin/modelplat"), "tools", "install", "kubeconform"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Go 1.26+ is needed to build kubeconform" in result.stderr
    assert not (tmp_path / "empty-cache" / "bin").exists() or not any((tmp_path / "empty-cache" / "bin").iterdir())
    unknown = subprocess.run([str(installed / "bin/modelplat"), "tools", "install", "helmm"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown tool or group 'helmm'" in unknown.stderr


@pytest.mark.slow
def test_the_engines_prerequisites_are_named_too(installed, tmp_path):
    """git and openssl, which lint --engines runs, are asked for when the engines are built."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for program in ("bash", "env", "sh"):
        (bare / program).symlink_to(need_tool(program))
    (bare / "go").symlink_to(need_tool("go"))
    env = {"PATH": os.pathsep.join([str(installed / "bin"), str(bare)]), "HOME": str(tmp_path),
           "MODELPLAT_TOOLS_CACHE": str(tmp_path / "empty-cache")}
    result = subprocess.run([str(installed / "bin/modelplat"), "tools", "install", "etcd"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "git is needed by lint --engines" in result.stderr and "openssl is needed by lint --engines" in result.stderr
