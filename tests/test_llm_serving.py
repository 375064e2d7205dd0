"""LLM-native serving (KServe's LLMInferenceService): what a model owner writes, what modelplat
refuses (each refusal is something KServe v0.20's controller or webhook would fail on, or a
setting that would silently do nothing), and the chart values it plans. What KServe's controller
makes of the rendered resource is checked by the engines tests (tests/test_engines.py)."""

from __future__ import annotations

import pytest

from modelplat import pipeline

from conftest import PLATFORM, modelplat, need_tool

NATIVE = """\
model:
  format: huggingface
  protocol: openai
  serving: llm
  storageUri: hf://Qwen/Qwen2.5-7B-Instruct
resources:
  requestGPU: 2
  limitGPU: 2
exposeModel:
  enabled: true
auth:
  jwt:
    enabled: true
"""


IDP = "domain: models.example.com\njwt:\n  issuer: https://idp.example.com\n  jwksUri: https://idp.example.com/jwks.json\n"


def run(tree, text: str, platform: str = PLATFORM + IDP):
    return pipeline.run([tree({"demo/chat.yaml": text}, platform=platform)])


def codes(tree, text: str, platform: str = PLATFORM + IDP) -> dict[str, object]:
    return {d.code: d for d in run(tree, text, platform).diagnostics}


def plan_of(tree, text: str, platform: str = PLATFORM + IDP):
    result = run(tree, text, platform)
    assert [d for d in result.diagnostics if d.severity == "error"] == []
    (plan,) = result.plans
    return plan


def test_an_llm_native_model_plans_an_llminferenceservice_and_no_virtualservice(tree):
    p = plan_of(tree, NATIVE)
    assert p.serving == "llm"
    assert "llminferenceservice.yaml" in p.templates
    assert "inferenceservice.yaml" not in p.templates and "virtualservice.yaml" not in p.templates
    v = p.chart_values
    # vLLM (or the routing sidecar of a prefill/decode pair) serves on 8000 in KServe's presets.
    assert (v["model"]["serving"], v["model"]["port"], v["metrics"]["port"]) == ("llm", 8000, 8000)
    assert v["platform"]["gatewayApi"] == {"namespace": "istio-system", "name": "inference-gateway"}
    assert v["platform"]["gatewayNamespace"] == "istio-system"


def test_the_platform_can_make_llm_serving_the_default_for_openai_models_only(tree):
    platform = PLATFORM + IDP + "llmServing:\n  default: llm\ngatewayApi:\n  gateway: gw/llm-gateway\n"
    openai = NATIVE.replace("  serving: llm\n", "")
    p = plan_of(tree, openai, platform)
    assert p.serving == "llm" and p.chart_values["platform"]["gatewayApi"] == {"namespace": "gw", "name": "llm-gateway"}
    assert plan_of(tree, openai).serving == "inferenceservice"  # the platform's default default
    sklearn = "model:\n  format: sklearn\n  storageUri: s3://m/x\n"
    assert plan_of(tree, sklearn, platform).serving == "inferenceservice"
    # A model can still ask for an InferenceService where the platform defaults to llm.
    isvc = openai.replace("  protocol: openai\n", "  protocol: openai\n  serving: inferenceservice\n")
    assert plan_of(tree, isvc, platform).serving == "inferenceservice"


def test_prefill_pods_take_the_decode_pods_resources_and_nics_unless_they_set_their_own(tree):
    text = NATIVE + """\
rdma:
  enabled: true
  networks:
    - name: kv
      type: existing
  resources:
    rdma/roce_gdr: 1
llm:
  parallelism:
    tensor: 2
  prefill:
    replicaCount: 3
"""
    v = plan_of(tree, text).chart_values
    prefill = v["llm"]["prefill"]
    assert prefill["resources"] == v["resources"]
    assert prefill["parallelism"] == {"tensor": 2, "expert": False}
    assert prefill["rdma"]["networks"] == [{"name": "kv", "type": "existing", "rdmaCni": False}]
    assert v["metrics"]["port"] == 8001  # vLLM behind the decode pods' routing sidecar
    own = text.replace("    replicaCount: 3\n", "    replicaCount: 3\n    resources:\n      requestCPU: '4'\n"
                       "      requestGPU: 1\n      limitGPU: 1\n")
    # One GPU cannot hold the decode pods' tensor parallelism, which the prefill pods inherit.
    assert "llm-parallelism-gpus" in codes(tree, own)
    own += "    parallelism:\n      tensor: 1\n"
    prefill = plan_of(tree, own).chart_values["llm"]["prefill"]
    assert prefill["resources"]["requestGPU"] == 1 and prefill["resources"]["requestCPU"] == "4"
    assert prefill["parallelism"]["tensor"] == 1


@pytest.mark.parametrize("change, code, key", [
    (("  protocol: openai\n", ""), "llm-needs-openai", "model.serving"),
    (("  format: huggingface\n", "  format: sklearn\n"), "llm-format", "model.format"),
    (("  storageUri: hf://Qwen/Qwen2.5-7B-Instruct\n", "  storageUri: gs://b/qwen\n"), "llm-storage-scheme",
     "model.storageUri"),
    (("  serving: llm\n", "  serving: llm\n  command: [python]\n"), "llm-command", "model.command"),
    (("exposeModel:\n  enabled: true\n", ""), "llm-needs-gateway", "exposeModel"),
])
def test_what_an_llminferenceservice_cannot_take_is_refused_with_its_key(tree, change, code, key):
    d = codes(tree, NATIVE.replace(*change))[code]
    assert d.key == key and d.severity == "error" and d.hint


@pytest.mark.parametrize("llm, code", [
    # KServe v0.20 ships no pipeline-parallel preset: its controller stops at ConfigNotFound.
    ("  parallelism:\n    pipeline: 2\n", "llm-pipeline"),
    # Its webhook refuses one without the other.
    ("  parallelism:\n    data: 8\n", "llm-data-parallel"),
    ("  parallelism:\n    data: 9\n    dataLocal: 2\n", "llm-data-parallel"),
    # Both need vLLM's --kv-transfer-config; KServe's preset silently drops the offloading.
    ("  prefill: {}\n  kvCacheOffloading:\n    cpu: 10Gi\n", "llm-offloading-with-prefill"),
    ("  parallelism:\n    tensor: 4\n", "llm-parallelism-gpus"),
    ("  lora:\n    adapters:\n      - name: chat\n        storageUri: hf://a/b\n", "llm-lora-name"),
    ("  objectives:\n    - name: a\n      priority: 1\n    - name: a\n      priority: 2\n", "llm-objective-name"),
])
def test_llm_settings_kserve_would_not_honour_are_refused(tree, llm, code):
    assert code in codes(tree, NATIVE + "llm:\n" + llm)


def test_data_parallelism_across_pods_warns_of_the_capabilities_kserves_preset_grants(tree):
    text = NATIVE.replace("requestGPU: 2\n  limitGPU: 2", "requestGPU: 2\n  limitGPU: 2") + \
        "llm:\n  parallelism:\n    data: 4\n    dataLocal: 2\n"
    d = codes(tree, text)["llm-capabilities"]
    assert d.severity == "warning" and "NET_RAW" in d.message and d.key == "llm.parallelism.data"
    one_pod = NATIVE + "llm:\n  parallelism:\n    data: 2\n    dataLocal: 2\n"
    assert "llm-capabilities" not in codes(tree, one_pod)


def test_the_llm_section_on_the_wrong_serving_is_refused(tree):
    isvc = NATIVE.replace("  serving: llm\n", "  serving: inferenceservice\n  image: vllm/vllm-openai:v0.8.5\n"
                          ).replace("format: huggingface", "format: custom")
    assert "llm-needs-llm-serving" in codes(tree, isvc + "llm:\n  schedulerReplicas: 2\n")
    assert "llm-env-reserved" in codes(
        tree, NATIVE + "env:\n  - name: VLLM_ADDITIONAL_ARGS\n    value: x\nllm:\n  prefill: {}\n")


def test_a_valid_llm_model_has_no_findings(tree):
    text = NATIVE + """\
llm:
  parallelism:
    tensor: 2
  prefill:
    replicaCount: 2
  lora:
    adapters:
      - name: chat-support
        storageUri: hf://acme/support-lora
  objectives:
    - name: interactive
      priority: 10
"""
    assert run(tree, text).diagnostics == []


CANARY = "primaryLoad: 80\ncanary:\n  enabled: true\n  storageUri: hf://Qwen/Qwen3-8B\n"


def test_an_llm_canary_is_a_second_member_of_the_primarys_kserve_routing_group(tree):
    p = plan_of(tree, NATIVE + CANARY)
    assert "llm canary" in p.features and "canary" not in p.features
    # The LLMInferenceService template carries both members; no InferenceService canary is planned.
    assert p.templates.count("llminferenceservice.yaml") == 1
    assert "inferenceservice-canary.yaml" not in p.templates
    assert (p.chart_values["canary"]["storageUri"], p.chart_values["primaryLoad"]) == ("hf://Qwen/Qwen3-8B", 80)
    scaled = plan_of(tree, NATIVE + CANARY + "autoscaling:\n  enabled: true\n  maxReplicaCount: 4\n"
                     "  targetQueueDepth: 8\n")
    assert "hpa-canary.yaml" in scaled.templates


def test_a_canary_tag_without_model_image_is_refused_with_the_way_that_works(tree):
    # The canary's tag replaces model.image's; without model.image there is no tag to change.
    found = codes(tree, NATIVE + CANARY + "  imageTag: v0.9.0\n")["llm-canary-image-tag"]
    assert found.key == "canary.imageTag" and "model.image" in found.hint


def test_a_mirror_or_a_header_matched_canary_makes_the_chart_write_the_llms_route(tree):
    """KServe's route cannot carry a RequestMirror filter or a header match: the chart writes the
    HTTPRoute (httproute.yaml) the members refer to, and the shadow is a third LLMInferenceService."""
    mirror = "mirror:\n  enabled: true\n  storageUri: hf://Qwen/Qwen3-8B\n  percentage: 12.5\n"
    p = plan_of(tree, NATIVE + mirror)
    assert {"llm mirroring", "gateway api routing"} <= set(p.features) and "mirroring" not in p.features
    assert "httproute.yaml" in p.templates and "inferenceservice-shadow.yaml" not in p.templates
    header = plan_of(tree, NATIVE + CANARY + "  headerMatch:\n    x-model-canary: \"true\"\n")
    assert "gateway api routing" in header.features
    # A weighted canary alone stays on KServe's route (its routing group).
    assert "gateway api routing" not in plan_of(tree, NATIVE + CANARY).features


def test_an_llm_canary_with_an_image_tag_runs_that_tag_of_model_image(tree):
    text = NATIVE.replace("  serving: llm\n", "  serving: llm\n  image: vllm/vllm-openai:v0.10.0\n") + \
        "primaryLoad: 80\ncanary:\n  enabled: true\n  imageTag: v0.11.0\n"
    assert plan_of(tree, text).chart_values["canary"]["imageTag"] == "v0.11.0"




def test_an_llm_canary_behind_istios_gateway_warns_that_one_endpoint_picker_serves_the_shared_rules(tree):
    """Istio's route conversion keeps the endpoint picker of a rule's last InferencePool backend; on
    the rules KServe's routing group shares, that is the canary's (members sort by name)."""
    d = codes(tree, NATIVE + CANARY)["llm-canary-picker"]
    assert d.severity == "warning" and "chat-canary" in d.message and "80%" in d.message
    other = PLATFORM + IDP + "gatewayApi:\n  gateway: gw/llm-gateway\n  gatewayClass: kgateway\n"
    assert "llm-canary-picker" not in codes(tree, NATIVE + CANARY, other)


def test_a_mirrored_llms_chart_holds_three_llminferenceservices_and_never_counts_the_shadow(tree, tmp_path):
    """helm template of the chart: the members and the shadow are LLMInferenceServices (no
    InferenceService of any variant), the chart's route is the only HTTPRoute, and the token quota
    and request limits select the primary's and canary's pods, never the shadow's."""
    from test_real_tools import helmrelease_values, template

    helm = need_tool("helm")
    text = NATIVE + CANARY + "  headerMatch:\n    x-model-canary: \"true\"\n" + \
        "mirror:\n  enabled: true\n  storageUri: hf://Qwen/Qwen3-8B-AWQ\n" + \
        "ratelimitIPPerMinute: 10\ntokenLimit:\n  enabled: true\n  tenantId: t\n  ipLimit: 100\n"
    root = tree({"demo/chat.yaml": text}, platform=PLATFORM + IDP)
    result = modelplat("render", str(root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    model = tmp_path / "out" / "demo" / "chat"
    docs = template(helm, model / "chart", "chat", "demo", helmrelease_values(model))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert [n for k, n in kinds if k == "LLMInferenceService"] == ["chat", "chat-canary", "chat-shadow"]
    assert not [n for k, n in kinds if k == "InferenceService"]
    assert [n for k, n in kinds if k == "HTTPRoute"] == ["chat"]
    labels = {d["metadata"]["name"]: d["spec"]["labels"] for d in docs if d["kind"] == "LLMInferenceService"}
    for name in ("chat-tokenlimit", "chat-ratelimit"):
        (f,) = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == name]
        selector = f["spec"]["workloadSelector"]["labels"]
        selected = {m for m, pod in labels.items() if all(pod.get(k) == v for k, v in selector.items())}
        assert selected == {"chat", "chat-canary"}, name
    # Every document, the chart's route and the three LLMInferenceServices among them, against the
    # vendored upstream schemas.
    import json
    import subprocess

    from modelplat import tools

    manifests = tmp_path / "chat.yaml"
    manifests.write_text("\n---\n".join(json.dumps(d) for d in docs))
    checked = subprocess.run([need_tool("kubeconform"), "-strict", "-summary",
                              "-schema-location", tools.crd_schema_location(),
                              "-schema-location", tools.core_schema_location("1.33"), str(manifests)],
                             capture_output=True, text=True)
    assert checked.returncode == 0 and f"Valid: {len(docs)}," in checked.stdout, checked.stdout + checked.stderr
