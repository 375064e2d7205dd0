"""`modelplat tools`: the pinned real tools, listed, found and built.

The pins live in one place, the package's `toolchain/pins.env`; the build recipes in the
package's `toolchain/install-tools.sh` (Go module builds into ~/.cache/modelplat-tools), which
`make test`, CI and `modelplat tools install` all run. This module reads the pins, says where
each tool is found and whether lint will use it, checks the prerequisites and runs the script.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import tools
from .resources import data_dir

# Tool → (its pin in pins.env, or None: from the distribution; what uses it).
TOOLS: dict[str, tuple[str | None, str]] = {
    "helm": ("HELM", "lint"),
    "kubeconform": ("KUBECONFORM", "lint"),
    "helm-unittest": ("HELM_UNITTEST", "lint"),
    "istioctl": ("ISTIOCTL", "lint"),
    "promtool": ("PROMTOOL", "lint"),
    "kustomize": ("KUSTOMIZE", "lint"),
    "kubectl": ("KUBERNETES", "lint --server-dry-run"),
    "etcd": ("ETCD", "lint --engines"),
    "kube-apiserver": ("KUBERNETES", "lint --engines"),
    "kube-controller-manager": ("KUBERNETES", "lint --engines"),
    "kserve-manager": ("KSERVE", "lint --engines"),
    "kserve-llmisvc": ("KSERVE", "lint --engines"),
    "source-controller": ("SOURCE_CONTROLLER", "lint --engines"),
    "kustomize-controller": ("KUSTOMIZE_CONTROLLER", "lint --engines"),
    "helm-controller": ("HELM_CONTROLLER", "lint --engines"),
    "sidecar-config": ("ISTIOCTL", "lint --engines"),
    "ratelimit": ("RATELIMIT", "modelplat's tests"),
    "redis-server": (None, "modelplat's tests"),
    "actionlint": ("ACTIONLINT", "modelplat's tests"),
    "extproc-harness": (None, "modelplat's tests"),
}
# What `tools install` builds for each group name (a tool name is a group of one).
GROUPS = {
    "lint": [t for t, (_, user) in TOOLS.items() if user == "lint"],
    "server-dry-run": ["kubectl"],
    # `lint --engines` runs the static tools too, and applies the Flux objects with kubectl.
    "engines": [t for t, (_, user) in TOOLS.items() if user in ("lint", "lint --server-dry-run", "lint --engines")],
    "all": list(TOOLS),
}
GO_MINIMUM = (1, 26)  # helm, helm-unittest and the engines declare go 1.26 in their go.mod
# Beyond Go, what a build needs (the engines' harness also needs git and openssl when it runs).
_NEEDS = {"redis-server": "apt-get (Debian/Ubuntu) to install redis-server"}


def toolchain_dir() -> Path:
    return data_dir("toolchain")


def pins() -> dict[str, str]:
    """NAME → version, from pins.env (NAME_VERSION=value lines)."""
    found = {}
    for line in (toolchain_dir() / "pins.env").read_text().splitlines():
        match = re.match(r"^([A-Z_]+)_VERSION=(\S+)\s*$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@dataclass
class ToolStatus:
    tool: str
    pinned: str  # the pinned version ("" for a distribution package)
    used_by: str
    path: str | None  # what lint will run (PATH first, then the tool cache), None when missing
    version: str  # of that binary
    pinned_build: bool  # that binary is modelplat's own build at the pinned version

    def as_dict(self) -> dict:
        return {"tool": self.tool, "pinned": self.pinned, "usedBy": self.used_by, "path": self.path,
                "version": self.version, "pinnedBuild": self.pinned_build}


def status() -> list[ToolStatus]:
    versions = pins()
    cache = tools.tools_cache()
    rows = []
    for tool, (pin, used_by) in TOOLS.items():
        path = tools.find(tool)
        pinned = versions.get(pin, "") if pin else ""
        own = bool(path and pinned and _built_here(Path(path), cache, tool, pinned))
        rows.append(ToolStatus(tool, pinned, used_by, path, tools.version(tool) if path else "missing", own))
    return rows


def _built_here(path: Path, cache: Path, tool: str, pinned: str) -> bool:
    """The binary is the cache's own build at the pinned version (bin/<tool> links into it)."""
    target = path.parent / os.readlink(path) if path.is_symlink() else path
    folder = target.parent
    return folder.parent.resolve() == cache.resolve() and folder.name.startswith(
        f"{tools.build_name(tool)}-{pinned}")


def expand(names: list[str]) -> list[str]:
    """Group and tool names → tool names, in TOOLS's order; ValueError names an unknown one."""
    wanted: set[str] = set()
    for name in names or ["lint"]:
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in TOOLS:
            wanted.add(name)
        else:
            raise ValueError(name)
    return [t for t in TOOLS if t in wanted]


def missing_prerequisites(wanted: list[str]) -> list[str]:
    """What the builds of `wanted` need and this machine lacks, each with what to do."""
    cache = tools.tools_cache()
    versions = pins()
    to_build = [t for t in wanted if not _built(t, cache, versions)]
    problems = []
    if any(TOOLS[t][0] for t in to_build):
        go = shutil.which("go")
        if not go:
            problems.append(f"Go {GO_MINIMUM[0]}.{GO_MINIMUM[1]}+ is needed to build "
                            f"{', '.join(t for t in to_build if TOOLS[t][0])}: install it from go.dev/dl "
                            "or your distribution")
        else:
            have = _go_version(go)
            if have is not None and have < GO_MINIMUM:
                problems.append(f"Go {have[0]}.{have[1]} is too old: the pinned tools need Go "
                                f"{GO_MINIMUM[0]}.{GO_MINIMUM[1]}+")
    if "redis-server" in to_build and not shutil.which("redis-server") and not shutil.which("apt-get"):
        problems.append(f"redis-server is missing and cannot be installed here: {_NEEDS['redis-server']}")
    if any(TOOLS[t][1] == "lint --engines" for t in wanted):
        for program, why in (("git", "serves the rendered output to Flux over HTTP (git http-backend)"),
                             ("openssl", "makes the local API server's and webhooks' certificates")):
            if not shutil.which(program):
                problems.append(f"{program} is needed by lint --engines, which these tools are for: it {why}")
    return problems


def _built(tool: str, cache: Path, versions: dict[str, str]) -> bool:
    pin = TOOLS[tool][0]
    if pin is None:
        return shutil.which(tool) is not None
    return any(cache.glob(f"{tools.build_name(tool)}-{versions.get(pin, '?')}*"))


def _go_version(go: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def install(wanted: list[str]) -> int:
    """Runs the package's install-tools.sh for these tools (its progress and each tool's cost go
    to stderr); returns its exit status."""
    bash = shutil.which("bash")
    if not bash:
        raise FileNotFoundError("bash")
    script = toolchain_dir() / "install-tools.sh"
    return subprocess.run([bash, str(script), *wanted], stdout=subprocess.DEVNULL).returncode
