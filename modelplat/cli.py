"""The command line: parses arguments, calls the pipeline, prints, and picks the exit code.

Thin on purpose: no validation or rendering logic here, and heavy modules are imported inside
the command that needs them, so `modelplat --help` and a small render start fast.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Diagnostic, ModelplatError

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Render KServe model services into Helm charts and Flux HelmReleases, and check them with the real tools.",
)


class Format(str, Enum):
    text = "text"
    json = "json"


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (CI logs, pipes): wide enough that tables do not truncate file names.
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _fail(exc: ModelplatError, fmt: Format) -> None:
    """Print a user-facing failure (never a traceback) and exit with its code."""
    if fmt is Format.json:
        print(json.dumps({"ok": False, "error": exc.message, "diagnostics": [d.as_dict() for d in exc.diagnostics]},
                         indent=2))
    else:
        _print_diagnostics(exc.diagnostics)
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(exc.message)}")
    raise typer.Exit(exc.exit_code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    if not diagnostics:
        return
    from rich.text import Text

    console = _console(stderr=True)
    if console.color_system is None:  # CI logs, pipes: the same text, without rich's cost a line
        sys.stderr.write("".join(f"{d.location()}: {d.severity}[{d.code}]: {d.message}\n" +
                                 (f"    hint: {d.hint}\n" if d.hint else "") for d in diagnostics))
        return
    for d in diagnostics:
        # Text objects, not markup: messages quote user input, which may contain [brackets].
        line = Text()
        line.append(d.location(), style="bold")
        line.append(": ")
        line.append(f"{d.severity}[{d.code}]", style="red" if d.severity == "error" else "yellow")
        line.append(f": {d.message}")
        if d.hint:
            line.append("\n    hint: ", style="dim")
            line.append(d.hint)
        console.print(line)


class _progress:
    """A rich progress bar on a terminal when many models are processed; nothing otherwise
    (CI logs and pipes get no control characters)."""

    THRESHOLD = 50

    def __init__(self, fmt: Format):
        self.enabled = fmt is Format.text and sys.stderr.isatty()
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        return self if self.enabled else None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if total < self.THRESHOLD:
            return
        if self.bar is None:
            from rich.progress import Progress

            self.bar = Progress(console=_console(stderr=True), transient=True)
            self.bar.start()
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total)
        self.bar.update(self.tasks[phase], completed=done + 1)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _render_all(inputs: List[Path], platform: Optional[Path], cache: bool, fmt: Format, sink=None,
                jobs: Optional[int] = None):
    """Render (with a progress bar where it helps) into memory, or a model at a time into `sink`;
    bad input raises, nothing is written."""
    from . import pipeline
    from .errors import InvalidInput

    with _progress(fmt) as progress:
        if sink is None:
            result = pipeline.render_all(inputs, platform, use_cache=cache, progress=progress, jobs=jobs)
        else:
            result = pipeline.render_into(sink, inputs, platform, use_cache=cache, progress=progress, jobs=jobs)
    if result.errors:
        raise InvalidInput(f"{len(result.errors)} error(s) in {result.models} file(s); nothing was written",
                           result.diagnostics)
    return result


def _debug() -> bool:
    return os.environ.get("MODELPLAT_DEBUG", "") not in ("", "0")


@app.command()
def render(
    inputs: List[Path] = typer.Argument(..., help="Model values files or folders (searched recursively)."),
    out: Path = typer.Option(Path("charts-out"), "--out", "-o", help="Output folder (owned by modelplat)."),
    platform: Optional[Path] = typer.Option(None, "--platform", "-p", help="Platform settings file (default: platform.yaml beside or above the inputs)."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 with a diff summary when the output is stale."),
    force: bool = typer.Option(False, "--force", help="Take over an output folder that modelplat did not write."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse renders of unchanged models (~/.cache/modelplat)."),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1, envvar="MODELPLAT_JOBS",
        help="Worker processes rendering models, when there are many (default: CPU count)."),
    fmt: Format = typer.Option(Format.text, "--format", help="Output format."),
) -> None:
    """Render every model into a Helm chart plus its Flux HelmRelease, all written at once."""
    from . import output

    listed = fmt is Format.json  # 10,000 models are 320,000 paths: text shows only their counts
    try:
        if check:
            scan = output.TreeScan(out.resolve(), record=True, keep=fmt is not Format.json)
            result = _render_all(inputs, platform, cache, fmt, sink=scan, jobs=jobs)
            scan.removed()
            changes = scan.changes
            if fmt is Format.json:
                print(json.dumps({"ok": not changes.any(), "added": changes.added, "changed": changes.changed,
                                  "removed": changes.removed}, indent=2))
            elif changes.any():
                sys.stdout.write(output.diff(out, scan.kept, changes))
                console = _console(stderr=True)
                console.print(f"[bold red]{_escape(str(out))} is out of date:[/] {len(changes.added)} added, "
                              f"{len(changes.changed)} changed, {len(changes.removed)} removed "
                              f"({result.models} models). Run: modelplat render {' '.join(map(str, inputs))} --out {out}")
            else:
                sys.stderr.write(f"{out} is up to date ({result.models} models).\n")
            raise typer.Exit(EXIT_INVALID if changes.any() else EXIT_OK)
        with output.writing(out, force=force, record=listed) as writer:
            result = _render_all(inputs, platform, cache, fmt, sink=writer, jobs=jobs)
            written = writer.commit()
        _print_diagnostics(result.diagnostics)  # warnings only, at this point
        c = written.changes
        if fmt is Format.json:
            print(json.dumps({"ok": True, "models": result.models, "written": written.written,
                              "added": c.added, "changed": c.changed, "removed": c.removed}, indent=2))
        else:
            sys.stderr.write(
                f"rendered {result.models} model(s) into {out}: {c.count('added')} added, "
                f"{c.count('changed')} changed, {c.count('removed')} removed, {c.unchanged} unchanged\n")
    except ModelplatError as exc:
        _fail(exc, fmt)


LINT_ROWS = 200  # lint's table lists every model up to this many


@app.command()
def lint(
    inputs: List[Path] = typer.Argument(..., help="Model values files or folders (searched recursively)."),
    platform: Optional[Path] = typer.Option(None, "--platform", "-p", help="Platform settings file."),
    tools_: bool = typer.Option(True, "--tools/--no-tools", help="Run the real tools (helm, kubeconform, helm-unittest, istioctl, promtool, kustomize)."),
    require_tools: bool = typer.Option(
        False, "--require-tools", envvar="MODELPLAT_REQUIRE_TOOLS",
        help="Fail when a tool is missing instead of skipping its checks (set this in CI)."),
    schema_location: List[str] = typer.Option(
        [], "--schema-location", help="Extra kubeconform schema location, tried before the bundled ones (repeatable)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Charts checked in parallel (default: CPU count)."),
    fmt: Format = typer.Option(Format.text, "--format", help="Output format."),
    server_dry_run: bool = typer.Option(
        False, "--server-dry-run", help="Also send every rendered object to a cluster with kubectl, dry-run only."),
    kubeconfig: Optional[Path] = typer.Option(
        None, "--kubeconfig", exists=True, dir_okay=False,
        help="Cluster for --server-dry-run (default: kubectl's own, KUBECONFIG or ~/.kube/config)."),
    engines: bool = typer.Option(
        False, "--engines", help="Also deliver the output through a local Flux, KServe and Istio config "
        "generation on loopback, and check what they make of each model (minutes; needs the engines built)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse what an earlier run found of unchanged inputs: renders, the validated platform, a tool's verdict on a chart (~/.cache/modelplat)."),
) -> None:
    """Validate every values file and check every rendered chart with the real tools."""
    from .lint import lint as run_lint

    try:
        report = run_lint(inputs, platform, use_tools=tools_, require_tools=require_tools,
                          schema_locations=schema_location, jobs=jobs, server_dry_run=server_dry_run,
                          kubeconfig=str(kubeconfig) if kubeconfig else None, engines=engines,
                          use_cache=cache)
    except ModelplatError as exc:
        _fail(exc, fmt)
        return
    if fmt is Format.json:  # written as it is encoded: 10,000 models are a 20 MB document
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from rich.table import Table

        _print_diagnostics(report.diagnostics)
        table = Table(title="modelplat lint", show_lines=False)
        table.add_column("values file")
        for check in report.checks:
            table.add_column(check)
        styles = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skipped": "[yellow]skipped[/]"}
        # A row a model up to LINT_ROWS models; beyond, the models with a failure and one row for
        # the rest (rich takes ~3 ms a row: a 10,000-row table took 30 s to print nobody reads).
        failing = [m for m in report.models if any(c.status == "fail" for c in m.checks.values())]
        shown = report.models if len(report.models) <= LINT_ROWS else failing
        for model in shown:
            table.add_row(_escape(model.file), *(styles[model.checks[c].status] if c in model.checks else "" for c in report.checks))
        if len(shown) < len(report.models):
            listed = {id(m) for m in failing}
            rest = [m for m in report.models if id(m) not in listed]
            table.add_row(f"{len(rest)} models without a failure", *(
                "/".join(styles[s] for s in sorted({m.checks[c].status for m in rest if c in m.checks}))
                for c in report.checks))
        console = _console()
        console.print(table)
        for model in report.models:
            for name, check in model.checks.items():
                if check.status == "fail" and name != "schema+rules":
                    console.print(f"[bold red]{_escape(model.file)}: {name} failed[/]\n{_escape(check.detail)}")
        if report.tools:
            console.print("tools: " + ", ".join(f"{k} {v}" for k, v in report.tools.items()))
        if report.missing_tools:
            level = "[bold red]error" if require_tools else "[yellow]warning"
            console.print(f"{level}:[/] not found: {', '.join(report.missing_tools)}; their checks were skipped. "
                          "Install them with `modelplat tools install` (or put them on PATH).")
    if require_tools and report.missing_tools:
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_INVALID)


@app.command()
def schema(
    out: Path = typer.Option(Path("schemas"), "--out", "-o", help="Folder for the JSON Schema files."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the files differ."),
) -> None:
    """Write the JSON Schemas of model values, platform settings and chart values."""
    from . import schemas

    stale = []
    for name, text in schemas.all_texts().items():
        target = out / name
        if target.is_file() and target.read_text() == text:
            continue
        stale.append(name)
        if not check:
            out.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, target)
    console = _console(stderr=True)
    if check:
        console.print(f"stale: {', '.join(stale)}" if stale else "schemas are up to date")
        raise typer.Exit(EXIT_INVALID if stale else EXIT_OK)
    console.print(f"wrote {len(stale)} schema file(s) into {_escape(str(out))}" if stale else "schemas are up to date")


@app.command()
def init(
    target: str = typer.Argument(..., help="<project>/<name>, e.g. fraud/xgb-scorer"),
    gpu: bool = typer.Option(False, "--gpu", help="Start from a GPU model."),
    llm: bool = typer.Option(False, "--llm", help="Start from an LLM served by vLLM (OpenAI protocol; implies a GPU)."),
    models_dir: Path = typer.Option(Path("models"), "--dir", help="Folder holding the <project>/ folders."),
    schema_ref: Optional[str] = typer.Option(None, "--schema", help="$schema reference for the editor (default: a relative path to schemas/model-values.schema.json, found upwards)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented starter values file for a new model."""
    from .starter import StarterError, write_starter

    try:
        path = write_starter(target, models_dir, gpu=gpu, llm=llm, schema_ref=schema_ref, force=force)
    except StarterError as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE)
    _console(stderr=True).print(f"wrote {_escape(str(path))}; edit it, then run: modelplat lint {_escape(str(models_dir))}")


@app.command()
def explain(
    key: str = typer.Argument("", help="Dotted key of the values file, e.g. resources.requestGPU (empty: the top level)."),
    fmt: Format = typer.Option(Format.text, "--format", help="Output format."),
) -> None:
    """Describe a values key: meaning, type, default, allowed values, examples."""
    from .explain import explain as describe, explain_text

    try:
        info = describe(key)
    except ModelplatError as exc:
        _fail(exc, fmt)
        return
    print(json.dumps(info, indent=2, ensure_ascii=False) if fmt is Format.json else explain_text(info))


@app.command()
def diff(
    inputs: List[Path] = typer.Argument(..., help="Model values files or folders (searched recursively)."),
    out: Path = typer.Option(Path("charts-out"), "--out", "-o", help="The committed output folder to compare with."),
    platform: Optional[Path] = typer.Option(None, "--platform", "-p", help="Platform settings file."),
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 1 when there are differences."),
    fmt: Format = typer.Option(Format.text, "--format", help="Output format."),
) -> None:
    """Show what Flux would change: resources added, removed or changed between the committed
    output and a fresh render (nothing is written)."""
    from .diffing import committed_tree, diff_text, resource_diff

    try:
        result = _render_all(inputs, platform, True, fmt)
        entries = resource_diff(committed_tree(out), result.files)
    except ModelplatError as exc:
        _fail(exc, fmt)
        return
    if fmt is Format.json:
        print(json.dumps({"changes": entries}, indent=2, ensure_ascii=False, default=str))
    else:
        sys.stdout.write(diff_text(entries))
    raise typer.Exit(EXIT_INVALID if exit_code and entries else EXIT_OK)


@app.command(name="import")
def import_(
    source: Path = typer.Argument(..., help="KServe InferenceServices and LLMInferenceServices (one or many "
                                            "documents), or a seed-platform HelmRelease (or a bare values file)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Where to write: a values file, or for several InferenceServices a folder "
                                     "(<folder>/<name>.yaml each; default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    fmt: Format = typer.Option(Format.text, "--format", help="Report format (the values files are always YAML)."),
    platform: Optional[Path] = typer.Option(
        None, "--platform", help="Platform settings file, for lint's rules (default: platform.yaml next to or "
                                 "above --output, else the working directory)."),
) -> None:
    """Turn KServe InferenceServices and LLMInferenceServices, or a seed-style HelmRelease, into modelplat values files,
    reporting every field it could not map and every problem lint would refuse."""
    from .errors import InvalidInput
    from .importer import to_yaml, validate_imported
    from .kserve_import import import_file
    from .pipeline import find_platform, load_platform

    notes = []
    try:
        settings = load_platform(find_platform([output.parent if output else Path.cwd()], platform))
    except ModelplatError as exc:
        if platform is not None:  # asked for by name: it must load
            _fail(exc, fmt)
            return
        settings = None
        notes.append("only the schema was checked: no platform.yaml next to or above the output "
                     "(pass --platform FILE to apply lint's rules too)")
    try:
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {source}: {exc}") from None
        results = import_file(text, str(source), settings)
    except ModelplatError as exc:
        _fail(exc, fmt)
        return
    many = len(results) > 1
    if many and output is not None and output.suffix in (".yaml", ".yml"):
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(str(source))} holds {len(results)} "
                                    "InferenceServices: pass a folder to --output, not a file")
        raise typer.Exit(EXIT_USAGE)
    targets = [None if output is None else (output / f"{values.get('name', f'model-{i + 1}')}.yaml" if many else output)
               for i, (values, _) in enumerate(results)]
    existing = [str(t) for t in targets if t is not None and t.exists()]
    if existing and not force:
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(', '.join(existing))} exist"
                                    f"{'s' if len(existing) == 1 else ''} (pass --force to overwrite)")
        raise typer.Exit(EXIT_USAGE)
    report, documents = [], []
    for (values, unmapped), target in zip(results, targets):
        problems = validate_imported(values, settings, target)
        document = to_yaml(values, str(source), unmapped)
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(document)
        else:
            documents.append(document)
        report.append({"name": values.get("name"), "file": str(target) if target else None,
                       "unmapped": unmapped, "problems": problems})
    if documents:
        sys.stdout.write("---\n".join(documents))
    failed = any(r["unmapped"] or r["problems"] for r in report)
    if output is not None:
        project = output if many else output.parent  # its folder names the project
        notes.append(f"render every model of the tree (a render replaces the whole output): modelplat render "
                     f"{project.parent}" + (f" --platform {platform}" if platform else ""))
    if fmt is Format.json:
        body = report[0] | {"notes": notes} if not many else {"models": report, "notes": notes}
        sys.stderr.write(json.dumps(body, indent=2) + "\n")
    else:
        for r in report:
            prefix = f"{r['name']}: " if many else ""
            for line in r["unmapped"]:
                sys.stderr.write(f"{prefix}not imported: {line}\n")
            for line in r["problems"]:
                sys.stderr.write(f"{prefix}needs attention: {line}\n")
        for line in notes:
            sys.stderr.write(f"note: {line}\n")
    # Written either way; non-zero when something needs a person, so scripts notice.
    raise typer.Exit(EXIT_INVALID if failed else EXIT_OK)


tools_app = typer.Typer(no_args_is_help=True, help="The real tools modelplat runs: list them, build them, find them.")
app.add_typer(tools_app, name="tools")


@tools_app.command("list")
def tools_list(fmt: Format = typer.Option(Format.text, "--format", help="Output format.")) -> None:
    """Each tool, its pinned version, what uses it, and the binary lint will run (PATH first,
    then the tool cache)."""
    from .toolbuild import status

    rows = status()
    if fmt is Format.json:
        print(json.dumps({"tools": [r.as_dict() for r in rows]}, indent=2))
        return
    from rich.table import Table

    table = Table("tool", "pinned", "used by", "found", "version")
    for r in rows:
        found = _escape(r.path) if r.path else "[red]missing[/]"
        mark = "" if not r.path or r.pinned_build or not r.pinned else " [yellow](not the pinned build)[/]"
        table.add_row(r.tool, r.pinned or "(distribution)", r.used_by, found + mark, r.version)
    _console().print(table)


@tools_app.command("install")
def tools_install(
    names: List[str] = typer.Argument(None, metavar="[TOOL|GROUP]...", help="Tools or groups (lint, server-dry-run, engines, all); default: lint."),
) -> None:
    """Build the pinned tools from their Go modules into the tool cache (skips what is built)."""
    from . import toolbuild
    from .tools import tools_cache

    try:
        wanted = toolbuild.expand(list(names or []))
    except ValueError as exc:
        sys.stderr.write(f"error: unknown tool or group '{exc}'; tools: {', '.join(toolbuild.TOOLS)}; "
                         f"groups: {', '.join(toolbuild.GROUPS)}\n")
        raise typer.Exit(EXIT_USAGE)
    problems = toolbuild.missing_prerequisites(wanted)
    for problem in problems:
        sys.stderr.write(f"error: {problem}\n")
    if problems:
        raise typer.Exit(EXIT_USAGE)
    status = toolbuild.install(wanted)
    if status != 0:
        sys.stderr.write(f"error: building {', '.join(wanted)} failed (exit {status}); the log above says where\n")
        raise typer.Exit(EXIT_USAGE)
    print(tools_cache() / "bin")  # where the script linked them


@tools_app.command("path")
def tools_path() -> None:
    """Print the folder the built tools are linked in (for PATH; lint finds them there anyway)."""
    from .tools import tools_bin

    print(tools_bin())


cache_app = typer.Typer(no_args_is_help=True, help="modelplat's caches: what they hold, and trimming them.")
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(fmt: Format = typer.Option(Format.text, "--format", help="Output format.")) -> None:
    """The cache folder, and each database in it: size, rows and when it was last trimmed."""
    import time

    from .cache import cache_dir
    from .trim import days, describe

    folder = cache_dir()
    rows = describe(folder)
    if fmt is Format.json:
        print(json.dumps({"folder": str(folder), "trim_days": days(), "databases": rows}, indent=2))
        return
    print(f"{folder} (rows unused for {days():g} days are trimmed once a day; MODELPLAT_CACHE_TRIM_DAYS)")
    for row in rows:
        trimmed = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["trimmed"])) if row["trimmed"] else "never"
        rows_ = "unreadable" if row["rows"] is None else f"{row['rows']} rows"
        print(f"  {Path(row['file']).name}: {row['bytes'] / 1e6:.1f} MB, {rows_}, last trimmed {trimmed}")
    if not rows:
        print("  (empty)")


@cache_app.command("prune")
def cache_prune(
    days_: Optional[float] = typer.Option(None, "--days", min=0, help="Delete what went unused for this many days (default: MODELPLAT_CACHE_TRIM_DAYS, else 5); 0 empties the caches."),
) -> None:
    """Trim the caches now, not at the next daily trim, and shrink their files."""
    from .cache import cache_dir
    from .trim import DEFAULT_DAYS, days, prune

    unused = days_ if days_ is not None else (days() if days() > 0 else DEFAULT_DAYS)
    for row in prune(cache_dir(), unused):
        print(f"{Path(row['file']).name}: {row['deleted']} rows unused for {unused:g} days deleted, "
              f"{row['bytes_before'] / 1e6:.1f} MB -> {row['bytes_after'] / 1e6:.1f} MB")


@app.command()
def version() -> None:
    """Print modelplat's version."""
    print(__version__)


def main() -> None:
    from . import output
    from .errors import Interrupted, handle_interrupts
    from .prebuilt import skip_plugin_loader

    # modelplat uses no pydantic plugins; skipping their discovery saves ~15 ms per command.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    skip_plugin_loader()
    handle_interrupts()
    try:
        app()
    except (Interrupted, KeyboardInterrupt):
        if output.completed:  # the swap had happened: what is on disk is the whole new render
            sys.stderr.write(f"interrupted after {output.completed} was written in full; it holds the new render\n")
            sys.exit(EXIT_OK)
        sys.stderr.write("interrupted: no output was changed (a partial render is never left behind)\n")
        sys.exit(130)
    except Exception:  # a bug: say so plainly; the traceback only with MODELPLAT_DEBUG=1
        if _debug():
            raise
        exc = sys.exc_info()[1]
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n"
                         "This is a bug in modelplat; rerun with MODELPLAT_DEBUG=1 for the traceback.\n")
        sys.exit(3)


if __name__ == "__main__":
    main()
