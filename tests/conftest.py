"""Shared fixtures: small model trees on disk, the real tools, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelplat import tools

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PLATFORM = """\
clusterName: ml-test
flux:
  gitRepository:
    url: ssh://git@git.example.com/platform/models.git
"""

SKLEARN = """\
model:
  format: sklearn
  storageUri: s3://models/iris/v1
"""


@pytest.fixture(autouse=True, scope="session")
def _private_render_cache(tmp_path_factory):
    """Tests never read or fill the user's render cache (subprocesses inherit this too)."""
    os.environ["MODELPLAT_CACHE_DIR"] = str(tmp_path_factory.mktemp("render-cache"))


def need_tool(tool: str) -> str:
    """Path of a real tool. Missing: a failure under CI=true, a skip elsewhere."""
    path = tools.find(tool)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{tool} is required under CI=true; scripts/install-tools.sh builds it")
    pytest.skip(f"{tool} not installed (scripts/install-tools.sh)")  # never reached when IN_CI: failed above


@pytest.fixture(scope="session")
def lint_tools() -> dict[str, str]:
    """Every tool `modelplat lint` runs, which is what its --require-tools asks for."""
    from modelplat.lint import TOOLS

    return {tool: need_tool(tool) for tool in TOOLS}


@pytest.fixture(scope="session")
def examples_lint(lint_tools) -> subprocess.CompletedProcess:
    """`modelplat lint examples --require-tools --format json`, run once a session: several test
    modules judge the same report."""
    return modelplat("lint", str(EXAMPLES), "--require-tools", "--format", "json")


@pytest.fixture
def tree(tmp_path: Path):
    """Build a model tree: tree({"proj/name.yaml": "...yaml..."}) → root folder (with platform.yaml)."""

    def make(files: dict[str, str], platform: str = PLATFORM) -> Path:
        root = tmp_path / "models"
        root.mkdir(exist_ok=True)
        (root / "platform.yaml").write_text(platform)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root

    return make


def modelplat(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = dict(os.environ, COLUMNS="200", **(env or {}))
    return subprocess.run([sys.executable, "-m", "modelplat.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=full_env, timeout=300)


def lint_refusing(root: Path, folder: Path, group: str, schema: str, refused: str) -> dict:
    """`modelplat lint` of root with kubeconform refusing every <group>/<schema> document: it fails,
    on the Flux wiring row, naming the output file `refused`. The JSON report."""
    location = refusing_schema_location(folder, group, schema)
    result = modelplat("lint", str(root), "--schema-location", location, "--format", "json")
    report = json.loads(result.stdout)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    wiring = next(m for m in report["models"] if m["file"] == "(flux wiring)")
    assert wiring["checks"]["kubeconform"]["status"] == "fail"
    assert refused in wiring["checks"]["kubeconform"]["detail"]
    return report


def refusing_schema_location(folder: Path, group: str, schema: str) -> str:
    """A kubeconform --schema-location, tried before the bundled ones, whose <group>/<schema> file
    refuses every document of that kind (it requires a field no object has)."""
    (folder / "schemas" / group).mkdir(parents=True)
    (folder / "schemas" / group / schema).write_text(json.dumps({"type": "object", "required": ["nonexistent"]}))
    return str(folder / "schemas") + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


@pytest.fixture
def examples_copy(tmp_path: Path) -> Path:
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target)
    return target

CPU_FILE = "model:\n  format: sklearn\n  storageUri: s3://m/iris\n"
# An OpenAI-style LLM in a custom vLLM container, without auth.
LLM_FILE = """\
model:
  format: custom
  protocol: openai
  image: vllm/vllm-openai:v0.8.5
  storageUri: hf://Qwen/Qwen2.5-0.5B-Instruct
"""
# The same, with JWT from an explicit identity provider.
JWT_LLM_FILE = LLM_FILE + """\
auth:
  jwt:
    enabled: true
    issuer: https://idp.example.com
    jwksUri: https://idp.example.com/jwks.json
"""


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory):
    """A real kube-apiserver (+ etcd) on loopback with the vendored CRDs installed; one a session.

    Stopped in every case: the `finally` also runs when the start itself fails half-way.
    """
    from kube_apiserver import ApiServer

    server = ApiServer(etcd=need_tool("etcd"), apiserver=need_tool("kube-apiserver"), kubectl=need_tool("kubectl"),
                       openssl=need_tool("openssl"), workdir=tmp_path_factory.mktemp("kube-apiserver"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only for engines tests that will run
def pytest_collection_modifyitems(session, config, items):
    """The engines tests run last, and their control plane starts now, in the background: its
    minutes of waiting (KServe, Flux, Helm) overlap every other test."""
    engines = [item for item in items if item.get_closest_marker("engines")]
    if not engines or config.option.collectonly:
        return
    items[:] = [item for item in items if not item.get_closest_marker("engines")] + engines
    import engine_models

    config.engines_warmup = engine_models.Warmup()
    config.engines_warmup.start()


def pytest_sessionfinish(session):
    warm = getattr(session.config, "engines_warmup", None)
    if warm is not None:
        warm.stop()
