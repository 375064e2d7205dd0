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
            result = pipeline.render_into(writer, [root], use_cache=use_cache)
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
