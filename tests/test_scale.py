"""Rendering many models holds one model's files at a time: memory stops following the count.

Measured with tracemalloc (Python's own allocations, deterministic), never with a clock: the
figures for 10,000 models are scripts/bench.py's to print.
"""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import pytest

from modelplat import output, pipeline

from conftest import EXAMPLES

PER_MODEL_LIMIT = 16 * 1024  # bytes a model may add to the peak; its files alone are ~75 KB


def generate(root, count: int) -> None:
    """`count` models: the examples cycled, each with its own name, over 4 projects."""
    models = sorted(p for p in EXAMPLES.rglob("*.yaml") if p.name != "platform.yaml")
    shutil.copy(EXAMPLES / "platform.yaml", root / "platform.yaml")
    for i in range(count):
        source = models[i % len(models)]
        project = root / f"team-{i % 4}"
        project.mkdir(exist_ok=True)
        text = source.read_text().replace("name: kv-transfer", f"name: kv-{i:04d}")  # one owner a network
        (project / f"{source.stem}-{i:04d}.yaml").write_text(text)


def _string_cache_line() -> int:
    """The line that grows yamlout's cache of emitted strings, bounded (yamlout.STRINGS_MAX) and
    shared by every render of the process: what it holds is not the models' files."""
    from modelplat import yamlout

    lines = Path(yamlout.__file__).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if "_STRINGS[value] = cached" in line)


def peak(root, out, use_cache: bool) -> int:
    from modelplat import yamlout

    tracemalloc.start()
    try:
        with output.writing(out, record=False) as writer:
            # One process: the workers' results in flight (at most 4 chunks a worker) would read as
            # growth between these small counts.
            result = pipeline.render_into(writer, [root], use_cache=use_cache, jobs=1)
            assert not result.errors, [d.format() for d in result.errors]
            writer.commit()
        snapshot = tracemalloc.take_snapshot()
        cache = sum(s.size for s in snapshot.filter_traces(
            [tracemalloc.Filter(True, yamlout.__file__, _string_cache_line())]).statistics("filename"))
        assert cache < 32 << 20
        return tracemalloc.get_traced_memory()[1] - cache
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("use_cache", [False, True], ids=["rendered", "from the cache"])
def test_peak_memory_does_not_follow_the_number_of_models(tmp_path, monkeypatch, use_cache):
    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache"))
    pipeline.render_all([EXAMPLES], use_cache=False)  # imports and compiled templates: not the models'
    figures = {}
    small, large = pipeline.CHUNK + 8, 200  # past the cache's lookup chunk (held at once); 1 MB of noise
    for count in (small, large):
        root = tmp_path / f"models-{count}"
        root.mkdir()
        generate(root, count)
        if use_cache:
            pipeline.render_all([root])  # fills the cache: the measured run is all hits
        figures[count] = peak(root, tmp_path / f"out-{count}", use_cache)
        assert len(list((tmp_path / f"out-{count}").glob("team-*/*/helmrelease.yaml"))) == count
    growth = (figures[large] - figures[small]) / (large - small)
    assert growth < PER_MODEL_LIMIT, f"{growth / 1024:.1f} KB a model (peaks {figures})"


@pytest.mark.parametrize("flags", [("--no-cache", "-j", "1"), ("--no-cache", "-j", "2"), ("-j", "1")],
                         ids=["uncached", "uncached, workers", "cache"])
def test_every_chart_links_one_copy_of_each_shared_file(tmp_path, flags):
    """A fresh process writes each file every chart carries (templates, schema, Lua) once and
    links the other copies, whichever path rendered the charts."""
    from conftest import modelplat

    root = tmp_path / "models"
    root.mkdir()
    generate(root, pipeline.PARALLEL_MIN + 4 if "2" in flags else 6)
    result = modelplat("render", str(root), "-o", str(tmp_path / "out"), *flags,
                       env={"MODELPLAT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    charts = sorted((tmp_path / "out").glob("team-*/*/chart"))
    shared = ["values.schema.json", "templates/inferenceservice.yaml", "templates/_helpers.tpl",
              "files/token_quota.lua", ".helmignore", "templates/telemetry.yaml", "files/strip_identity.lua"]
    for rel in shared:
        inodes = {(chart / rel).stat().st_ino for chart in charts}
        assert len(inodes) == 1, f"{rel}: {len(inodes)} copies on disk for {len(charts)} charts"


def _diagnostics(result):
    return [d.format() for d in result.diagnostics]


@pytest.mark.parametrize("use_cache", [False, True], ids=["uncached", "cache misses"])
def test_worker_processes_render_what_one_process_renders(tmp_path, monkeypatch, use_cache):
    import os

    from modelplat import render

    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "models"
    root.mkdir()
    generate(root, pipeline.PARALLEL_MIN + 20)
    pids = tmp_path / "pids"
    real = render.render_model

    def recording(p, platform):  # runs in the forked workers too
        with open(pids, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(p, platform)

    monkeypatch.setattr(render, "render_model", recording)
    one = pipeline.render_all([root], use_cache=use_cache, jobs=1)
    assert set(pids.read_text().split()) == {str(os.getpid())}
    pids.unlink()
    if use_cache:
        monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache-2"))  # misses again
    many = pipeline.render_all([root], use_cache=use_cache, jobs=2)
    assert len(set(pids.read_text().split()) - {str(os.getpid())}) == 2, "two workers rendered"
    assert not one.errors and many.files == one.files and _diagnostics(many) == _diagnostics(one)
    assert list(many.files) == list(one.files), "and handed over in the same order"


def test_worker_processes_report_every_error_with_its_position(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "models"
    root.mkdir()
    generate(root, pipeline.PARALLEL_MIN + 20)
    files = sorted(root.glob("team-*/*.yaml"))
    files[5].write_text(files[5].read_text() + "replicaCounts: 2\n")  # a schema error
    (files[3].parent / "copy.yaml").write_text(files[3].read_text() + f"name: {files[3].stem}\n")
    for jobs in (1, 2):
        sink = pipeline.Sink()
        result = pipeline.render_into(sink, [root], use_cache=False, jobs=jobs)
        assert not sink.files, "nothing is handed on from a run with errors"
        codes = sorted(d.code for d in result.errors)
        assert "duplicate-model" in codes or "duplicate-output" in codes, codes
        if jobs == 1:
            first = _diagnostics(result)
    assert _diagnostics(result) == first
    assert any(d.line and d.file.endswith(files[5].name) for d in result.errors)
