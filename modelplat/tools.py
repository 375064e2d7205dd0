"""The real tools (helm, kubeconform, helm-unittest, istioctl, kustomize, promtool): finding them
and running them.

Subprocess work lives only here; callers get structured results. Never on the render path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# How each tool prints its version, and the pattern that picks the version out of that output
# (the first line as is when there is none). --remote=false: istioctl must not ask a cluster.
_VERSION_ARGS = {
    "helm": (["version", "--short"], None),
    "kubeconform": (["-v"], None),
    "istioctl": (["version", "--remote=false", "--short"], re.compile(r"version: (\S+)")),
    "kustomize": (["version"], None),
    "promtool": (["--version"], re.compile(r"version (\d\S*)")),
}


# Tools whose cache folder is named after the project they come from, not the binary.
_BUILT_AS = {"kserve-manager": "kserve", "kserve-llmisvc": "kserve"}


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def tools_cache() -> Path:
    """Where install-tools.sh builds each tool (`<build name>-<version>/`) and links it (`bin/`)."""
    cache = os.environ.get("MODELPLAT_TOOLS_CACHE")
    return Path(cache) if cache else cache_root() / "modelplat-tools"


def tools_bin() -> Path:
    explicit = os.environ.get("MODELPLAT_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    return tools_cache() / "bin"


def build_name(tool: str) -> str:
    """The name of the tool's build folder in the tool cache (before `-<version>`)."""
    return _BUILT_AS.get(tool, tool)


@lru_cache(maxsize=None)
def find(tool: str) -> str | None:
    """PATH first (a user's own install wins), then the project's tool cache."""
    found = shutil.which(tool)
    if found:
        return found
    candidate = tools_bin() / tool
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


@lru_cache(maxsize=None)
def version(tool: str) -> str:
    """The tool's version: from the cache folder name for our own builds, else from the tool."""
    path = find(tool)
    if not path:
        return "missing"
    folder = Path(os.path.realpath(path)).parent.name  # e.g. kubeconform-v0.7.0
    built_as = build_name(tool)
    if folder.startswith(f"{built_as}-v"):
        return folder[len(built_as) + 1:]
    if tool not in _VERSION_ARGS:
        return "unknown"
    args, pattern = _VERSION_ARGS[tool]
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return parse_version(out, pattern)


def parse_version(output: str, pattern: re.Pattern | None = None) -> str:
    """The version in a tool's version output; "unknown" when it prints none (a Go module build
    of promtool prints "version " with nothing after it)."""
    line = output.strip().splitlines()[0].strip() if output.strip() else ""
    if pattern is not None:
        found = pattern.search(output)
        line = found.group(1) if found else ""
    return line or "unknown"


@dataclass(slots=True)  # lint keeps one a chart and tool
class Result:
    ok: bool
    output: str


# Go's collector runs each time the heap doubles (GOGC=100). The tools lint runs per chart (helm
# lint, helm template, helm-unittest) live a second or two, keep a few MB live and allocate
# hundreds (YAML marshalled and parsed again for every assertion path): collecting at 9x the live
# heap instead cut their CPU by 30-40% (30 generated charts: helm-unittest 10.7 -> 7.0 s, helm lint
# 5.1 -> 3.1 s, helm template 4.9 -> 2.9 s) for 40 -> 80-105 MB a process. GOMEMLIMIT keeps a
# process that holds much more (a huge chart) collecting as usual near 512 MiB. The whole-output
# tools (kubeconform, istioctl, promtool, kustomize: one process over every chart, their live heap
# grows with the repository) keep Go's defaults.
GO_BATCH_GC = {"GOGC": "800", "GOMEMLIMIT": "512MiB"}


def per_chart_env() -> dict[str, str] | None:
    """The environment for the Go tools run per chart: GO_BATCH_GC, unless the user tuned Go's
    collector (GOGC or GOMEMLIMIT set), whose settings then stand as they are. None: inherit."""
    if "GOGC" in os.environ or "GOMEMLIMIT" in os.environ:
        return None
    return {**os.environ, **GO_BATCH_GC}


def run(args: list[str], cwd: Path | None = None, timeout: int = 300, env: dict[str, str] | None = None) -> Result:
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Result(False, f"{args[0]} timed out after {timeout}s")
    except OSError as exc:
        return Result(False, f"cannot run {args[0]}: {exc}")
    return Result(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def run_apart(args: list[str], timeout: int = 300) -> tuple[Result, str]:
    """Like run, for tools whose stdout must be read on its own: (result with stderr only, stdout).
    kubectl interleaves the two with no line break between them, and may prompt."""
    try:
        # No stdin: kubectl asks for a username on a kubeconfig without credentials and would wait.
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Result(False, f"{args[0]} timed out after {timeout}s"), ""
    except OSError as exc:
        return Result(False, f"cannot run {args[0]}: {exc}"), ""
    return Result(proc.returncode == 0, proc.stderr.strip()), proc.stdout


# --- kubeconform schemas ----------------------------------------------------------------------


def crd_schema_location() -> str:
    from .resources import vendor_dir

    return str(vendor_dir() / "crd-schemas") + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


def core_schema_location(kubernetes_version: str) -> str:
    return str(core_schema_dir(kubernetes_version)) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"


def core_schema_dir(kubernetes_version: str) -> Path:
    """Core Kubernetes schemas from the kubernetes-validate package, made usable by kubeconform.

    As shipped, each file has an https `$id` and refs to `/api/_definitions.json`, which
    kubeconform tries to fetch and then reports as "could not find schema". A copy with the
    `$id`s dropped and the refs made relative works offline. Prepared once per version, in the
    user's cache (never in the project).
    """
    import importlib.util

    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the kubernetes-validate package is not installed (pip install kubernetes-validate)")
    name = f"v{kubernetes_version}.0-local-strict"
    source = Path(spec.submodule_search_locations[0]) / "kubernetes-json-schema" / name
    if not source.is_dir():
        raise FileNotFoundError(f"kubernetes-validate has no schemas for Kubernetes {kubernetes_version}")
    target = cache_root() / "modelplat" / "k8s-schemas" / name
    done = target / ".complete"
    if done.is_file():
        return target
    tmp = target.with_name(f"{name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        data = json.loads(path.read_text())
        (tmp / path.name).write_text(json.dumps(_relative_refs(data)))
    (tmp / ".complete").write_text("ok\n")
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _relative_refs(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$id":
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith("/api/_definitions.json"):
                value = value.replace("/api/_definitions.json", "_definitions.json", 1)
            out[key] = _relative_refs(value)
        return out
    if isinstance(node, list):
        return [_relative_refs(item) for item in node]
    return node
