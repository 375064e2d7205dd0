"""`lint --server-dry-run`: every rendered object sent to a real cluster with kubectl, dry-run only.

Every request carries dryRun=All, so nothing is ever written. Nothing here prints or renders:
lint hands over the folder it rendered into and gets check results back.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import tools
from .errors import Diagnostic, ToolError
from .manifests import WIRING

# Files of the rendered tree that are not API objects, and lint's own scratch files.
NOT_OBJECTS = ("kustomization.yaml", "manifests.yaml", "values-from-helmrelease.yaml")
_ERROR_STARTS = ("Error from server", "error:", "Error:", "error when", "unable to recognize")
_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")


@dataclass(frozen=True)
class Manifest:
    """One object as rendered (its YAML text is sent unchanged), where it came from, who owns it."""

    text: str
    group: str  # of its apiVersion; "" for core kinds
    source: str  # relative to the output root, e.g. fraud/xgb-scorer/chart/templates/inferenceservice.yaml
    kind: str
    name: str
    namespace: str  # metadata.namespace, else the namespace it is installed into; "" for a Namespace
    owner: str = WIRING  # a model folder, or WIRING

    @property
    def printed_name(self) -> str:
        """How `kubectl -o name` names it once accepted: `inferenceservice.serving.kserve.io/iris`."""
        return f"{self.kind.lower()}{'.' + self.group if self.group else ''}/{self.name}"

    @property
    def label(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.source}: {self.kind} {where}"


def documents(text: str, source: str, *, owner: str = WIRING, namespace: str = "",
              chart_dir: str | None = None) -> list[Manifest]:
    """The objects of a YAML stream. For `helm template` output pass chart_dir: its
    `# Source:` comments then name each object's template; namespace is the release's."""
    from .manifests import split_manifests

    found = []
    for doc in split_manifests(text):
        origin = f"{chart_dir}/{doc.source}" if chart_dir is not None and doc.source != "?" else source
        own_namespace = "" if doc.kind == "Namespace" else (doc.namespace or namespace)
        found.append(Manifest(doc.text, doc.group, origin, doc.kind or "?", doc.name or "?", own_namespace, owner))
    return found


def refusals(kubectl: str, manifests: list[Manifest], workdir: Path, *, kubeconfig: str | None = None,
             namespace: str | None = None, timeout: int = 300) -> dict[int, str]:
    """Server-side dry-runs the manifests in one kubectl call; {index: why} for each one refused.

    `--validate=strict` makes the server refuse unknown and duplicate fields instead of pruning
    them silently. Each object goes in its own file, so kubectl's messages, which name the file,
    lead back to the object; each is returned prefixed with the object's template and name.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, manifest in enumerate(manifests):
        path = workdir / f"{index:04d}.yaml"
        path.write_text(manifest.text)
        paths.append(str(path))
    if not paths:
        return {}
    args = [kubectl, "apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", str(workdir)]
    if kubeconfig:
        args += ["--kubeconfig", kubeconfig]
    if namespace:
        args += ["--namespace", namespace]
    out, stdout = tools.run_apart(args, timeout=timeout)
    if out.ok:
        return {}
    # Refused: the objects kubectl's messages name (it names the file when there are several
    # messages) and those it did not print as accepted (a lone message, `The InferenceService
    # "iris" is invalid: ...`, names no file).
    placed: dict[int, list[str]] = {}
    unplaced = []
    for block in _error_blocks(_without_klog(out.output)):
        indexes = [i for i, path in enumerate(paths) if f'"{path}"' in block]
        for i in indexes:
            placed.setdefault(i, []).append(block.replace(f' "{paths[i]}"', ""))
        if not indexes:
            unplaced.append(block)
    accepted = set(stdout.split())
    refused = set(placed) | {i for i, m in enumerate(manifests) if m.printed_name not in accepted}
    general = "\n".join(unplaced) or _without_klog(out.output) or "kubectl failed"
    return {i: "\n".join(f"{manifests[i].label}: {line}" for line in placed.get(i, [general]))
            for i in sorted(refused or range(len(manifests)))}


def _error_blocks(output: str) -> list[str]:
    """kubectl's error messages (stderr), each with its continuation lines; warnings left out."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("Warning:"):
            current = None
        elif current is None or line.startswith(_ERROR_STARTS):
            current = [line]
            blocks.append(current)
        else:
            current.append(line)
    return ["\n".join(b) for b in blocks]


def kubectl_version() -> str:
    version = tools.version("kubectl")  # our own build: from its cache folder name
    if version != "unknown":
        return version
    out = tools.run([tools.find("kubectl") or "kubectl", "version", "--client", "-o", "json"], timeout=30)
    try:
        return json.loads(out.output)["clientVersion"]["gitVersion"] if out.ok else "unknown"
    except (ValueError, KeyError, TypeError):
        return "unknown"


def existing_namespaces(kubectl: str, names: set[str], kubeconfig: str | None) -> set[str]:
    """The given namespaces that exist. Also the first contact with the cluster: a cluster that
    cannot be reached or read ends lint here (exit 2) instead of failing every object alike."""
    if not names:
        return set()
    args = [kubectl, "get", "namespaces", *sorted(names), "--ignore-not-found", "-o", "name", "--request-timeout=30s"]
    if kubeconfig:
        args += ["--kubeconfig", kubeconfig]
    out, stdout = tools.run_apart(args, timeout=120)
    if not out.ok:
        raise ToolError(f"server dry-run: cannot read the cluster's namespaces with kubectl: {_without_klog(out.output)}")
    return {line.split("/", 1)[1] for line in stdout.splitlines() if line.startswith("namespace/")}


def _without_klog(output: str) -> str:
    """kubectl's message without the client library's log lines (`E1123 15:47:43.739 ...`),
    which repeat it five times when the cluster is unreachable."""
    kept = [line for line in output.splitlines() if not _KLOG.match(line)]
    return "\n".join(kept) or output


def collect(root: Path, plans) -> list[Manifest]:
    """Every object of a tree rendered by lint: Namespaces first, then each chart's `helm template`
    output (manifests.yaml, written by lint) and the Flux wiring, in a stable order."""
    manifests: list[Manifest] = []
    by_dir = {p.model_dir: p for p in plans}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        if "/chart/" in rel or path.name in NOT_OBJECTS or any(part.startswith(".") for part in rel.split("/")):
            continue  # charts are sent as rendered by helm; lint's scratch files (".lint/") are no objects
        owner = next((d for d in by_dir if rel.startswith(d + "/")), WIRING)
        manifests += documents(path.read_text(), rel, owner=owner)
    for model_dir, p in sorted(by_dir.items()):
        rendered = root / model_dir / "manifests.yaml"
        if rendered.is_file():
            manifests += documents(rendered.read_text(), f"{p.chart_dir}/templates", owner=model_dir,
                                   namespace=p.namespace, chart_dir=p.chart_dir)
    manifests.sort(key=lambda m: m.kind != "Namespace")  # stable: only moves Namespaces first
    return manifests


def check(root: Path, plans, models, *, kubeconfig: str | None = None,
          jobs: int | None = None) -> tuple[dict[str, tuple[str, str]], list[Diagnostic]]:
    """Dry-runs the tree lint rendered into `root` against the cluster of `kubeconfig`.

    Returns {model folder or WIRING: (status, detail)} and warnings. A namespace the output itself
    creates but the cluster does not have yet cannot hold a dry-run object (the API server refuses
    objects in a missing namespace, dry-run or not): its Namespace object is checked, the objects
    inside it are skipped with a warning rather than reported as failures.
    """
    kubectl = tools.find("kubectl")
    if not kubectl:
        return {}, []
    manifests = collect(root, plans)
    created = {m.name for m in manifests if m.kind == "Namespace"}
    used = {m.namespace for m in manifests if m.namespace}
    absent = (used & created) - existing_namespaces(kubectl, used & created, kubeconfig)
    waiting = [m for m in manifests if m.namespace in absent]
    sent = [m for m in manifests if m.namespace not in absent]
    # kubectl's --namespace must match every object's own: one call per namespace (they run in
    # parallel; a dry-run creates nothing, so no call depends on another).
    groups: dict[str, list[Manifest]] = {}
    for m in sent:
        groups.setdefault(m.namespace, []).append(m)
    refused: dict[Manifest, str] = {}
    with tempfile.TemporaryDirectory(prefix="modelplat-dry-run-") as tmp, \
            ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        def one(item: tuple[int, tuple[str, list[Manifest]]]) -> None:
            n, (namespace, group) = item
            for i, why in refusals(kubectl, group, Path(tmp) / str(n), kubeconfig=kubeconfig,
                                   namespace=namespace or None).items():
                refused[group[i]] = why

        list(pool.map(one, enumerate(sorted(groups.items()))))

    owners_of_namespace: dict[str, list[str]] = {}
    for p in plans:
        owners_of_namespace.setdefault(p.namespace, []).append(p.model_dir)
    results: dict[str, tuple[str, str]] = {}
    failures: dict[str, list[str]] = {}
    for m, why in refused.items():
        owners = owners_of_namespace.get(m.name, [WIRING]) if m.kind == "Namespace" else [m.owner]
        for owner in owners:
            failures.setdefault(owner, []).append(why)
    warnings = []
    files = {p.model_dir: model.file for p, model in zip(plans, models)}
    for owner in sorted({m.owner for m in manifests} | set(files)):
        if owner in failures:
            results[owner] = ("fail", "\n".join(failures[owner]))
            continue
        mine = [m for m in waiting if m.owner == owner]
        if mine:
            namespaces = sorted({m.namespace for m in mine})
            detail = (f"namespace {', '.join(namespaces)} does not exist in the cluster yet: its Namespace object "
                      f"passed, the {len(mine)} object(s) inside it were not checked")
            results[owner] = ("skipped", detail)
            warnings.append(Diagnostic(files.get(owner, WIRING), 0, 0, "namespace-not-in-cluster", detail,
                                       hint="create the namespace (or let Flux create it), then run the dry-run again",
                                       severity="warning"))
        elif owner in files and not (root / owner / "manifests.yaml").is_file():
            results[owner] = ("skipped", "helm template did not run")
        elif owner != WIRING:
            results[owner] = ("pass", "")
    return results, warnings
