"""Bad values files get one precise, positioned, actionable diagnostic each; good ones load."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplat import pipeline
from modelplat.loader import LoadError, load


def diagnostics(tree, text: str, name: str = "demo/model.yaml"):
    root = tree({name: text})
    return pipeline.run([root]).diagnostics


def only(diags, code):
    found = [d for d in diags if d.code == code]
    assert found, f"no {code} in {[d.format() for d in diags]}"
    return found[0]


def test_valid_file_plans_with_name_and_project_from_path(tree):
    root = tree({"fraud/xgb.yaml": "model:\n  format: xgboost\n  storageUri: s3://m/x\n"})
    run = pipeline.run([root])
    assert run.diagnostics == []
    (plan,) = run.plans
    assert (plan.name, plan.identity.project, plan.namespace) == ("xgb", "fraud", "fraud")
    assert plan.source == "fraud/xgb.yaml"


def test_unknown_key_points_at_the_key_and_suggests_the_right_one(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\nresources:\n  requestGpu: 1\n"),
             "unknown-key")
    assert (d.line, d.column) == (5, 3)
    assert "requestGpu" in d.message and "requestGPU" in d.hint
    assert d.format().startswith(str(Path(d.file)) + ":5:3: error[unknown-key]")


def test_misspelt_top_level_key_suggests(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\nreplicaCont: 2\n"), "unknown-key")
    assert d.line == 4 and "replicaCount" in d.hint


def test_wrong_type_names_the_key_and_the_types(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\nreplicaCount: \"2\"\n"),
             "wrong-type")
    assert d.line == 4 and "replicaCount" in d.message and "integer" in d.message and "str" in d.message


def test_enum_value_gets_did_you_mean(tree):
    d = only(diagnostics(tree, "model:\n  format: sklern\n  storageUri: s3://m/x\n"), "invalid-value")
    assert (d.line, d.column) == (2, 3) and "sklearn" in d.hint


def test_out_of_range(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\nresources:\n  requestGPU: -1\n"),
             "out-of-range")
    assert d.line == 5 and "requestGPU" in d.message


def test_missing_required_key(tree):
    d = only(diagnostics(tree, "replicaCount: 1\n"), "missing-key")
    assert "model" in d.message


def test_storage_uri_scheme_is_explained(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  storageUri: ftp://m/x\n"), "invalid-value")
    assert "hf://" in d.message and d.line == 3


def test_bad_quantity_is_one_clear_error(tree):
    diags = diagnostics(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\nresources:\n  requestCPU: lots\n")
    assert len(diags) == 1 and "quantity" in diags[0].message and diags[0].line == 5


def test_yaml_syntax_error_has_position(tree):
    d = only(diagnostics(tree, "model:\n  format: [sklearn\n"), "yaml-syntax")
    assert d.line >= 2


def test_duplicate_key_is_refused(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  format: xgboost\n"), "duplicate-key")
    assert d.line == 3


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(LoadError) as err:
        load(bomb)
    assert err.value.diagnostic.code == "yaml-alias"


def test_non_utf8_and_oversized_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"model:\n  format: \xff\n")
    with pytest.raises(LoadError) as err:
        load(bad)
    assert (err.value.diagnostic.code, err.value.diagnostic.line) == ("not-utf8", 2)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# x\n" * 400_000)
    with pytest.raises(LoadError) as err:
        load(big)
    assert err.value.diagnostic.code == "file-too-large"


def test_empty_file_and_non_mapping(tree):
    assert only(diagnostics(tree, ""), "not-a-mapping")
    assert only(diagnostics(tree, "- a\n- b\n"), "not-a-mapping")


def test_file_name_that_is_not_a_dns_label(tree):
    d = only(diagnostics(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\n", "demo/My_Model.yaml"),
             "invalid-name")
    assert "My_Model" in d.message


def test_names_cannot_traverse_paths(tree):
    d = only(diagnostics(tree, "name: ../../etc\nmodel:\n  format: sklearn\n  storageUri: s3://m/x\n"),
             "invalid-value")
    assert d.line == 1 and "DNS label" in d.message


def test_symlink_outside_the_tree_is_refused(tree, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("model:\n  format: sklearn\n  storageUri: s3://m/x\n")
    root = tree({})
    (root / "demo").mkdir()
    (root / "demo" / "link.yaml").symlink_to(outside)
    run = pipeline.run([root])
    assert [d.code for d in run.diagnostics] == ["symlink-outside"] and not run.plans


def test_duplicate_model_names_in_one_namespace(tree):
    root = tree({
        "demo/a.yaml": "name: same\nmodel:\n  format: sklearn\n  storageUri: s3://m/x\n",
        "demo/b.yaml": "name: same\nmodel:\n  format: sklearn\n  storageUri: s3://m/y\n",
    })
    d = only(pipeline.run([root]).diagnostics, "duplicate-model")
    assert d.line == 1 and "a.yaml" in d.message


def test_every_bad_file_is_reported_in_one_run(tree):
    root = tree({"demo/a.yaml": "model: {format: nope}\n", "demo/b.yaml": "replicaCount: 0\nmodel: {format: sklearn, storageUri: 's3://x/y'}\n"})
    files = {Path(d.file).name for d in pipeline.run([root]).diagnostics}
    assert files == {"a.yaml", "b.yaml"}


def test_invalid_platform_file_is_positioned(tree):
    root = tree({"demo/m.yaml": "model:\n  format: sklearn\n  storageUri: s3://m/x\n"},
                platform="clusterName: ml\ngpu:\n  nodeGroupLable: x\n")
    from modelplat.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        pipeline.run([root])
    (d,) = err.value.diagnostics
    assert d.code == "unknown-key" and d.line == 3 and "nodeGroupLabel" in d.hint


@pytest.mark.parametrize("number", [".inf", "-.inf", ".nan"])
def test_infinite_and_nan_numbers_are_refused(tree, number):
    text = f"model:\n  format: sklearn\n  storageUri: s3://m/x\nresources:\n  requestCPU: {number}\n" \
           f"observability:\n  alerts:\n    p99LatencySeconds: {number}\n"
    diags = pipeline.run([tree({"demo/m.yaml": text})]).diagnostics
    assert {d.key for d in diags} == {"resources.requestCPU", "observability.alerts.p99LatencySeconds"}
    assert all(d.line > 0 for d in diags)


def test_deep_nesting_is_refused_cleanly(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("model:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)) + "  " * 200 + "v: 1\n")
    with pytest.raises(LoadError) as err:
        load(deep)
    assert err.value.diagnostic.code == "too-deep"
    flow = tmp_path / "flow.yaml"
    flow.write_text("model: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(LoadError) as err:
        load(flow)
    assert err.value.diagnostic.code in ("too-deep", "yaml-syntax")


@pytest.mark.parametrize("text", ["two\\nlines", "a\\ttab", "bidi \\u202e reversed", "isolate \\u2066x\\u2069"])
def test_a_description_is_one_line_without_bidi_controls(tree, text):
    d = only(diagnostics(tree, f'description: "{text}"\nmodel:\n  format: sklearn\n  storageUri: s3://m/x\n'),
             "invalid-value")
    assert (d.key, d.line) == ("description", 1)
    assert "one line of text" in d.message and "^[" not in d.message


def test_a_canary_header_value_is_one_visible_line(tree):
    base = ("model:\n  format: sklearn\n  storageUri: s3://m/x\ncanary:\n  enabled: true\n"
            "  storageUri: s3://m/y\n  headerMatch:\n    x-model-canary: ")
    base = "primaryLoad: 90\n" + base
    d = only(diagnostics(tree, base + '"yes\\nplease"\n'), "invalid-value")
    assert d.key == "canary.headerMatch.x-model-canary" and "HTTP header value" in d.message
    assert not [x for x in diagnostics(tree, base + '"team a"\n') if x.severity == "error"]


@pytest.mark.parametrize("text,says", [
    ("model:\n  format: sklearn\n  storageUri: s3://m/x\nlabels:\n  team: -bad-\n", "a label value"),
    ("model:\n  format: sklearn\n  storageUri: s3://m/x\nenv:\n  - name: 1X\n    value: a\n", "environment variable name"),
    ("model:\n  format: sklearn\n  storageUri: s3://m/x\n  runtimeVersion: .hidden\n", "an image tag"),
])
def test_pattern_errors_say_what_the_value_must_look_like(tree, text, says):
    d = only(diagnostics(tree, text), "invalid-value")
    assert says in d.message and "^[" not in d.message and "$" not in d.message, d.message


def test_two_models_rendered_into_one_folder_are_refused_naming_both(tree, tmp_path):
    """Same project and name from two folders (one sets project:), different namespaces: the
    output folder <project>/<name> is the same, so one chart would overwrite the other."""
    from conftest import modelplat

    cpu = "model:\n  format: sklearn\n  storageUri: s3://m/x\n"
    root = tree({"alpha/scorer.yaml": "project: beta\nnamespace: alpha-ns\n" + cpu, "beta/scorer.yaml": cpu})
    d = only(pipeline.run([root]).diagnostics, "duplicate-output")
    assert d.file.endswith("beta/scorer.yaml") and "alpha/scorer.yaml" in d.message and "beta/scorer/" in d.message
    # Through the render cache too: alpha's chart is cached by a first render without beta's file.
    beta = (root / "beta/scorer.yaml").read_text()
    (root / "beta/scorer.yaml").unlink()
    out = tmp_path / "out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (root / "beta/scorer.yaml").write_text(beta)
    proc = modelplat("render", str(root), "--out", str(out))
    assert proc.returncode == 1 and "duplicate-output" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_tab_in_the_indentation_says_so(tree):
    d = only(diagnostics(tree, "model:\n\tformat: sklearn\n"), "yaml-syntax")
    assert (d.line, d.column) == (2, 1) and "spaces only" in d.hint


@pytest.mark.parametrize("text,code", [
    ("a: " + "[" * 200 + "]" * 200 + "\n", "too-deep"),
    ("a: &x {b: 1}\nc: *x\n", "yaml-alias"),
    ("a: '" + "x" * (1 << 20) + "'\n", "file-too-large"),
])
def test_file_level_findings_still_point_at_the_file_and_say_what_to_do(tree, text, code):
    d = only(diagnostics(tree, text), code)
    assert (d.line, d.column) == (1, 1) and d.hint
    assert ":1:1: error[" in d.format()
