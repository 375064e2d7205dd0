"""The committed schemas/ and charts-out/ must be exactly what the code produces today."""

from __future__ import annotations

from modelplat import output, pipeline, schemas
from modelplat.render import render_tree

from conftest import EXAMPLES, REPO


def test_committed_schemas_match_the_models():
    for name, text in schemas.all_texts().items():
        committed = (REPO / "schemas" / name).read_text()
        assert committed == text, f"schemas/{name} is stale: run `modelplat schema --out schemas`"


def test_committed_charts_out_matches_the_examples():
    run = pipeline.run([EXAMPLES])
    assert not run.errors, [d.format() for d in run.errors]
    files = render_tree(run.plans, run.platform)
    changes = output.compare(REPO / "charts-out", files)
    assert not changes.any(), (
        "charts-out/ is stale: run `modelplat render examples --out charts-out`\n"
        + output.diff(REPO / "charts-out", files, changes)
    )


def test_examples_cover_the_promised_models():
    run = pipeline.run([EXAMPLES])
    formats = {p.values.model.format for p in run.plans}
    assert {"sklearn", "xgboost", "custom"} <= formats
    qwen = next(p for p in run.plans if p.values.model.format == "custom")
    assert qwen.gpu and qwen.llm and qwen.values.model.storageUri.startswith("hf://")
    xgb = next(p for p in run.plans if p.values.model.format == "xgboost")
    assert xgb.values.model.storageUri.startswith("s3://") and not xgb.gpu


def test_example_values_files_point_editors_at_the_schema():
    for path in EXAMPLES.rglob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        ref = first.split("=", 1)[1]
        assert (path.parent / ref).resolve().is_file(), f"{path}: {ref} does not exist"
