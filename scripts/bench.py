#!/usr/bin/env python3
"""Benchmark modelplat as users run it (whole processes) and print a table of figures.

Generates N model files from the bundled examples (names, projects and features varied), then
times: a cold render of one full-featured model (median of 5), a render of N models (with its CPU
time and the file system's cost of creating a file just before it), a no-op re-render of the same N
(and how many files it wrote), `lint --no-tools` of N, and peak RSS; with --tool-models, real-tool
lint of M models (nothing cached, then one edited) and, for the first M, each tool's share of
a `lint --no-cache` (every tool behind a shim that times it).
Figures are printed, never asserted: timing tests flake, a table in a PR does not.

Usage: scripts/bench.py [--models 100,1000,10000] [--tool-models 20,100] [--modelplat PATH]

Each row is printed for every N side by side with its growth (the exponent k of time ~ N^k
between the two largest N), with `helm template` of the same charts (as many at a
time as there are CPUs, as modelplat renders) beside modelplat's own rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"cold render, 1 model": 0.25, "cold render, 1 model, empty cache": 0.25,
           "cold render, 1 edited model": 0.25}


def generate(root: Path, count: int) -> None:
    """N models: the examples cycled, each with its own name and one of 20 projects."""
    examples = sorted((REPO / "examples").rglob("*.yaml"))
    models = [p for p in examples if p.name != "platform.yaml"]
    shutil.copy(REPO / "examples" / "platform.yaml", root / "platform.yaml")
    for i in range(count):
        source = models[i % len(models)]
        project = root / f"team-{i % 20:02d}"
        project.mkdir(exist_ok=True)
        text = source.read_text().replace("# yaml-language-server", "# was")
        # One owner per RDMA network and namespace: every generated model gets its own network.
        text = text.replace("name: kv-transfer", f"name: kv-{i:05d}")
        text += f"\nreplicaCount: {1 + i % 3}\n" if "replicaCount" not in text else ""
        (project / f"{source.stem}-{i:05d}.yaml").write_text(text)


LAST_CPU = {"user": 0.0, "sys": 0.0}  # CPU seconds of the last run()'s child and its workers
LAST_TREE_MB = [0, 0, 0]  # the last run()'s process tree: largest summed RSS, largest process, summed PSS
LAST_OWN_MB = [0]  # the last run()'s own peak RSS (VmHWM of modelplat itself, without its tools or workers)


def _tree_rss_kb(pid: int) -> tuple[int, int, int]:
    """(sum of RSS, largest RSS, sum of PSS) of a process and its descendants, in KB (Linux /proc).
    PSS splits a page the forked workers share with their parent between them: the tree's own
    memory, where summed RSS counts a shared page once per process."""
    total, largest, pss, todo = 0, 0, 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                rss = next((int(line.split()[1]) for line in handle if line.startswith("VmRSS:")), 0)
            total, largest = total + rss, max(largest, rss)
            with open(f"/proc/{current}/smaps_rollup") as handle:
                pss += next((int(line.split()[1]) for line in handle if line.startswith("Pss:")), 0)
            with open(f"/proc/{current}/task/{current}/children") as handle:
                todo += [int(child) for child in handle.read().split()]
        except (OSError, ValueError):
            continue
    return total, largest, pss


def run(args: list[str], cwd: Path, cache: Path, env_extra: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB of the largest process, stdout. `cache` is the render cache it
    uses. The process tree's summed RSS, largest RSS and summed PSS (sampled every 50 ms) are left
    in LAST_TREE_MB."""
    import threading

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage.ru_maxrss
    env = dict(os.environ, MODELPLAT_CACHE_DIR=str(cache), **(env_extra or {}))
    # Users' installs carry compiled bytecode (pip writes it); a shell that forbids writing it
    # (PYTHONDONTWRITEBYTECODE, set in some CI images) would time compiling modelplat instead.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The kernel's write-back of what the previous step wrote (a render writes ~1.5 GB at 10,000
    # models) would otherwise be timed as this step's system time.
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    tree = [0, 0, 0]
    own = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            figures = _tree_rss_kb(proc.pid)
            tree[:] = [max(old, new) for old, new in zip(tree, figures)]
            try:
                with open(f"/proc/{proc.pid}/status") as handle:
                    own[0] = max(own[0], next((int(line.split()[1]) for line in handle
                                               if line.startswith("VmHWM:")), 0))
            except (OSError, ValueError):
                continue

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU.update(user=after.ru_utime - usage.ru_utime, sys=after.ru_stime - usage.ru_stime)
    LAST_TREE_MB[:] = [tree[0] // 1024, tree[1] // 1024, tree[2] // 1024]
    LAST_OWN_MB[0] = own[0] // 1024
    peak = after.ru_maxrss
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{stdout}\n{stderr}")
    return elapsed, max(peak, before) // 1024, stdout


def _db_mb(path: Path) -> float:
    """A cache database's size on disk with its write-ahead log, in MB (the caches are trimmed
    of what goes unused for days, modelplat/trim.py; this is what one run leaves)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()) / 1e6


def create_cost(folder: Path, count: int = 2000) -> float:
    """Milliseconds to create one small file here, now. On this project's CI VMs (ext4 without a
    journal) it swings from ~0.08 ms to over 1 ms for minutes after many files were deleted (the
    kernel then skips recently freed inodes one by one), so the render row is read beside it."""
    folder.mkdir()
    start = time.perf_counter()
    for i in range(count):
        with open(folder / f"f{i}", "wb") as handle:
            handle.write(b"x" * 2048)
    elapsed = time.perf_counter() - start
    return elapsed / count * 1000


def cold_rows(exe: str, work: Path) -> list[tuple[str, str, str]]:
    """One full-featured model, a new process each time (median of 5 after a warm-up run)."""
    rows = []
    one = work / "one"
    (one / "llm").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "platform.yaml", one / "platform.yaml")
    shutil.copy(REPO / "examples" / "llm" / "qwen-chat.yaml", one / "llm" / "qwen-chat.yaml")
    # "empty cache" runs start without a render cache, the others reuse the cache the previous
    # run left (as a second `modelplat render` would).
    for label, fresh_cache in (("cold render, 1 model, empty cache", True), ("cold render, 1 model", False)):
        times = []
        for i in range(6):  # the first run warms the OS page cache and .pyc files; not counted
            cache = work / (f"cache-one-{label[-5:]}-{i}" if fresh_cache else "cache-one")
            elapsed, _, _ = run([exe, "render", str(one), "--out", str(work / f"one-out-{i}")], work, cache)
            if i:
                times.append(elapsed)
        note = "new process, no render cache" if fresh_cache else "new process, render cache from the last run"
        rows.append((label, f"{statistics.median(times):.3f} s", f"median of {len(times)}; {note}"))
    # The everyday case: the owner edited the model, so its render is a cache miss, but modelplat
    # has run on this machine before (compiled templates are kept).
    values = one / "llm" / "qwen-chat.yaml"
    original = values.read_text()
    for label, command in (("cold render, 1 edited model", "render"), ("lint --no-tools, 1 edited model", "lint")):
        times = []
        for i in range(6):
            # A real edit (a value the chart carries), not a comment: a cache keyed on what the
            # file means rather than its bytes must not make this row a cache hit.
            edited = original.replace("\ndescription: ", f"\ndescription: {command} edit {i} - ", 1)
            assert edited != original, "the example has no top-level description to edit"
            values.write_text(edited)
            args = [exe, "render", str(one), "--out", str(work / "one-edit-out")] if command == "render" else \
                [exe, "lint", str(one), "--no-tools"]
            elapsed, _, _ = run(args, work, work / "cache-one")
            if i:
                times.append(elapsed)
        values.write_text(original)
        rows.append((label, f"{statistics.median(times):.3f} s",
                     f"median of {len(times)}; new process, a cache miss, compiled templates kept"))
    return rows


# Each real tool behind a bash shim that appends "<tool> <first argument> <wall> <user> <sys>" to a log.
_SHIM = """#!/usr/bin/env bash
TIMEFORMAT="{tool} ${{1:-}} %R %U %S"
{{ time "{real}" "$@" 2>&3 ; }} 3>&2 2>>"{log}"
"""


def tool_shares(exe: str, folder: Path, work: Path, tools_bin: Path) -> list[tuple[str, int, float, float]]:
    """`lint --no-cache` of folder with every tool behind a timing shim: (tool, processes, wall
    seconds, CPU seconds) per tool, the largest CPU first. helm's subcommands are apart."""
    shims, log = work / "shims", work / "tool-times.log"
    shims.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    for tool in ("helm", "helm-unittest", "kubeconform", "istioctl", "promtool", "kustomize"):
        real = shutil.which(tool) or str(tools_bin / tool)
        (shims / tool).write_text(_SHIM.format(tool=tool, real=real, log=log))
        (shims / tool).chmod(0o755)
    run([exe, "lint", str(folder), "--require-tools", "--no-cache", "--format", "json"], work, work / "share-cache",
        {"PATH": f"{shims}:{os.environ['PATH']}"})
    totals: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        tool, first, wall, user, system = line.rsplit(" ", 4)
        if first in ("version", "--version", "-v"):  # lint asks each tool its version
            continue
        name = f"helm {first}" if tool == "helm" else tool
        entry = totals.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += float(wall)
        entry[2] += float(user) + float(system)
    return sorted(((name, int(n), wall, cpu) for name, (n, wall, cpu) in totals.items()), key=lambda r: -r[3])


def helm_template(helm: str, out: Path, limit: int | None = None, jobs: int = os.cpu_count() or 1) -> tuple[float, int]:
    """Seconds for `helm template` of every model chart under out (or the first `limit`), `jobs`
    at a time as modelplat renders; and how many charts that was."""
    from concurrent.futures import ThreadPoolExecutor

    charts = [r.parent / "chart" for r in sorted(out.glob("*/*/helmrelease.yaml"))
              if not r.parent.parent.name.startswith("_")]  # the platform's releases have no chart here
    charts = charts[:limit] if limit else charts

    def one(chart: Path) -> None:
        subprocess.run([helm, "template", chart.parent.name, str(chart)], capture_output=True, check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, charts))
    return time.perf_counter() - start, len(charts)


def growth(figures: dict[int, float]) -> str:
    """How a row grows with N: the exponent k of figure ~ N^k between the two largest N (at the
    smallest, a process's start-up, ~0.5 s, hides the models' share)."""
    import math

    sizes = sorted(n for n, v in figures.items() if v and v > 0)
    if len(sizes) < 2:
        return ""
    k = math.log(figures[sizes[-1]] / figures[sizes[-2]]) / math.log(sizes[-1] / sizes[-2])
    kind = "constant" if k < 0.2 else "sub-linear" if k < 0.8 else "linear" if k < 1.2 else "super-linear"
    return f"{kind} (N^{k:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1000", help="comma-separated N, e.g. 100,1000,10000")
    parser.add_argument("--modelplat", default=shutil.which("modelplat") or str(Path(sys.executable).parent / "modelplat"))
    parser.add_argument("--tool-models", default="20",
                        help="comma-separated M for the real-tool rows (~0.4 s a chart on 2 CPUs); 0: none")
    parser.add_argument("--helm-max", type=int, default=1000,
                        help="helm template at most this many charts of an N; beyond, a sample scaled up")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the generated models and output (default: a temporary folder)")
    args = parser.parse_args()
    exe = os.path.abspath(args.modelplat)
    sizes = [int(n) for n in args.models.split(",") if n]
    tool_sizes = [int(n) for n in args.tool_models.split(",") if n and int(n)]
    tools_bin = Path(os.environ.get("MODELPLAT_TOOLS_DIR") or Path.home() / ".cache/modelplat-tools/bin")
    helm = shutil.which("helm") or (str(tools_bin / "helm") if (tools_bin / "helm").exists() else None)
    os.environ["PATH"] = f"{tools_bin}:{os.environ.get('PATH', '')}"
    table: dict[str, dict[int, tuple[float, str]]] = {}  # row → N → (figure, shown)

    def put(row: str, n: int, value: float, shown: str) -> None:
        table.setdefault(row, {})[n] = (value, shown)
        print(f"{row}, N={n}: {shown}", file=sys.stderr, flush=True)  # kept if a later run fails

    with tempfile.TemporaryDirectory(prefix="modelplat-bench-", dir=args.work) as tmp:
        work = Path(tmp)
        single = cold_rows(exe, work)
        for n in sizes:
            many = work / f"many-{n}"
            many.mkdir()
            generate(many, n)
            out = work / f"charts-out-{n}"
            cache = work / f"cache-{n}"
            create_ms = create_cost(work / f"create-probe-{n}")
            elapsed, _, _ = run([exe, "render", str(many), "--out", str(out)], work, cache)
            files = sum(len(names) for _, _, names in os.walk(out))
            put("render N (empty cache)", n, elapsed,
                f"{elapsed:.2f} s ({files} files; CPU {LAST_CPU['user']:.0f}+{LAST_CPU['sys']:.0f} s; create {create_ms:.2f} ms)")
            put("peak RSS, largest process", n, LAST_TREE_MB[1], f"{LAST_TREE_MB[1]} MB")
            put("peak RSS, whole process tree", n, LAST_TREE_MB[0], f"{LAST_TREE_MB[0]} MB")
            put("peak PSS, whole process tree", n, LAST_TREE_MB[2], f"{LAST_TREE_MB[2]} MB")
            elapsed, _, stdout = run([exe, "render", str(many), "--out", str(out), "--format", "json"], work, cache)
            put("no-op re-render N", n, elapsed, f"{elapsed:.2f} s, {json.loads(stdout)['written']} written")
            put("peak RSS, no-op", n, LAST_TREE_MB[0], f"{LAST_TREE_MB[0]} MB")
            elapsed, _, _ = run([exe, "lint", str(many), "--no-tools", "--format", "json"], work, cache)
            put("lint --no-tools N", n, elapsed, f"{elapsed:.2f} s")
            put("peak RSS, lint --no-tools", n, LAST_TREE_MB[0], f"{LAST_TREE_MB[0]} MB")
            size = _db_mb(cache / "render.sqlite3")
            put("render cache on disk (one modelplat version)", n, size, f"{size:.0f} MB")
            if helm:
                limit = args.helm_max if n > args.helm_max else None
                seconds, count = helm_template(helm, out, limit)
                scaled = seconds * (n / count)
                put("helm template of the same N charts", n, scaled,
                    f"{scaled:.1f} s" + (f" (from {count})" if limit else ""))
            # Kept until the end: for ~30 s after many files are deleted, ext4 without a journal
            # skips the freed inodes one by one when creating files, and the next N's render
            # would time that (see create_cost).
        for m in tool_sizes if helm else []:
            some = work / f"some-{m}"
            some.mkdir()
            generate(some, m)
            verdicts = work / f"verdicts-{m}"  # lint's verdict cache lives in the cache folder
            elapsed, _, _ = run([exe, "lint", str(some), "--require-tools", "--format", "json"], work, verdicts)
            put("lint, real tools, nothing cached", m, elapsed,
                f"{elapsed:.1f} s (CPU {LAST_CPU['user'] + LAST_CPU['sys']:.0f} s)")
            put("peak RSS of modelplat itself, real tools, nothing cached", m, LAST_OWN_MB[0], f"{LAST_OWN_MB[0]} MB")
            edited = sorted(some.glob("*/*.yaml"))[0]
            text = edited.read_text()  # every example sets replicaCount; 1 or 2 is within any bounds
            now = re.search(r"(?m)^replicaCount: (\d+)", text)
            edited.write_text(text[:now.start(1)] + ("2" if now.group(1) == "1" else "1") + text[now.end(1):])
            elapsed, _, _ = run([exe, "lint", str(some), "--require-tools", "--format", "json"], work, verdicts)
            put("lint, real tools, 1 model edited", m, elapsed, f"{elapsed:.1f} s")
            put("peak RSS of modelplat itself, real tools, 1 model edited", m, LAST_OWN_MB[0], f"{LAST_OWN_MB[0]} MB")
            size = _db_mb(verdicts / "lint.sqlite3")
            put("verdict cache on disk", m, size, f"{size:.0f} MB")
            if m == tool_sizes[0]:
                shares = tool_shares(exe, some, work, tools_bin)
                total = sum(cpu for *_, cpu in shares) or 1
                for name, processes, wall, cpu in shares:
                    put(f"tool share: {name}", m, cpu, f"{cpu:.1f} s CPU, {100 * cpu / total:.0f}% "
                        f"({processes} processes, {wall:.1f} s wall)")
            some_out = work / f"some-out-{m}"
            render_time, _, _ = run([exe, "render", str(some), "--out", str(some_out), "--no-cache"], work, verdicts)
            seconds, _ = helm_template(helm, some_out)
            put("helm template of the same M charts", m, seconds, f"{seconds:.1f} s (modelplat: {render_time:.1f} s)")

    print(f"modelplat benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    width = max(len(r[0]) for r in single)
    for name, value, note in single:
        mark = "(target <= 0.25 s)" if name in TARGETS else "(target <= 0.3 s)" if name.startswith("lint") else ""
        print(f"  {name:<{width}}  {value:>9}  {mark:<19} {note}")
    columns = sorted({n for row in table.values() for n in row})
    print()  # a Markdown table, as docs/performance.md holds it
    print("| row | " + " | ".join(f"N={n:,}" for n in columns) + " | growth |")
    print("| --- | " + " | ".join("---" for _ in columns) + " | --- |")
    for row, figures in table.items():
        cells = " | ".join(figures[n][1] if n in figures else "" for n in columns)
        print(f"| {row} | {cells} | {growth({n: v for n, (v, _) in figures.items()})} |")


if __name__ == "__main__":
    main()
