"""LLM-native serving (KServe's LLMInferenceService): what a model owner writes, what modelplat
refuses (each refusal is something KServe v0.20's controller or webhook would fail on, or a
setting that would silently do nothing), and the chart values it plans. What KServe's controller
makes of the rendered resource is checked by the engines tests (tests/test_engines.py)."""

from __future__ import annotations

import pytest

from modelplat import pipeline

from conftest import PLATFORM

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


@pytest.mark.parametrize("extra, code, key", [
    # KServe's group splits by weight; a header-matched rule would need a route of modelplat's own.
    ("  headerMatch:\n    x-canary: \"1\"\n", "llm-canary-header", "canary.headerMatch"),
    # The canary's tag replaces model.image's; without model.image there is no tag to change.
    ("  imageTag: v0.9.0\n", "llm-canary-image-tag", "canary.imageTag"),
])
def test_what_an_llm_canary_cannot_do_is_refused_with_the_way_that_works(tree, extra, code, key):
    found = codes(tree, NATIVE + CANARY + extra)
    assert code in found and found[code].key == key and found[code].hint
    if code == "llm-canary-header":
        assert "/demo/chat-canary/v1/" in found[code].message


def test_an_llm_canary_with_an_image_tag_runs_that_tag_of_model_image(tree):
    text = NATIVE.replace("  serving: llm\n", "  serving: llm\n  image: vllm/vllm-openai:v0.10.0\n") + \
        "primaryLoad: 80\ncanary:\n  enabled: true\n  imageTag: v0.11.0\n"
    assert plan_of(tree, text).chart_values["canary"]["imageTag"] == "v0.11.0"


def test_mirroring_an_llminferenceservice_is_refused_with_the_reason(tree):
    found = codes(tree, NATIVE + "mirror:\n  enabled: true\n  storageUri: hf://Qwen/Qwen3-8B\n")
    assert "RequestMirror" in found["llm-mirror"].message and found["llm-mirror"].key == "mirror"


def test_an_llm_canary_behind_istios_gateway_warns_that_one_endpoint_picker_serves_the_shared_rules(tree):
    """Istio's route conversion keeps the endpoint picker of a rule's last InferencePool backend; on
    the rules KServe's routing group shares, that is the canary's (members sort by name)."""
    d = codes(tree, NATIVE + CANARY)["llm-canary-picker"]
    assert d.severity == "warning" and "chat-canary" in d.message and "80%" in d.message
    other = PLATFORM + IDP + "gatewayApi:\n  gateway: gw/llm-gateway\n  gatewayClass: kgateway\n"
    assert "llm-canary-picker" not in codes(tree, NATIVE + CANARY, other)
