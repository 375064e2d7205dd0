"""helm-unittest suites generated for each chart, as plain data (emitted by yamlout, never templated).

Each test names one behaviour and asserts it, both for the model as configured and for the
opposite setting (`set:`), so a chart that stops honouring a value fails its own tests. Pure.
"""

from __future__ import annotations

from typing import Any

from .plan import ModelPlan

SCHED = "spec.predictor.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]"


def _key(path: str, key: str) -> str:
    """A jsonpath step for a map key that may contain dots or slashes."""
    return f'{path}["{key}"]'


def inferenceservice_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    platform = v["platform"]
    custom = v["model"]["format"] == "custom"
    container = "spec.predictor.containers[0]" if custom else "spec.predictor.model"
    gpu_count = max(v["resources"]["requestGPU"], v["resources"]["limitGPU"])
    gpu_set = {"resources.requestGPU": gpu_count or 1, "resources.limitGPU": gpu_count or 1}
    cpu_set = {"resources.requestGPU": 0, "resources.limitGPU": 0}
    template = "templates/inferenceservice.yaml"
    release = {"name": p.name, "namespace": p.namespace}

    def test(it: str, asserts: list[dict], set_: dict | None = None) -> dict[str, Any]:
        case: dict[str, Any] = {"it": it}
        if set_:
            case["set"] = set_
        case["asserts"] = asserts
        return case

    gpu_asserts = [
        {"contains": {"path": "spec.predictor.tolerations", "content": {"key": platform["gpuTaintKey"], "operator": "Exists"}}},
        {"equal": {"path": f"{SCHED}.key", "value": platform["gpuNodeGroupLabel"]}},
        {"equal": {"path": f"{SCHED}.operator", "value": "In"}},
        {"equal": {"path": f"{SCHED}.values[0]", "value": platform["gpuNodeGroup"]}},
        {"equal": {"path": _key(f"{container}.resources.requests", platform["gpuResourceName"]), "value": str(gpu_count or 1)}},
        {"equal": {"path": _key(f"{container}.resources.limits", platform["gpuResourceName"]), "value": str(gpu_count or 1)}},
    ]
    cpu_asserts = [
        {"notExists": {"path": "spec.predictor.tolerations"}},
        {"equal": {"path": f"{SCHED}.operator", "value": "NotIn"}},
        {"equal": {"path": f"{SCHED}.values[0]", "value": platform["gpuNodeGroup"]}},
        {"notExists": {"path": _key(f"{container}.resources.requests", platform["gpuResourceName"])}},
    ]
    tests = [
        test(
            f"renders one RawDeployment InferenceService named {p.name}",
            [
                {"hasDocuments": {"count": 1}},
                {"isKind": {"of": "InferenceService"}},
                {"isAPIVersion": {"of": "serving.kserve.io/v1beta1"}},
                {"equal": {"path": "metadata.name", "value": p.name}},
                {"equal": {"path": "metadata.namespace", "value": p.namespace}},
                {"equal": {"path": _key("metadata.annotations", "serving.kserve.io/deploymentMode"), "value": "RawDeployment"}},
                {"equal": {"path": _key("metadata.annotations", "serving.kserve.io/autoscalerClass"), "value": "none"}},
                {"equal": {"path": _key("metadata.labels", "app.kubernetes.io/name"), "value": p.name}},
                {"equal": {"path": _key("metadata.labels", "modelplat.io/project"), "value": v["project"]}},
                {"equal": {"path": _key("spec.predictor.labels", "app.kubernetes.io/name"), "value": p.name}},
                {"equal": {"path": "spec.predictor.minReplicas", "value": v["replicaCount"]}},
                {"equal": {"path": "spec.predictor.maxReplicas", "value": v["replicaCount"]}},
            ],
        ),
        test(
            "as configured, schedules onto GPU nodes" if p.gpu else "as configured, keeps off GPU nodes",
            gpu_asserts if p.gpu else cpu_asserts,
        ),
        test("with a GPU: tolerates the GPU taint and requires the GPU node group", gpu_asserts, gpu_set),
        test("without a GPU: no GPU toleration, and required to stay off GPU nodes", cpu_asserts, cpu_set),
        test(
            "mounts a memory-backed /dev/shm when sharedMemory is enabled",
            [
                {"contains": {"path": "spec.predictor.volumes", "content": {
                    "name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(v["sharedMemory"]["sizeLimit"])}}}},
                {"contains": {"path": f"{container}.volumeMounts", "content": {"name": "dshm", "mountPath": "/dev/shm"}}},
            ],
            {"sharedMemory.enabled": True},
        ),
        test(
            "mounts no /dev/shm when sharedMemory is disabled",
            [{"notExists": {"path": "spec.predictor.volumes"}}, {"notExists": {"path": f"{container}.volumeMounts"}}],
            {"sharedMemory.enabled": False},
        ),
        test(
            "adds Prometheus scrape annotations when metrics are enabled",
            [
                {"equal": {"path": _key("spec.predictor.annotations", "prometheus.io/scrape"), "value": "true"}},
                {"equal": {"path": _key("spec.predictor.annotations", "prometheus.io/port"), "value": str(v["metrics"]["port"])}},
                {"equal": {"path": _key("spec.predictor.annotations", "prometheus.io/path"), "value": v["metrics"]["path"]}},
            ],
            {"metrics.enabled": True},
        ),
        test(
            "adds no scrape annotations when metrics are disabled",
            [{"notExists": {"path": _key("spec.predictor.annotations", "prometheus.io/scrape")}}],
            {"metrics.enabled": False},
        ),
        test(
            "pins the GPU product with a node selector",
            [{"equal": {"path": _key("spec.predictor.nodeSelector", platform["gpuProductLabel"]), "value": "NVIDIA-L4"}}],
            gpu_set | {"gpu.product": "NVIDIA-L4"},
        ),
        test(
            "requests the configured CPU and memory",
            [
                {"equal": {"path": f"{container}.resources.requests.cpu", "value": str(v["resources"]["requestCPU"])}},
                {"equal": {"path": f"{container}.resources.requests.memory", "value": str(v["resources"]["requestMemory"])}},
            ],
        ),
    ]
    if custom:
        tests.append(test(
            "runs the custom image as kserve-container",
            [
                {"equal": {"path": "spec.predictor.containers[0].name", "value": "kserve-container"}},
                {"equal": {"path": "spec.predictor.containers[0].image", "value": v["model"]["image"]}},
                {"notExists": {"path": "spec.predictor.model"}},
            ],
        ))
        if v["model"].get("storageUri"):
            tests.append(test(
                "passes the storage URI to KServe's storage initializer",
                [{"contains": {"path": "spec.predictor.containers[0].env",
                               "content": {"name": "STORAGE_URI", "value": v["model"]["storageUri"]}}}],
            ))
    else:
        tests.append(test(
            f"serves the {v['model']['format']} model from its storage URI",
            [
                {"equal": {"path": "spec.predictor.model.modelFormat.name", "value": v["model"]["format"]}},
                {"equal": {"path": "spec.predictor.model.storageUri", "value": v["model"]["storageUri"]}},
                {"notExists": {"path": "spec.predictor.containers"}},
            ],
        ))
    tests.append(test(
        "sends inference logs to the configured sink",
        [{"equal": {"path": "spec.predictor.logger", "value": {"mode": "all", "url": "http://sink.logging.svc"}}}],
        {"logger": {"mode": "all", "url": "http://sink.logging.svc"}},
    ))
    tests.append(test(
        "refuses a negative GPU count (values.schema.json)",
        [{"failedTemplate": {}}],
        {"resources.requestGPU": -1},
    ))
    return {"suite": f"{p.name} InferenceService", "templates": [template], "release": release, "tests": tests}


def suites(p: ModelPlan) -> dict[str, dict[str, Any]]:
    """File name (under the chart's tests/) → suite."""
    return {"inferenceservice_test.yaml": inferenceservice_suite(p)}
