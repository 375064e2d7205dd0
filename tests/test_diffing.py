"""Resource diff: what Flux would change between the committed output and a fresh render."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplat import output, pipeline
from modelplat.diffing import committed_tree, diff_text, resource_diff
from modelplat.errors import InvalidInput

IRIS = "model:\n  format: sklearn\n  storageUri: s3://m/iris\n"
XGB = "model:\n  format: xgboost\n  storageUri: s3://m/fraud\n"


def render(root: Path) -> dict[str, bytes]:
    result = pipeline.render_all([root])
    assert not result.errors, [d.format() for d in result.errors]
    return result.files


def by_change(entries, change):
    return [e for e in entries if e["change"] == change]


def test_identical_trees_have_no_difference(tree):
    files = render(tree({"demo/iris.yaml": IRIS}))
    assert resource_diff(files, dict(files)) == []
    assert diff_text([]) == "no changes\n"


def test_changed_replica_count_is_one_field_of_one_helmrelease(tree):
    root = tree({"demo/iris.yaml": IRIS, "fraud/xgb.yaml": XGB})
    before = render(root)
    (root / "demo/iris.yaml").write_text(IRIS + "replicaCount: 2\npodDisruptionBudget:\n  enabled: false\n")
    after = render(root)
    entries = resource_diff(before, after)
    changed = by_change(entries, "changed")
    assert changed == [{
        "change": "changed", "kind": "HelmRelease", "namespace": "demo", "name": "iris",
        "file": "demo/iris/helmrelease.yaml",
        "fields": [{"path": "spec.values.replicaCount", "old": 1, "new": 2}],
    }]
    charts = by_change(entries, "chart-changed")
    assert [c["model"] for c in charts] == ["demo/iris"]  # the other model's chart is untouched
    assert "demo/iris/chart/values.yaml" in charts[0]["changed"] and charts[0]["added"] == []
    assert not by_change(entries, "added") and not by_change(entries, "removed")
    text = diff_text(entries)
    assert "~ HelmRelease demo/iris: spec.values.replicaCount 1 → 2" in text.splitlines()


def test_added_model_adds_its_helmrelease_and_chart(tree):
    root = tree({"demo/iris.yaml": IRIS})
    before = render(root)
    (root / "demo/second.yaml").write_text(IRIS)
    after = render(root)
    entries = resource_diff(before, after)
    added = by_change(entries, "added")
    assert [(e["kind"], e["namespace"], e["name"], e["file"]) for e in added] == [
        ("HelmRelease", "demo", "second", "demo/second/helmrelease.yaml")]
    chart = [c for c in by_change(entries, "chart-changed") if c["model"] == "demo/second"]
    assert len(chart) == 1 and chart[0]["removed"] == [] and chart[0]["changed"] == []
    assert chart[0]["added"] == chart[0]["files"] and "demo/second/chart/Chart.yaml" in chart[0]["files"]
    # The project's kustomization now lists the new HelmRelease.
    kustomization = [e for e in by_change(entries, "changed") if e["file"] == "demo/kustomization.yaml"]
    assert any(f.get("new") == "second/helmrelease.yaml" for f in kustomization[0]["fields"])
    text = diff_text(entries)
    assert "+ HelmRelease demo/second (demo/second/helmrelease.yaml)" in text
    assert "+ chart demo/second: " in text


def test_removed_model_removes_helmrelease_namespace_and_chart(tree):
    root = tree({"demo/iris.yaml": IRIS, "fraud/xgb.yaml": XGB})
    before = render(root)
    (root / "fraud/xgb.yaml").unlink()
    (root / "fraud").rmdir()
    after = render(root)
    entries = resource_diff(before, after)
    removed = {(e["kind"], e["namespace"], e["name"]) for e in by_change(entries, "removed")}
    assert ("HelmRelease", "fraud", "xgb") in removed
    assert ("Namespace", "", "fraud") in removed
    chart = [c for c in by_change(entries, "chart-changed") if c["model"] == "fraud/xgb"]
    assert chart and chart[0]["added"] == [] and "fraud/xgb/chart/values.yaml" in chart[0]["removed"]
    text = diff_text(entries)
    assert "- HelmRelease fraud/xgb (fraud/xgb/helmrelease.yaml)" in text
    assert "- chart fraud/xgb: " in text


def test_committed_tree_reads_back_what_was_written(tree, tmp_path):
    files = render(tree({"demo/iris.yaml": IRIS}))
    out = tmp_path / "out"
    assert committed_tree(out) == {}
    output.write(out, files)
    assert committed_tree(out) == files


def test_resources_are_matched_by_identity_not_by_file_or_text():
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ns\ndata:\n  x: '1'\n"
    moved = {"elsewhere/cm.yaml": ("# reformatted\n" + doc.replace("'1'", '"1"')).encode()}
    assert resource_diff({"p/cm.yaml": doc.encode()}, moved) == []


def test_api_version_bump_is_a_field_change_not_a_replacement():
    old = b"apiVersion: helm.toolkit.fluxcd.io/v2beta1\nkind: HelmRelease\nmetadata: {name: m, namespace: p}\n"
    new = old.replace(b"v2beta1", b"v2")
    entries = resource_diff({"p/m/helmrelease.yaml": old}, {"p/m/helmrelease.yaml": new})
    assert entries[0]["change"] == "changed"
    assert entries[0]["fields"] == [{"path": "apiVersion", "old": "helm.toolkit.fluxcd.io/v2beta1",
                                     "new": "helm.toolkit.fluxcd.io/v2"}]


def test_multi_document_files_nested_additions_and_dotted_keys():
    old = b"kind: A\nmetadata: {name: a}\n---\nkind: B\nmetadata: {name: b}\nspec: {list: [1, 2]}\n"
    new = (b"kind: A\nmetadata: {name: a, labels: {app.kubernetes.io/name: x}}\n---\n"
           b"kind: B\nmetadata: {name: b}\nspec: {list: [1, 3, 4], logger: {mode: all}}\n")
    entries = resource_diff({"f.yaml": old}, {"f.yaml": new})
    fields = {e["name"]: e["fields"] for e in entries}
    assert fields["a"] == [{"path": 'metadata.labels["app.kubernetes.io/name"]', "new": "x"}]
    assert fields["b"] == [
        {"path": "spec.list.1", "old": 2, "new": 3},
        {"path": "spec.list.2", "new": 4},
        {"path": "spec.logger.mode", "new": "all"},
    ]
    assert "    spec.list.2 (unset) → 4" in diff_text(entries).splitlines()


def test_order_is_deterministic_and_non_yaml_files_are_not_ignored():
    a = {"z/x.yaml": b"kind: K\nmetadata: {name: z, namespace: z}\n", "a/x.yaml": b"kind: K\nmetadata: {name: a, namespace: a}\n"}
    entries = resource_diff({}, dict(reversed(list(a.items()))) | {"NOTES.txt": b"hi"})
    assert [e.get("name") for e in entries] == ["a", "z", None]
    assert entries[-1] == {"change": "file-changed", "file": "NOTES.txt", "status": "added"}


def test_unparsable_committed_file_is_an_error_naming_it():
    with pytest.raises(InvalidInput) as caught:
        resource_diff({"p/bad.yaml": b"a: [unclosed\n"}, {})
    assert caught.value.diagnostics[0].file == "p/bad.yaml"


def test_a_deeply_nested_committed_file_is_an_error_not_a_crash():
    """A hand-edited committed file nested 100,000 levels deep crashed `modelplat diff` (SIGSEGV,
    exit 139, no message); it now goes through the values files' guarded loader."""
    deep = b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    with pytest.raises(InvalidInput) as caught:
        resource_diff({"p/deep.yaml": deep}, {})
    (d,) = caught.value.diagnostics
    assert (d.file, d.code, d.line, d.column) == ("p/deep.yaml", "unreadable-output", 1, 1)
    assert "deeper than" in d.message
