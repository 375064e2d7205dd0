"""Property-based tests: whatever a user writes, modelplat renders valid output or refuses it
with a positioned error, never a traceback; rendering is idempotent and byte-stable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from ruamel.yaml import YAML

from modelplat import output, pipeline
from modelplat.lint import TOOLS as LINT_TOOLS
from modelplat.render import render_tree
from modelplat.yamlout import dump

from conftest import PLATFORM, modelplat, need_tool
from strategies import FREE_TEXT, model_values

_yaml = YAML(typ="safe")
FILE_LEVEL_CODES = {"not-a-mapping", "not-utf8", "file-too-large", "yaml-alias", "too-deep", "unreadable",
                    "no-models", "missing-project", "invalid-name", "invalid-project"}


def write_tree(root: Path, models: dict[str, dict | str]) -> Path:
    # A namespace holds one owner per RDMA network: generated models get networks of their own,
    for index, values in enumerate(models.values()):
        if isinstance(values, dict):
            for net in values.get("rdma", {}).get("networks", []):
                if net.get("type") != "existing":
                    net["name"] = f"{net['name'][:40]}-m{index}"
            # and a tenant of their own: models sharing a tenant's quota must agree on it
            if "tenantId" in values.get("tokenLimit", {}):
                values["tokenLimit"]["tenantId"] = f"{values['tokenLimit']['tenantId'][:50]}-m{index}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "platform.yaml").write_text(PLATFORM)
    for rel, values in models.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(values if isinstance(values, str) else dump(values))
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=model_values())
def test_accepted_values_render_consistent_output(tmp_path, values):
    root = write_tree(tmp_path / "models", {"team/model.yaml": values})
    run = pipeline.run([root])
    assert not run.errors, [d.format() for d in run.errors]
    files = render_tree(run.plans, run.platform)
    assert files == render_tree(pipeline.run([root]).plans, run.platform), "byte-stable"
    for rel, content in files.items():
        if rel.endswith(".yaml") and "/templates/" not in rel:
            assert all(doc is not None for doc in _yaml.load_all(content))  # every data file is valid YAML
    release = _yaml.load(files["team/model/helmrelease.yaml"])
    assert release["spec"]["values"] == _yaml.load(files["team/model/chart/values.yaml"])
    # free text survives as data, exactly as written
    if "description" in values:
        assert release["spec"]["values"]["description"] == values["description"]
    assert release["spec"]["values"]["model"]["args"] == values["model"]["args"]


junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), FREE_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["model", "format", "resources", "requestGPU", "env",
                                                             "name", "metrics", "canary", "x", "replicaCount"]),
                                            inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.one_of(junk, model_values().flatmap(lambda v: st.just(v) | st.builds(
    lambda k, x: {**v, k: x}, st.sampled_from(["model", "resources", "replicaCount", "env", "nme"]), junk))))
def test_rejected_values_get_positioned_errors_never_tracebacks(tmp_path, values):
    root = write_tree(tmp_path / "models", {"team/model.yaml": values})
    run = pipeline.run([root])  # must not raise
    for d in run.errors:
        assert d.file.endswith("model.yaml")
        assert d.line > 0 or d.code in FILE_LEVEL_CODES, d.format()
        assert d.message and d.code


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_never_crashes_the_loader(tmp_path, text):
    root = write_tree(tmp_path / "models", {"team/model.yaml": text})
    run = pipeline.run([root])
    assert run.errors or run.plans


@settings(max_examples=1, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(samples=st.lists(model_values(), min_size=30, max_size=30))
def test_sampled_values_pass_the_real_tools(tmp_path_factory, samples):
    """30 generated models per run (a new sample each run), rendered and checked by every tool
    lint runs (helm lint/template, kubeconform, helm-unittest, istioctl, promtool, kustomize) in
    one lint run (parallel, batched). A failure prints the models (and hypothesis's seed) so it
    can be replayed."""
    for tool in LINT_TOOLS:  # everything --require-tools asks for
        need_tool(tool)
    models = {f"team-{i % 4}/model-{i:02d}.yaml": v for i, v in enumerate(samples)}
    root = write_tree(tmp_path_factory.mktemp("sampled") / "models", models)
    result = modelplat("lint", str(root), "--require-tools", "--format", "json")
    report = json.loads(result.stdout)
    failures = {m["file"]: {k: c["detail"][:500] for k, c in m["checks"].items() if c["status"] != "pass"}
                for m in report["models"] if not m["ok"] or any(c["status"] != "pass" for c in m["checks"].values())}
    assert result.returncode == 0 and not failures, json.dumps(failures, indent=2)[:4000]
    assert len(report["models"]) == 30


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(samples=st.lists(model_values(), min_size=5, max_size=20))
def test_render_is_idempotent_on_disk(tmp_path_factory, samples):
    work = tmp_path_factory.mktemp("idempotent")
    root = write_tree(work / "models", {f"team/model-{i}.yaml": v for i, v in enumerate(samples)})
    out = work / "out"
    assert modelplat("render", str(root), "--out", str(out), "--no-cache").returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = modelplat("render", str(root), "--out", str(out), "--format", "json")
    assert json.loads(again.stdout)["written"] == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not output.compare(out, pipeline.render_all([root], use_cache=False).files).any()
