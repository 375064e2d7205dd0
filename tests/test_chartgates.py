"""A chart follows every value its values.schema.json accepts, or refuses it at install time
(modelplat/chartgates.py): read from what `helm template` makes of it, as Flux's helm-controller
would with a patched HelmRelease or `--set`."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from modelplat import chartgates, output, pipeline, tools
from modelplat.render import CHART_TEMPLATES, render_tree

from conftest import need_tool

CPU_WITH_ALERTS = """\
model:
  format: sklearn
  storageUri: s3://m/iris
observability:
  alerts:
    enabled: true
"""
LIMITED = CPU_WITH_ALERTS + "ratelimitIPPerMinute: 10\n"


@pytest.fixture
def chart(tree, tmp_path):
    """A rendered chart on disk; returns helm_template(*args) → (ok, objects or message)."""
    helm = need_tool("helm")

    def make(text: str):
        run = pipeline.run([tree({"demo/m.yaml": text})])
        assert not run.errors, [d.format() for d in run.errors]
        out = tmp_path / "out"
        output.write(out, render_tree(run.plans, run.platform), force=True)

        def helm_template(*args: str):
            result = tools.run([helm, "template", "m", str(out / "demo/m/chart"), "--namespace", "demo", *args])
            if not result.ok:
                return False, result.output
            return True, [d for d in YAML(typ="safe").load_all(result.output) if d]

        return helm_template

    return make


def _kinds(objects) -> list[str]:
    return sorted(o["kind"] for o in objects)


def _alerts(objects) -> set[str]:
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {r["alert"] for o in rules for g in o["spec"]["groups"] for r in g["rules"]}


def test_a_gpu_set_at_install_time_gets_gpu_scheduling_and_the_gpu_alert(chart):
    helm_template = chart(CPU_WITH_ALERTS)
    ok, cpu = helm_template()
    assert ok and "ModelGPUSaturated" not in _alerts(cpu)
    ok, gpu = helm_template("--set", "resources.requestGPU=1")
    assert ok, gpu
    assert "ModelGPUSaturated" in _alerts(gpu)
    predictor = next(o for o in gpu if o["kind"] == "InferenceService")["spec"]["predictor"]
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_llm_alerts_and_replica_alert_follow_protocol_and_autoscaling(chart):
    helm_template = chart(CPU_WITH_ALERTS)
    ok, objects = helm_template("--set", "model.protocol=openai", "--set", "autoscaling.enabled=true")
    assert ok, objects
    assert {"ModelQueueBacklog", "ModelKVCacheNearlyFull", "ModelReplicasAtMaximum"} <= _alerts(objects)
    assert "HorizontalPodAutoscaler" in _kinds(objects)


def test_another_model_format_set_at_install_time_is_served(chart):
    ok, objects = chart(CPU_WITH_ALERTS)("--set", "model.format=xgboost")
    assert ok, objects
    predictor = next(o for o in objects if o["kind"] == "InferenceService")["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "xgboost"}
    ok, objects = chart(CPU_WITH_ALERTS)("--set", "model.format=custom", "--set", "model.image=x/y:1")
    assert ok, objects
    container = next(o for o in objects if o["kind"] == "InferenceService")["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == "x/y:1"


@pytest.mark.parametrize("sets,kind", [
    (["canary.enabled=true", "canary.storageUri=s3://m/iris-v2"], "InferenceService"),
    (["mirror.enabled=true"], "InferenceService"),
    (["autoscaling.enabled=true", "autoscaling.maxReplicaCount=3"], "HorizontalPodAutoscaler"),
    (["podDisruptionBudget.enabled=true"], "PodDisruptionBudget"),
    (["observability.accessLog=true"], "Telemetry"),
    (["exposeModel.enabled=true", "exposeModel.host=m.example.com"], "VirtualService"),
    (["auth.jwt.enabled=true"], "RequestAuthentication"),
    (["auth.customAuthz.enabled=true", "auth.customAuthz.provider=ext-authz"], "AuthorizationPolicy"),
])
def test_a_feature_turned_on_at_install_time_is_rendered(chart, sets, kind):
    """Every chart holds every template: a feature the values file did not turn on still renders
    when a HelmRelease patch or --set turns it on."""
    helm_template = chart(CPU_WITH_ALERTS)
    ok, before = helm_template()
    ok_after, after = helm_template(*[a for s in sets for a in ("--set", s)])
    assert ok and ok_after, after
    assert _kinds(after).count(kind) == _kinds(before).count(kind) + 1


@pytest.mark.parametrize("value,path,generated", [
    ("ratelimitIPPerMinute=99", "ratelimitIPPerMinute", "10"),
    ("ratelimitEachSAPerMinute=5", "ratelimitEachSAPerMinute", "null"),
    ("namespace=other", "namespace", '"demo"'),
    ("name=renamed", "name", '"m"'),
    ("tokenLimit.saLimit=100", "tokenLimit.saLimit", "null"),
    ("safety.provider=llm-guard", "safety.provider", "null"),
])
def test_values_used_outside_the_chart_are_refused_with_the_remedy(chart, value, path, generated):
    ok, message = chart(LIMITED)("--set", value)
    assert not ok
    assert f"{path} is " in message and f"generated from demo/m.yaml with {generated}" in message
    assert "change the values file and run `modelplat render`" in message
    assert chartgates.REASONS[chartgates.PINNED[path]] in message


def test_safety_turned_on_at_install_time_fails_the_install(chart):
    """modelplat resolves a provider only for a model whose values file turns safety on: a chart
    generated without it refuses `--set safety.enabled=true` instead of rendering nothing."""
    ok, message = chart(LIMITED)("--set", "safety.enabled=true")
    assert not ok and "safety.enabled is true at install time" in message and "modelplat render" in message


@pytest.mark.parametrize("edit", ["drop the annotation", "drop one pinned value", "not JSON"])
def test_a_chart_whose_pinned_annotation_was_edited_fails_the_install(chart, tmp_path, edit):
    """The guard reads what it checks from Chart.yaml (`_helpers.tpl` is the same in every chart):
    an annotation someone removed or trimmed fails the install instead of checking nothing."""
    import json

    helm_template = chart(LIMITED)
    path = tmp_path / "out/demo/m/chart/Chart.yaml"
    metadata = YAML(typ="safe").load(path.read_text())
    annotations = metadata["annotations"]
    if edit == "drop the annotation":
        del annotations[chartgates.PINNED_ANNOTATION]
    elif edit == "drop one pinned value":
        pins = json.loads(annotations[chartgates.PINNED_ANNOTATION])
        del pins["ratelimitIPPerMinute"]
        annotations[chartgates.PINNED_ANNOTATION] = json.dumps(pins)
    else:
        annotations[chartgates.PINNED_ANNOTATION] = "{name: m"
    with path.open("w") as handle:
        YAML().dump(metadata, handle)
    ok, message = helm_template()
    assert not ok and "annotation modelplat.io/pinned is missing or changed" in message, message


def test_the_pinned_values_are_the_values_file_s(chart, tmp_path):
    import json

    chart(LIMITED)
    metadata = YAML(typ="safe").load((tmp_path / "out/demo/m/chart/Chart.yaml").read_text())
    pins = json.loads(metadata["annotations"][chartgates.PINNED_ANNOTATION])
    assert list(pins) == list(chartgates.PINNED)
    assert pins["ratelimitIPPerMinute"] == 10 and pins["name"] == "m" and pins["tokenLimit.saLimit"] is None
    assert metadata["annotations"]["modelplat.io/source"] == "demo/m.yaml"


def test_the_generated_values_pass_their_own_guard(chart):
    ok, objects = chart(LIMITED)("--set", "ratelimitIPPerMinute=10")  # the same number: accepted
    assert ok, objects


def test_every_template_is_gated_by_its_own_helper():
    """One condition per template: the helper the template tests is the one _helpers.tpl defines."""
    from modelplat.render import chart_template
    from modelplat.resources import templates_dir

    helpers = (templates_dir() / "chart/templates/_helpers.tpl.j2").read_text()
    for template in CHART_TEMPLATES:
        if template == "inferenceservice.yaml":
            assert b'{{- include "modelplat.generatedFor" . }}' in chart_template(template)
            continue
        helper = "modelplat.on." + template.removesuffix(".yaml")
        assert f'{{{{- define "{helper}" -}}}}' in helpers, helper
        assert f'{{{{- if include "{helper}" . }}}}'.encode() in chart_template(template), template
