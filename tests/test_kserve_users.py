"""Coming from KServe: InferenceServices import losslessly or say what they lose, KServe habits get a
hint, and what the charts render serves the models the way KServe's runtimes name and route them.

The engines tests (test_engines.py) check the same against KServe's controller; these check the
import, the rules and the rendered charts (helm template) without a control plane.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelplat import metrics, pipeline, resolve
from modelplat.config import PlatformSettings
from modelplat.engines.checks import container_model_name
from modelplat.importer import validate_imported
from modelplat.kserve_import import import_file

from conftest import EXAMPLES, PLATFORM, modelplat, need_tool

SAMPLES = Path(__file__).resolve().parent / "data" / "kserve-samples"
_yaml = YAML(typ="safe")


@pytest.fixture(scope="module")
def platform() -> PlatformSettings:
    return PlatformSettings.model_validate(_yaml.load((EXAMPLES / "platform.yaml").read_text()))


def imported(name: str, platform=None) -> list[tuple[dict, list[str]]]:
    path = SAMPLES / name
    return import_file(path.read_text(), str(path), platform)


def unmapped_paths(lines: list[str]) -> set[str]:
    return {line.split(": ", 1)[0] for line in lines}


# Each sample → the fields it cannot carry over (each with a reason in the report). Every other
# field of every sample is mapped.
EXPECTED_UNMAPPED = {
    "sklearn-v1.yaml": set(), "sklearn-v2.yaml": set(), "xgboost.yaml": set(), "lightgbm.yaml": set(),
    "onnx.yaml": set(), "tensorflow-cpu.yaml": set(), "tensorflow-gpu.yaml": set(), "torchserve.yaml": set(),
    "triton-transformer.yaml": set(), "custom-container.yaml": set(), "custom-grpc.yaml": set(),
    "gpu-product.yaml": set(), "many.yaml": set(),
    "autoscaling-concurrency.yaml": {"spec.predictor.containerConcurrency"},
    "canary-rollout.yaml": {"spec.predictor.canaryTrafficPercent"},
    "logger-batcher.yaml": {"spec.predictor.batcher"},
    "pod-overrides.yaml": {"spec.predictor.model.volumeMounts", "spec.predictor.affinity",
                           "spec.predictor.imagePullSecrets", "spec.predictor.securityContext",
                           "spec.predictor.terminationGracePeriodSeconds", "spec.predictor.timeout",
                           "spec.predictor.tolerations", "spec.predictor.volumes"},
}


def test_the_corpus_covers_every_predictor_kind_the_issue_names():
    assert {p.name for p in SAMPLES.glob("*.yaml")} == set(EXPECTED_UNMAPPED)
    formats = {values["model"]["format"] for name in EXPECTED_UNMAPPED for values, _ in imported(name)}
    assert formats == {"sklearn", "xgboost", "lightgbm", "onnx", "tensorflow", "pytorch", "triton", "huggingface",
                       "custom"}


@pytest.mark.parametrize("name", sorted(EXPECTED_UNMAPPED))
def test_every_sample_imports_into_values_lint_accepts(name, platform, tmp_path):
    for values, unmapped in imported(name, platform):
        assert unmapped_paths(unmapped) == EXPECTED_UNMAPPED[name], unmapped
        assert all(": " in line and line.split(": ", 1)[1] for line in unmapped)  # a reason each
        file = tmp_path / "samples" / f"{values['name']}.yaml"
        assert validate_imported(values, platform, file) == [], values


def test_the_mapping_of_each_kserve_field(platform):
    (tf_gpu, _), = imported("tensorflow-gpu.yaml", platform)
    assert tf_gpu["resources"]["requestGPU"] == 1 and tf_gpu["resources"]["limitGPU"] == 1  # "1" → 1
    assert tf_gpu["gpu"] == {"accelerator": "nvidia-tesla-t4"}  # cloud.google.com/gke-accelerator
    assert tf_gpu["model"]["runtimeVersion"] == "2.6.2-gpu"
    (product, _), = imported("gpu-product.yaml", platform)
    assert product["gpu"] == {"product": "NVIDIA-A100-SXM4-80GB"}
    assert product["autoscaling"] == {"enabled": True, "maxReplicaCount": 3, "targetMemoryUtilizationPercentage": 80}
    (xgb, _), = imported("xgboost.yaml", platform)
    assert (xgb["replicaCount"], xgb["autoscaling"]) == (2, {"enabled": True, "maxReplicaCount": 5,
                                                              "targetCPUUtilizationPercentage": 70})
    (hf, unmapped), = imported("autoscaling-concurrency.yaml", platform)
    assert hf["autoscaling"]["targetConcurrency"] == 8
    assert hf["model"]["servedModelName"] == "ticket-intent" and "--model_name=ticket-intent" not in hf["model"]["args"]
    assert "autoscaling.targetConcurrency" in unmapped[0]  # the reason names the key to use instead
    (bert, _), = imported("triton-transformer.yaml", platform)
    assert bert["transformer"]["image"] == "registry.example.com/nlp/bert-tokenizer:1.4.0"
    assert bert["transformer"]["args"] == ["--model_name=bert", "--predictor_protocol=v2"]
    assert bert["transformer"]["resources"] == {"requestCPU": "500m", "limitCPU": "1", "requestMemory": "1Gi",
                                                "limitMemory": "2Gi"}
    assert bert["transformer"]["probes"]["readiness"]["path"] == "/v2/health/ready"
    (custom, _), = imported("custom-container.yaml", platform)
    assert custom["model"]["storageUri"] == "s3://acme-models/search/ranker/v5"  # from env STORAGE_URI
    assert [e["name"] for e in custom["env"]] == ["RANKER_TOP_K"]
    assert custom["probes"]["liveness"] == {"type": "tcp", "port": 8080, "initialDelaySeconds": 15, "periodSeconds": 20}
    assert custom["probes"]["startup"]["type"] == "exec"
    assert custom["probes"]["startup"]["command"] == ["cat", "/tmp/ranker-loaded"]
    (grpc, _), = imported("custom-grpc.yaml", platform)
    assert grpc["model"]["port"] == 8081 and grpc["probes"]["readiness"]["type"] == "grpc"
    (torch, _), = imported("torchserve.yaml", platform)
    assert torch["labels"]["team"] == "vision-platform" and torch["annotations"]
    assert torch["podAnnotations"] == {"acme.example.com/rollout-ticket": "VIS-2291"}
    (logged, _), = imported("logger-batcher.yaml", platform)
    assert logged["logger"] == {"mode": "all", "url": "http://logger.samples.svc/"}
    (lgb, _), = imported("lightgbm.yaml", platform)
    assert lgb["serviceAccountName"] and any("secretKeyRef" in e for e in lgb["env"])
    assert [v["name"] for v, _ in imported("many.yaml", platform)] == \
        [d["metadata"]["name"] for d in _yaml.load_all((SAMPLES / "many.yaml").read_text())]


def test_what_cannot_be_imported_is_reported_never_dropped(platform):
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "x", "namespace": "ns", "labels": {"app": "x", "team": "a"},
                         "annotations": {"serving.kserve.io/deploymentMode": "Serverless",
                                         "prometheus.io/scrape": "true"}},
            "spec": {"predictor": {"minReplicas": 0, "model": {"modelFormat": {"name": "sklearn", "version": "1"},
                                                                "storageUri": "s3://a/b", "image": "x/y:1"},
                                   "workerSpec": {}},
                     "transformer": {"containers": [{"name": "tok", "image": "r.example.com/tok:1"},
                                                    {"name": "extra", "image": "r.example.com/x:1"}]},
                     "explainer": {"containers": []}}}
    text = json.dumps(isvc)
    ((values, unmapped),) = import_file(text, "x.json", platform)
    assert unmapped_paths(unmapped) == {
        "metadata.labels.app", "metadata.annotations.serving.kserve.io/deploymentMode",
        "spec.predictor.minReplicas", "spec.predictor.model.modelFormat.version", "spec.predictor.model.image",
        "spec.predictor.workerSpec", "spec.explainer", "spec.transformer.containers[0].name",
        "spec.transformer.containers[1]"}
    assert values["transformer"] == {"image": "r.example.com/tok:1"}
    assert values["labels"] == {"team": "a"}
    assert values["annotations"] == {"prometheus.io/scrape": "true"}  # allowed on the ISVC (not the pods)


def test_import_cli_writes_one_file_per_inferenceservice_and_they_render(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "platform.yaml").write_text(PLATFORM)
    proc = modelplat("import", str(SAMPLES / "many.yaml"), "--output", str(root / "samples"))
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.stem for p in (root / "samples").glob("*.yaml"))
    assert len(written) == 3
    assert f"modelplat render {root}" in proc.stderr
    # an imported file passes lint and renders
    proc = modelplat("render", str(root), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all((tmp_path / "out" / "samples" / name / "chart" / "Chart.yaml").is_file() for name in written)
    # several InferenceServices into one file: a usage error, nothing written
    proc = modelplat("import", str(SAMPLES / "many.yaml"), "--output", str(tmp_path / "one.yaml"))
    assert proc.returncode == 2 and not (tmp_path / "one.yaml").exists()
    # existing files are kept unless --force
    proc = modelplat("import", str(SAMPLES / "many.yaml"), "--output", str(root / "samples"))
    assert proc.returncode == 2 and "--force" in proc.stderr
    # a sample with unmapped fields: written, exit 1, each field on a line
    proc = modelplat("import", str(SAMPLES / "pod-overrides.yaml"), "--format", "json", "--platform",
                     str(root / "platform.yaml"))
    assert proc.returncode == 1 and proc.stdout.startswith("# yaml-language-server")
    report = json.loads(proc.stderr)
    assert len(report["unmapped"]) == len(EXPECTED_UNMAPPED["pod-overrides.yaml"]) and report["problems"] == []


def test_kserve_keys_in_a_values_file_get_the_modelplat_key(tree):
    text = ("model:\n  format: sklearn\n  storageUri: s3://a/b\n  minReplicas: 2\nresources:\n  requestGPU: '1'\n"
            "  limits: {cpu: 1}\nprobes:\n  readiness:\n    httpGet: {path: /x}\nserviceAccount: sa\n"
            "canaryTrafficPercent: 10\nscaleMetric: cpu\ncontainers: []\npredictor: {}\n")
    run = pipeline.run([tree({"p/m.yaml": text})])
    hints = {d.key: d.hint for d in run.errors}
    assert "replicaCount" in hints["model.minReplicas"]
    assert "write 1 without quotes" in hints["resources.requestGPU"]
    assert "limitCPU" in hints["resources.limits"]
    assert "path and port" in hints["probes.readiness.httpGet"]
    assert hints["serviceAccount"] == "did you mean serviceAccountName?"
    assert "primaryLoad" in hints["canaryTrafficPercent"] and "targetCPUUtilizationPercentage" in hints["scaleMetric"]
    assert "format: custom" in hints["containers"] and "modelplat import" in hints["predictor"]


BASE = "model:\n  format: sklearn\n  storageUri: s3://a/b\n"


def _codes(tree, text: str) -> dict:
    run = pipeline.run([tree({"p/m.yaml": text})])
    return {d.code: d for d in run.diagnostics}


def test_labels_and_annotations_modelplat_or_kserve_own_are_refused_with_the_reason(tree):
    found = _codes(tree, BASE + "labels: {app.kubernetes.io/name: x}\n")
    assert found["owned-key"].key == "labels.app.kubernetes.io/name"
    assert "serving.kserve.io/autoscalerClass" in _codes(tree, BASE + "annotations: {serving.kserve.io/autoscalerClass: hpa}\n")["owned-key"].message
    assert "mesh" in _codes(tree, BASE + "podAnnotations: {sidecar.istio.io/inject: 'false'}\n")["owned-key"].message
    assert "owned-key" not in _codes(tree, BASE + "annotations: {example.com/a: b}\npodAnnotations: {example.com/c: d}\n")


def test_autoscaling_without_a_maximum_is_an_error_and_a_fixed_one_a_warning(tree):
    missing = _codes(tree, BASE + "autoscaling:\n  enabled: true\n  targetCPUUtilizationPercentage: 70\n")
    assert missing["autoscaling-needs-maximum"].severity == "error"
    fixed = _codes(tree, BASE + "replicaCount: 2\nautoscaling:\n  enabled: true\n  maxReplicaCount: 2\n"
                                "  targetCPUUtilizationPercentage: 70\n")
    assert fixed["autoscaling-fixed"].severity == "warning" and "autoscaling-needs-maximum" not in fixed


def test_probes_need_their_handler_and_refuse_fields_of_another(tree):
    assert "probe-incomplete" in _codes(tree, BASE + "probes:\n  readiness:\n    type: exec\n")
    assert "probe-incomplete" in _codes(tree, BASE + "probes:\n  liveness:\n    port: 8080\n")
    unused = _codes(tree, BASE + "probes:\n  readiness:\n    type: tcp\n    path: /x\n")
    assert unused["probe-field-unused"].key == "probes.readiness.path"


def test_mlserver_models_refuse_args_which_would_replace_its_command(tree):
    v2 = "model:\n  format: xgboost\n  protocol: v2\n  storageUri: s3://a/b\n  args: [--workers=2]\n"
    assert "args-replace-command" in _codes(tree, v2)
    assert "args-replace-command" not in _codes(tree, v2.replace("protocol: v2", "protocol: v1"))


def test_a_limit_without_a_request_is_the_request_as_in_kubernetes(tree):
    run = pipeline.run([tree({"p/m.yaml": BASE + "resources:\n  limitMemory: 4Gi\n  limitCPU: 250m\n"
                                                  "transformer:\n  image: r.example.com/t:1\n  resources:\n"
                                                  "    limitMemory: 3Gi\n"})])
    assert not run.errors
    (plan,) = run.plans
    resources = plan.chart_values["resources"]
    assert (resources["requestMemory"], resources["requestCPU"]) == ("4Gi", "250m")  # not the 1Gi/500m default
    assert plan.chart_values["transformer"]["resources"]["requestMemory"] == "3Gi"
    assert plan.chart_values["transformer"]["replicaCount"] == 1


def test_a_transformer_limit_below_its_request_is_refused_like_the_models(tree):
    found = _codes(tree, BASE + "transformer:\n  image: r.example.com/t:1\n  resources:\n    requestCPU: '2'\n"
                               "    limitCPU: '1'\n")
    assert found["limit-below-request"].key == "transformer.resources.limitCPU"
    assert "transformer.resources.limitCPU (1) is below transformer.resources.requestCPU (2)" in \
        found["limit-below-request"].message


def test_concurrency_scaling_is_served_by_the_adapter_rules(platform):
    assert metrics.POD_METRICS["targetConcurrency"] == metrics.REQUESTS_IN_FLIGHT
    (rule,) = [r for r in metrics.adapter_rules(platform.metricLabels) if r["name"]["as"] == metrics.REQUESTS_IN_FLIGHT]
    assert rule["seriesQuery"].startswith("istio_request_duration_milliseconds_sum{")
    assert "/ 1000" in rule["metricsQuery"] and 'reporter="destination"' in rule["metricsQuery"]


# --- the rendered charts ------------------------------------------------------------------------------

def _template(tree, text: str, name: str = "m") -> list[dict]:
    from modelplat.render import render_tree

    helm = need_tool("helm")
    root = tree({f"p/{name}.yaml": text}, platform=(EXAMPLES / "platform.yaml").read_text())
    run = pipeline.run([root])
    assert not run.errors, [d.format() for d in run.errors]
    out = root.parent / "out"
    for rel, content in render_tree(run.plans, run.platform).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(content)
    proc = subprocess.run([helm, "template", name, str(out / "p" / name / "chart"), "--namespace", "p"],
                          capture_output=True, text=True, check=True)
    return [d for d in _yaml.load_all(proc.stdout) if d]


def _isvc(docs: list[dict], name: str) -> dict:
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService" and d["metadata"]["name"] == name]
    return isvc


@pytest.mark.parametrize("fmt,protocol,by", [
    ("sklearn", "v1", "arg"), ("sklearn", "v2", "env"), ("xgboost", "v2", "env"), ("tensorflow", "v1", "arg"),
    ("tensorflow", "v2", "artefacts"), ("pytorch", "v1", "artefacts"), ("onnx", "v2", "artefacts"),
    ("huggingface", "v1", "arg"),
])
def test_the_canary_and_shadow_answer_to_the_primarys_model_name(tree, fmt, protocol, by):
    text = (f"model:\n  format: {fmt}\n  protocol: {protocol}\n  storageUri: s3://m/v1\ncanary:\n  enabled: true\n"
            "  storageUri: s3://m/v2\nprimaryLoad: 90\nmirror:\n  enabled: true\n  storageUri: s3://m/v3\n")
    docs = _template(tree, text, "fraud")
    primary, canary, shadow = (_isvc(docs, n)["spec"]["predictor"]["model"] for n in
                               ("fraud", "fraud-canary", "fraud-shadow"))
    assert resolve.SERVED_NAME_BY[resolve.DEFAULT_RUNTIMES[(fmt, protocol)]] == by
    # The primary is named by KServe (the InferenceService's name): nothing is added to it.
    assert container_model_name(primary) is None and "args" not in primary
    if by == "artefacts":  # TorchServe and Triton name models after the model's files
        assert container_model_name(canary) is None and container_model_name(shadow) is None
    else:
        assert container_model_name(canary) == container_model_name(shadow) == "fraud"
        assert ("args" in canary) == (by == "arg")  # MLServer: never args (they replace its command)


def test_a_transformer_takes_the_traffic_and_the_canarys_asks_for_the_primarys_model(tree):
    text = (BASE.replace("sklearn", "triton") + "  protocol: v2\ntransformer:\n  image: r.example.com/tok:1.4.0\n"
            "  args: [--predictor_protocol=v2]\n  env: [{name: TOKENIZER, value: bert}]\n  resources: {limitCPU: '1'}\n  probes:\n    readiness:\n"
            "      type: grpc\n      port: 8081\ncanary:\n  enabled: true\n  storageUri: s3://a/c\nprimaryLoad: 80\n"
            "exposeModel:\n  enabled: true\nauth:\n  jwt:\n    enabled: true\nratelimitIPPerMinute: 10\n")
    docs = _template(tree, text, "bert")
    primary, canary = _isvc(docs, "bert")["spec"], _isvc(docs, "bert-canary")["spec"]
    (container,) = primary["transformer"]["containers"]
    assert container["name"] == "kserve-container" and container["image"] == "r.example.com/tok:1.4.0"
    assert container["args"] == ["--predictor_protocol=v2"]  # KServe adds --model_name=bert itself
    assert container["readinessProbe"]["grpc"] == {"port": 8081}
    assert container["env"] == [{"name": "TOKENIZER", "value": "bert"}]  # the transformer's own, no more
    assert container["resources"]["requests"]["cpu"] == "1"
    assert canary["transformer"]["containers"][0]["args"] == ["--predictor_protocol=v2", "--model_name=bert"]
    assert primary["transformer"]["labels"]["modelplat.io/traffic"] == "live"
    assert primary["predictor"]["labels"]["modelplat.io/traffic"] == "internal"
    vs = next(d for d in docs if d["kind"] == "VirtualService")
    hosts = {r["destination"]["host"] for h in vs["spec"]["http"] for r in h["route"]}
    assert hosts == {"bert-transformer.p.svc.cluster.local", "bert-canary-transformer.p.svc.cluster.local"}
    # Request limits count where clients arrive: the live pods are the transformers.
    limits = next(d for d in docs if d["kind"] == "EnvoyFilter" and "ratelimit" in d["metadata"]["name"])
    assert limits["spec"]["workloadSelector"]["labels"]["modelplat.io/traffic"] == "live"


def test_probes_annotations_and_gke_accelerators_render_as_kubernetes_has_them(tree):
    text = (BASE + "resources:\n  requestGPU: 1\ngpu:\n  accelerator: nvidia-l4\n  product: NVIDIA-L4\n"
            "annotations: {example.com/owner: team}\npodAnnotations: {example.com/ticket: T-1}\nprobes:\n"
            "  readiness: {type: tcp}\n  liveness: {type: exec, command: [cat, /ok]}\n"
            "  startup: {type: grpc, port: 9000, service: inference}\n")
    isvc = _isvc(_template(tree, text), "m")
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["example.com/owner"] == "team"
    assert predictor["annotations"]["example.com/ticket"] == "T-1"
    assert predictor["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    model = predictor["model"]
    assert model["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert model["livenessProbe"]["exec"] == {"command": ["cat", "/ok"]}
    assert model["startupProbe"]["grpc"] == {"port": 9000, "service": "inference"}
