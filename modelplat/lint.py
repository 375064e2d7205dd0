"""Lint: schema and rules for every values file, then the real tools on every rendered chart.

Renders into a temporary folder (never the user's output), runs helm lint/template and
helm-unittest per chart in parallel, then one kubeconform, one istioctl and one promtool run over
every chart's manifests, kustomize build over the whole tree, and the rate limit config parse.
Prints nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import outputchecks, suites, tools, verdicts, yamlout
from .cache import code_fingerprint
from .manifests import WIRING, split_manifests
from .errors import Diagnostic

CHECKS = ("schema+rules", "helm lint", "helm template", "kubeconform", "helm unittest", "istioctl validate",
          "promtool", "kustomize build", "ratelimit config")
TOOL_OF = {"helm lint": "helm", "helm template": "helm", "kubeconform": "kubeconform", "helm unittest": "helm-unittest",
           "istioctl validate": "istioctl", "promtool": "promtool", "kustomize build": "kustomize"}
TOOLS = ("helm", "kubeconform", "helm-unittest", "istioctl", "kustomize", "promtool")
# Checks of a chart's `helm template` output: without it there is nothing to check.
FROM_MANIFESTS = ("kubeconform", "istioctl validate", "promtool")
SERVER_DRY_RUN = "server dry-run"  # only with lint(server_dry_run=True); see dryrun.py
ENGINE_CHECKS = ("flux", "kserve", "istio")  # only with lint(engines=True); see engines/
_SCRATCH = ".lint"  # per model folder: the files lint writes for the tools (never part of the output)
# The one warning every EnvoyFilter gets; any other istioctl warning (an unknown or misspelt
# field inside a typed_config, a deprecated type) means Envoy would refuse or ignore the patch.
_ENVOYFILTER_NOTICE = "EnvoyFilter exposes internal implementation details"


@dataclass(slots=True)  # one for each check of each model: 90,000 at 10,000 models
class Check:
    status: str  # "pass", "fail", "skipped"
    detail: str = ""


@dataclass(slots=True)
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
    checks: tuple[str, ...] = CHECKS

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
         require_tools: bool = False, schema_locations: list[str] | None = None, jobs: int | None = None,
         server_dry_run: bool = False, kubeconfig: str | None = None, engines: bool = False,
         use_cache: bool = True) -> LintReport:
    from . import pipeline, render
    from .wiring import rate_limit_config_file

    # The tools read the charts `modelplat render` makes: each unchanged model's are taken from the
    # render cache, as render takes them. The dry-run and the engines read the plans themselves.
    files: Mapping[str, bytes] | None = None
    result = None
    if use_tools and use_cache and not (server_dry_run or engines):
        result, files = _from_render_cache(inputs, platform_file, jobs, Held(HELD_MAX))
    if result is None:
        # Without tools nothing is rendered but the wiring: no plan is kept (memory follows one model).
        result = pipeline.run(inputs, platform_file, keep_plans=use_tools, jobs=jobs, use_cache=use_cache)
    by_file: dict[str, ModelResult] = {}
    for diagnostic in result.diagnostics:
        model = by_file.setdefault(diagnostic.file, ModelResult(diagnostic.file))
        if diagnostic.severity == "error":
            model.checks["schema+rules"] = Check("fail", _join(model.checks.get("schema+rules"), diagnostic.format()))
    planned: list[ModelResult] = []
    # (file, its plan), or without tools (file, its WiringIdentity): both carry name and namespace.
    entries = [(p.file, p) for p in result.plans] if use_tools else result.shares
    subjects = [subject for _, subject in entries]
    for file, p in entries:
        model = by_file.setdefault(file, ModelResult(file))
        model.name, model.namespace = p.name, p.namespace
        model.checks.setdefault("schema+rules", Check("pass"))
        planned.append(model)
    missing = [t for t in TOOLS if use_tools and not tools.find(t)]
    versions = {t: tools.version(t) for t in TOOLS} if use_tools else {}
    checks = CHECKS + (SERVER_DRY_RUN,) if server_dry_run else CHECKS
    engines_missing: list[str] = []
    if engines:
        checks += ENGINE_CHECKS
        from .engines.controlplane import Engines

        found, engines_missing = Engines.find()
        missing += [t for t in engines_missing if t not in missing]
        if found is not None:
            versions.update({t: tools.version(t) for t in ("kube-apiserver", "kserve-manager", "source-controller",
                                                           "kustomize-controller", "helm-controller", "sidecar-config")})
    if server_dry_run and use_tools:
        from . import dryrun

        missing += [] if tools.find("kubectl") else ["kubectl"]
        versions["kubectl"] = dryrun.kubectl_version()
    wiring = ModelResult(WIRING)
    if subjects:
        pairs = list(zip(subjects, planned))
        if use_tools:
            if files is None:
                files = render.render_tree(result.plans, result.platform)
        else:  # the rate limit parse needs no tool, and only the wiring files
            files = render.render_wiring(subjects, result.platform)
        by_config = {rate_limit_config_file(p.namespace, p.name): model for p, model in pairs}
        _record("ratelimit config", _ratelimit_findings(files, use_cache), pairs, wiring,
                lambda path: by_config.get(path.partition("#")[2]))
        if use_tools:
            with tempfile.TemporaryDirectory(prefix="modelplat-lint-") as tmp:
                root = Path(tmp)
                # A file is written when a tool must read it (a verdict the cache does not hold, in
                # _run_tools): with one model changed in a thousand, the others' files stay in
                # memory (past a budget, in a temporary file). The dry-run and the engines read the
                # whole output.
                whole = server_dry_run or engines
                disk = _Disk(eager=whole, budget=HELD_MAX)
                charts = {p.chart_dir for p in result.plans}
                for rel in files:
                    if whole or _chart_of(rel) not in charts:
                        disk.put(root / rel, files[rel], output=True)
                # The control plane starts while the static tools run: most of its half minute
                # is waiting on etcd, the API server and the controllers.
                plane = (_PlaneStart(found, root.parent, llm=any(p.serving == "llm" for p in result.plans))
                         if engines and not engines_missing else None)
                from .cache import cache_dir

                cache = verdicts.Verdicts(root, cache_dir(), enabled=use_cache)
                try:
                    _run_tools(root, files, result, pairs, wiring, schema_locations or [], jobs, cache, disk)
                    if server_dry_run:
                        _server_dry_run(root, result, pairs, wiring, kubeconfig, jobs)
                    if plane is not None:
                        _engines(root, result, pairs, wiring, plane)
                finally:
                    cache.close()
                    disk.close()
                    if isinstance(files, Held):
                        files.spill.close()
                    if plane is not None:
                        plane.stop()
    if wiring.checks:
        by_file[WIRING] = wiring
    for model in by_file.values():
        for check in checks:
            if check in model.checks:
                continue
            if model.file == WIRING:
                model.checks[check] = Check("skipped", "not a values file" if check == "schema+rules" else "")
            elif model.checks.get("schema+rules", Check("pass")).status == "fail":
                model.checks[check] = Check("skipped", "not rendered")
            elif check in FROM_MANIFESTS and model.checks.get("helm template", Check("pass")).status == "fail":
                model.checks[check] = Check("skipped", "helm template failed")
            elif check in ENGINE_CHECKS:
                model.checks[check] = Check("skipped", f"not found: {', '.join(engines_missing)}" if use_tools
                                            else "tools not requested")
            else:
                tool = "kubectl" if check == SERVER_DRY_RUN else TOOL_OF[check]
                model.checks[check] = Check("skipped", f"{tool} not found" if use_tools else "tools not requested")
        model.checks = {check: model.checks[check] for check in checks}  # the table's order, in JSON too
    return LintReport(sorted(by_file.values(), key=lambda m: m.file), sorted(result.diagnostics), versions, missing,
                      require_tools, checks)


def _ratelimit_findings(files: Mapping[str, bytes], use_cache: bool) -> list[outputchecks.Finding]:
    """outputchecks.ratelimit_findings, kept under the ConfigMap's bytes and this code: parsing
    the rate limit service's config of 10,000 models is ~4 s, the same every run but an edit."""
    from .cache import cache_dir

    raw = files.get(outputchecks.RATELIMIT_CONFIGMAP)
    if raw is None or not use_cache:
        return outputchecks.ratelimit_findings(files)
    cache = verdicts.Verdicts(None, cache_dir())
    try:
        key = cache.key(b"ratelimit config", code_fingerprint(), raw)
        hit = cache.get(key)
        if hit is not None and hit[0]:
            return [outputchecks.Finding(*finding) for finding in json.loads(hit[1])]
        findings = outputchecks.ratelimit_findings(files)
        cache.put(key, True, json.dumps([[f.path, f.message] for f in findings]))
        cache.flush()
        return findings
    finally:
        cache.close()


def _from_render_cache(inputs: list[Path], platform_file: Path | None, jobs: int | None, held: "Held"):
    """(the run, every output file, in `held`) as `modelplat render` makes them: an unchanged
    model is taken from the render cache with its warnings, neither validated nor rendered again,
    and a model rendered here is stored there (pipeline.render_into). Run.plans holds a
    RenderedModel a model. (None, None) when a model has an error: the caller then checks every
    model (pipeline.run), so each error is told and the other models are still linted."""
    from . import pipeline
    from .records import RenderedModel

    rendered = pipeline.render_into(held, inputs, platform_file, jobs=jobs)
    diagnostics, models = rendered.diagnostics, rendered.models
    if rendered.errors:
        # The models in error are told, and the others linted without them: rendered again into
        # `held` (those the first pass rendered come from the render cache), not all planned in
        # memory (pipeline.run keeps every plan: 953 MB at 10,000 models). Should that still
        # fail (an error of no model's own: the platform file, two models claiming one name),
        # the caller checks every model.
        held.discard()
        failed = frozenset(d.file for d in rendered.errors)
        rendered = pipeline.render_into(held, inputs, platform_file, jobs=jobs, skip=failed)
        if rendered.errors or not rendered.shares:
            held.discard()
            return None, None
        diagnostics = sorted([d for d in diagnostics if d.file in failed] + rendered.diagnostics)
    platform_path = pipeline.find_platform(inputs, platform_file)
    run = pipeline.Run(platform=pipeline.load_platform(platform_path), platform_file=platform_path,
                       plans=[RenderedModel(file, identity) for file, identity in rendered.shares],
                       diagnostics=diagnostics, files=models, planned=len(rendered.shares),
                       shares=rendered.shares)
    return run, held


def _server_dry_run(root: Path, result, pairs: list, wiring: ModelResult, kubeconfig: str | None,
                    jobs: int | None) -> None:
    from . import dryrun

    outcomes, warnings = dryrun.check(root, result.plans, [model for _, model in pairs], kubeconfig=kubeconfig,
                                      jobs=jobs)
    result.diagnostics.extend(warnings)
    for p, model in pairs:
        if p.model_dir in outcomes:
            model.checks[SERVER_DRY_RUN] = Check(*outcomes[p.model_dir])
    if WIRING in outcomes:
        wiring.checks[SERVER_DRY_RUN] = Check(*outcomes[WIRING])


class _PlaneStart:
    """The engines' local control plane, started in a thread of its own in a folder of its own."""

    def __init__(self, engines, parent: Path, *, llm: bool = True):
        from .engines.controlplane import ControlPlane, Started

        self.folder = tempfile.TemporaryDirectory(prefix="modelplat-engines-", dir=parent)
        # KServe's LLMInferenceService controller (and its CRDs) only when a model needs it.
        self.plane = ControlPlane(engines, Path(self.folder.name), llm=llm)
        self.started = Started(self.plane.start)  # its error is re-raised by join(), in the caller's thread

    def join(self):
        self.started.join()
        return self.plane

    def stop(self) -> None:
        self.started.wait()  # a plane half started is stopped only once its start returned
        try:
            self.plane.stop()
        finally:
            self.folder.cleanup()


def _engines(root: Path, result, pairs: list, wiring: ModelResult, starting: _PlaneStart) -> None:
    """Delivers the rendered output through a local control plane (engines/): a finding of
    Flux, KServe or Istio fails that engine's column on the model's row, with the resource
    and field it is about."""
    from .engines import runner
    from .engines.apiserver import StartError

    try:
        report = runner.run(starting.join(), result.plans, result.platform, root)
    except (StartError, TimeoutError, RuntimeError) as exc:
        for check in ENGINE_CHECKS:
            wiring.checks[check] = Check("fail", f"the local control plane failed: {exc}")
        return
    for p, model in pairs:
        key = f"{p.namespace}/{p.name}"
        for engine in ENGINE_CHECKS:
            mine = report.by_model(key, engine)
            model.checks[engine] = Check("fail" if mine else "pass", "\n".join(
                f"{f.resource} {f.field}: {f.message}" for f in mine))
    if report.prerequisites:
        result.diagnostics.append(Diagnostic(
            WIRING, 0, 0, "engines-prerequisites",
            f"the engines run created what the models name but do not own: {', '.join(report.prerequisites)}",
            hint="your cluster must have these before the models are delivered", severity="warning"))


def _join(check: Check | None, text: str) -> str:
    return f"{check.detail}\n{text}" if check and check.detail else text


def _record(check: str, findings: list[outputchecks.Finding], pairs: list, wiring: ModelResult, owner) -> None:
    """One tree-wide check's findings, each on the row of the model `owner` says it is about,
    else on the Flux wiring row; models without findings pass."""
    mine: dict[int, list[str]] = {id(model): [] for _, model in pairs}
    unowned: list[str] = []
    for finding in findings:
        model = owner(finding.path)
        (mine[id(model)] if model is not None else unowned).append(finding.message)
    for _, model in pairs:
        messages = mine[id(model)]
        model.checks[check] = Check("fail" if messages else "pass", "\n".join(messages))
    if unowned:
        wiring.checks[check] = Check("fail", _join(wiring.checks.get(check), "\n".join(unowned)))


def _owner_by_path(pairs: list):
    """The model whose folder holds an output path, if any."""
    folders = {p.model_dir: model for p, model in pairs}

    def owner(path: str) -> ModelResult | None:
        parts = path.split("/")
        for depth in range(len(parts), 0, -1):
            model = folders.get("/".join(parts[:depth]))
            if model is not None:
                return model
        return None

    return owner


def _run_tools(root: Path, files: dict[str, bytes], result, pairs: list, wiring: ModelResult,
               schema_locations: list[str], jobs: int | None, cache: "verdicts.Verdicts", disk: "_Disk") -> None:
    """Runs the tools; problems that belong to no model go on the Flux wiring row. A chart's
    helm lint, helm template and helm-unittest results, and kubeconform's findings in each file,
    come from `cache` when nothing they read changed (verdicts.py)."""
    from concurrent.futures import ThreadPoolExecutor  # here: `lint --no-tools` never needs it

    from .render import HEADER

    helm = tools.find("helm")
    unittest = tools.find("helm-unittest")
    header = yamlout.comment(HEADER)
    manifests: dict[str, str] = {}  # model folder → its helm template output's scratch file
    istio_files: dict[str, tuple] = {}  # scratch file → (plan, model, its Istio manifests)
    rule_files: dict[str, tuple] = {}  # scratch file → (plan, model, the PrometheusRule)

    helm_id = verdicts.tool_identity(helm, tools.version("helm")) if helm else b""
    unittest_id = verdicts.tool_identity(unittest, tools.version("helm-unittest")) if unittest else b""

    if isinstance(files, Held):  # finds a chart's files without a scan of every path
        def chart_files(chart: str) -> list[str]:
            return files.below(chart + "/")
    else:
        by_chart: dict[str, list[str]] = {}  # <project>/<name>/chart → its files
        for rel in files:
            chart = _chart_of(rel)
            if chart is not None:
                by_chart.setdefault(chart, []).append(rel)

        def chart_files(chart: str) -> list[str]:
            return by_chart.get(chart, [])

    def cached(tool_id: bytes, args: list[str], *inputs: bytes) -> tuple[str, tools.Result | None]:
        """(key, the tool's result reused when this tool build already ran these args on these
        bytes, else None)."""
        key = cache.key(tool_id, "\0".join(args[1:]), *inputs)
        hit = cache.get(key)
        return key, (tools.Result(*hit) if hit is not None else None)

    def derived_key(template_key: str) -> str:
        """What names the files lint makes of a helm template run's output (_scratch): that run's
        key and this code. The key of which documents they hold, and their identity (_Disk)."""
        return cache.key(b"derived", code_fingerprint(), template_key)

    def identity_of(template_key: str) -> bytes:
        """What names each derived file of that helm template run in _Disk (and in _reuse's keys)."""
        return b"derived\0" + derived_key(template_key).encode()

    def register(p, model: ModelResult, template_key: str, istio: list, rules: list, load=None) -> None:
        """A chart's derived files (_scratch) for the whole-output tools, named by the helm template
        run they come from; with `load`, promised (made only when a tool must read one)."""
        paths = _scratch_paths(root / p.model_dir, bool(istio), len(rules))
        manifests[p.model_dir] = paths[0]
        if istio:
            istio_files[paths[1]] = (p, model, disk.spill.keep(json.dumps(istio, separators=(",", ":")).encode()))
        for path, (source, name) in zip(paths[len(paths) - len(rules):], rules):
            rule_files[path] = (p, model, RulesFile(source, name))
        if load is not None:
            identity = identity_of(template_key)
            for path in paths:
                disk.promise(path, identity, load)

    def make(p, template_key: str, output: str) -> tuple[list, list]:
        """Puts what lint makes of a chart's helm template output; (Istio documents, rules files)."""
        made, istio, rules = _scratch(root / p.model_dir, output)
        identity = identity_of(template_key)
        for path, data in made.items():
            disk.put(path, data, identity=identity)
        return istio, rules

    def templated(p, model: ModelResult, key: str, out: tools.Result) -> None:
        model.checks["helm template"] = Check("pass" if out.ok else "fail", "" if out.ok else out.output)
        if out.ok:
            istio, rules = make(p, key, out.output)
            register(p, model, key, istio, rules)
            cache.put(derived_key(key), True, json.dumps([istio, rules]))

    def template_args(p) -> list[str]:
        values = root / p.model_dir / "values-from-helmrelease.yaml"
        return [helm, "template", p.name, str(root / p.chart_dir), "-f", str(values), "--namespace", p.namespace]

    loaded: set[str] = set()  # the helm template runs whose derived files were made here
    load_lock = threading.Lock()

    def promised(p, key: str):
        """Makes a chart's derived files from its helm template verdict, once: when a tool reads
        one (an unchanged chart's manifests are otherwise never read back from the cache). Should
        the verdict be gone, helm template runs again."""
        def load() -> None:
            with load_lock:
                if key in loaded:
                    return
                loaded.add(key)
                hit = cache.get(key)
                out = tools.Result(*hit) if hit is not None else None
                if out is None:
                    write_chart(p)
                    out = tools.run(template_args(p), env=tools.per_chart_env())
                    cache.put(key, out.ok, out.output)
                make(p, key, out.output)
        return load

    written: set[str] = set()
    written_lock = threading.Lock()

    def write_chart(p, names: list[str] | None = None) -> None:
        """Writes the chart and its values, once, when a tool reads them."""
        with written_lock:
            if p.chart_dir in written:
                return
            written.add(p.chart_dir)
        for rel in names if names is not None else chart_files(p.chart_dir):
            target = root / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(files[rel])
        values = root / p.model_dir / "values-from-helmrelease.yaml"
        values.parent.mkdir(parents=True, exist_ok=True)
        values.write_text(values_of(p))

    def values_of(p) -> str:
        # Exactly what Flux's helm-controller renders: the chart with the HelmRelease's values,
        # emitted as in helmrelease.yaml (Python's JSON escapes astral characters as surrogate
        # pairs, which Go's YAML parser refuses): the chart's values.yaml is that document, after
        # its header (render emits one document for both).
        return files[f"{p.chart_dir}/values.yaml"].decode().removeprefix(header)

    # What must run: helm template per chart (it takes one chart); helm lint and helm-unittest
    # over many charts a process (_Batch), each chart's verdict kept under the key of running
    # the tool on that chart alone.
    singles: list = []  # (key, args, p, model) of helm template runs
    batches: dict[tuple, _Batch] = {}
    suite_results: dict[int, dict] = {}  # id(model) → {suite's index: the result of its helm-unittest run}

    def batch(args: list[str], chart: Path, key: str, done) -> None:
        batches.setdefault(tuple(args), _Batch(args)).add(chart, key, done)

    def plan_chart(pair) -> None:
        p, model = pair
        chart = root / p.chart_dir
        values = root / p.model_dir / "values-from-helmrelease.yaml"
        values_text = values_of(p)
        names = chart_files(p.chart_dir)
        chart_digest = verdicts.files_digest(files, p.chart_dir + "/", names)

        def write() -> None:
            write_chart(p, names)
        if helm:
            # The chart's values.yaml is the HelmRelease's values, so helm lint reads it alone and
            # many charts share a process. A null in it would lint differently (Helm drops a key a
            # values file sets to null), so such a chart gets the values file, and a process of its
            # own. The test is on the text, so a chart taken from the render cache is judged as
            # one just rendered (it may see a null in a block of text: then -f, as good).
            own = not _NULL.search(values_text)
            args = helm_lint_args(helm, p.namespace, None if own else values)
            key, out = cached(helm_id, args + [str(chart)], chart_digest, values_text.encode())

            def linted(out: tools.Result, model=model) -> None:
                model.checks["helm lint"] = Check("pass" if out.ok else "fail", "" if out.ok else out.output)
            if out is not None:
                linted(out)
            else:
                write()
                batch(args, chart, key, linted)  # with -f VALUES, its own arguments: a batch of one
            args = template_args(p)
            key = cache.key(helm_id, "\0".join(args[1:]), chart_digest, values_text.encode())
            # What lint made of this output before says which files it holds: the output itself
            # is read back only when a tool must read one of them (a verdict on them missing).
            derived = None if disk.eager else cache.get(derived_key(key))
            if derived is not None and derived[0]:
                istio, rules = json.loads(derived[1])
                model.checks["helm template"] = Check("pass")
                register(p, model, key, istio, rules, promised(p, key))
            else:
                hit = cache.get(key)
                if hit is not None:
                    templated(p, model, key, tools.Result(*hit))
                else:
                    write()
                    singles.append((key, args, p, model))
        if unittest:
            # The chart's cases without the values schema (helm lint and helm template check the
            # chart's values against it; Helm compiling it for every case was ~45% of the time),
            # and the cases that test the schema, with it (suites.suites).
            runs = [[unittest, "--strict", "--skip-schema-validation", "-f", f"tests/{suites.CHART_SUITE}"]]
            if f"{p.chart_dir}/tests/{suites.SCHEMA_SUITE}" in files:
                runs.append([unittest, "--strict", "-f", f"tests/{suites.SCHEMA_SUITE}"])
            results = suite_results[id(model)] = {}
            for index, args in enumerate(runs):
                key, out = cached(unittest_id, args + [str(chart)], chart_digest)
                if out is not None:
                    results[index] = out
                else:
                    write()
                    batch(args, chart, key, lambda out, index=index, results=results: results.__setitem__(index, out))

    workers = jobs or os.cpu_count() or 2
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(plan_chart, pairs))

    def template(single) -> None:
        key, args, p, model = single
        out = tools.run(args, env=tools.per_chart_env())
        cache.put(key, out.ok, out.output)
        templated(p, model, key, out)
    # Processes of at most `size` charts: at least four a worker over all the batches, so none
    # waits long on the last one; helm template runs fill the gaps.
    members = sum(len(b.members) for b in batches.values())
    size = max(1, min(_BATCH_MAX, -(-members // (workers * 4))))
    work = [step for b in batches.values() for step in b.steps(size, cache)]
    work += [lambda single=single: template(single) for single in singles]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(step) for step in work]:
            future.result()
    for p, model in pairs:
        runs = suite_results.get(id(model))
        if runs is not None:
            failed = [runs[index].output for index in sorted(runs) if not runs[index].ok]
            model.checks["helm unittest"] = Check("fail" if failed else "pass", "\n".join(failed))
    cache.flush()
    rendered = [model for p, model in pairs if p.model_dir in manifests]
    # The whole-output tools, each one process over every chart, side by side.
    steps = [lambda: _kubeconform(root, files, result, pairs, manifests, wiring, schema_locations, cache, disk),
             lambda: _istioctl(root, istio_files, rendered, wiring, cache, disk),
             lambda: _promtool(root, rule_files, rendered, wiring, cache, disk),
             lambda: _kustomize(root, files, pairs, wiring, cache, disk)]
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()
    cache.flush()


def helm_lint_args(helm: str, namespace: str, values: Path | None = None, version: str | None = None) -> list[str]:
    """helm lint as lint runs it, the chart folders to follow. Helm 3's lint checks the values
    against the chart's values.schema.json twice: its values rule (the chart's values.yaml with -f's
    values over it, always) and its templates rule again (the same values, merged the same way,
    plus subcharts' schemas: these charts have none). --skip-schema-validation drops only the
    second, ~25% of helm lint's time (compiling the ~90 KB schema); a value the schema refuses
    still fails helm lint, and helm template checks the HelmRelease's values against it once more.
    Helm before 3.16 lacks the flag; in Helm 4 it turns off the values rule's check as well
    (helm#31275): neither gets it."""
    version = tools.version("helm") if version is None else version
    skip = ["--skip-schema-validation"] if _checks_schema_twice(version) else []
    return [helm, "lint", "--strict", *skip, "--namespace", namespace] + ([] if values is None else ["-f", str(values)])


def _checks_schema_twice(version: str) -> bool:
    found = re.match(r"v?(\d+)\.(\d+)", version)
    return bool(found) and found[1] == "3" and int(found[2]) >= 16


_BATCH_MAX = 40  # charts a process; a failing process is run again chart by chart


class _Batch:
    """The charts one tool runs on with the same arguments, many a process (helm lint and
    helm-unittest take several chart folders and judge each on its own). A chart's verdict is
    stored under the key of the tool run on that chart alone: a process that passed passed every
    chart; one that failed is run again chart by chart, so each verdict, and its message, is that
    chart's own run."""

    def __init__(self, args: list[str]):
        self.args = args
        self.members: list[tuple[str, str, object]] = []  # (chart folder, verdict key, callback)

    def add(self, chart: Path, key: str, done) -> None:
        self.members.append((str(chart), key, done))

    def steps(self, size: int, cache: "verdicts.Verdicts") -> list:
        """The processes to run, `size` charts each."""
        members = sorted(self.members, key=lambda member: member[0])  # the same batches every run
        return [lambda chunk=members[i:i + size]: self._run(chunk, cache) for i in range(0, len(members), size)]

    def _run(self, chunk: list, cache: "verdicts.Verdicts") -> None:
        env = tools.per_chart_env()
        if len(chunk) > 1:
            out = tools.run(self.args + [chart for chart, _, _ in chunk], timeout=600, env=env)
            if out.ok:
                for _, key, done in chunk:
                    cache.put(key, True, "")
                    done(tools.Result(True, ""))
                return
        for chart, key, done in chunk:
            out = tools.run(self.args + [chart], env=env)
            cache.put(key, out.ok, out.output)
            done(out)


_NULL = re.compile(r"(?m)[:-] null$")  # yamlout writes None as a plain `null`, and quotes the string


class IstioDoc(NamedTuple):
    kind: str
    namespace: str
    name: str
    source: str


class RulesFile(NamedTuple):
    """A rules file lint made of one PrometheusRule (its spec.groups, as the Prometheus operator
    hands them to Prometheus): where the rule came from."""

    source: str
    name: str


# Bytes lint keeps in memory for the tools, each of the rendered files (Held) and of what it makes
# of them (_Disk); past it, more go to one temporary file and are read back when needed. 10,000
# models render ~480 MB of files of their own (~48 KB a model), and their manifests as much again.
HELD_MAX = 4 << 20


def _chart_of(rel: str) -> str | None:
    """The chart folder (<project>/<name>/chart) a rendered file is in, if any."""
    parts = rel.split("/", 3)
    return "/".join(parts[:3]) if len(parts) == 4 and parts[2] == "chart" else None


_SIZE_BITS = 48  # a spilled entry is one int: its offset in the file, then 48 bits of length
_SIZE_MASK = (1 << _SIZE_BITS) - 1


class _Spill:
    """Bytes past a memory budget, appended to one unnamed temporary file (no file to create per
    entry, nothing left behind) and read back by (offset, length). Thread-safe."""

    def __init__(self, budget: int):
        self.budget = budget
        self.kept = 0  # bytes the caller keeps in memory
        self._file = None
        self._end = 0
        self._lock = threading.Lock()

    def keep(self, data: bytes) -> bytes | int:
        """`data` itself while the budget allows, else where it went in the file: one int (offset
        and length), not a tuple of two (~30 bytes instead of ~110 a file, 340,000 files at
        10,000 models)."""
        with self._lock:
            if self.kept + len(data) <= self.budget:
                self.kept += len(data)
                return data
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="modelplat-lint-")
            at = self._end
            self._end += len(data)
        view = memoryview(data)
        while view:
            written = os.pwrite(self._file.fileno(), view, at)
            view, at = view[written:], at + written
        return (at - len(data)) << _SIZE_BITS | len(data)

    def forget(self, kept: bytes | int) -> None:
        """The caller dropped what keep() returned (the file's space is not reused)."""
        if kept.__class__ is not int:
            with self._lock:
                self.kept -= len(kept)

    def read(self, kept: bytes | int) -> bytes:
        if kept.__class__ is not int:
            return kept
        at, size = kept >> _SIZE_BITS, kept & _SIZE_MASK
        parts = []
        while size:
            part = os.pread(self._file.fileno(), size, at)
            if not part:
                raise OSError(f"lint's temporary file ended early at {at}")
            parts.append(part)
            at, size = at + len(part), size - len(part)
        return b"".join(parts)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Held(Mapping):
    """The rendered files (relative path → bytes), a model's at a time (the sink of
    pipeline.render_into): kept in memory up to a budget, past it in a temporary file (_Spill),
    so lint's memory does not grow with the repository's bytes. A file every chart shares
    (render.shared_files) is one object in memory and always kept.

    Paths are held by folder, the first two parts of a path (a model's <project>/<name>/): each
    folder keeps the names of its own files below it, and the files it shares with other
    folders (the same names with the same bytes objects: a chart's templates) are one dict for
    all of them. 10,000 models hold 340,000 files; a path string and its entry each were ~5.5 KB
    a model, this is ~1 KB."""

    def __init__(self, budget: int):
        from .output import is_shared

        self.spill = _Spill(budget)
        # folder → (own file's name → bytes or where they are in the spill, shared name → bytes)
        self._folders: dict[str, tuple[dict[str, bytes | int], dict[str, bytes]]] = {}
        self._layouts: dict[tuple, dict[str, bytes]] = {}  # each distinct shared part, once
        self._count = 0
        self._shared = is_shared

    def add(self, files: dict[str, bytes]) -> None:
        grouped: dict[str, dict[str, bytes]] = {}
        for rel, data in files.items():
            folder, name = _split_folder(rel)
            grouped.setdefault(folder, {})[sys.intern(name)] = data  # the same few names in every folder
        for folder, entries in grouped.items():
            own, layout = self._folders.get(folder, ({}, {}))
            common = dict(layout)
            for name, data in entries.items():
                earlier = own.pop(name, None)  # a path given twice: the last wins, as in a dict
                if earlier is not None:
                    self.spill.forget(earlier)
                    self._count -= 1
                elif common.pop(name, None) is not None:
                    self._count -= 1
                if self._shared(data):
                    common[name] = data
                else:
                    own[name] = self.spill.keep(data)
                self._count += 1
            self._folders[folder] = (own, self._layouts.setdefault(tuple(common.items()), common))

    def below(self, prefix: str) -> list[str]:
        """The paths below `prefix` (a folder, ending in "/"); a model's folder or one inside it
        is found without a scan of every path."""
        folder, rest = _split_folder(prefix)
        if folder:
            record = self._folders.get(folder)
            return [] if record is None else [folder + name for part in record for name in part
                                              if name.startswith(rest)]
        found = []
        for folder, record in self._folders.items():
            if folder.startswith(prefix):
                found += [folder + name for part in record for name in part]
            elif not folder:
                found += [name for part in record for name in part if name.startswith(prefix)]
        return found

    def discard(self) -> None:
        self._folders.clear()
        self._layouts.clear()
        self._count = 0
        self.spill.close()
        self.spill = _Spill(self.spill.budget)

    def __getitem__(self, rel: str) -> bytes:
        folder, name = _split_folder(rel)
        own, common = self._folders[folder]
        kept = own.get(name)
        return self.spill.read(kept) if kept is not None else common[name]

    def __contains__(self, rel: object) -> bool:
        if not isinstance(rel, str):
            return False
        folder, name = _split_folder(rel)
        record = self._folders.get(folder)
        return record is not None and (name in record[0] or name in record[1])

    def __iter__(self):
        for folder, record in self._folders.items():
            for part in record:
                for name in part:
                    yield folder + name

    def __len__(self) -> int:
        return self._count


def _split_folder(rel: str) -> tuple[str, str]:
    """("<first>/<second>/", the rest) of a path with three parts or more, else ("", path)."""
    first = rel.find("/")
    second = rel.find("/", first + 1) if first >= 0 else -1
    if second < 0:
        return "", rel
    return rel[:second + 1], rel[second + 1:]


def _below(files: Mapping[str, bytes], prefix: str) -> list[str]:
    """The paths of `files` below the folder `prefix` (ending in "/")."""
    if isinstance(files, Held):
        return files.below(prefix)
    return [rel for rel in files if rel.startswith(prefix)]


class _Disk:
    """The files the tools may read, written into lint's folder only when one must read them:
    put() keeps bytes (in memory up to a budget, then in a temporary file), write() and below()
    write what a tool is about to read. Eager: every file is written as it is put (the dry-run
    and the engines read the whole folder).

    A file lint derives from a tool's output (a chart's manifests and what is made of them) is
    named by where it comes from (its identity: the key of the helm template run), so a verdict
    on it can be looked up without its bytes; promise() registers such a file without them, and
    the bytes are made (load) only when a tool must read it."""

    def __init__(self, eager: bool = False, budget: int = HELD_MAX):
        self.eager = eager
        self.spill = _Spill(budget)
        self._pending: dict[str, bytes | int] = {}
        self._output: set[str] = set()  # the rendered files among them (what kustomize may read)
        self._identity: dict[str, bytes] = {}  # derived file → what names its bytes
        self._promised: dict[str, object] = {}  # derived file not made yet → what makes it (and its chart's)
        self._lock = threading.Lock()  # the whole-output tools write from their own threads

    def put(self, path: Path | str, data: bytes, output: bool = False, identity: bytes | None = None) -> None:
        path = str(path)
        if identity is not None:
            with self._lock:
                self._identity[path] = identity
        if self.eager:
            _write(Path(path), data)
            return
        kept = self.spill.keep(data)
        with self._lock:
            earlier = self._pending.get(path)  # a path put twice: the last wins
            if earlier is not None:
                self.spill.forget(earlier)
            self._pending[path] = kept
            if output:
                self._output.add(path)

    def promise(self, path: str, identity: bytes, load) -> None:
        """A derived file whose bytes load() puts, when a tool must read it (never when eager).
        load() must be idempotent and safe to call from several threads at once."""
        with self._lock:
            self._identity[path] = identity
            self._promised[path] = load

    def identity(self, path: str) -> bytes | None:
        """What names a derived file's bytes without them; None for any other file."""
        with self._lock:
            return self._identity.get(path)

    def _make(self, paths) -> None:
        # A promise is kept until its load() returned: another thread reading the same file meanwhile
        # calls load() too, which waits for the first and does nothing (each load is once).
        with self._lock:
            loads = {id(load): load for load in (self._promised.get(path) for path in paths) if load is not None}
        for load in loads.values():
            load()
        if loads:
            with self._lock:
                for path in paths:
                    self._promised.pop(path, None)

    def close(self) -> None:
        self.spill.close()

    def read(self, path: str) -> bytes:
        path = str(path)
        self._make([path])
        with self._lock:
            kept = self._pending.get(path)
        return self.spill.read(kept) if kept is not None else Path(path).read_bytes()

    def write(self, paths) -> None:
        """Writes those of `paths` not yet on disk."""
        paths = [str(path) for path in paths]
        self._make(paths)
        with self._lock:
            for path in paths:
                kept = self._pending.pop(path, None)
                if kept is not None:
                    self.spill.forget(kept)
                    _write(Path(path), self.spill.read(kept))

    def below(self, folder: Path) -> None:
        """Writes the rendered files not yet on disk below `folder` (not what lint made of them)."""
        prefix = str(folder).rstrip("/") + "/"
        with self._lock:
            paths = [path for path in self._output if path.startswith(prefix) and path in self._pending]
        self.write(paths)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _scratch_paths(model_dir: Path, istio: bool, rules: int) -> list[str]:
    """Where lint puts what it makes of a chart's helm template output: the manifests, then its
    Istio documents (when it has any), then each PrometheusRule's rules."""
    folder = model_dir / _SCRATCH
    return ([str(model_dir / "manifests.yaml")] + ([str(folder / "istio.yaml")] if istio else [])
            + [str(folder / f"prometheusrule-{index}.yaml") for index in range(rules)])


def _SCRATCH_GROUPS(group: str) -> bool:
    return group.endswith(".istio.io") or group == "monitoring.coreos.com"


def _scratch(model_dir: Path, output: str) -> tuple[dict[str, bytes], list, list]:
    """What lint makes of a chart's helm template output for kubeconform, istioctl and promtool:
    the files (path → bytes, _scratch_paths), and what tells a finding's owner: each Istio
    document's [kind, namespace, name, source] and each rules file's [source, name]."""
    docs = split_manifests(output, _SCRATCH_GROUPS)
    istio = [d for d in docs if d.group.endswith(".istio.io")]
    rules = [d for d in docs if d.kind == "PrometheusRule" and d.group == "monitoring.coreos.com"]
    paths = iter(_scratch_paths(model_dir, bool(istio), len(rules)))
    made = {next(paths): (output + "\n").encode()}
    if istio:
        made[next(paths)] = "---\n".join(d.text for d in istio).encode()
    for d in rules:  # what the Prometheus operator hands Prometheus: the rule's spec.groups
        spec = d.body.get("spec") if isinstance(d.body.get("spec"), dict) else {}
        made[next(paths)] = yamlout.dump({"groups": spec.get("groups") or []}).encode()
    return made, [[d.kind, d.namespace, d.name, d.source] for d in istio], [[d.source, d.name] for d in rules]


def _istio_docs(disk: _Disk, listed: bytes | int) -> list[IstioDoc]:
    """The Istio documents (kind, namespace, name, source) of a chart's istio.yaml."""
    return [IstioDoc(*fields) for fields in json.loads(disk.spill.read(listed))]


# istioctl's findings: "* Kind/namespace/name: message", after "Error: N errors occurred:" or
# '"FILE" has warnings:'; a message may run over several lines.
_ISTIO_ITEM = re.compile(r"^\s*\* ([A-Za-z]+)/([^/\s]*)/([^:\s]+): ?(.*)$")
_ISTIO_FILE = re.compile(r'(?:^"(.+?)" has warnings:|failed to decode file (\S+?):)')


def _reuse(cache: "verdicts.Verdicts", disk: _Disk, tool: str, args: list[str], paths,
           *inputs: bytes) -> tuple[dict, dict]:
    """(findings reused per input file, the cache keys of each file the tool must read again,
    which is then written; store() its findings under each): a file's findings are kept while
    its bytes, its path, the tool build, its arguments and `inputs` (what else it reads, e.g.
    schemas) are the same.

    A file lint derives from a chart's helm template output is looked up first by where it comes
    from (that run's key and lint's code: _Disk.identity), so an unchanged chart's files are
    never made; then by its bytes, so a changed chart's file that came out the same (its rules
    when only replicas changed) is not judged again. Findings are stored under both."""
    tool_id = verdicts.tool_identity(args[0], tools.version(tool))
    arguments = "\0".join(args[1:])
    reused, pending = {}, {}
    for path in sorted(paths):
        keys: tuple[str, ...] = ()
        identity = disk.identity(path)
        if identity is not None:
            keys = (cache.key(tool_id, arguments, *inputs, path, identity),)
            hit = cache.get(keys[0])
            if hit is not None and hit[0]:
                reused[path] = json.loads(hit[1])
                continue
        key = cache.key(tool_id, arguments, *inputs, path, disk.read(path))
        hit = cache.get(key)
        if hit is not None and hit[0]:
            reused[path] = json.loads(hit[1])
            for other in keys:  # found by its bytes: under its identity too, for the next run
                cache.put(other, True, hit[1])
        else:
            pending[path] = (*keys, key)
    disk.write(pending)
    return reused, pending


def _store(cache: "verdicts.Verdicts", keys: tuple[str, ...], findings: list) -> None:
    data = json.dumps(findings)
    for key in keys:
        cache.put(key, True, data)


def _istioctl(root: Path, istio_files: dict[str, tuple], rendered: list[ModelResult], wiring: ModelResult,
              cache: "verdicts.Verdicts", disk: _Disk) -> None:
    istioctl = tools.find("istioctl")
    if not istioctl:
        return
    for model in rendered:
        model.checks["istioctl validate"] = Check("pass")
    if not istio_files:
        return
    # istioctl judges each resource on its own, so each file's findings are reused while the file
    # is the same; it runs over the changed files only.
    reused, pending = _reuse(cache, disk, "istioctl", [istioctl, "validate"], istio_files)
    args = [istioctl, "validate"]
    for path in pending:
        args += ["-f", path]
    out = tools.run(args, timeout=600) if pending else tools.Result(True, "")
    by_resource = {(d.kind, d.namespace, d.name): (path, p, model, d)
                   for path, (p, model, listed) in istio_files.items() if path in pending
                   for d in _istio_docs(disk, listed)}
    found: dict[str, list[str]] = {}  # input file → its findings
    unowned: list[str] = []
    for finding in _istio_findings(out.output):
        if isinstance(finding, tuple):
            kind, namespace, name, message = finding
            if _ENVOYFILTER_NOTICE in message:
                continue
            hit = by_resource.get((kind, namespace, name)) or next(
                (v for k, v in by_resource.items() if k[0] == kind and k[2] == name), None)
            if hit is None:
                unowned.append(f"{kind}/{namespace}/{name}: istioctl: {message}")
                continue
            path, p, model, doc = hit
            found.setdefault(path, []).append(f"{p.chart_dir}/{doc.source}: {kind}/{name}: istioctl: {message}")
        elif finding in istio_files:  # a file istioctl could not read: the whole chart's Istio resources
            p = istio_files[finding][0]
            found.setdefault(finding, []).append(f"{p.chart_dir}: istioctl could not read its Istio resources:\n"
                                                 f"{out.output}")
        else:
            unowned.append(out.output)
    if not out.ok and not found and not unowned:
        unowned.append(f"istioctl validate failed:\n{out.output}")
    if not unowned:  # a run that said what it found about every file it read
        for path, keys in pending.items():
            _store(cache, keys, found.get(path, []))
    _fail_owners("istioctl validate", {**reused, **found}, istio_files)
    if unowned:
        wiring.checks["istioctl validate"] = Check("fail", "\n".join(unowned))


def _fail_owners(check: str, found: dict[str, list[str]], inputs: dict[str, tuple]) -> None:
    """Each model whose input files have findings fails `check` with them (in file order)."""
    problems: dict[int, list[str]] = {}
    owners = {}
    for path in sorted(found):
        model = inputs[path][1]
        owners[id(model)] = model
        for text in found[path]:
            if text not in problems.setdefault(id(model), []):  # promtool repeats some messages
                problems[id(model)].append(text)
    for key, messages in problems.items():
        if messages:
            owners[key].checks[check] = Check("fail", "\n".join(messages))


def _istio_findings(output: str) -> list:
    """(kind, namespace, name, message) per finding of `istioctl validate`, and the path of each
    file it could not decode."""
    findings: list = []
    current: list | None = None
    for line in output.splitlines():
        item = _ISTIO_ITEM.match(line)
        if item:
            current = [*item.groups()]
            findings.append(current)
            continue
        undecodable = _ISTIO_FILE.search(line)
        if undecodable and undecodable.group(2):
            findings.append(undecodable.group(2))
            current = None
        elif undecodable or line.startswith("Error:") or not line.strip():
            current = None
        elif current is not None:  # a message over several lines
            current[3] += "\n" + line.strip()
    return [tuple(f) if isinstance(f, list) else f for f in findings]


def _promtool(root: Path, rule_files: dict[str, tuple], rendered: list[ModelResult], wiring: ModelResult,
             cache: "verdicts.Verdicts", disk: _Disk) -> None:
    promtool = tools.find("promtool")
    if not promtool:
        return
    for model in rendered:
        model.checks["promtool"] = Check("pass")
    if not rule_files:
        return
    # Each rules file is checked on its own: its findings are reused while it is the same.
    reused, pending = _reuse(cache, disk, "promtool", [promtool, "check", "rules"], rule_files)
    out = tools.run([promtool, "check", "rules", *pending], timeout=600) if pending else tools.Result(True, "")
    found: dict[str, list[str]] = {}
    for line in out.output.splitlines():
        path, sep, message = line.partition(": ")
        if sep and path in pending:
            p, _, rule = rule_files[path]
            found.setdefault(path, []).append(f"{p.chart_dir}/{rule.source}: PrometheusRule/{rule.name}: promtool: "
                                              f"{message}")
    if not out.ok and not found:
        wiring.checks["promtool"] = Check("fail", f"promtool check rules failed:\n{out.output}")
    else:
        for path, keys in pending.items():
            _store(cache, keys, found.get(path, []))
    _fail_owners("promtool", {**reused, **found}, rule_files)


_QUOTED_PATH = re.compile(r"'(/[^']+)'")


def _kustomize(root: Path, files: dict[str, bytes], pairs: list, wiring: ModelResult,
               cache: "verdicts.Verdicts", disk: _Disk) -> None:
    """kustomize build of the whole output, as Flux's kustomize-controller runs it, plus what
    kustomize lets pass: a file beside a kustomization.yaml that it does not list."""
    kustomize = tools.find("kustomize")
    if not kustomize:
        return
    from .wiring import KUSTOMIZE_ROOTS

    findings = outputchecks.kustomization_findings(files, KUSTOMIZE_ROOTS)
    tool_id = verdicts.tool_identity(kustomize, tools.version("kustomize"))
    for folder in KUSTOMIZE_ROOTS:  # what each Flux Kustomization builds
        if f"{folder}/kustomization.yaml".lstrip("/") not in files:
            continue
        entries = _resource_entries(files, folder)
        if entries is None:  # more than a list of folders: kustomize builds the whole root
            findings += _kustomize_build(kustomize, root, folder, disk)[0]
            continue
        # A root that only lists folders builds as the union of their builds, which must not
        # hold one object twice: each folder's build (and the objects it holds) is reused while
        # none of its files changed, so an edit rebuilds its own project only.
        seen: dict[tuple, str] = {}
        for entry in entries:
            prefix = f"{entry}/"
            names = sorted(r for r in _below(files, prefix) if "/chart/" not in r[len(prefix) - 1:])
            key = cache.key(tool_id, b"build", entry, verdicts.files_digest(files, prefix, names))
            hit = cache.get(key)
            if hit is not None:
                built, ids = json.loads(hit[1])
                built = [outputchecks.Finding(*f) for f in built]
            else:
                built, ids = _kustomize_build(kustomize, root, entry, disk)
                cache.put(key, True, json.dumps([[[f.path, f.message] for f in built], ids]))
            findings += built
            for object_id in ids:
                first = seen.setdefault(tuple(object_id), entry)
                if first != entry:
                    group, kind, namespace, name = object_id
                    findings.append(outputchecks.Finding(
                        f"{entry}/kustomization.yaml",
                        f"kustomize build: {kind} {namespace + '/' if namespace else ''}{name}"
                        f"{' (' + group + ')' if group else ''} is also built by {first}: may not add resource twice"))
    _record("kustomize build", findings, pairs, wiring, _owner_by_path(pairs))


def _resource_entries(files: dict[str, bytes], folder: str) -> list[str] | None:
    """The folders a kustomization.yaml lists, relative to the output, when it lists nothing else
    (and sets nothing else); None otherwise."""
    from ruamel.yaml import YAML

    try:
        body = YAML(typ="safe").load(files[f"{folder}/kustomization.yaml".lstrip("/")])
    except Exception:  # kustomize itself says what is wrong with it
        return None
    if not isinstance(body, dict) or set(body) - {"apiVersion", "kind", "resources"}:
        return None
    entries = []
    for item in body.get("resources") or []:
        entry = f"{folder}/{item}".strip("/") if isinstance(item, str) else ""
        if not entry or f"{entry}/kustomization.yaml" not in files:
            return None  # a file, a URL or a missing folder: the whole root is built
        entries.append(entry)
    # Each folder's build is keyed on the files below it: a kustomization in it that reaches
    # outside (../, a URL) would make that key miss a change, so then the whole root is built.
    below = tuple(e + "/" for e in entries)
    for rel in files:
        if rel.endswith("kustomization.yaml") and rel.startswith(below):
            data = files[rel]  # (read back from lint's temporary file past its memory budget)
            if b"../" in data or b"://" in data:
                return None
    return entries


def _kustomize_build(kustomize: str, root: Path, folder: str, disk: _Disk) -> tuple[list, list]:
    """(findings, the (group, kind, namespace, name) of each object built) of one folder; the
    rendered files below it are written first."""
    disk.below(root / folder)
    out = tools.run([kustomize, "build", str(root / folder)], timeout=600)
    if not out.ok:
        # kustomize names the innermost path it failed on last; that decides whose problem it is.
        paths = [Path(m).relative_to(root).as_posix() for m in _QUOTED_PATH.findall(out.output)
                 if m.startswith(str(root) + "/")]
        message = out.output.replace(str(root) + "/", "").replace(str(root), ".")
        return [outputchecks.Finding(paths[-1] if paths else folder, f"kustomize build: {message}")], []
    return [], [[d.group, d.kind, d.namespace, d.name] for d in split_manifests(out.output)]


def _kubeconform(root: Path, files: dict[str, bytes], result, pairs: list, manifests: dict[str, str],
                 wiring: ModelResult, schema_locations: list[str], cache: "verdicts.Verdicts", disk: _Disk) -> None:
    kubeconform = tools.find("kubeconform")
    if not kubeconform:
        return
    # The rendered Flux objects: every YAML file of the output outside the charts but kustomize's
    # own files (what lint writes beside them, manifests and values, is not in `files`).
    flux_files = sorted(str(root / rel) for rel in files
                        if rel.endswith(".yaml") and _chart_of(rel) is None
                        and rel.rpartition("/")[2] not in ("kustomization.yaml", "manifests.yaml",
                                                           "values-from-helmrelease.yaml"))
    targets = [manifests[k] for k in sorted(manifests)] + flux_files
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
    # Each file's findings are reused while the file, the tool build and the schemas are the
    # same; kubeconform runs over the others only. A --schema-location of the user's (a URL or a
    # folder that may change) turns the reuse off.
    keys: dict[str, tuple[str, ...]] = {}
    reused: list[dict] = []
    if not schema_locations:
        schemas = verdicts.folder_stamp(Path(tools.crd_schema_location().split("{{")[0]), Path(core.split("{{")[0]))
        by_file, keys = _reuse(cache, disk, "kubeconform", args, targets, schemas)
        reused = [resource for found in by_file.values() for resource in found]
    run_on = targets if schema_locations else list(keys)
    disk.write(run_on)
    out = tools.run(args + run_on, timeout=600) if run_on else tools.Result(True, "{}")
    problems: dict[str, list[str]] = {}
    try:
        report = json.loads(out.output[out.output.index("{"):]) if "{" in out.output else {}
    except ValueError:
        report = {}
    found = [r for r in report.get("resources", []) if r.get("status") in ("statusInvalid", "statusError")]
    if report and (out.ok or found):  # a run that said what it found: store each file's findings
        for target, target_keys in keys.items():
            _store(cache, target_keys, [r for r in found if r.get("filename") == target])
    for resource in found + reused:  # both hold only invalid and error results
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
               if not any(rel.startswith(p.model_dir + "/") for p, _ in pairs)
               and not any(rel == f"{p.identity.project}/namespace-{p.namespace}.yaml" for p, _ in pairs)]
    if unowned:
        wiring.checks["kubeconform"] = Check("fail", "\n".join(unowned))
