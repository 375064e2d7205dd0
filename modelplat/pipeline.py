"""The one-way pipeline: discover → load → validate → rules → plan, for every model of a run.

Collects every diagnostic of every file so one run reports all problems; rendering and writing
are separate steps (render.py, output.py) that the CLI calls only when this found no error.
"""

from __future__ import annotations

import json
import errno
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import Diagnostic, InvalidInput
from .loader import LoadError, Source, load
from .records import WiringIdentity

PLATFORM_NAMES = ("platform.yaml", "platform.yml")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    root: Path  # the folder the user pointed at; sources are named relative to it

    @property
    def relative(self) -> str:
        try:
            return self.path.relative_to(self.root).as_posix()
        except ValueError:
            return self.path.name


@dataclass
class Run:
    platform: object  # PlatformSettings (typed loosely so importing this module stays cheap)
    platform_file: Path
    plans: list = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return str(path) if relative.startswith("..") else relative


def discover(inputs: list[Path]) -> tuple[list[ModelFile], list[Diagnostic]]:
    """Every model values file under the inputs (recursively), in a stable order."""
    found: list[ModelFile] = []
    problems: list[Diagnostic] = []
    for given in inputs:
        if given.is_file():
            found.append(ModelFile(given.resolve(), given.resolve().parent.parent))
            continue
        if not given.is_dir():
            problems.append(Diagnostic(display(given), 0, 0, "no-such-path", "no such file or directory"))
            continue
        root = given.resolve()
        for folder, dirs, names in os.walk(root):  # does not follow symlinked folders
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and not _rendered_tree(Path(folder, d)))
            for name in sorted(names):
                if not name.endswith(YAML_SUFFIXES) or name.startswith(".") or name in PLATFORM_NAMES:
                    continue
                path = Path(folder, name)
                if path.is_symlink():
                    try:
                        target = path.resolve(strict=True)
                    except (OSError, RuntimeError) as exc:  # a loop, or a link to nothing
                        why = "is part of a symlink loop" if isinstance(exc, RuntimeError) or \
                            getattr(exc, "errno", None) == errno.ELOOP else "points to nothing"
                        problems.append(Diagnostic(
                            display(path), 1, 1, "broken-symlink", f"symlink {why}; refusing to read it",
                            "remove the link or point it at a values file"))
                        continue
                    if not target.is_relative_to(root):
                        problems.append(Diagnostic(
                            display(path), 0, 0, "symlink-outside",
                            f"symlink points outside {display(root)} (to {target}); refusing to read it",
                        ))
                        continue
                found.append(ModelFile(path, root))
    return found, problems


def _rendered_tree(folder: Path) -> bool:
    """A folder modelplat rendered into (`--out` inside the models' tree): its charts, values and
    HelmReleases are output, never model values files."""
    from .output import MARKER, OWNED_BY

    try:
        with open(folder / OWNED_BY, "rb") as handle:
            return handle.read(len(MARKER)) == MARKER
    except OSError:
        return False


def find_platform(inputs: list[Path], explicit: Path | None) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise InvalidInput(f"platform settings file not found: {explicit}")
        return explicit
    for given in inputs:
        folder = given.resolve() if given.is_dir() else given.resolve().parent
        for candidate_dir in (folder, *folder.parents):
            for name in PLATFORM_NAMES:
                candidate = candidate_dir / name
                if candidate.is_file():
                    return candidate
    raise InvalidInput(
        "no platform settings file found next to or above the inputs",
        [Diagnostic(", ".join(display(i) for i in inputs), 0, 0, "no-platform",
                    "no platform.yaml found", "pass --platform FILE or create platform.yaml beside the models")],
    )


def load_platform(path: Path):
    from .config import PlatformSettings
    from .validate import validate

    try:
        source = load(path, display(path))
    except LoadError as exc:
        raise InvalidInput("invalid platform settings", [exc.diagnostic]) from None
    settings, problems = validate(source, PlatformSettings)
    if problems:
        raise InvalidInput("invalid platform settings", problems)
    return settings


def run(inputs: list[Path], platform_file: Path | None = None, progress: "Progress | None" = None) -> Run:
    """Load, validate, check and plan every model; never raises for a bad model file."""
    platform_path = find_platform(inputs, platform_file)
    platform = load_platform(platform_path)
    files, problems = discover(inputs)
    return run_files(files, problems, inputs, platform, platform_path, progress)


Progress = Callable[[str, int, int], None]  # (phase, done, total)


def run_files(files: list[ModelFile], problems: list[Diagnostic], inputs: list[Path], platform,
              platform_path: Path, progress: Progress | None = None) -> Run:
    from . import plan as planning, rules
    from .resolve import identity
    from .validate import validate
    from .values import ModelValues

    result = Run(platform=platform, platform_file=platform_path, diagnostics=list(problems), files=len(files))
    if not files and not problems:
        result.diagnostics.append(Diagnostic(
            ", ".join(display(i) for i in inputs), 0, 0, "no-models", "no model values files (*.yaml) found"))
    seen: dict[tuple[str, str], str] = {}
    folders: dict[tuple[str, str], str] = {}
    for done, model_file in enumerate(files):
        if progress:
            progress("validating", done, len(files))
        shown = display(model_file.path)
        try:
            source = load(model_file.path, shown)
        except LoadError as exc:
            result.diagnostics.append(exc.diagnostic)
            continue
        values, problems = validate(source, ModelValues)
        if values is None:
            result.diagnostics.extend(problems)
            continue
        folder = model_file.path.parent.name if model_file.path.parent != model_file.root else None
        ident = identity(values, model_file.path.stem, folder)
        problems = _identity_problems(source, values, ident, model_file)
        problems += rules.check(values, platform, source, ident)
        key = (ident.namespace, ident.name)
        # The output folder is <project>/<name>: two models may differ in namespace alone, and
        # one chart would silently overwrite the other.
        folder_key = (ident.project, ident.name)
        if key in seen:
            problems.append(source.diagnostic(
                ("name",) if values.name else (), "duplicate-model",
                f"model {ident.namespace}/{ident.name} is already defined in {seen[key]}",
                "each model needs a unique name within its namespace"))
        elif folder_key in folders:
            problems.append(source.diagnostic(
                ("project",) if values.project else ("name",) if values.name else (), "duplicate-output",
                f"model {ident.namespace}/{ident.name} would be rendered into {ident.project}/{ident.name}/, "
                f"where {folders[folder_key]} is rendered already",
                "give one of them another name: (or project:)"))
        seen.setdefault(key, shown)
        folders.setdefault(folder_key, shown)
        result.diagnostics.extend(problems)
        if not any(d.severity == "error" for d in problems):
            result.plans.append(planning.plan(values, platform, ident, model_file.relative, shown))
    result.diagnostics.extend(_shared_network_problems(result.plans))
    result.diagnostics.extend(_shared_quota_problems(result.plans))
    result.diagnostics.extend(_model_armor_problems(result.plans))
    shared = ("network-owned-twice", "token-quota-conflict", "model-armor-chains")
    if any(d.code in shared for d in result.diagnostics):
        bad = {d.file for d in result.diagnostics if d.code in shared}
        result.plans = [p for p in result.plans if p.file not in bad]
    result.diagnostics.sort()
    return result


def _shared_network_problems(plans) -> list[Diagnostic]:
    """A NetworkAttachmentDefinition can belong to one chart only: Helm refuses a second owner."""
    owners: dict[tuple[str, str], str] = {}
    problems = []
    for p in plans:
        for index, net in enumerate(p.values.rdma.networks if p.values.rdma.enabled else []):
            if net.type == "existing":
                continue
            key = (p.namespace, net.name)
            if key in owners:
                problems.append(Diagnostic(
                    p.file, 0, 0, "network-owned-twice",
                    f"network {net.name} in namespace {p.namespace} is already rendered by {owners[key]}",
                    "let one model own it and reference it from the others with type: existing",
                    f"rdma.networks.{index}.name"))
            owners.setdefault(key, p.file)
    return problems


def _quota_disagreements(quotas):
    """(index, tenant, index of the first) for each token quota that shares a tenant scope with an
    earlier one but declares other limits. quotas: plan.token_quota of each model, or None."""
    first: dict[tuple[str, str], tuple[tuple, int]] = {}
    for index, quota in enumerate(quotas):
        if quota:
            tenant, scope, windows = quota
            windows_first, index_first = first.setdefault((tenant, scope), (windows, index))
            if windows_first != windows:
                yield index, tenant, index_first


def _quota_conflicts(identities) -> bool:
    """Models sharing a tenant's quota that declare different limits (cached identities)."""
    return any(True for _ in _quota_disagreements(identity.tokens for identity in identities))


def _shared_quota_problems(plans) -> list[Diagnostic]:
    """Models sharing their tenant's token quota must agree on it: the rate limit service holds one
    limit per tenant scope, and silently picking one model's numbers would change the others'."""
    from .plan import token_quota

    return [Diagnostic(
        plans[index].file, 0, 0, "token-quota-conflict",
        f"tenant {tenant}'s shared token quota is declared differently in {plans[first].file}",
        "give every model sharing the tenant's quota the same limits (or set them once in the "
        "platform file's tokenLimit defaults)", "tokenLimit")
        for index, tenant, first in _quota_disagreements([token_quota(p.chart_values) for p in plans])]


def _armor_chains(screened) -> list[tuple[str, str]]:
    """The chains (provider, screen) of the platform's one traffic extension, in their order.
    screened: plan.model_armor of each model, or None."""
    return sorted({armor[:2] for armor in screened if armor})


def _armor_overflow(screened) -> list[int]:
    """Indexes of the models screened by Model Armor whose chain would be past GKE's limit of
    chains in the platform's one traffic extension."""
    from .wiring import MODEL_ARMOR_CHAINS

    allowed = set(_armor_chains(screened)[:MODEL_ARMOR_CHAINS])
    return [index for index, armor in enumerate(screened) if armor and armor[:2] not in allowed]


def _model_armor_problems(plans) -> list[Diagnostic]:
    """GKE attaches one traffic extension to a Gateway, with at most five chains: one for each Model
    Armor provider and what it screens (prompts, responses, both)."""
    from .plan import model_armor
    from .wiring import MODEL_ARMOR_CHAINS

    screened = [model_armor(p.chart_values) for p in plans]
    chains = _armor_chains(screened)
    return [Diagnostic(
        plans[index].file, 0, 0, "model-armor-chains",
        f"Model Armor would need {len(chains)} extension chains on the Gateway (a provider and what it "
        f"screens make one: {', '.join(f'{p}/{s}' for p, s in chains)}); GKE allows {MODEL_ARMOR_CHAINS}",
        "screen with fewer providers, or the same thing (safety.screen) with each", "safety")
        for index in _armor_overflow(screened)]


def _identity_problems(source: Source, values, ident, model_file: ModelFile) -> list[Diagnostic]:
    from .values import DNS_LABEL
    import re

    out = []
    if not values.name and not re.fullmatch(DNS_LABEL, ident.name):
        out.append(source.diagnostic(
            (), "invalid-name",
            f"the file name '{model_file.path.stem}' is not a valid model name (a DNS label)",
            "rename the file (lowercase letters, digits, '-') or set name:"))
    if not ident.project:
        out.append(source.diagnostic((), "missing-project", "cannot tell the project of a file outside a project folder",
                                     "put the file in a <project>/ folder or set project:"))
    elif not values.project and not re.fullmatch(DNS_LABEL, ident.project):
        out.append(source.diagnostic(
            (), "invalid-project", f"the folder name '{ident.project}' is not a valid project name (a DNS label)",
            "rename the folder or set project:"))
    return out


# --- render with the cache ------------------------------------------------------------------------


@dataclass
class Rendered:
    files: dict[str, bytes]
    diagnostics: list[Diagnostic]
    models: int
    cached: int = 0

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def render_all(inputs: list[Path], platform_file: Path | None = None, use_cache: bool = True,
               progress: Progress | None = None) -> Rendered:
    """Every output file for the inputs, reusing cached renders of unchanged models.

    A model is re-rendered only when its values file, its place in the tree, the platform file
    or modelplat itself changed; the result is byte-identical to an uncached render.
    """
    # The render modules (and pydantic behind them) are imported only when something must be
    # rendered: a run served wholly from the cache never pays for them.
    if not use_cache:
        from .render import render_tree

        result = run(inputs, platform_file, progress)
        files = render_tree(result.plans, result.platform) if not result.errors else {}
        return Rendered(files, result.diagnostics, len(result.plans))

    from .cache import RenderCache

    platform_path = find_platform(inputs, platform_file)
    try:
        platform_bytes = platform_path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {display(platform_path)}: {exc.strerror}") from None
    cache = RenderCache(platform_bytes)
    model_files, problems = discover(inputs)
    if problems or not model_files:
        return render_all(inputs, platform_file, use_cache=False, progress=progress)
    files: dict[str, bytes] = {}
    identities: list[WiringIdentity] = []  # see plan.wiring_identity
    warnings: list[Diagnostic] = []  # the cached models' own, replayed under today's file names
    misses: list[tuple[ModelFile, str]] = []
    for model_file in model_files:
        try:
            data = model_file.path.read_bytes()
        except OSError:
            misses.append((model_file, ""))  # the loader reports it, with its position
            continue
        folder = "" if model_file.path.parent == model_file.root else model_file.path.parent.name
        key = cache.key("model", model_file.relative, folder, data)
        entry = cache.get(key)
        if entry is None:
            misses.append((model_file, key))
        else:
            files.update(entry["files"])
            identities.append(WiringIdentity.from_json(entry["identity"]))
            shown = display(model_file.path)
            warnings += [Diagnostic(shown, **w) for w in entry["warnings"]]
    platform = None
    if misses:
        from .plan import wiring_identity
        from .render import render_model, shared_files

        platform = load_platform(platform_path)
        result = run_files([m for m, _ in misses], [], inputs, platform, platform_path, progress)
        if result.errors:
            return Rendered({}, result.diagnostics, len(model_files))
        keys = {m.relative: key for m, key in misses}
        warnings += result.diagnostics  # warnings only: an error returned above
        own: dict[str, list[dict]] = {}  # display path -> the model's own warnings, as cached
        for d in result.diagnostics:
            own.setdefault(d.file, []).append({k: v for k, v in asdict(d).items() if k != "file"})
        models = {p.file for p in result.plans}
        # A warning that names no model's file (one about the platform or the tree) cannot be replayed
        # with one model: then nothing of this run is reused.
        reusable = all(d.file in models for d in result.diagnostics)
        fresh = []
        for done, p in enumerate(result.plans):
            if progress:
                progress("rendering", done, len(result.plans))
            rendered = render_model(p, platform)
            files.update(rendered)
            identity = wiring_identity(p)
            identities.append(identity)
            if keys.get(p.source) and reusable:
                fresh.append((keys[p.source], identity, rendered, own.get(p.file, [])))
        cache.put_many(fresh, shared_files())
    if len({(i.name, i.namespace) for i in identities}) != len(identities) or \
            len({(i.project, i.name) for i in identities}) != len(identities) or _quota_conflicts(identities) or \
            _armor_overflow([i.armor for i in identities]):
        return render_all(inputs, platform_file, use_cache=False)  # positioned duplicate errors
    wiring_key = cache.key("wiring", json.dumps(sorted(identities)))
    wiring = cache.get(wiring_key)
    if wiring is None:
        from .render import render_wiring

        platform = platform or load_platform(platform_path)
        wiring_files = render_wiring(identities, platform)
        cache.put(wiring_key, None, wiring_files)
    else:
        wiring_files = wiring["files"]
    files.update(wiring_files)
    return Rendered(files, sorted(warnings),
                    len(model_files), len(model_files) - len(misses))
