"""Semantic rules: each refuses what a schema cannot, with the key and a way out."""

from __future__ import annotations

import pytest

from modelplat import pipeline, rules

from conftest import JWT_LLM_FILE, PLATFORM

BASE = "model:\n  format: sklearn\n  storageUri: s3://m/x\n"
LLM = "model:\n  format: custom\n  protocol: openai\n  image: vllm/vllm-openai:v0.8.5\n"


def codes(tree, text: str, platform: str | None = None) -> dict[str, object]:
    root = tree({"demo/model.yaml": text}, **({"platform": platform} if platform else {}))
    return {d.code: d for d in pipeline.run([root]).diagnostics}


def test_limit_below_request(tree):
    d = codes(tree, BASE + "resources:\n  requestCPU: '2'\n  limitCPU: 1500m\n")["limit-below-request"]
    assert d.key == "resources.limitCPU" and d.line == 6


def test_limit_below_request_from_platform_default_says_so(tree):
    # platform default limitMemory is 2Gi
    d = codes(tree, BASE + "resources:\n  requestMemory: 4Gi\n")["limit-below-request"]
    assert "platform defaults" in d.hint


def test_gpu_overcommit(tree):
    assert "gpu-overcommit" in codes(tree, BASE + "resources:\n  requestGPU: 1\n  limitGPU: 2\n")


@pytest.mark.parametrize("image", ["vllm/vllm-openai", "vllm/vllm-openai:latest"])
def test_latest_or_missing_tag(tree, image):
    assert "latest-tag" in codes(tree, f"model:\n  format: custom\n  image: {image}\n")


def test_digest_is_fine(tree):
    image = "vllm/vllm-openai@sha256:" + "a" * 64
    assert codes(tree, f"model:\n  format: custom\n  image: {image}\n") == {}
    tagged = "vllm/vllm-openai:v0.8.5@sha256:" + "0123456789abcdef" * 4
    assert codes(tree, f"model:\n  format: custom\n  image: {tagged}\n") == {}


@pytest.mark.parametrize("image", ["x:v1@sha256:abc", "x@sha256:" + "A" * 64, "x@md5:" + "a" * 32,
                                   "x@sha256:" + "a" * 65])
def test_a_malformed_digest_is_refused(tree, image):
    d = codes(tree, f"model:\n  format: custom\n  image: '{image}'\n")["malformed-digest"]
    assert d.key == "model.image" and d.line == 3 and "64 hex digits" in d.message


def test_the_latest_runtime_version_is_refused(tree):
    d = codes(tree, BASE + "  runtimeVersion: latest\n")["latest-tag"]
    assert d.key == "model.runtimeVersion" and d.line == 4
    assert "latest-tag" not in codes(tree, BASE + "  runtimeVersion: 1.5.0\n")


def test_custom_needs_image_and_runtime_needs_storage(tree):
    assert "custom-needs-image" in codes(tree, "model:\n  format: custom\n")
    assert "missing-storage-uri" in codes(tree, "model:\n  format: sklearn\n")
    assert "image-needs-custom" in codes(tree, BASE + "  image: x/y:1\n")


def test_name_length_leaves_room_for_canary_suffix(tree):
    ok = "a" * rules.MAX_NAME
    assert codes(tree, f"name: {ok}\n" + BASE) == {}
    d = codes(tree, f"name: {ok}b\n" + BASE)["name-too-long"]
    assert d.line == 1 and "-canary-predictor" in d.hint


def test_env_needs_exactly_one_source_and_no_duplicates(tree):
    found = codes(tree, BASE + "env:\n  - name: A\n  - name: B\n    value: x\n  - name: B\n    value: y\n")
    assert {"env-value", "duplicate-env"} <= set(found)
    assert "reserved-env" in codes(tree, BASE + "env:\n  - name: STORAGE_URI\n    value: x\n")


def test_token_limit_and_rdma_are_refused_with_their_own_rules(tree):
    found = codes(tree, BASE + "tokenLimit:\n  enabled: true\nrdma:\n  enabled: true\n")
    assert {"token-limit-needs-openai", "token-limit-needs-tenant", "token-limit-empty", "rdma-needs-gpu",
            "rdma-needs-network", "rdma-needs-resources"} <= set(found)


JWT_LLM = JWT_LLM_FILE


def test_token_limit_rules(tree):
    ok = JWT_LLM + "tokenLimit:\n  enabled: true\n  tenantId: search\n  saLimit: 1000\n"
    assert not [c for c in codes(tree, ok) if c.startswith("token")]
    no_jwt = ok.replace("auth:\n  jwt:\n    enabled: true\n    issuer: https://idp.example.com\n    jwksUri: https://idp.example.com/jwks.json\n", "")
    assert "token-limit-needs-jwt" in codes(tree, no_jwt)
    assert "token-limit-uncounted" in codes(tree, ok + "  missingIdentity: countByIP\n")
    assert "token-limit-uncounted" not in codes(tree, ok + "  missingIdentity: countByIP\n  ipLimit: 5\n")
    assert "token-limit-no-paths" in codes(tree, ok + "  paths: []\n")
    old_istio = PLATFORM + "istioVersion: '1.24'\n"
    root = tree({"demo/m.yaml": ok}, platform=old_istio)
    assert "token-limit-needs-istio" in {d.code for d in pipeline.run([root]).diagnostics}


def test_platform_token_defaults_fill_in_and_count(tree):
    platform = PLATFORM + "tokenLimit:\n  ipLimit: 500\n  failureMode: open\n"
    root = tree({"demo/m.yaml": JWT_LLM + "tokenLimit:\n  enabled: true\n  tenantId: search\n"}, platform=platform)
    result = pipeline.run([root])
    assert not result.errors, result.diagnostics
    (p,) = result.plans
    tokens = p.chart_values["tokenLimit"]
    assert tokens["ipLimit"] == 500 and tokens["failureMode"] == "open" and "saLimit" not in tokens
    assert tokens["paths"][0] == "/v1/chat/completions" and tokens["missingIdentity"] == "refuse"


def test_models_sharing_a_tenant_quota_must_agree(tree):
    shared = "tokenLimit:\n  enabled: true\n  tenantId: search\n  shareTenantQuota: true\n  saLimit: %d\n"
    root = tree({"demo/a.yaml": JWT_LLM + shared % 1000, "demo/b.yaml": JWT_LLM + shared % 2000})
    problems = [d for d in pipeline.run([root]).diagnostics if d.code == "token-quota-conflict"]
    assert len(problems) == 1 and problems[0].file.endswith("b.yaml") and "a.yaml" in problems[0].message
    # from the render cache too: both models cached, then one changes
    from modelplat.pipeline import render_all

    same = tree({"demo/a.yaml": JWT_LLM + shared % 1000, "demo/b.yaml": JWT_LLM + shared % 1000})
    assert not render_all([same]).diagnostics
    (same / "demo/b.yaml").write_text(JWT_LLM + shared % 2000)
    assert "token-quota-conflict" in {d.code for d in render_all([same]).diagnostics}


def test_feature_rules_across_the_vocabulary(tree):
    assert "canary-identical" in codes(tree, BASE + "canary:\n  enabled: true\nprimaryLoad: 90\n")
    assert "canary-needs-primary-load" in codes(tree, BASE + "canary:\n  enabled: true\n  storageUri: s3://m/y\n")
    assert "primary-load-without-canary" in codes(tree, BASE + "primaryLoad: 80\n")
    assert "mirror-identical" in codes(tree, BASE + "mirror:\n  enabled: true\n")
    assert "sa-limit-needs-jwt" in codes(tree, BASE + "ratelimitEachSAPerMinute: 100\n")
    assert "custom-authz-needs-provider" in codes(tree, BASE + "auth:\n  customAuthz:\n    enabled: true\n")
    assert "max-below-min" in codes(tree, BASE + "replicaCount: 3\nautoscaling:\n  enabled: true\n  maxReplicaCount: 2\n")
    assert "llm-signal-needs-openai" in codes(tree, BASE + "autoscaling:\n  targetQueueDepth: 5\n")
    assert "queue-needs-volcano" in codes(tree, BASE + "scheduling:\n  queue: llm\n")


def test_rendered_optional_features_pass(tree):
    text = LLM + "resources:\n  requestGPU: 1\nscheduling:\n  schedulerName: volcano\n  queue: llm\n" \
                 "logger:\n  url: http://sink.logging.svc\n"
    assert codes(tree, text) == {}


@pytest.mark.parametrize("text,expected", [("500m", "0.5"), ("2", "2"), ("1Ki", "1024"), ("1.5Gi", "1610612736"),
                                           (3, "3"), ("1e3", "1E+3"), ("100M", "1.00E+8")])
def test_quantity_parsing(text, expected):
    from decimal import Decimal

    assert rules.quantity(text) == Decimal(expected)


def test_settings_that_would_be_ignored_are_refused(tree):
    assert "gpu-product-needs-gpu" in codes(tree, BASE + "gpu:\n  product: NVIDIA-L4\n")
    assert "served-model-name-unsupported" in codes(tree, LLM + "  servedModelName: qwen\n")
    assert codes(tree, BASE + "  servedModelName: iris\n") == {}


def test_runtime_settings_are_refused_for_custom_containers(tree):
    found = codes(tree, LLM.replace("protocol: openai", "protocol: v2") + "  runtime: kserve-huggingface\n")
    assert {"runtime-needs-runtime-format", "protocol-needs-runtime-format"} <= set(found)
    assert codes(tree, LLM) == {}


GPU_LLM = LLM + "  storageUri: hf://org/model\nresources:\n  requestGPU: 1\n"


def test_autoscaling_rules(tree):
    assert "autoscaling-disabled" in codes(tree, BASE + "autoscaling:\n  targetCPUUtilizationPercentage: 70\n")
    assert "autoscaling-needs-target" in codes(tree, BASE + "autoscaling:\n  enabled: true\n  maxReplicaCount: 3\n")
    assert "gpu-target-needs-gpu" in codes(
        tree, BASE + "autoscaling:\n  enabled: true\n  maxReplicaCount: 3\n  targetGPUUtilizationPercentage: 80\n")
    warned = codes(tree, GPU_LLM + "autoscaling:\n  enabled: true\n  maxReplicaCount: 3\n  targetGPUUtilizationPercentage: 80\n")
    assert warned["gpu-target-alone"].severity == "warning"
    root = tree({"demo/m.yaml": GPU_LLM + "autoscaling:\n  enabled: true\n  maxReplicaCount: 3\n  targetGPUUtilizationPercentage: 80\n"})
    assert pipeline.run([root]).plans, "a warning does not stop the render"
    (root / "demo/m.yaml").unlink()
    assert codes(tree, GPU_LLM + "autoscaling:\n  enabled: true\n  maxReplicaCount: 3\n"
                        "  targetGPUUtilizationPercentage: 80\n  targetQueueDepth: 10\n") == {}


def test_observability_rules(tree):
    assert "alerts-disabled" in codes(tree, BASE + "observability:\n  alerts:\n    queueSize: 10\n")
    found = codes(tree, BASE + "observability:\n  alerts:\n    enabled: true\n    queueSize: 10\n    gpuUtilizationPercent: 90\n")
    assert found["alert-does-not-apply"].key in ("observability.alerts.queueSize", "observability.alerts.gpuUtilizationPercent")
    assert "pdb-disabled" in codes(tree, BASE + "podDisruptionBudget:\n  maxUnavailable: 2\n")
    assert codes(tree, BASE + "replicaCount: 3\npodDisruptionBudget:\n  maxUnavailable: 2\n") == {}
    assert "metrics-disabled" in codes(tree, BASE + "metrics:\n  enabled: false\n  port: 9090\n")


def test_rdma_rules(tree):
    rdma = GPU_LLM + "rdma:\n  enabled: true\n  resources: {rdma/roce_gdr: 1}\n  networks:\n"
    assert codes(tree, rdma + "    - {name: kv, type: sriov, resourceName: rdma/roce_gdr}\n") == {}
    assert "sriov-resource-not-requested" in codes(tree, rdma + "    - {name: kv, type: sriov, resourceName: x.io/vf}\n")
    assert "sriov-needs-resource" in codes(tree, rdma + "    - {name: kv, type: sriov}\n")
    assert "network-needs-master" in codes(tree, rdma + "    - {name: kv, type: macvlan}\n")
    assert "existing-network-field" in codes(tree, rdma + "    - {name: kv, type: existing, subnet: 10.0.0.0/24}\n")
    assert "network-namespace" in codes(tree, rdma + "    - {name: kv, type: macvlan, master: eth1, namespace: x}\n")
    assert "duplicate-network" in codes(tree, rdma + "    - {name: kv, type: existing}\n    - {name: kv, type: existing}\n")
    assert "rdma-disabled" in codes(tree, GPU_LLM + "rdma:\n  ncclHints: true\n")
    assert codes(tree, rdma + "    - {name: kv, type: sriov, resourceName: rdma/roce_gdr, rdmaCni: true}\n") == {}
    d = codes(tree, rdma + "    - {name: kv, type: macvlan, master: eth1, rdmaCni: true}\n")["rdma-cni-needs-sriov"]
    assert d.key == "rdma.networks.0.rdmaCni"
    assert "existing-network-field" in codes(tree, rdma + "    - {name: kv, type: existing, rdmaCni: true}\n")


JWT_PLATFORM = ("clusterName: ml\ndomain: models.example.com\njwt:\n  issuer: https://idp.example.com\n"
                "  jwksUri: https://idp.example.com/jwks.json\n")


def test_traffic_rules(tree):
    ok = BASE + "exposeModel:\n  enabled: true\nauth:\n  jwt:\n    enabled: true\n"
    assert codes(tree, ok, platform=JWT_PLATFORM) == {}
    assert "exposure-without-jwt" in codes(tree, BASE + "exposeModel:\n  enabled: true\n", platform=JWT_PLATFORM)
    assert "exposure-needs-host" in codes(tree, ok, platform="clusterName: ml\njwt:\n  issuer: https://i.example.com\n"
                                                                "  jwksUri: https://i.example.com/j\n")
    assert "jwt-needs-issuer" in codes(tree, BASE + "auth:\n  jwt:\n    enabled: true\n")
    assert "exposure-needs-auth" in codes(tree, BASE + "exposeModel:\n  enabled: true\nauth:\n  enabled: false\n",
                                          platform=JWT_PLATFORM)
    assert "feature-disabled" in codes(tree, BASE + "canary:\n  storageUri: s3://m/v2\n")
    assert "feature-disabled" in codes(tree, BASE + "exposeModel:\n  type: ext\n")
    assert "principals-need-jwt" in codes(tree, BASE + "auth:\n  allowedPrincipals: ['https://i/x']\n")
    assert "mirror-nothing" in codes(tree, BASE + "mirror:\n  enabled: true\n  storageUri: s3://m/v2\n  percentage: 0\n")
    long_name = "a" * 40
    assert "host-too-long" in codes(tree, f"name: {long_name}\nnamespace: {'b' * 20}\n" + ok, platform=JWT_PLATFORM)
    # The namespace the folder gives counts as much as one the file sets: a 71-character label.
    folder = "c" * 20
    root = tree({f"{folder}/model.yaml": f"name: {long_name}\n" + ok}, platform=JWT_PLATFORM)
    (d,) = [d for d in pipeline.run([root]).diagnostics if d.code == "host-too-long" and folder in d.file]
    assert f"{long_name}-predictor-{folder}." in d.message


def test_podmonitor_needs_a_declared_port_and_networks_have_one_owner(tree):
    found = codes(tree, BASE + "metrics:\n  port: 8082\n", platform="clusterName: ml\nscrape: podMonitor\n")
    assert "podmonitor-port" in found
    assert codes(tree, BASE + "metrics:\n  port: 8080\n", platform="clusterName: ml\nscrape: podMonitor\n") == {}
    net = GPU_LLM + "rdma:\n  enabled: true\n  resources: {rdma/roce_gdr: 1}\n  networks:\n    - {name: kv, type: macvlan, master: eth1}\n"
    root = tree({"llm/a.yaml": net, "llm/b.yaml": net})
    run = pipeline.run([root])
    assert [d.code for d in run.errors] == ["network-owned-twice"]
    assert "b" not in [p.name for p in run.plans] and "a" in [p.name for p in run.plans]
    # from the render cache too: the owner cached, the second owner new
    from modelplat.pipeline import render_all

    (root / "llm/b.yaml").unlink()
    assert not render_all([root]).errors
    (root / "llm/b.yaml").write_text(net)
    assert [d.code for d in render_all([root]).errors] == ["network-owned-twice"]


def test_ignored_traffic_settings_are_refused(tree):
    assert "image-needs-custom" in codes(tree, BASE + "mirror:\n  enabled: true\n  storageUri: s3://m/v2\n  image: x/y:1\n")
    assert "feature-disabled" in codes(tree, BASE + "primaryLoad: 100\n")
    found = codes(tree, BASE + "exposeModel:\n  enabled: true\n  host: iris.example.com\n  type: ext\n"
                        "auth:\n  jwt:\n    enabled: true\n", platform=JWT_PLATFORM)
    assert found["feature-disabled"].key == "exposeModel.type"
    # Triton names models after the repository's folders: the canary answers to the same names.
    assert "variant-model-name" not in codes(tree, "model:\n  format: onnx\n  storageUri: s3://m/x\ncanary:\n"
                                                   "  enabled: true\n  storageUri: s3://m/v2\nprimaryLoad: 90\n")
    # A runtime modelplat does not know: it cannot tell how the canary is named.
    warned = codes(tree, "model:\n  format: onnx\n  runtime: acme-onnx\n  storageUri: s3://m/x\ncanary:\n"
                         "  enabled: true\n  storageUri: s3://m/v2\nprimaryLoad: 90\n")
    assert warned["variant-model-name"].severity == "warning"


@pytest.mark.parametrize("fmt,protocol,refused", [
    ("onnx", "v1", True), ("triton", "v1", True), ("sklearn", "grpc-v2", True), ("huggingface", "grpc-v2", True),
    ("onnx", "v2", False), ("tensorflow", "grpc-v2", False), ("pytorch", "v1", False), ("sklearn", "v2", False),
])
def test_a_protocol_no_kserve_runtime_serves_the_format_over_is_refused(tree, fmt, protocol, refused):
    # Found by the engines: KServe v0.20 made no Deployment for an onnx model without protocol v2.
    text = f"model:\n  format: {fmt}\n  storageUri: s3://m/x\n  protocol: {protocol}\n"
    assert ("no-runtime-for-protocol" in codes(tree, text)) is refused
    # Naming a runtime of one's own is the way out.
    assert "no-runtime-for-protocol" not in codes(tree, text + "  runtime: my-runtime\n")


@pytest.mark.parametrize("fmt,expected", [("onnx", "v2"), ("triton", "v2"), ("sklearn", None), ("tensorflow", None)])
def test_an_unset_protocol_is_one_a_kserve_runtime_serves(tree, fmt, expected):
    root = tree({"demo/model.yaml": f"model:\n  format: {fmt}\n  storageUri: s3://m/x\n"})
    (p,) = pipeline.run([root]).plans
    assert p.chart_values["model"].get("protocol") == expected
