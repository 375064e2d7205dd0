#!/usr/bin/env python3
"""Benchmark modelplat as users run it (whole processes) and print a table of figures.

Generates N model files from the bundled examples (names, projects and features varied), then
times: a cold render of one full-featured model (median of 5), a render of N models (with its CPU
time and the file system's cost of creating a file just before it), a no-op re-render of the same N
(and how many files it wrote), `lint --no-tools` of N, and peak RSS.
Figures are printed, never asserted: timing tests flake, a table in a PR does not.

Usage: scripts/bench.py [--models 1000] [--modelplat PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"cold render, 1 model": 0.25, "cold render, 1 model, empty cache": 0.25, "render N models": 10.0,
           "no-op re-render N": 2.0, "lint --no-tools N": 5.0}


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


LAST_CPU = {"user": 0.0, "sys": 0.0}  # CPU seconds of the last run()'s child


def run(args: list[str], cwd: Path, cache: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB of the child, stdout. `cache` is the render cache it uses."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage.ru_maxrss
    env = dict(os.environ, MODELPLAT_CACHE_DIR=str(cache))
    # Users' installs carry compiled bytecode (pip writes it); a shell that forbids writing it
    # (PYTHONDONTWRITEBYTECODE, set in some CI images) would time compiling modelplat instead.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU.update(user=after.ru_utime - usage.ru_utime, sys=after.ru_stime - usage.ru_stime)
    peak = after.ru_maxrss
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    return elapsed, max(peak, before) // 1024, proc.stdout


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--modelplat", default=shutil.which("modelplat") or str(Path(sys.executable).parent / "modelplat"))
    parser.add_argument("--tool-models", type=int, default=100,
                        help="models for the real-tool rows (helm/kubeconform/helm-unittest cost ~0.3 s a chart)")
    args = parser.parse_args()
    exe = os.path.abspath(args.modelplat)
    rows: list[tuple[str, str, str]] = []
    peak_mb = 0
    with tempfile.TemporaryDirectory(prefix="modelplat-bench-") as tmp:
        work = Path(tmp)
        one = work / "one"
        (one / "llm").mkdir(parents=True)
        shutil.copy(REPO / "examples" / "platform.yaml", one / "platform.yaml")
        shutil.copy(REPO / "examples" / "llm" / "qwen-chat.yaml", one / "llm" / "qwen-chat.yaml")
        # Each process is new (cold); "empty cache" runs also start without a render cache, the
        # others reuse the cache the previous run left (as a second `modelplat render` would).
        for label, fresh_cache in (("cold render, 1 model, empty cache", True), ("cold render, 1 model", False)):
            times = []
            for i in range(6):  # the first run warms the OS page cache and .pyc files; not counted
                cache = work / (f"cache-one-{label[-5:]}-{i}" if fresh_cache else "cache-one")
                elapsed, peak, _ = run([exe, "render", str(one), "--out", str(work / f"one-out-{i}")], work, cache)
                peak_mb = max(peak_mb, peak)
                if i:
                    times.append(elapsed)
            note = "new process, no render cache" if fresh_cache else "new process, render cache from the last run"
            rows.append((label, f"{statistics.median(times):.3f} s", f"median of {len(times)}; {note}"))
        # The everyday case: the owner edited the model, so its render is a cache miss, but
        # modelplat has run on this machine before (compiled templates are kept).
        values = one / "llm" / "qwen-chat.yaml"
        original = values.read_text()
        times = []
        for i in range(6):
            values.write_text(original + f"\n# edit {i}\n")
            elapsed, peak, _ = run([exe, "render", str(one), "--out", str(work / "one-edit-out")], work,
                                   work / "cache-one")
            peak_mb = max(peak_mb, peak)
            if i:
                times.append(elapsed)
        values.write_text(original)
        rows.append(("cold render, 1 edited model", f"{statistics.median(times):.3f} s",
                     f"median of {len(times)}; new process, its render a cache miss, compiled templates kept"))

        many = work / "many"
        many.mkdir()
        generate(many, args.models)
        out = work / "charts-out"
        cache = work / "cache-many"
        create_ms = create_cost(work / "create-probe")
        elapsed, peak, _ = run([exe, "render", str(many), "--out", str(out)], work, cache)
        peak_mb = max(peak_mb, peak)
        files = sum(1 for p in out.rglob("*") if p.is_file())
        rows.append(("render N models", f"{elapsed:.2f} s",
                     f"{args.models} models, {files} files, empty cache; CPU user {LAST_CPU['user']:.2f} s, "
                     f"system {LAST_CPU['sys']:.2f} s"))
        rows.append(("(file system: create 1 file)", f"{create_ms:.2f} ms",
                     "measured just before the render; see docs/performance.md"))

        elapsed, peak, stdout = run([exe, "render", str(many), "--out", str(out), "--format", "json"], work, cache)
        peak_mb = max(peak_mb, peak)
        written = json.loads(stdout)["written"]
        rows.append(("no-op re-render N", f"{elapsed:.2f} s", f"{written} files written"))

        elapsed, peak, stdout = run([exe, "render", str(many), "--out", str(out), "--format", "json", "--no-cache"],
                                    work, cache)
        peak_mb = max(peak_mb, peak)
        written = json.loads(stdout)["written"]
        rows.append(("no-op re-render N, --no-cache", f"{elapsed:.2f} s", f"{written} files written; everything re-rendered"))

        elapsed, peak, _ = run([exe, "lint", str(many), "--no-tools", "--format", "json"], work, cache)
        peak_mb = max(peak_mb, peak)
        rows.append(("lint --no-tools N", f"{elapsed:.2f} s", "schema + semantic rules"))
        tools_bin = Path(os.environ.get("MODELPLAT_TOOLS_DIR") or Path.home() / ".cache/modelplat-tools/bin")
        helm = shutil.which("helm") or (str(tools_bin / "helm") if (tools_bin / "helm").exists() else None)
        if helm and args.tool_models:
            some = work / "some"
            some.mkdir()
            generate(some, args.tool_models)
            env_path = f"{tools_bin}:{os.environ.get('PATH', '')}"
            os.environ["PATH"] = env_path
            elapsed, peak, _ = run([exe, "lint", str(some), "--require-tools", "--format", "json"], work, cache)
            peak_mb = max(peak_mb, peak)
            rows.append(("lint with real tools, M models", f"{elapsed:.2f} s",
                         f"M={args.tool_models}: helm lint+template, helm-unittest per chart on {os.cpu_count()} cores, one kubeconform"))
            some_out = work / "some-out"
            render_time, _, _ = run([exe, "render", str(some), "--out", str(some_out), "--no-cache"], work, cache)
            start = time.perf_counter()
            for release in sorted(some_out.glob("*/*/helmrelease.yaml")):
                if release.parent.parent.name.startswith("_"):
                    continue  # the platform's releases (_platform/) have no chart here
                chart = release.parent / "chart"
                subprocess.run([helm, "template", release.parent.name, str(chart)], capture_output=True, check=True)
            helm_time = time.perf_counter() - start
            rows.append(("helm template of the same M charts", f"{helm_time:.2f} s",
                         f"one process a chart, sequential; modelplat rendered them in {render_time:.2f} s "
                         f"(ratio {helm_time / render_time:.1f}x)"))
    rows.append(("peak RSS", f"{peak_mb} MB", "largest of the runs above"))

    print(f"modelplat benchmark: N={args.models}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        target = TARGETS.get(name)
        mark = ""
        if target is not None:
            mark = f"(target <= {target:g} s)"
        elif name == "peak RSS":
            mark = "(target <= 150 MB)"
        print(f"  {name:<{width}}  {value:>10}  {mark:<20} {note}")


if __name__ == "__main__":
    main()
