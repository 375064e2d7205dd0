"""Importing a seed-platform HelmRelease: every seed key mapped or reported, the result valid."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from modelplat import pipeline
from modelplat.errors import InvalidInput
from modelplat.importer import SCHEMA_URL, import_helmrelease, to_yaml, validate_imported

SEED = """\
apiVersion: helm.toolkit.fluxcd.io/v2beta1
kind: HelmRelease
metadata:
  name: llama3-chat
  namespace: genai
spec:
  interval: 5m
  releaseName: llama3-chat
  chart:
    spec:
      chart: ./charts/kserve-model
      sourceRef:
        kind: GitRepository
        name: platform
  values:
    image:
      repository: vllm/vllm-openai
      tag: v0.6.3
    storageUri: hf://meta-llama/Meta-Llama-3-8B-Instruct
    replicaCount: 2
    resources:
      requestCPU: "4"
      limitCPU: "8"
      requestMemory: 32Gi
      limitMemory: 32Gi
      requestGPU: 1
      limitGPU: "1"
    autoscaling:
      maxReplicaCount: 4
      targetGPUUtilizationPercentage: 80
      targetRequestRate: 5
    metrics:
      enabled: true
      port: 8082
      path: /metrics
    exposeModel:
      enabled: true
      type: ext
    ratelimitIPPerMinute: 10
    ratelimitEachSAPerMinute: 100
    primaryLoad: 90
    newStorageUri: s3://models/llama3/v2
    tenant_id: team-search
    sa_limit: 12000
    ip_limit: 400
    logger:
      mode: all
      url: http://message-dumper.logging.svc.cluster.local
    env:
      - name: HF_HUB_OFFLINE
        value: "1"
      - name: HF_TOKEN
        valueFrom:
          secretKeyRef:
            name: hf-token
            key: token
    nodeSelectorOverride:
      pool: a100
"""


@pytest.fixture
def imported():
    return import_helmrelease(SEED, "seed/llama3.yaml")


def test_seed_helmrelease_maps_every_seed_key(imported):
    values, _ = imported
    assert values["name"] == "llama3-chat" and values["namespace"] == "genai"
    assert values["model"] == {"format": "custom", "storageUri": "hf://meta-llama/Meta-Llama-3-8B-Instruct",
                               "image": "vllm/vllm-openai:v0.6.3"}
    assert values["resources"] == {"requestCPU": "4", "limitCPU": "8", "requestMemory": "32Gi",
                                   "limitMemory": "32Gi", "requestGPU": 1, "limitGPU": 1}  # "1" unquoted
    assert values["replicaCount"] == 2
    assert values["autoscaling"] == {"enabled": True, "maxReplicaCount": 4,
                                     "targetRequestRate": 5, "targetGPUUtilizationPercentage": 80}
    assert values["metrics"] == {"enabled": True, "port": 8082, "path": "/metrics"}
    assert values["exposeModel"] == {"enabled": True, "type": "ext"}
    assert (values["ratelimitIPPerMinute"], values["ratelimitEachSAPerMinute"]) == (10, 100)
    assert values["primaryLoad"] == 90
    assert values["canary"] == {"enabled": True, "storageUri": "s3://models/llama3/v2"}
    assert values["tokenLimit"] == {"enabled": True, "tenantId": "team-search", "saLimit": 12000, "ipLimit": 400}
    assert values["logger"] == {"mode": "all", "url": "http://message-dumper.logging.svc.cluster.local"}
    assert values["env"] == [{"name": "HF_HUB_OFFLINE", "value": "1"},
                             {"name": "HF_TOKEN", "secretKeyRef": {"name": "hf-token", "key": "token"}}]
    assert "nodeSelectorOverride" not in values
    assert list(values)[:4] == ["name", "namespace", "model", "resources"]  # schema order


def test_unknown_and_release_only_keys_are_reported_not_dropped(imported):
    _, unmapped = imported
    assert "spec.values.nodeSelectorOverride: no modelplat equivalent" in unmapped
    assert any(u.startswith("spec.chart: ") for u in unmapped)
    assert any(u.startswith("spec.interval: ") for u in unmapped)
    assert not any(u.startswith("spec.releaseName") for u in unmapped)  # same as the name: nothing lost
    assert len(unmapped) == 3


def test_imported_values_are_valid(imported):
    values, _ = imported
    assert validate_imported(values) == []


def test_to_yaml_starts_with_schema_and_source_and_reads_back(imported):
    values, unmapped = imported
    text = to_yaml(values, "seed/llama3.yaml", unmapped)
    lines = text.splitlines()
    assert lines[0] == f"# yaml-language-server: $schema={SCHEMA_URL}"
    assert lines[0] == "# yaml-language-server: $schema=https://modelplat.dev/schemas/model-values.schema.json"
    assert lines[1] == "# Imported from seed/llama3.yaml by modelplat import"
    assert "#   spec.values.nodeSelectorOverride: no modelplat equivalent" in lines
    assert YAML(typ="safe").load(text) == values
    assert to_yaml(values, "x").splitlines()[2] == "name: llama3-chat"  # no unmapped: no list


def test_imported_file_passes_schema_validation_in_the_pipeline(tree):
    values, _ = import_helmrelease(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: iris, namespace: demo}\n"
        "spec:\n  values:\n    modelFormat: scikit-learn\n    storageUri: s3://m/iris\n    replicaCount: '2'\n"
        "    metrics: {port: '9090'}\n", "iris-hr.yaml")
    assert values == {"name": "iris", "namespace": "demo", "model": {"format": "sklearn", "storageUri": "s3://m/iris"},
                      "replicaCount": 2, "metrics": {"port": 9090}}
    root = tree({"demo/iris.yaml": to_yaml(values, "iris-hr.yaml")})
    result = pipeline.render_all([root])
    assert not result.errors, [d.format() for d in result.errors]
    assert "demo/iris/helmrelease.yaml" in result.files


def test_plain_values_mapping_and_kubernetes_style_resources():
    values, unmapped = import_helmrelease(
        "format: xgboost\nstorageUri: s3://m/x\nresources:\n  requests: {cpu: 500m, memory: 1Gi, nvidia.com/gpu: 1}\n"
        "  limits: {memory: 2Gi, ephemeral-storage: 1Gi}\nautoscaling: {maxReplicaCount: 1}\n", "values.yaml")
    assert values["model"] == {"format": "xgboost", "storageUri": "s3://m/x"}
    assert values["resources"] == {"requestCPU": "500m", "requestMemory": "1Gi", "requestGPU": 1, "limitMemory": "2Gi"}
    assert values["autoscaling"] == {"maxReplicaCount": 1}  # cannot scale and no target: stays off
    assert "name" not in values
    assert unmapped == ["resources.limits.ephemeral-storage: no modelplat equivalent (only cpu, memory, nvidia.com/gpu)"]


def test_target_namespace_wins_and_differing_values_name_is_reported():
    values, unmapped = import_helmrelease(
        "kind: HelmRelease\napiVersion: helm.toolkit.fluxcd.io/v2\nmetadata: {name: m, namespace: flux-system}\n"
        "spec:\n  targetNamespace: ml\n  releaseName: other\n  valuesFrom: [{kind: ConfigMap, name: x}]\n"
        "  values: {name: legacy, format: sklearn, storageUri: 's3://a/b'}\n", "hr.yaml")
    assert values["name"] == "m" and values["namespace"] == "ml"
    assert "spec.values.name: 'legacy' differs from the HelmRelease's 'm', which is kept" in unmapped
    assert any(u.startswith("spec.releaseName: ") for u in unmapped)
    assert any(u.startswith("spec.valuesFrom: ") and "not read" in u for u in unmapped)


def test_validate_imported_returns_readable_problems_without_raising():
    problems = validate_imported({"model": {"format": "sklern", "storageUri": "ftp://x"}, "replicaCount": 0,
                                  "resources": {"requestGpu": 1}})
    text = "\n".join(problems)
    assert "did you mean 'sklearn'?" in text
    assert "model.storageUri" in text and "storage URI" in text
    assert "replicaCount" in text
    assert "resources.requestGpu: unknown key 'requestGpu' (did you mean 'requestGPU'?)" in problems
    assert "missing required key 'model'" in validate_imported({})[0]


def test_unknown_keys_inside_known_sections_are_reported_with_suggestions():
    _, unmapped = import_helmrelease(
        "model: {format: sklearn, storageUri: 's3://a/b'}\nmetrics: {enabled: true, prot: 9000}\n"
        "image: {repository: r/s, tag: '1.0', pullPolicy: Always}\n", "v.yaml")
    assert "metrics.prot: no modelplat equivalent (did you mean 'metrics.port'?)" in unmapped
    assert "image.pullPolicy: modelplat leaves the pull policy to Kubernetes" in unmapped


@pytest.mark.parametrize("text, message", [
    ("a: [unclosed\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a HelmRelease or a values mapping"),
    ("apiVersion: v1\nkind: ConfigMap\n", "got a ConfigMap"),
    ("kind: HelmRelease\nmetadata: {name: a}\n---\nkind: HelmRelease\nmetadata: {name: b}\n", "2 HelmReleases (a, b)"),
    ("a: &x [1]\nb: *x\n", "cannot import"),
    ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "cannot import"),  # crashed the process (SIGSEGV)
    ("a: " + "x" * (2 << 20) + "\n", "cannot import"),
])
def test_bad_input_is_a_clear_error(text, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_helmrelease(text, "f.yaml")


def test_multi_document_file_picks_the_helmrelease():
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml}\n---\n" + SEED
    values, _ = import_helmrelease(text, "all.yaml")
    assert values["name"] == "llama3-chat"


def test_conflicting_or_malformed_seed_keys_are_reported_not_dropped():
    values, unmapped = import_helmrelease(
        "canary: true\nformat: sklearn\nstorageUri: s3://a/b\nmodel:\n  storageUri: s3://c/d\n"
        "newStorageUri: s3://n/m\ntenant_id: t\ntokenLimit: {tenant_id: u}\n", "x.yaml")
    assert values["model"] == {"format": "sklearn", "storageUri": "s3://c/d"}
    assert values["canary"] == {"enabled": True, "storageUri": "s3://n/m"}
    assert values["tokenLimit"] == {"enabled": True, "tenantId": "t"}
    assert sorted(unmapped) == [
        "canary: expected a mapping, got bool True",
        "storageUri: model.storageUri is already 's3://c/d'",
        "tokenLimit.tenant_id: tokenLimit.tenantId is already set to 't'",
    ]


SEED_CANARY = """\
apiVersion: helm.toolkit.fluxcd.io/v2beta1
kind: HelmRelease
metadata:
  name: iris
  namespace: ml-demo
spec:
  values:
    primaryLoad: 80
    primary:
      modelFormat:
        name: sklearn
      storageUri: s3://models/iris/v1
    canary:
      storageUri: s3://models/iris/v2
"""
SEED_CANARY_CUSTOM = """\
primaryLoad: 90
image:
  repository: registry.example.com/iris-server
  tag: v1.0.0
storageUri: s3://models/iris/v1
canary:
  newStorageUri: s3://models/iris/v2
  image:
    repository: registry.example.com/iris-server
    tag: v1.1.0
"""


def test_the_seed_canary_release_keeps_format_storage_and_the_canarys_storage(tree):
    """The seed's canary chart keeps each InferenceService's keys in a section of its own, and
    KServe's modelFormat mapping: every one has a modelplat key, and none is dropped."""
    values, unmapped = import_helmrelease(SEED_CANARY, "seed/iris-canary.yaml")
    assert values["model"] == {"format": "sklearn", "storageUri": "s3://models/iris/v1"}
    assert values["canary"] == {"enabled": True, "storageUri": "s3://models/iris/v2"}
    assert values["primaryLoad"] == 80
    assert unmapped == []
    assert validate_imported(values) == []
    values, unmapped = import_helmrelease(SEED_CANARY_CUSTOM, "seed/iris-canary.yaml")
    assert values["model"] == {"format": "custom", "storageUri": "s3://models/iris/v1",
                               "image": "registry.example.com/iris-server:v1.0.0"}
    assert values["canary"] == {"enabled": True, "storageUri": "s3://models/iris/v2", "imageTag": "v1.1.0"}
    assert unmapped == [] and validate_imported(values) == []


def test_a_canary_of_another_format_or_image_is_reported_not_dropped():
    other = SEED_CANARY.replace("      storageUri: s3://models/iris/v2\n",
                                "      storageUri: s3://models/iris/v2\n      modelFormat: xgboost\n"
                                "      image: registry.example.com/other:v2\n")
    values, unmapped = import_helmrelease(other, "seed/iris-canary.yaml")
    assert values["canary"] == {"enabled": True, "storageUri": "s3://models/iris/v2"}
    assert any(u.startswith("spec.values.canary.modelFormat: a canary serves the primary's model.format")
               for u in unmapped), unmapped
    assert any(u.startswith("spec.values.canary.image: a canary runs the primary's image") for u in unmapped)
    runtime_image = SEED_CANARY.replace("    primaryLoad: 80\n", "    primaryLoad: 80\n    image: x/sklearn:v1\n")
    values, unmapped = import_helmrelease(runtime_image, "seed/iris-canary.yaml")
    assert "image" not in values["model"]
    assert [u for u in unmapped if u.startswith("spec.values.image: 'x/sklearn:v1' is not imported")], unmapped
