"""The one-way pipeline: discover → load → validate → rules → plan, for every model of a run.

Collects every diagnostic of every file so one run reports all problems; rendering and writing
are separate steps (render.py, output.py) that the CLI calls only when this found no error.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

from . import prebuilt
from .errors import Diagnostic, InvalidInput
from .loader import LoadError, Source, load
from .records import MODEL_ARMOR_CHAINS, WiringIdentity

PLATFORM_NAMES = ("platform.yaml", "platform.yml")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    root: Path  # the folder the user pointed at; sources are named relative to it

    @cached_property
    def relative(self) -> str:
        path, root = str(self.path), str(self.root).rstrip(os.sep)
        if path.startswith(root + os.sep):  # pathlib's relative_to cost ~20 µs; a run asks 10,000 times
            return path[len(root) + 1:].replace(os.sep, "/")
        return self.path.name

    @property
    def shown(self) -> str:
        """display(self.path), from the root's display (os.path.relpath a file cost ~50 µs)."""
        if not str(self.path).startswith(str(self.root).rstrip(os.sep) + os.sep):
            return display(self.path)
        root = _display_root(self.root, os.getcwd())
        return self.relative if root == "." else f"{root.rstrip(os.sep)}{os.sep}{self.relative}"


@lru_cache(maxsize=64)
def _display_root(root: Path, cwd: str) -> str:
    return display(root)


@dataclass
class Run:
    platform: object  # PlatformSettings (typed loosely so importing this module stays cheap)
    platform_file: Path
    plans: list = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0
    planned: int = 0  # models planned (kept in plans, or handed to a consumer)
    shares: list = field(default_factory=list)  # (file, WiringIdentity) of each planned model

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def _any_error(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


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


def load_platform(path: Path, cache=None):
    """The platform settings, validated. With a render cache (made for this file's bytes), the
    settings an earlier run of this code validated from the same bytes are taken from it: a model
    just edited pays for validating its own values, not the platform's too."""
    from .config import PlatformSettings
    from .validate import validate

    raw = None
    if cache is not None:
        try:
            raw = path.read_bytes()
        except OSError:
            pass  # the loader reports it
        settings = cache.platform_settings(raw) if raw is not None else None
        if settings is not None:
            return settings
    try:
        source = load(path, display(path), raw)
    except LoadError as exc:
        raise InvalidInput("invalid platform settings", [exc.diagnostic]) from None
    settings, problems = validate(source, PlatformSettings)
    if problems:
        raise InvalidInput("invalid platform settings", problems)
    if cache is not None and raw is not None:
        cache.keep_platform_settings(raw, settings)
    return settings


def run(inputs: list[Path], platform_file: Path | None = None, progress: "Progress | None" = None,
        keep_plans: bool = True, jobs: int | None = None, use_cache: bool = False) -> Run:
    """Load, validate, check and plan every model; never raises for a bad model file. Without
    keep_plans, Run.plans stays empty and Run.shares says what was planned (by `jobs` worker
    processes when there are many models). With use_cache, validated platform settings come from
    the render cache (see load_platform)."""
    platform_path = find_platform(inputs, platform_file)
    cache = None
    if use_cache:
        from .cache import RenderCache

        try:
            cache = RenderCache(platform_path.read_bytes())
        except OSError:
            pass  # load_platform reports it
        else:
            prebuilt.use(cache)  # the validators' core schemas an earlier run built
    platform = load_platform(platform_path, cache)
    files, problems = discover(inputs)
    if keep_plans:
        result = run_files(files, problems, inputs, platform, platform_path, progress)
    else:
        result = run_files(files, problems, inputs, platform, platform_path, progress, _nothing, lambda out: None,
                           jobs or jobs_default())
    if cache is not None:
        prebuilt.keep()
    return result


def _nothing(plan) -> dict:
    return {}


Progress = Callable[[str, int, int], None]  # (phase, done, total)


class ModelOut(NamedTuple):
    """One model rendered: what the caller of run_files(render=...) is handed."""

    source: str  # the values file relative to the folder the user named (the cache's key)
    file: str  # the values file as shown
    identity: WiringIdentity
    files: dict[str, bytes]
    own: list[Diagnostic]  # the model's own warnings


Consume = Callable[[ModelOut], None]
PARALLEL_MIN = 48  # models to render before worker processes pay for starting
CHUNK_MODELS = 16  # models a worker renders per hand-off


def jobs_default() -> int:
    explicit = os.environ.get("MODELPLAT_JOBS", "")
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return os.cpu_count() or 1


def _check_model(model_file: ModelFile, platform):
    """Load, validate and check one values file: (diagnostics, the checked values or None, its
    identity, its source). The checks that need other models are the caller's."""
    from . import rules
    from .resolve import identity
    from .validate import validate
    from .values import ModelValues

    shown = model_file.shown
    try:
        source = load(model_file.path, shown)
    except LoadError as exc:
        return [exc.diagnostic], None, None, None
    values, problems = validate(source, ModelValues)
    if values is None:
        return problems, None, None, None
    folder = model_file.path.parent.name if model_file.path.parent != model_file.root else None
    ident = identity(values, model_file.path.stem, folder)
    problems = _identity_problems(source, values, ident, model_file)
    problems += rules.check(values, platform, source, ident)
    return problems, values, ident, source


def run_files(files: list[ModelFile], problems: list[Diagnostic], inputs: list[Path], platform,
              platform_path: Path, progress: Progress | None = None,
              render: Callable | None = None, consume: Consume | None = None, jobs: int = 1) -> Run:
    """Every model checked and planned. With `render` (plan → files) and `consume`, each model is
    rendered as soon as it is planned (while no error has been found) and handed to consume, and
    no plan is kept: memory then follows one model, not the run; the checks across models read
    each model's WiringIdentity. With jobs > 1 and enough models, worker processes render."""
    from . import plan as planning

    if render is not None and jobs > 1 and len(files) >= PARALLEL_MIN and _can_fork():
        result = _run_parallel(files, problems, inputs, platform, platform_path, progress, render, consume, jobs)
        if result is not None:
            return result
        # two models claim one name or folder: told with positions, by the plain run below
        return run_files(files, problems, inputs, platform, platform_path, progress)
    result = Run(platform=platform, platform_file=platform_path, diagnostics=list(problems), files=len(files))
    if not files and not problems:
        result.diagnostics.append(Diagnostic(
            ", ".join(display(i) for i in inputs), 0, 0, "no-models", "no model values files (*.yaml) found"))
    seen: dict[tuple[str, str], str] = {}
    folders: dict[tuple[str, str], str] = {}
    shares = result.shares  # (file, identity) of every planned model
    phase = "rendering" if render else "validating"
    failed = bool(result.errors)  # kept as it goes: Run.errors walks every diagnostic
    for done, model_file in enumerate(files):
        if progress:
            progress(phase, done, len(files))
        problems, values, ident, source = _check_model(model_file, platform)
        if values is None:
            result.diagnostics.extend(problems)
            failed = failed or _any_error(problems)
            continue
        shown = source.display
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
        if not _any_error(problems):
            p = planning.plan(values, platform, ident, model_file.relative, shown)
            identity = planning.wiring_identity(p)
            shares.append((p.file, identity))
            if render is None:
                result.plans.append(p)
            elif not failed:
                consume(ModelOut(p.source, p.file, identity, render(p), problems))
            result.planned += 1
        else:
            failed = True
    _finish(result)
    return result


def _finish(result: Run) -> None:
    shared = shared_problems(result.shares)
    result.diagnostics.extend(shared)
    if shared:
        bad = {d.file for d in shared}
        result.plans = [p for p in result.plans if p.file not in bad]
        result.shares = [(file, identity) for file, identity in result.shares if file not in bad]
    result.diagnostics.sort()


def _can_fork() -> bool:
    """Worker processes start by fork (they inherit the loaded code and compiled templates, with
    nothing to pickle but the files they return); Linux only, where fork is the safe default."""
    import multiprocessing

    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


_JOB: tuple | None = None  # (platform, render) for the forked workers


def _run_parallel(files, problems, inputs, platform, platform_path, progress, render, consume, jobs) -> Run | None:
    """run_files with the checks, planning and rendering in `jobs` forked workers, a chunk of
    models each at a time, handed back in order. None when two models claim one name or output
    folder (those errors need the plain run's positions)."""
    import gc
    import multiprocessing
    from collections import deque
    from itertools import islice

    from .render import shared_files

    global _JOB
    shared = shared_files()
    result = Run(platform=platform, platform_file=platform_path, diagnostics=list(problems), files=len(files))
    chunks = [files[at:at + CHUNK_MODELS] for at in range(0, len(files), CHUNK_MODELS)]
    _JOB = (platform, render)
    done = 0

    def outcomes():
        # The first chunk here: it builds the validators and compiles the templates once, before
        # the workers are forked (each would do it again). It is handed on only after the fork:
        # consuming it may start the output's writer threads, and a process forked while other
        # threads run inherits whatever locks they hold.
        first = _work(chunks[0])
        rest = iter(chunks[1:])
        # What the parent built so far (validators, templates, imports) stays shared with the
        # workers: frozen, the workers' garbage collections do not write to it (copy-on-write).
        gc.freeze()
        try:
            pool = multiprocessing.get_context("fork").Pool(min(jobs, len(chunks) - 1))
        finally:
            gc.unfreeze()
        with pool:
            # At most four chunks a worker ahead of what was consumed: a worker renders faster than
            # a slow disk takes the files, and what it returns waits in this process's memory.
            pending = deque(pool.apply_async(_work, (chunk,)) for chunk in islice(rest, 4 * jobs))
            yield first
            while pending:
                outcome = pending.popleft().get()
                for chunk in islice(rest, 1):
                    pending.append(pool.apply_async(_work, (chunk,)))
                yield outcome

    failed = bool(result.errors)  # kept as it goes: Run.errors walks every diagnostic
    try:
        for outcome in outcomes():
            for diagnostics, out in outcome:
                if progress:
                    progress("rendering", done, len(files))
                done += 1
                result.diagnostics.extend(diagnostics)
                failed = failed or _any_error(diagnostics)
                if out is None:
                    continue
                result.shares.append((out.file, out.identity))
                result.planned += 1
                if not failed:
                    consume(out._replace(files={rel: shared[data] if data.__class__ is int else data
                                                for rel, data in out.files.items()}))
    finally:
        _JOB = None
    if _claimed_twice([identity for _, identity in result.shares]):
        return None
    _finish(result)
    return result


def _claimed_twice(identities: list[WiringIdentity]) -> bool:
    """Two models with one name in one namespace, or rendered into one folder: run_files tells
    which, with positions."""
    return len({(i.name, i.namespace) for i in identities}) != len(identities) or \
        len({(i.project, i.name) for i in identities}) != len(identities)


def _work(chunk: list[ModelFile]) -> list[tuple[list[Diagnostic], ModelOut | None]]:
    """In a worker: check, plan and render a chunk of models. A file every chart shares goes back
    as its index in render.shared_files(), not its bytes."""
    from . import plan as planning
    from .render import shared_files

    platform, render = _JOB
    index = {id(data): at for at, data in enumerate(shared_files())}
    outcome = []
    for model_file in chunk:
        problems, values, ident, source = _check_model(model_file, platform)
        if values is None or _any_error(problems):
            outcome.append((problems, None))
            continue
        p = planning.plan(values, platform, ident, model_file.relative, source.display)
        files = {rel: index.get(id(data), data) for rel, data in render(p).items()}
        outcome.append((problems, ModelOut(p.source, p.file, planning.wiring_identity(p), files, problems)))
    return outcome


def shared_problems(shares: list[tuple[str, WiringIdentity]]) -> list[Diagnostic]:
    """What models get wrong together: one network with two owners, a tenant's shared token quota
    declared twice differently, more Model Armor chains than GKE allows. shares: (file, identity)."""
    identities = [identity for _, identity in shares]
    files = [file for file, _ in shares]
    return _shared_network_problems(files, identities) + _shared_quota_problems(files, identities) + \
        _model_armor_problems(files, identities)


def _shared_network_problems(files: list[str], identities: list[WiringIdentity]) -> list[Diagnostic]:
    """A NetworkAttachmentDefinition can belong to one chart only: Helm refuses a second owner."""
    owners: dict[tuple[str, str], str] = {}
    problems = []
    for file, identity in zip(files, identities):
        for index, name in identity.networks or ():
            key = (identity.namespace, name)
            if key in owners:
                problems.append(Diagnostic(
                    file, 0, 0, "network-owned-twice",
                    f"network {name} in namespace {identity.namespace} is already rendered by {owners[key]}",
                    "let one model own it and reference it from the others with type: existing",
                    f"rdma.networks.{index}.name"))
            owners.setdefault(key, file)
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


def _shared_quota_problems(files: list[str], identities: list[WiringIdentity]) -> list[Diagnostic]:
    """Models sharing their tenant's token quota must agree on it: the rate limit service holds one
    limit per tenant scope, and silently picking one model's numbers would change the others'."""
    return [Diagnostic(
        files[index], 0, 0, "token-quota-conflict",
        f"tenant {tenant}'s shared token quota is declared differently in {files[first]}",
        "give every model sharing the tenant's quota the same limits (or set them once in the "
        "platform file's tokenLimit defaults)", "tokenLimit")
        for index, tenant, first in _quota_disagreements([i.tokens for i in identities])]


def _armor_chains(screened) -> list[tuple[str, str]]:
    """The chains (provider, screen) of the platform's one traffic extension, in their order.
    screened: plan.model_armor of each model, or None."""
    return sorted({armor[:2] for armor in screened if armor})


def _armor_overflow(screened) -> list[int]:
    """Indexes of the models screened by Model Armor whose chain would be past GKE's limit of
    chains in the platform's one traffic extension."""
    allowed = set(_armor_chains(screened)[:MODEL_ARMOR_CHAINS])
    return [index for index, armor in enumerate(screened) if armor and armor[:2] not in allowed]


def _model_armor_problems(files: list[str], identities: list[WiringIdentity]) -> list[Diagnostic]:
    """GKE attaches one traffic extension to a Gateway, with at most five chains: one for each Model
    Armor provider and what it screens (prompts, responses, both)."""
    screened = [i.armor for i in identities]
    chains = _armor_chains(screened)
    return [Diagnostic(
        files[index], 0, 0, "model-armor-chains",
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


CHUNK = 32  # models whose cache entries are looked up (and held) at once


class Sink:
    """Where rendered files go, a model's at a time: a dict in memory (this class), or the output
    folder itself (output.TreeWriter), so a run's memory follows one model, not the tree."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add(self, files: dict[str, bytes]) -> None:
        self.files.update(files)

    def discard(self) -> None:
        self.files.clear()


@dataclass
class Rendered:
    files: dict[str, bytes]  # empty when they went to another sink
    diagnostics: list[Diagnostic]
    models: int
    cached: int = 0
    shares: list = field(default_factory=list)  # (file, WiringIdentity) of each model rendered

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def render_all(inputs: list[Path], platform_file: Path | None = None, use_cache: bool = True,
               progress: Progress | None = None, jobs: int | None = None) -> Rendered:
    """Every output file for the inputs, in memory (see render_into)."""
    sink = Sink()
    result = render_into(sink, inputs, platform_file, use_cache, progress, jobs)
    result.files = sink.files
    return result


def render_into(sink, inputs: list[Path], platform_file: Path | None = None, use_cache: bool = True,
                progress: Progress | None = None, jobs: int | None = None,
                skip: frozenset[str] = frozenset()) -> Rendered:
    """Every output file for the inputs, handed to sink.add() a model at a time; on an error,
    sink.discard() is called and the Rendered carries the diagnostics. Models to render are
    rendered by `jobs` worker processes (default: MODELPLAT_JOBS or the CPU count) when many.
    `skip`: model files (as diagnostics name them) left out, as if they were not there.

    A model is re-rendered only when its values file, its place in the tree, the platform file
    or modelplat itself changed; the result is byte-identical to an uncached render.
    """
    # The render modules (and pydantic behind them) are imported only when something must be
    # rendered: a run served wholly from the cache never pays for them.
    jobs = jobs or jobs_default()
    if not use_cache:
        return _render_uncached(sink, inputs, platform_file, progress, jobs, skip)

    from .cache import RenderCache

    platform_path = find_platform(inputs, platform_file)
    try:
        platform_bytes = platform_path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {display(platform_path)}: {exc.strerror}") from None
    cache = RenderCache(platform_bytes)
    model_files, problems = discover(inputs)
    model_files = [m for m in model_files if m.shown not in skip]
    if problems or not model_files:
        return _render_uncached(sink, inputs, platform_file, progress, jobs, skip)
    shares: list[tuple[str, WiringIdentity]] = []  # (file, identity): see plan.wiring_identity
    warnings: list[Diagnostic] = []  # the cached models' own, replayed under today's file names
    misses: list[tuple[ModelFile, str]] = []
    for at in range(0, len(model_files), CHUNK):
        if progress:
            progress("reading", at, len(model_files))
        keys: list[tuple[ModelFile, str]] = []
        for model_file in model_files[at:at + CHUNK]:
            try:
                data = model_file.path.read_bytes()
            except OSError:
                keys.append((model_file, ""))  # the loader reports it, with its position
                continue
            folder = "" if model_file.path.parent == model_file.root else model_file.path.parent.name
            keys.append((model_file, cache.key("model", model_file.relative, folder, data)))
        found = cache.get_many([key for _, key in keys if key])
        for model_file, key in keys:
            entry = found.pop(key, None)
            if entry is None:
                misses.append((model_file, key))
                continue
            sink.add(entry["files"])
            shown = model_file.shown
            shares.append((shown, WiringIdentity.from_json(entry["identity"])))
            warnings += [Diagnostic(shown, **w) for w in entry["warnings"]]
    platform = None
    if misses:
        from functools import partial

        from . import render
        from .render import render_model, shared_files

        # The chart templates are the same for every model and every run of this code: an
        # earlier run's are taken from the cache, and jinja is not even imported.
        templates_key = cache.key("chart-templates")
        templates = cache.get(templates_key)
        if templates is not None:
            render.preset(templates["files"])
        prebuilt.use(cache)  # the validators' core schemas an earlier run built
        platform = load_platform(platform_path, cache)
        keys = {m.relative: key for m, key in misses}
        store = cache.transaction(shared_files())
        if templates is None:
            cache.put_many([(templates_key, None, render.template_files())], shared_files())

        def consume(out: ModelOut) -> None:
            sink.add(out.files)
            if keys.get(out.source):
                store.put(keys[out.source], out.identity, out.files,
                          [{k: v for k, v in asdict(d).items() if k != "file"} for d in out.own])

        with store:
            result = run_files([m for m, _ in misses], [], inputs, platform, platform_path, progress,
                               partial(render_model, platform=platform), consume, jobs)
            prebuilt.keep()
            if result.errors:
                sink.discard()
                return Rendered({}, result.diagnostics, len(model_files))
            # A warning that names no model's file (one about the platform or the tree) cannot be
            # replayed with one model: then nothing of this run is kept.
            models = {file for file, _ in result.shares}
            store.keep = all(d.file in models for d in result.diagnostics)
        warnings += result.diagnostics  # warnings only: an error returned above
        shares += result.shares
    identities = [identity for _, identity in shares]
    if _claimed_twice(identities) or shared_problems(shares):
        sink.discard()
        return _render_uncached(sink, inputs, platform_file, skip=skip)  # positioned duplicate errors
    wiring_key = cache.key("wiring", json.dumps(sorted(identities)))
    wiring = cache.get(wiring_key)
    if wiring is None:
        from .render import render_wiring

        platform = platform or load_platform(platform_path, cache)
        wiring_files = render_wiring(identities, platform)
        cache.put(wiring_key, None, wiring_files)
    else:
        wiring_files = wiring["files"]
    sink.add(wiring_files)
    return Rendered({}, sorted(warnings), len(model_files), len(model_files) - len(misses), shares)


def _render_uncached(sink, inputs: list[Path], platform_file: Path | None, progress: Progress | None = None,
                     jobs: int = 1, skip: frozenset[str] = frozenset()) -> Rendered:
    from functools import partial

    from .render import render_model, render_wiring

    platform_path = find_platform(inputs, platform_file)
    platform = load_platform(platform_path)
    files, problems = discover(inputs)
    files = [m for m in files if m.shown not in skip]
    result = run_files(files, problems, inputs, platform, platform_path, progress,
                       partial(render_model, platform=platform), lambda out: sink.add(out.files), jobs)
    if result.errors:
        sink.discard()
        return Rendered({}, result.diagnostics, result.planned)
    sink.add(render_wiring([identity for _, identity in result.shares], platform))
    return Rendered({}, result.diagnostics, result.planned, shares=result.shares)
