"""Lint: schema and rules for every values file, then the real tools on every rendered chart.

Renders into a temporary folder (never the user's output), runs helm lint/template and
helm-unittest per chart in parallel, and one kubeconform over everything. Prints nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import tools, yamlout
from .errors import Diagnostic

CHECKS = ("schema+rules", "helm lint", "helm template", "kubeconform", "helm unittest")
TOOL_OF = {"helm lint": "helm", "helm template": "helm", "kubeconform": "kubeconform", "helm unittest": "helm-unittest"}


@dataclass
class Check:
    status: str  # "pass", "fail", "skipped"
    detail: str = ""


@dataclass
class ModelResult:
    file: str
    name: str = ""
    namespace: str = ""
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks.values())


@dataclass
class LintReport:
    models: list[ModelResult]
    diagnostics: list[Diagnostic]
    tools: dict[str, str]
    missing_tools: list[str]
    require_tools: bool

    @property
    def ok(self) -> bool:
        if self.require_tools and self.missing_tools:
            return False
        return all(m.ok for m in self.models) and not any(d.severity == "error" for d in self.diagnostics)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "tools": self.tools,
            "missingTools": self.missing_tools,
            "models": [
                {"file": m.file, "name": m.name, "namespace": m.namespace, "ok": m.ok,
                 "checks": {k: {"status": c.status, "detail": c.detail} for k, c in m.checks.items()}}
                for m in self.models
            ],
            "diagnostics": [d.as_dict() for d in self.diagnostics],
        }


def lint(inputs: list[Path], platform_file: Path | None = None, *, use_tools: bool = True,
         require_tools: bool = False, schema_locations: list[str] | None = None, jobs: int | None = None) -> LintReport:
    from . import pipeline, render

    result = pipeline.run(inputs, platform_file)
    by_file: dict[str, ModelResult] = {}
    for diagnostic in result.diagnostics:
        model = by_file.setdefault(diagnostic.file, ModelResult(diagnostic.file))
        if diagnostic.severity == "error":
            model.checks["schema+rules"] = Check("fail", _join(model.checks.get("schema+rules"), diagnostic.format()))
    planned: list[ModelResult] = []
    for p in result.plans:
        model = by_file.setdefault(p.file, ModelResult(p.file))
        model.name, model.namespace = p.name, p.namespace
        model.checks.setdefault("schema+rules", Check("pass"))
        planned.append(model)
    missing = [t for t in ("helm", "kubeconform", "helm-unittest") if use_tools and not tools.find(t)]
    versions = {t: tools.version(t) for t in ("helm", "kubeconform", "helm-unittest")} if use_tools else {}
    if result.plans and use_tools:
        files = render.render_tree(result.plans, result.platform)
        with tempfile.TemporaryDirectory(prefix="modelplat-lint-") as tmp:
            root = Path(tmp)
            for rel, content in files.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(content)
            wiring = _run_tools(root, result, planned, schema_locations or [], jobs)
            if wiring:
                by_file[wiring.file] = wiring
    for model in by_file.values():
        for check in CHECKS:
            if check in model.checks:
                continue
            if check == "schema+rules":  # the Flux wiring row: not a values file
                model.checks[check] = Check("skipped", "not a values file")
            elif model.checks.get("schema+rules", Check("pass")).status == "fail":
                model.checks[check] = Check("skipped", "not rendered")
            else:
                model.checks[check] = Check("skipped", f"{TOOL_OF[check]} not found" if use_tools else "tools not requested")
    return LintReport(sorted(by_file.values(), key=lambda m: m.file), result.diagnostics, versions, missing, require_tools)


def _join(check: Check | None, text: str) -> str:
    return f"{check.detail}\n{text}" if check and check.detail else text


def _run_tools(root: Path, result, planned: list[ModelResult], schema_locations: list[str],
               jobs: int | None) -> ModelResult | None:
    """Runs the tools; returns a result for problems in the Flux wiring (not any one model's)."""
    from . import plan as planning

    helm = tools.find("helm")
    unittest = tools.find("helm-unittest")
    manifests: dict[str, Path] = {}

    def per_chart(pair) -> None:
        p, model = pair
        chart = root / p.chart_dir
        values = root / p.model_dir / "values-from-helmrelease.yaml"
        # Exactly what Flux's helm-controller renders: the chart with the HelmRelease's values,
        # emitted as in helmrelease.yaml (Python's JSON escapes astral characters as surrogate
        # pairs, which Go's YAML parser refuses).
        values.write_text(yamlout.dump(planning.helm_release(p, result.platform)["spec"]["values"]))
        if helm:
            out = tools.run([helm, "lint", "--strict", str(chart), "-f", str(values), "--namespace", p.namespace])
            model.checks["helm lint"] = Check("pass" if out.ok else "fail", "" if out.ok else out.output)
            out = tools.run([helm, "template", p.name, str(chart), "-f", str(values), "--namespace", p.namespace])
            model.checks["helm template"] = Check("pass" if out.ok else "fail", "" if out.ok else out.output)
            if out.ok:
                target = root / p.model_dir / "manifests.yaml"
                target.write_text(out.output + "\n")
                manifests[p.model_dir] = target
        if unittest:
            out = tools.run([unittest, "--strict", "-f", "tests/*_test.yaml", str(chart)])
            model.checks["helm unittest"] = Check("pass" if out.ok else "fail", "" if out.ok else out.output)

    pairs = list(zip(result.plans, planned))
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        list(pool.map(per_chart, pairs))

    kubeconform = tools.find("kubeconform")
    if not kubeconform:
        return None
    flux_files = sorted(str(p) for p in root.rglob("*.yaml")
                        if "/chart/" not in p.as_posix()
                        and p.name not in ("kustomization.yaml", "manifests.yaml", "values-from-helmrelease.yaml"))
    targets = [str(manifests[k]) for k in sorted(manifests)] + flux_files
    try:
        core = tools.core_schema_location(result.platform.kubernetesVersion)
    except FileNotFoundError as exc:
        from .errors import ToolError

        raise ToolError(f"cannot validate core Kubernetes kinds: {exc} (set kubernetesVersion in the platform "
                        "file to a version kubernetes-validate ships, or pass --schema-location)") from None
    locations = list(schema_locations) + [tools.crd_schema_location(), core]
    args = [kubeconform, "-strict", "-summary", "-output", "json"]
    for location in locations:
        args += ["-schema-location", location]
    out = tools.run(args + targets, timeout=600)
    problems: dict[str, list[str]] = {}
    try:
        report = json.loads(out.output[out.output.index("{"):]) if "{" in out.output else {}
    except ValueError:
        report = {}
    for resource in report.get("resources", []):
        if resource.get("status") in ("statusInvalid", "statusError"):
            rel = Path(resource["filename"]).relative_to(root).as_posix()
            problems.setdefault(rel, []).append(
                f"{rel}: {resource.get('kind')}/{resource.get('name')}: {resource.get('msg')}")
    if not out.ok and not problems:
        problems["?"] = [out.output or "kubeconform failed"]
    for p, model in pairs:
        if p.model_dir not in manifests:
            continue
        mine = [m for rel, msgs in problems.items() for m in msgs
                if rel.startswith(p.model_dir + "/") or rel == f"{p.identity.project}/namespace-{p.namespace}.yaml"]
        model.checks["kubeconform"] = Check("fail" if mine else "pass", "\n".join(mine))
    unowned = [m for rel, msgs in problems.items() for m in msgs
               if not any(rel.startswith(p.model_dir + "/") for p in result.plans)
               and not any(rel == f"{p.identity.project}/namespace-{p.namespace}.yaml" for p in result.plans)]
    if unowned:
        return ModelResult("(flux wiring)", checks={"kubeconform": Check("fail", "\n".join(unowned))})
    return None
