"""`modelplat import` of KServe LLMInferenceServices (v1alpha1 and v1alpha2): every field is
mapped or reported with its reason, and what modelplat renders from the imported values carries
the original's model, roles, parallelism, resources, networks and adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelplat import pipeline, yamlout
from modelplat.config import PlatformSettings
from modelplat.kserve_import import import_file

from conftest import EXAMPLES, modelplat, need_tool
from test_real_tools import helmrelease_values, template

SAMPLES = Path(__file__).resolve().parent / "data" / "kserve-llm-samples"
_yaml = YAML(typ="safe")
EXPECTED_UNMAPPED = {
    "pd-rdma.yaml": {"spec.template.containers[0].env.VLLM_ADDITIONAL_ARGS",
                     "spec.template.containers[0].livenessProbe",
                     "spec.prefill.template.containers[0].env.VLLM_ADDITIONAL_ARGS"},
    "single-v1alpha1.yaml": {"spec.model.criticality", "spec.scaling.wva", "spec.router.scheduler"},
}


@pytest.fixture(scope="module")
def platform() -> PlatformSettings:
    return PlatformSettings.model_validate(_yaml.load((EXAMPLES / "platform.yaml").read_text()))


def imported(name: str, platform=None):
    path = SAMPLES / name
    (result,) = import_file(path.read_text(), str(path), platform)
    return result


@pytest.mark.parametrize("name", sorted(EXPECTED_UNMAPPED))
def test_every_field_is_mapped_or_reported_with_a_reason(name, platform):
    assert {p.name for p in SAMPLES.glob("*.yaml")} == set(EXPECTED_UNMAPPED)
    values, unmapped = imported(name, platform)
    assert {line.split(": ", 1)[0] for line in unmapped} == EXPECTED_UNMAPPED[name]
    assert all(line.split(": ", 1)[1] for line in unmapped)
    assert values["model"]["serving"] == "llm" and values["model"]["protocol"] == "openai"


def test_the_mapping_of_each_llm_field(platform):
    values, _ = imported("pd-rdma.yaml", platform)
    assert values["model"]["storageUri"] == "hf://mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert values["model"]["servedModelName"] == "mixtral"
    assert values["model"]["args"] == ["--max-model-len", "16384"]
    assert (values["replicaCount"], values["serviceAccountName"]) == (2, "llm-reader")
    assert values["resources"] == {"requestCPU": "16", "limitCPU": "32", "requestMemory": "256Gi",
                                   "limitMemory": "256Gi", "requestGPU": 4, "limitGPU": 4}
    assert values["gpu"] == {"product": "NVIDIA-H100-80GB-HBM3"}
    # KServe copies the networks annotation onto every role's pods; the devices are RDMA resources.
    assert values["rdma"] == {"enabled": True, "networks": [{"name": "roce-a", "type": "existing",
                                                              "namespace": "net-system"}],
                              "resources": {"rdma/roce_gdr": 1}}
    llm = values["llm"]
    assert llm["parallelism"] == {"tensor": 4}
    # The prefill pods' resources and NICs equal the decode pods': nothing of their own is written.
    assert llm["prefill"] == {"replicaCount": 3, "parallelism": {"tensor": 4}}
    assert llm["lora"] == {"adapters": [{"name": "mixtral-sql", "storageUri": "hf://acme/mixtral-sql-lora"}],
                           "maxRank": 64}
    assert llm["schedulerReplicas"] == 2
    assert values["exposeModel"] == {"enabled": True}
    single, _ = imported("single-v1alpha1.yaml", platform)
    assert single["model"]["image"] == "quay.io/acme/vllm-cpu:v0.19.0"
    assert (single["replicaCount"], single["autoscaling"]) == (2, {"enabled": True, "maxReplicaCount": 5})


def test_the_import_renders_an_llminferenceservice_like_the_original(tmp_path):
    helm = need_tool("helm")
    root = tmp_path / "models"
    (root / "llm-team").mkdir(parents=True)
    (root / "platform.yaml").write_text((EXAMPLES / "platform.yaml").read_text())
    proc = modelplat("import", str(SAMPLES / "pd-rdma.yaml"), "--output", str(root / "llm-team" / "mixtral-pd.yaml"),
                     "--platform", str(root / "platform.yaml"), "--format", "json")
    assert proc.returncode == 1, proc.stderr  # the three reported fields need a person
    report = json.loads(proc.stderr)
    # An exposed model without JWT refuses every outside caller: lint says so, the owner decides.
    (problem,) = report["problems"]
    assert problem.startswith("exposeModel.enabled: an exposed model without auth.jwt")
    path = root / "llm-team" / "mixtral-pd.yaml"
    path.write_text(path.read_text() + "auth:\n  jwt:\n    enabled: true\n")
    out = tmp_path / "out"
    proc = modelplat("render", str(root), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model = out / "llm-team" / "mixtral-pd"
    docs = template(helm, model / "chart", "mixtral-pd", "llm-team", helmrelease_values(model))
    (ours,) = [d for d in docs if d["kind"] == "LLMInferenceService"]
    original = _yaml.load((SAMPLES / "pd-rdma.yaml").read_text())
    spec, theirs = ours["spec"], original["spec"]
    assert spec["model"] == theirs["model"]
    assert (spec["replicas"], spec["parallelism"]) == (theirs["replicas"], theirs["parallelism"])
    assert (spec["prefill"]["replicas"], spec["prefill"]["parallelism"]) == (3, {"tensor": 4})
    for role, their_role in ((spec, theirs), (spec["prefill"], theirs["prefill"])):
        (main,) = role["template"]["containers"]
        (their_main,) = their_role["template"]["containers"]
        assert {k: {r: str(v) for r, v in s.items()} for k, s in main["resources"].items()} == \
            {k: {r: str(v) for r, v in s.items()} for k, s in their_main["resources"].items()}
        # The network the original annotated on the LLMInferenceService reaches each role's pods.
        assert role["annotations"]["k8s.v1.cni.cncf.io/networks"] == "net-system/roce-a"
        kv = {e["name"]: e.get("value") for e in main["env"]}["VLLM_ADDITIONAL_ARGS"]
        assert kv == {e["name"]: e.get("value") for e in their_main["env"]}["VLLM_ADDITIONAL_ARGS"]
    assert spec["template"]["serviceAccountName"] == "llm-reader"
    assert spec["router"]["scheduler"]["replicas"] == 2


def test_a_file_with_both_kinds_imports_each(platform):
    text = (SAMPLES / "single-v1alpha1.yaml").read_text() + "---\n" + (
        Path(__file__).resolve().parent / "data" / "kserve-samples" / "sklearn-v1.yaml").read_text()
    results = import_file(text, "both.yaml", platform)
    assert [v["model"].get("serving") for v, _ in results] == ["llm", None]
    values = yamlout.dump(results[0][0])
    assert "serving: llm" in values
