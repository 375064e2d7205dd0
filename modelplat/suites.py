"""helm-unittest suites generated for each chart, as plain data (emitted by yamlout, never templated).

Each test names one behaviour and asserts it, both for the model as configured and for the
opposite setting (`set:`), so a chart that stops honouring a value fails its own tests. Pure.
"""

from __future__ import annotations

import json
from typing import Any

from .plan import ModelPlan
from .resolve import llm_owns_route

SCHED = "spec.predictor.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]"


def _key(path: str, key: str) -> str:
    """A jsonpath step for a map key that may contain dots or slashes."""
    return f'{path}["{key}"]'


def _release(p: ModelPlan) -> dict[str, str]:
    return {"name": p.name, "namespace": p.namespace}


def _workload(p: ModelPlan, suffix: str = "") -> str:
    """The Deployment KServe makes for the model's (decode) pods, or its canary's (suffix -canary)."""
    return f"{p.name}{suffix}-kserve" if p.serving == "llm" else f"{p.name}{suffix}-predictor"


def _pod_selector(p: ModelPlan) -> dict[str, str]:
    """What selects the model's pods (modelplat.podSelector)."""
    return {"modelplat.io/model": p.name, "modelplat.io/variant": "primary"} if p.serving == "llm" \
        else {"serving.kserve.io/inferenceservice": p.name}


SCHEMA = "schema"  # a case's key (dropped when written) marking what values.schema.json decides


def _case(it: str, asserts: list[dict], set_: dict | None = None, schema: bool = False) -> dict[str, Any]:
    """One helm-unittest test: a behaviour, its assertions, and the values it sets (if any).
    schema: the outcome is values.schema.json's (Helm refuses the values before any template)."""
    case: dict[str, Any] = {"it": it}
    if set_:
        case["set"] = set_
    case["asserts"] = asserts
    if schema:
        case[SCHEMA] = True
    return case


def inferenceservice_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    platform = v["platform"]
    custom = v["model"]["format"] == "custom"
    container = "spec.predictor.containers[0]" if custom else "spec.predictor.model"
    gpu_count = max(v["resources"]["requestGPU"], v["resources"]["limitGPU"])
    gpu_set = {"resources.requestGPU": gpu_count or 1, "resources.limitGPU": gpu_count or 1}
    cpu_set = {"resources.requestGPU": 0, "resources.limitGPU": 0}
    template = "templates/inferenceservice.yaml"
    release = _release(p)
    scaling = v["autoscaling"]["enabled"]
    test = _case

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
                {"equal": {"path": _key("metadata.annotations", "serving.kserve.io/autoscalerClass"),
                           "value": "external" if scaling else "none"}},
                {"equal": {"path": _key("metadata.labels", "app.kubernetes.io/name"), "value": p.name}},
                {"equal": {"path": _key("metadata.labels", "modelplat.io/project"), "value": v["project"]}},
                {"equal": {"path": _key("spec.predictor.labels", "app.kubernetes.io/name"), "value": p.name}},
                {"equal": {"path": "spec.predictor.minReplicas", "value": v["replicaCount"]}},
                {"equal": {"path": "spec.predictor.maxReplicas",
                           "value": v["autoscaling"]["maxReplicaCount"] if scaling else v["replicaCount"]}},
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
            # KServe copies these labels onto the pods: a versioned one would restart them on
            # every chart change.
            "carries no label that changes with the chart's version",
            [{"notExists": {"path": _key("metadata.labels", "helm.sh/chart")}},
             {"notExists": {"path": _key("metadata.labels", "app.kubernetes.io/version")}}],
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
            {"metrics.enabled": True, "platform.scrape": "annotations"},
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
        "hands replicas to the HPA (autoscalerClass external) when autoscaling is on",
        [{"equal": {"path": _key("metadata.annotations", "serving.kserve.io/autoscalerClass"), "value": "external"}},
         {"equal": {"path": "spec.predictor.minReplicas", "value": 2}},
         {"equal": {"path": "spec.predictor.maxReplicas", "value": 7}}],
        {"replicaCount": 2, "autoscaling.enabled": True, "autoscaling.maxReplicaCount": 7},
    ))
    tests.append(test(
        "keeps replicas fixed (autoscalerClass none) when autoscaling is off",
        [{"equal": {"path": _key("metadata.annotations", "serving.kserve.io/autoscalerClass"), "value": "none"}},
         {"equal": {"path": "spec.predictor.maxReplicas", "value": v["replicaCount"]}}],
        {"autoscaling.enabled": False},
    ))
    if p.values.rdma.enabled:
        networks = ",".join(f"{n.namespace or p.namespace}/{n.name}" for n in p.values.rdma.networks)
        resource, count = next(iter(sorted(v["rdma"]["resources"].items())))
        tests.append(test(
            "attaches the RDMA networks, requests the device and adds IPC_LOCK only",
            [{"equal": {"path": _key("spec.predictor.annotations", "k8s.v1.cni.cncf.io/networks"), "value": networks}},
             {"equal": {"path": _key(f"{container}.resources.requests", resource), "value": str(count)}},
             {"equal": {"path": _key(f"{container}.resources.limits", resource), "value": str(count)}},
             {"equal": {"path": f"{container}.securityContext.capabilities.add", "value": ["IPC_LOCK"]}},
             {"notExists": {"path": f"{container}.securityContext.privileged"}}],
        ))
    tests.append(test(
        "without RDMA: no networks annotation and no added capability",
        [{"notExists": {"path": _key("spec.predictor.annotations", "k8s.v1.cni.cncf.io/networks")}},
         {"notExists": {"path": f"{container}.securityContext"}}],
        {"rdma.enabled": False},
    ))
    transformer = {"image": "registry.example.com/team/tokenizer:1.4.0", "command": None, "args": ["--workers=2"],
                   "port": 8081, "env": [], "resources": {"requestCPU": "250m", "limitCPU": "1"}, "replicaCount": 2,
                   "probes": {"readiness": {"type": "grpc", "port": 9000, "initialDelaySeconds": 0, "periodSeconds": 10,
                                            "timeoutSeconds": 1, "failureThreshold": 3}}}
    tests.append(test(
        "puts a transformer in front of the predictor when the values have one",
        [{"equal": {"path": "spec.transformer.containers[0].name", "value": "kserve-container"}},
         {"equal": {"path": "spec.transformer.containers[0].image", "value": transformer["image"]}},
         {"equal": {"path": "spec.transformer.containers[0].args", "value": ["--workers=2"]}},
         {"equal": {"path": "spec.transformer.containers[0].ports[0].containerPort", "value": 8081}},
         {"equal": {"path": "spec.transformer.containers[0].readinessProbe.grpc", "value": {"port": 9000}}},
         {"equal": {"path": "spec.transformer.containers[0].resources.limits.cpu", "value": "1"}},
         {"equal": {"path": "spec.transformer.minReplicas", "value": 2}},
         {"equal": {"path": _key("spec.transformer.labels", "modelplat.io/traffic"), "value": "live"}},
         {"equal": {"path": _key("spec.predictor.labels", "modelplat.io/traffic"), "value": "internal"}}],
        {"transformer": transformer},
    ))
    tests.append(test(
        "has no transformer unless the values ask for one",
        [{"notExists": {"path": "spec.transformer"}}],
        {"transformer": None},
    ))
    tests.append(test(
        "renders tcp, exec and grpc probes as Kubernetes handlers",
        [{"equal": {"path": f"{container}.readinessProbe.tcpSocket.port", "value": 7000}},
         {"equal": {"path": f"{container}.livenessProbe.exec.command", "value": ["cat", "/tmp/ok"]}},
         {"equal": {"path": f"{container}.startupProbe.grpc", "value": {"port": 9000, "service": "inference"}}}],
        {"probes": {k: dict(p, initialDelaySeconds=0, periodSeconds=10, timeoutSeconds=1, failureThreshold=3)
                    for k, p in (("readiness", {"type": "tcp", "port": 7000}),
                                 ("liveness", {"type": "exec", "command": ["cat", "/tmp/ok"]}),
                                 ("startup", {"type": "grpc", "port": 9000, "service": "inference"}))}},
    ))
    tests.append(test(
        "refuses a negative GPU count (values.schema.json)",
        [{"failedTemplate": {}}],
        {"resources.requestGPU": -1},
        schema=True,
    ))
    return {"suite": f"{p.name} InferenceService", "templates": [template], "release": release, "tests": tests}


def hpa_suite(p: ModelPlan, variant: str = "primary") -> dict[str, Any]:
    from . import metrics

    v = p.chart_values
    suffix = "-canary" if variant == "canary" else ""
    scaling = v["autoscaling"]
    pods = [{"contains": {"path": "spec.metrics", "content": {
        "type": "Pods", "pods": {"metric": {"name": metric},
                                 "target": {"type": "AverageValue", "averageValue": _quantity(scaling[key])}}}}}
            for key, metric in metrics.POD_METRICS.items() if scaling.get(key) is not None]
    resources = [{"contains": {"path": "spec.metrics", "content": {
        "type": "Resource", "resource": {"name": name, "target": {"type": "Utilization", "averageUtilization": scaling[key]}}}}}
        for key, name in (("targetCPUUtilizationPercentage", "cpu"), ("targetMemoryUtilizationPercentage", "memory"))
        if scaling.get(key) is not None]
    return {"suite": f"{p.name}{suffix} HorizontalPodAutoscaler", "templates": [f"templates/hpa{suffix}.yaml"],
            "release": _release(p), "tests": [
        _case("scales KServe's Deployment of the model's pods between replicaCount and maxReplicaCount", [
            {"isKind": {"of": "HorizontalPodAutoscaler"}},
            {"isAPIVersion": {"of": "autoscaling/v2"}},
            {"equal": {"path": "spec.scaleTargetRef", "value": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                "name": _workload(p, suffix)}}},
            {"equal": {"path": "spec.minReplicas", "value": v["replicaCount"]}},
            {"equal": {"path": "spec.maxReplicas", "value": scaling["maxReplicaCount"]}},
            {"lengthEqual": {"path": "spec.metrics", "count": len(pods) + len(resources)}},
            *pods, *resources,
        ]),
        _case("holds replicas for the scale-down window and adds pods at the configured pace", [
            {"equal": {"path": "spec.behavior.scaleDown.stabilizationWindowSeconds",
                       "value": scaling["behavior"]["scaleDownStabilizationSeconds"]}},
            {"equal": {"path": "spec.behavior.scaleUp.policies[0]", "value": {
                "type": "Pods", "value": scaling["behavior"]["scaleUpPods"],
                "periodSeconds": scaling["behavior"]["scaleUpPeriodSeconds"]}}},
        ]),
        _case("renders nothing when autoscaling is off", [{"hasDocuments": {"count": 0}}], {"autoscaling.enabled": False}),
    ]}


def _quantity(value: Any) -> str:
    """How Helm prints a number from values (float64): 20 → "20", 2.5 → "2.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def pdb_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    return {"suite": f"{p.name} PodDisruptionBudget", "templates": ["templates/poddisruptionbudget.yaml"],
            "release": _release(p), "tests": [
        _case("keeps all but maxUnavailable of the model's pods during voluntary disruptions", [
            {"isKind": {"of": "PodDisruptionBudget"}},
            {"equal": {"path": "spec.maxUnavailable", "value": v["podDisruptionBudget"]["maxUnavailable"]}},
            {"equal": {"path": "spec.selector.matchLabels", "value": _pod_selector(p)}},
        ]),
        _case("renders nothing when disabled", [{"hasDocuments": {"count": 0}}], {"podDisruptionBudget.enabled": False}),
    ]}


def telemetry_suite(p: ModelPlan) -> dict[str, Any]:
    return {"suite": f"{p.name} Telemetry", "templates": ["templates/telemetry.yaml"],
            "release": _release(p), "tests": [
        _case("turns on Envoy access logs for this model's pods only", [
            {"isKind": {"of": "Telemetry"}},
            {"equal": {"path": "spec.selector.matchLabels", "value": _pod_selector(p)}},
            {"equal": {"path": "spec.accessLogging[0].providers[0].name", "value": "envoy"}},
        ]),
        _case("renders nothing when access logs are off", [{"hasDocuments": {"count": 0}}], {"observability.accessLog": False}),
    ]}


def prometheusrule_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    alerts = ["ModelHighLatencyP99", "ModelHighErrorRate"]
    if p.llm:
        alerts += ["ModelQueueBacklog", "ModelKVCacheNearlyFull"]
    if v["safety"].get("kind") == "extProc":
        alerts.append("ModelSafetyProviderFailing")
    if p.gpu:
        alerts.append("ModelGPUSaturated")
    if v["autoscaling"]["enabled"]:
        alerts.append("ModelReplicasAtMaximum")
    threshold = v["observability"]["alerts"]["p99LatencySeconds"] * 1000
    return {"suite": f"{p.name} PrometheusRule", "templates": ["templates/prometheusrule.yaml"],
            "release": _release(p), "tests": [
        _case("alerts on the signals this model has", [
            {"isKind": {"of": "PrometheusRule"}},
            {"lengthEqual": {"path": "spec.groups[0].rules", "count": len(alerts)}},
            *[{"equal": {"path": f"spec.groups[0].rules[{i}].alert", "value": name}} for i, name in enumerate(alerts)],
        ]),
        _case("uses the configured P99 threshold on this model's Istio workload", [
            {"matchRegex": {"path": "spec.groups[0].rules[0].expr",
                            "pattern": f'destination_workload="{_workload(p)}".*> {_quantity(threshold)}$'}},
            {"equal": {"path": "spec.groups[0].rules[0].for", "value": f'{v["observability"]["alerts"]["forMinutes"]}m'}},
        ]),
        _case("follows an overridden threshold", [
            {"matchRegex": {"path": "spec.groups[0].rules[1].expr", "pattern": "> 12$"}},
        ], {"observability.alerts.errorRatePercent": 12}),
        _case("renders nothing when alerts are off", [{"hasDocuments": {"count": 0}}],
              {"observability.alerts.enabled": False}),
    ]}


def podmonitor_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    return {"suite": f"{p.name} PodMonitor", "templates": ["templates/podmonitor.yaml"],
            "release": _release(p), "tests": [
        _case("scrapes the model's metrics port and path", [
            {"isKind": {"of": "PodMonitor"}},
            {"equal": {"path": "spec.podMetricsEndpoints[0]", "value": {
                "portNumber": v["metrics"]["port"], "path": v["metrics"]["path"]}}},
            {"equal": {"path": "spec.selector.matchLabels", "value": _pod_selector(p)}},
        ]),
        _case("renders nothing when metrics are off", [{"hasDocuments": {"count": 0}}], {"metrics.enabled": False}),
    ]}


def nad_suite(p: ModelPlan) -> dict[str, Any]:
    owned = [n for n in p.values.rdma.networks if n.type != "existing"]
    asserts: list[dict] = [{"hasDocuments": {"count": len(owned)}}]
    for index, net in enumerate(owned):
        asserts += [
            {"isKind": {"of": "NetworkAttachmentDefinition"}, "documentIndex": index},
            {"equal": {"path": "metadata.name", "value": net.name}, "documentIndex": index},
            {"matchRegex": {"path": "spec.config", "pattern": f'"type":"{net.type}"'}, "documentIndex": index},
        ]
        if net.resourceName:
            asserts.append({"equal": {"path": _key("metadata.annotations", "k8s.v1.cni.cncf.io/resourceName"),
                                      "value": net.resourceName}, "documentIndex": index})
        chain = {"path": "spec.config", "pattern": r'"plugins":\[\{.*"type":"sriov"\},\{"type":"rdma"\}\]'}
        asserts.append({"matchRegex" if net.rdmaCni else "notMatchRegex": chain, "documentIndex": index})
    return {"suite": f"{p.name} NetworkAttachmentDefinition", "templates": ["templates/networkattachmentdefinition.yaml"],
            "release": _release(p), "tests": [
        _case("declares one Multus network per owned RDMA network", asserts),
        _case("renders nothing when RDMA is off", [{"hasDocuments": {"count": 0}}], {"rdma.enabled": False}),
    ]}


def _host(name: str, namespace: str) -> str:
    return f"{name}-predictor.{namespace}.svc.cluster.local"


MODEL_SELECTOR_PATH = "spec.selector.matchLabels"


def live_selector(name: str) -> dict[str, str]:
    """Request limits and token quotas select the pods that serve clients (primary, canary), not
    the shadow."""
    return {"modelplat.io/model": name, "modelplat.io/traffic": "live"}


def peerauthentication_suite(p: ModelPlan) -> dict[str, Any]:
    return {"suite": f"{p.name} PeerAuthentication", "templates": ["templates/peerauthentication.yaml"],
            "release": _release(p), "tests": [
        _case("requires mutual TLS for every pod of the model (primary, canary, shadow)", [
            {"isKind": {"of": "PeerAuthentication"}},
            {"equal": {"path": "spec.mtls.mode", "value": "STRICT"}},
            {"equal": {"path": MODEL_SELECTOR_PATH, "value": {"modelplat.io/model": p.name}}},
        ]),
        _case("lets a scraper outside the mesh read a separate metrics port", [
            {"equal": {"path": _key("spec.portLevelMtls", "9000"), "value": {"mode": "PERMISSIVE"}}},
        ], {"metrics.enabled": True, "metrics.port": 9000, "model.port": 8080}),
        _case("keeps the serving port STRICT even when metrics are served on it", [
            {"notExists": {"path": "spec.portLevelMtls"}},
        ], {"metrics.enabled": True, "metrics.port": 8080, "model.port": 8080}),
        _case("keeps every port STRICT without metrics", [{"notExists": {"path": "spec.portLevelMtls"}}],
              {"metrics.enabled": False}),
        _case("renders nothing when auth is off", [{"hasDocuments": {"count": 0}}], {"auth.enabled": False}),
    ]}


def authorizationpolicy_suite(p: ModelPlan) -> dict[str, Any]:
    same_ns = {"from": [{"source": {"namespaces": [p.namespace]}}]}
    jwt_rule = {"from": [{"source": {"requestPrincipals": ["*"]}}]}
    metrics_rule = {"to": [{"operation": {"methods": ["GET"], "paths": ["/metrics"], "ports": ["9000"]}}]}
    return {"suite": f"{p.name} AuthorizationPolicy", "templates": ["templates/authorizationpolicy.yaml"],
            "release": _release(p), "tests": [
        _case("allows the same namespace without a token and refuses the rest (ALLOW)", [
            {"equal": {"path": "spec.action", "value": "ALLOW"}},
            {"equal": {"path": MODEL_SELECTOR_PATH, "value": {"modelplat.io/model": p.name}}},
            {"equal": {"path": "spec.rules[0]", "value": same_ns}},
            {"notContains": {"path": "spec.rules", "content": jwt_rule}},
        ], {"auth.jwt.enabled": False, "metrics.enabled": False, "auth.allowedNamespaces": []}),
        _case("lets callers from outside in with a valid JWT", [
            {"contains": {"path": "spec.rules", "content": jwt_rule}},
        ], {"auth.jwt.enabled": True, "auth.allowedPrincipals": []}),
        _case("limits JWT callers to the listed principals", [
            {"contains": {"path": "spec.rules", "content": {
                "from": [{"source": {"requestPrincipals": ["https://idp.example.com/svc-a"]}}]}}},
            {"notContains": {"path": "spec.rules", "content": jwt_rule}},
        ], {"auth.jwt.enabled": True, "auth.allowedPrincipals": ["https://idp.example.com/svc-a"]}),
        _case("keeps GET on the metrics path open to the scraper", [
            {"contains": {"path": "spec.rules", "content": metrics_rule}},
        ], {"metrics.enabled": True, "metrics.port": 9000, "metrics.path": "/metrics"}),
        _case("keeps the metrics of an exposed model's serving port closed to the gateway's pods", [
            {"contains": {"path": "spec.rules", "content": {
                "from": [{"source": {"notNamespaces": ["istio-ingress"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/metrics"], "ports": ["8080"]}}]}}},
        ], {"exposeModel.enabled": True, "metrics.enabled": True, "metrics.port": 8080, "model.port": 8080,
            "metrics.path": "/metrics", "platform.gatewayNamespace": "istio-ingress"}),
        _case("adds the allowed namespaces to the token-free rule", [
            {"equal": {"path": "spec.rules[0].from[0].source.namespaces", "value": [p.namespace, "batch-jobs"]}},
        ], {"auth.allowedNamespaces": ["batch-jobs"]}),
        _case("renders nothing when auth is off", [{"hasDocuments": {"count": 0}}], {"auth.enabled": False}),
    ]}


def requestauthentication_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    claims = v["platform"]["jwtClaims"]
    return {"suite": f"{p.name} RequestAuthentication", "templates": ["templates/requestauthentication.yaml"],
            "release": _release(p), "tests": [
        _case("validates JWTs from the configured issuer and copies identity claims to headers", [
            {"equal": {"path": "spec.jwtRules[0].issuer", "value": v["auth"]["jwt"]["issuer"]}},
            {"equal": {"path": "spec.jwtRules[0].jwksUri", "value": v["auth"]["jwt"]["jwksUri"]}},
            {"contains": {"path": "spec.jwtRules[0].outputClaimToHeaders", "content": {
                "header": claims["serviceAccountHeader"], "claim": claims["serviceAccountClaim"]}}},
            {"contains": {"path": "spec.jwtRules[0].outputClaimToHeaders", "content": {
                "header": claims["tenantHeader"], "claim": claims["tenantClaim"]}}},
            {"equal": {"path": MODEL_SELECTOR_PATH, "value": {"modelplat.io/model": p.name}}},
        ]),
        _case("renders nothing without JWT", [{"hasDocuments": {"count": 0}}], {"auth.jwt.enabled": False}),
    ]}


def custom_authz_suite(p: ModelPlan) -> dict[str, Any]:
    return {"suite": f"{p.name} CUSTOM AuthorizationPolicy", "templates": ["templates/authorizationpolicy-custom.yaml"],
            "release": _release(p), "tests": [
        _case("delegates to the named ext-authz provider", [
            {"equal": {"path": "spec.action", "value": "CUSTOM"}},
            {"equal": {"path": "spec.provider.name", "value": p.chart_values["auth"]["customAuthz"]["provider"]}},
        ]),
        _case("checks the included paths and never the excluded ones", [
            {"equal": {"path": "spec.rules[0].to[0].operation.paths", "value": ["/v1/*"]}},
            {"equal": {"path": "spec.rules[0].to[0].operation.notPaths", "value": ["/v1/models"]}},
        ], {"auth.customAuthz.includePaths": ["/v1/*"], "auth.customAuthz.excludePaths": ["/v1/models"]}),
        _case("checks every path when none are listed", [
            {"equal": {"path": "spec.rules[0].to[0].operation.paths", "value": ["*"]}},
            {"notExists": {"path": "spec.rules[0].to[0].operation.notPaths"}},
        ], {"auth.customAuthz.includePaths": [], "auth.customAuthz.excludePaths": []}),
        _case("checks only requests for the listed hosts", [
            {"equal": {"path": "spec.rules[0].to[0].operation.hosts", "value": ["m.ext.example.com", "*.example.org"]}},
        ], {"auth.customAuthz.hosts": ["m.ext.example.com", "*.example.org"]}),
        _case("checks requests for any host when none are listed", [
            {"notExists": {"path": "spec.rules[0].to[0].operation.hosts"}},
        ], {"auth.customAuthz.hosts": []}),
    ]}


def virtualservice_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    primary, canary, shadow = (_host(p.name + suffix, p.namespace) for suffix in ("", "-canary", "-shadow"))
    tests = [
        _case("splits traffic primaryLoad / 100 - primaryLoad between primary and canary", [
            {"equal": {"path": "spec.http[-1].route[0].destination.host", "value": primary}},
            {"equal": {"path": "spec.http[-1].route[0].weight", "value": 70}},
            {"equal": {"path": "spec.http[-1].route[1].destination.host", "value": canary}},
            {"equal": {"path": "spec.http[-1].route[1].weight", "value": 30}},
            {"contains": {"path": "spec.gateways", "content": "mesh"}},
            {"contains": {"path": "spec.hosts", "content": primary}},
        ], {"canary.enabled": True, "primaryLoad": 70, "mirror.enabled": False}),
        _case("routes requests with the canary header to the canary", [
            # Only the header this case sets: Helm merges it into the model's own headerMatch.
            {"equal": {"path": _key("spec.http[0].match[0].headers", "x-model-canary"), "value": {"exact": "true"}}},
            {"equal": {"path": "spec.http[0].route[0].destination.host", "value": canary}},
        ], {"canary.enabled": True, "primaryLoad": 90, "canary.headerMatch": {"x-model-canary": "true"}}),
        _case("mirrors the configured share to the shadow and answers from the primary", [
            {"equal": {"path": "spec.http[-1].mirror.host", "value": shadow}},
            {"equal": {"path": "spec.http[-1].mirrorPercentage.value", "value": 25.5}},
            {"equal": {"path": "spec.http[-1].route[0].destination.host", "value": primary}},
            {"lengthEqual": {"path": "spec.http[-1].route", "count": 1}},
        ], {"mirror.enabled": True, "mirror.percentage": 25.5, "canary.enabled": False}),
        _case("canary and mirroring together", [
            {"lengthEqual": {"path": "spec.http[-1].route", "count": 2}},
            {"equal": {"path": "spec.http[-1].mirror.host", "value": shadow}},
        ], {"mirror.enabled": True, "canary.enabled": True, "primaryLoad": 90}),
        _case("renders nothing for a model that is neither exposed, split nor mirrored", [{"hasDocuments": {"count": 0}}],
              {"exposeModel.enabled": False, "canary.enabled": False, "mirror.enabled": False}),
    ]
    if v["exposeModel"]["enabled"]:
        tests.insert(0, _case("publishes the model's own host on the platform gateway, never a wildcard", [
            {"contains": {"path": "spec.hosts", "content": v["exposeModel"]["host"]}},
            {"contains": {"path": "spec.gateways", "content": v["platform"]["gateway"]}},
            {"notContains": {"path": "spec.hosts", "content": "*"}},
        ]))
    return {"suite": f"{p.name} VirtualService", "templates": ["templates/virtualservice.yaml"],
            "release": _release(p), "tests": tests}


def llm_httproute_suite(p: ModelPlan) -> dict[str, Any]:
    """An LLM's own route (a mirror or a header-matched canary): the model's address on the
    platform's Gateway, to its InferencePools, mirrored to the shadow's workload Service."""
    v = p.chart_values
    gateway = v["platform"]["gatewayApi"]
    prefix = {"type": "PathPrefix", "value": f"/{p.namespace}/{p.name}/"}
    rule = "spec.rules[-1]"
    pool = lambda member, **w: {"group": "inference.networking.k8s.io", "kind": "InferencePool",  # noqa: E731
                                "name": f"{member}-inference-pool", "port": 8000, **w}
    base = {"canary.enabled": False, "mirror.enabled": False}
    tests = [
        _case("routes the model's own address on the platform's Gateway to its InferencePool, prefix removed", [
            {"hasDocuments": {"count": 1}},
            {"equal": {"path": "metadata.name", "value": p.name}},
            {"equal": {"path": "spec.parentRefs", "value": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                             **gateway}]}},
            {"equal": {"path": f"{rule}.matches", "value": [{"path": prefix}]}},
            {"equal": {"path": f"{rule}.filters[0].urlRewrite.path.replacePrefixMatch", "value": "/"}},
            {"equal": {"path": f"{rule}.backendRefs", "value": [pool(p.name)]}},
        ], base | {"mirror.enabled": True, "mirror.storageUri": "hf://example/shadow", "mirror.percentage": 30}),
        _case("mirrors the share to the shadow's workload Service (a fraction for decimals)", [
            {"equal": {"path": f"{rule}.filters[1]", "value": {"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": f"{p.name}-shadow-kserve-workload-svc", "port": 8000}, "percent": 30}}}},
        ], base | {"mirror.enabled": True, "mirror.storageUri": "hf://example/shadow", "mirror.percentage": 30}),
        _case("sends the canary header to the canary's pool first, and splits the rest by primaryLoad", [
            {"contains": {"path": "spec.rules[0].matches[0].headers",
                          "content": {"type": "Exact", "name": "x-model-canary", "value": "true"}}},
            {"equal": {"path": "spec.rules[0].matches[0].path", "value": prefix}},
            {"equal": {"path": "spec.rules[0].backendRefs", "value": [pool(f"{p.name}-canary")]}},
            {"equal": {"path": f"{rule}.backendRefs", "value": [pool(p.name, weight=70),
                                                                pool(f"{p.name}-canary", weight=30)]}},
        ], base | {"canary.enabled": True, "canary.storageUri": "hf://example/canary", "primaryLoad": 70,
                   "canary.headerMatch": {"x-model-canary": "true"}}),
        _case("renders nothing when KServe's own route does (no mirror, no header match)", [
            {"hasDocuments": {"count": 0}}], base | {"canary.enabled": True, "canary.storageUri": "hf://example/c",
                                                   "primaryLoad": 90, "canary.headerMatch": None}),
    ]
    return {"suite": f"{p.name} HTTPRoute", "templates": ["templates/httproute.yaml"], "release": _release(p),
            "tests": tests}


def httproute_suite(p: ModelPlan) -> dict[str, Any]:
    """The platform's routing: gateway-api: the VirtualService's behaviours as HTTPRoutes."""
    if p.serving == "llm":
        return llm_httproute_suite(p)
    v = p.chart_values
    entry = "transformer" if v.get("transformer") else "predictor"
    primary, canary, shadow = (f"{p.name}{suffix}-{entry}" for suffix in ("", "-canary", "-shadow"))
    mesh = {"exposeModel.enabled": False}
    rule = "spec.rules[-1]"
    tests = [
        _case("splits traffic primaryLoad / 100 - primaryLoad between primary and canary, for in-mesh callers", [
            {"hasDocuments": {"count": 1}},
            {"equal": {"path": "metadata.name", "value": f"{p.name}-mesh"}},
            {"equal": {"path": "spec.parentRefs", "value": [{"group": "", "kind": "Service", "name": primary, "port": 80}]}},
            {"equal": {"path": f"{rule}.backendRefs", "value": [{"name": primary, "port": 80, "weight": 70},
                                                                {"name": canary, "port": 80, "weight": 30}]}},
        ], mesh | {"canary.enabled": True, "primaryLoad": 70, "mirror.enabled": False}),
        _case("routes requests with the canary header to the canary", [
            {"contains": {"path": "spec.rules[0].matches[0].headers",
                          "content": {"type": "Exact", "name": "x-model-canary", "value": "true"}}},
            {"equal": {"path": "spec.rules[0].backendRefs", "value": [{"name": canary, "port": 80}]}},
        ], mesh | {"canary.enabled": True, "primaryLoad": 90, "canary.headerMatch": {"x-model-canary": "true"}}),
        _case("mirrors a whole percentage to the shadow and answers from the primary", [
            {"equal": {"path": f"{rule}.filters", "value": [{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": shadow, "port": 80}, "percent": 25}}]}},
            {"equal": {"path": f"{rule}.backendRefs", "value": [{"name": primary, "port": 80}]}},
        ], mesh | {"mirror.enabled": True, "mirror.percentage": 25, "canary.enabled": False}),
        _case("mirrors a share with decimals as a fraction", [
            {"equal": {"path": f"{rule}.filters[0].requestMirror.fraction",
                       "value": {"numerator": 2550, "denominator": 10000}}},
            {"notExists": {"path": f"{rule}.filters[0].requestMirror.percent"}},
        ], mesh | {"mirror.enabled": True, "mirror.percentage": 25.5, "canary.enabled": False}),
        _case("renders nothing for a model that is neither exposed, split nor mirrored", [{"hasDocuments": {"count": 0}}],
              {"exposeModel.enabled": False, "canary.enabled": False, "mirror.enabled": False}),
        _case("renders nothing with the platform's istio routing (the VirtualService routes)",
              [{"hasDocuments": {"count": 0}}], {"platform.routing": "istio"}),
    ]
    if v["exposeModel"]["enabled"]:
        gateway = v["platform"]["gatewayApi"]
        tests.insert(0, _case("publishes the model's own host on the platform's Gateway", [
            {"equal": {"path": "metadata.name", "value": p.name}, "documentIndex": 0},
            {"equal": {"path": "spec.parentRefs", "value": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                             **gateway}]}, "documentIndex": 0},
            {"equal": {"path": "spec.hostnames", "value": [v["exposeModel"]["host"]]}, "documentIndex": 0},
        ], {"canary.enabled": False, "mirror.enabled": False}))
    return {"suite": f"{p.name} HTTPRoutes", "templates": ["templates/httproute.yaml"], "release": _release(p),
            "tests": tests}


def variant_suite(p: ModelPlan, variant: str) -> dict[str, Any]:
    v = p.chart_values
    section = v["canary"] if variant == "canary" else v["mirror"]
    custom = v["model"]["format"] == "custom"
    storage = section.get("storageUri") or v["model"].get("storageUri")
    asserts: list[dict] = [
        {"isKind": {"of": "InferenceService"}},
        {"equal": {"path": "metadata.name", "value": f"{p.name}-{variant}"}},
        {"equal": {"path": _key("spec.predictor.labels", "modelplat.io/model"), "value": p.name}},
        {"equal": {"path": _key("spec.predictor.labels", "modelplat.io/variant"), "value": variant}},
        # The shadow's pods are out of the request-limit and token-quota filters' reach.
        {"equal": {"path": _key("spec.predictor.labels", "modelplat.io/traffic"),
                   "value": "mirrored" if variant == "shadow" else "live"}},
        {"equal": {"path": _key("metadata.annotations", "serving.kserve.io/autoscalerClass"),
                   "value": "external" if variant == "canary" and v["autoscaling"]["enabled"] else "none"}},
    ]
    if custom:
        if storage:
            asserts.append({"contains": {"path": "spec.predictor.containers[0].env",
                                         "content": {"name": "STORAGE_URI", "value": storage}}})
        # the served model name stays the primary's: the same args
        asserts.append({"equal": {"path": "spec.predictor.containers[0].args", "value": v["model"]["args"]}})
    else:
        asserts.append({"equal": {"path": "spec.predictor.model.storageUri", "value": storage}})
    tests = [_case(f"serves the {variant} model under the same served name", asserts)]
    if variant == "canary" and custom:
        tests.append(_case("runs the primary's image with the canary's tag", [
            {"matchRegex": {"path": "spec.predictor.containers[0].image", "pattern": r":v9\.9$"}},
        ], {"canary.imageTag": "v9.9"}))
    gate = "canary.enabled" if variant == "canary" else "mirror.enabled"
    tests.append(_case(f"renders nothing when the {variant} is off", [{"hasDocuments": {"count": 0}}], {gate: False}))
    return {"suite": f"{p.name} {variant} InferenceService", "templates": [f"templates/inferenceservice-{variant}.yaml"],
            "release": _release(p), "tests": tests}


def ratelimit_suite(p: ModelPlan) -> dict[str, Any]:
    from .resolve import SA_KEY

    v = p.chart_values
    header = v["platform"]["jwtClaims"]["serviceAccountHeader"]
    ip_action = {"actions": [{"remote_address": {}}]}
    sa_action = {"actions": [{"request_headers": {"header_name": header, "descriptor_key": SA_KEY}}]}
    ip, sa = v.get("ratelimitIPPerMinute") is not None, v.get("ratelimitEachSAPerMinute") is not None
    return {"suite": f"{p.name} rate-limit EnvoyFilter", "templates": ["templates/envoyfilter-ratelimit.yaml"],
            "release": _release(p), "tests": [
        _case("adds the global rate limit filter before the router, for this model's sidecars only", [
            {"isKind": {"of": "EnvoyFilter"}},
            {"equal": {"path": "spec.workloadSelector.labels", "value": live_selector(p.name)}},
            {"equal": {"path": "spec.configPatches[0].patch.operation", "value": "INSERT_BEFORE"}},
            {"equal": {"path": "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name",
                       "value": "envoy.filters.http.router"}},
            {"equal": {"path": "spec.configPatches[0].patch.value.typed_config.domain",
                       "value": v["platform"]["rateLimit"]["domain"]}},
            {"equal": {"path": "spec.configPatches[0].patch.value.typed_config.enable_x_ratelimit_headers",
                       "value": "DRAFT_VERSION_03"}},
        ]),
        # The limits themselves are counted by the rate-limit service, so the chart refuses other
        # numbers (chartgates.PINNED): only the model's own combination is a valid input here.
        _case("counts per " + " and per ".join(who for who, on in (("client IP", ip), ("service account", sa)) if on), [
            {"equal": {"path": "spec.configPatches[1].patch.value.rate_limits",
                       "value": [a for a, on in ((ip_action, ip), (sa_action, sa)) if on]}},
        ]),
    ]}


def tokenlimit_suite(p: ModelPlan) -> dict[str, Any]:
    t = p.chart_values["tokenLimit"]
    route = "spec.configPatches[-1].patch.value"
    kinds = [k for k, fields in (("sa", ("saLimit", "saLimitPerMinute")), ("ip", ("ipLimit", "ipLimitPerMinute")))
             if any(f in t for f in fields)]
    first = kinds[0]
    per_route = _key(f"{route}.typed_per_filter_config", f"modelplat.tokens.{first}")
    lua_meta = _key(f"{route}.metadata.filter_metadata", "modelplat.tokens.lua")
    lua_source = "spec.configPatches[0].patch.value.typed_config.default_source_code.inline_string"
    tests = [
        _case("inserts the Lua filter and a rate-limit filter per quota before the router, for this model only", [
            {"isKind": {"of": "EnvoyFilter"}},
            {"equal": {"path": "spec.workloadSelector.labels", "value": live_selector(p.name)}},
            {"equal": {"path": "spec.configPatches[0].patch.value.name", "value": "modelplat.tokens.lua"}},
            {"equal": {"path": "spec.configPatches[0].patch.operation", "value": "INSERT_BEFORE"}},
            {"equal": {"path": "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name",
                       "value": "envoy.filters.http.router"}},
            {"equal": {"path": "spec.configPatches[1].patch.value.name", "value": f"modelplat.tokens.{first}"}},
            {"equal": {"path": "spec.configPatches[1].patch.value.typed_config.domain",
                       "value": f"modelplat.tokens.{t['tenantId']}"}},
            {"equal": {"path": "spec.configPatches[1].patch.value.typed_config.failure_mode_deny",
                       "value": t["failureMode"] == "closed"}},
            {"equal": {"path": "spec.configPatches[1].patch.value.typed_config.response_headers_to_add[0].header.value",
                       "value": {"sa": "service-account", "ip": "client-ip"}[first]}},
            {"lengthEqual": {"path": "spec.configPatches", "count": len(kinds) + 2}},
        ]),
        _case("checks with cost 0 at request time and adds the used tokens when the stream is done", [
            {"equal": {"path": f"{per_route}.rate_limits[0].hits_addend.number", "value": 0}},
            {"notExists": {"path": f"{per_route}.rate_limits[0].apply_on_stream_done"}},
            {"equal": {"path": f"{per_route}.rate_limits[1].hits_addend.format",
                       "value": "%DYNAMIC_METADATA(modelplat.tokens:used)%"}},
            {"equal": {"path": f"{per_route}.rate_limits[1].apply_on_stream_done", "value": True}},
            {"equal": {"path": f"{per_route}.rate_limits[1].actions[1].metadata.metadata_key.path[0].key",
                       "value": first}},
        ]),
        _case("hands the Lua filter its settings as route metadata, never as code", [
            {"equal": {"path": f"{lua_meta}.tenantId", "value": t["tenantId"]}},
            {"equal": {"path": f"{lua_meta}.paths", "value": ["/zz-probe/v1/completions"]}},
            {"notMatchRegex": {"path": lua_source, "pattern": "zz-probe"}},
        ], {"tokenLimit.paths": ["/zz-probe/v1/completions"]}),
        _case("lets requests through uncounted when the counter is down and failureMode is open", [
            {"equal": {"path": "spec.configPatches[1].patch.value.typed_config.failure_mode_deny", "value": False}},
        ], {"tokenLimit.failureMode": "open"}),
        _case("renders nothing when token limits are off", [{"hasDocuments": {"count": 0}}],
              {"tokenLimit.enabled": False}),
    ]
    scope = "tenant" if t["shareTenantQuota"] else f"{p.namespace}.{p.name}"
    tests.append(_case("counts against the tenant's shared quota or the model's own", [
        {"equal": {"path": f"{per_route}.rate_limits[0].actions[0].generic_key",
                   "value": {"descriptor_key": "scope", "descriptor_value": scope}}},
    ]))
    return {"suite": f"{p.name} token-limit EnvoyFilter", "templates": ["templates/envoyfilter-tokenlimit.yaml"],
            "release": _release(p), "tests": tests}



def safety_suite(p: ModelPlan) -> dict[str, Any]:
    s = p.chart_values["safety"]
    x = s["extProc"]
    first = "spec.configPatches[1].patch.value"
    flt = "spec.configPatches[0].patch.value"
    per_route = _key(f"{first}.typed_per_filter_config", "modelplat.safety")
    mode = x["processingMode"]
    tests = [
        _case("inserts the ext_proc filter, off by default, before the router, on the live pods only", [
            {"isKind": {"of": "EnvoyFilter"}},
            {"equal": {"path": "spec.workloadSelector.labels", "value": live_selector(p.name)}},
            {"equal": {"path": "spec.priority", "value": 15}},
            {"equal": {"path": f"{flt}.name", "value": "modelplat.safety"}},
            {"equal": {"path": f"{flt}.disabled", "value": True}},
            {"equal": {"path": "spec.configPatches[0].patch.operation", "value": "INSERT_BEFORE"}},
            {"equal": {"path": "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name",
                       "value": "envoy.filters.http.router"}},
            {"equal": {"path": f"{flt}.typed_config.grpc_service.envoy_grpc.cluster_name", "value": x["cluster"]}},
            {"equal": {"path": f"{flt}.typed_config.failure_mode_allow", "value": x["failureMode"] == "open"}},
            {"equal": {"path": f"{flt}.typed_config.processing_mode", "value": mode}},
        ]),
        _case("turns it on with a route of its own for each screened path, before Istio's catch-all", [
            {"lengthEqual": {"path": "spec.configPatches", "count": 1 + len(s["paths"])}},
            {"equal": {"path": "spec.configPatches[1].patch.operation", "value": "INSERT_BEFORE"}},
            {"equal": {"path": "spec.configPatches[1].match.routeConfiguration.vhost.route.name", "value": "default"}},
            {"equal": {"path": "spec.configPatches[1].match.routeConfiguration.portNumber", "value": x["port"]}},
            {"equal": {"path": f"{first}.match.path", "value": s["paths"][0]}},
            {"equal": {"path": f"{first}.route.cluster", "value": f"inbound|{x['port']}||"}},
            {"equal": {"path": f"{per_route}.disabled", "value": False}},
            {"equal": {"path": f"{per_route}.config.overrides.processing_mode", "value": mode}},
        ]),
        _case("screens exactly the paths the values name", [
            {"lengthEqual": {"path": "spec.configPatches", "count": 3}},
            {"equal": {"path": f"{first}.match.path", "value": "/zz-probe/v1/a"}},
            {"equal": {"path": "spec.configPatches[2].patch.value.match.path", "value": "/zz-probe/v1/b"}},
        ], {"safety.paths": ["/zz-probe/v1/a", "/zz-probe/v1/b"]}),
        _case("lets requests through unscreened when the provider fails and failureMode is open", [
            {"equal": {"path": f"{flt}.typed_config.failure_mode_allow", "value": True}},
        ], {"safety.extProc.failureMode": "open"}),
        _case("renders nothing when safety is off", [{"hasDocuments": {"count": 0}}], {"safety.enabled": False}),
    ]
    v = p.chart_values
    carried = []
    if v["tokenLimit"]["enabled"]:
        carried.append({"exists": {"path": _key(f"{first}.metadata.filter_metadata", "modelplat.tokens.lua")}})
    if v["auth"]["enabled"] and v["auth"]["jwt"]["enabled"]:
        carried.append({"exists": {"path": _key(f"{first}.metadata.filter_metadata", "modelplat.identity.lua")}})
    if carried:
        tests.append(_case("carries the identity and token-quota route settings Istio merges into its own routes",
                           carried))
    return {"suite": f"{p.name} safety EnvoyFilter", "templates": ["templates/envoyfilter-safety.yaml"],
            "release": _release(p), "tests": tests}


def identity_suite(p: ModelPlan) -> dict[str, Any]:
    v = p.chart_values
    claims = v["platform"]["jwtClaims"]
    headers = [claims["serviceAccountHeader"], claims["tenantHeader"]] + [
        c["header"] for c in v["auth"]["jwt"]["claimsToHeaders"]]
    meta = _key("spec.configPatches[1].patch.value.metadata.filter_metadata", "modelplat.identity.lua")
    return {"suite": f"{p.name} identity EnvoyFilter", "templates": ["templates/envoyfilter-identity.yaml"],
            "release": _release(p), "tests": [
        _case("removes client-sent identity headers first, before the JWT filter sets them", [
            {"isKind": {"of": "EnvoyFilter"}},
            {"equal": {"path": "spec.configPatches[0].patch.operation", "value": "INSERT_FIRST"}},
            {"equal": {"path": "spec.configPatches[0].patch.value.name", "value": "modelplat.identity.lua"}},
            {"equal": {"path": f"{meta}.headers", "value": headers}},
        ]),
        _case("renders nothing without JWT authentication", [{"hasDocuments": {"count": 0}}],
              {"auth.jwt.enabled": False}),
    ]}


def llminferenceservice_suite(p: ModelPlan) -> dict[str, Any]:
    """What an LLM-native model's LLMInferenceService must carry; KServe's presets do the rest (the
    engines tests read back the workloads KServe's controller makes from it)."""
    v = p.chart_values
    platform = v["platform"]
    llm = v["llm"]
    prefill = llm.get("prefill")
    gpu_name = platform["gpuResourceName"]
    main = "spec.template.containers[0]"
    gpus = max(v["resources"]["requestGPU"], v["resources"]["limitGPU"])
    scaling = v["autoscaling"]["enabled"]
    gateway = platform["gatewayApi"]
    canary = v["canary"]["enabled"]
    served = v["model"].get("servedModelName", p.name)
    # The chart's own route when KServe's cannot carry the model's (a mirror, a header-matched canary).
    route = {"http": {"refs": [{"name": p.name}]}} if llm_owns_route(v) else \
        {"group": p.name, "weight": v["primaryLoad"]} if canary else {}
    primary = {"documentIndex": 0}
    tests = [
        _case(f"renders the LLMInferenceService {p.name} (v1alpha2), routed on the platform's Gateway", [
            {"hasDocuments": {"count": 1 + canary + v["mirror"]["enabled"]}},
            {"isKind": {"of": "LLMInferenceService"}},
            {"isAPIVersion": {"of": "serving.kserve.io/v1alpha2"}},
            {"equal": {"path": "metadata.name", "value": p.name}, **primary},
            {"equal": {"path": "spec.model.uri", "value": v["model"]["storageUri"]}, **primary},
            {"equal": {"path": "spec.model.name", "value": served}},
            {"equal": {"path": "spec.router.gateway.refs", "value": [gateway]}, **primary},
            {"equal": {"path": "spec.router.route", "value": route}, **primary},
            {"equal": {"path": "spec.router.scheduler.replicas", "value": llm["schedulerReplicas"]}, **primary},
            {"equal": {"path": f"{main}.name", "value": "main"}},
        ]),
        _case("with a canary: a second LLMInferenceService <name>-canary, same model name, in the primary's "
              "routing group with the rest of the weight", [
            {"hasDocuments": {"count": 2}},
            {"equal": {"path": "metadata.name", "value": f"{p.name}-canary"}, "documentIndex": 1},
            {"equal": {"path": "spec.model.uri", "value": "hf://example/canary"}, "documentIndex": 1},
            {"equal": {"path": "spec.model.name", "value": served}, "documentIndex": 1},
            {"equal": {"path": "spec.router.route", "value": {"group": p.name, "weight": 75}}, **primary},
            {"equal": {"path": "spec.router.route", "value": {"group": p.name, "weight": 25}}, "documentIndex": 1},
            {"equal": {"path": _key("spec.labels", "modelplat.io/variant"), "value": "canary"}, "documentIndex": 1},
            {"equal": {"path": _key("spec.labels", "modelplat.io/model"), "value": p.name}, "documentIndex": 1},
            {"equal": {"path": _key("spec.labels", "modelplat.io/traffic"), "value": "live"}, "documentIndex": 1},
        ], {"canary.enabled": True, "canary.storageUri": "hf://example/canary", "primaryLoad": 75, "mirror.enabled": False,
            "canary.headerMatch": None}),
        _case("with a mirror: a shadow <name>-shadow on the shadow's model, no router of its own (the chart's "
              "route mirrors to it), its pods mirrored traffic, its replicas fixed; the members refer to the "
              "chart's route", [
            {"hasDocuments": {"count": 2}},
            {"equal": {"path": "metadata.name", "value": f"{p.name}-shadow"}, "documentIndex": 1},
            {"equal": {"path": "spec.model.uri", "value": "hf://example/shadow"}, "documentIndex": 1},
            {"notExists": {"path": "spec.router"}, "documentIndex": 1},
            {"equal": {"path": "spec.replicas", "value": v["replicaCount"]}, "documentIndex": 1},
            {"equal": {"path": _key("spec.labels", "modelplat.io/traffic"), "value": "mirrored"}, "documentIndex": 1},
            {"equal": {"path": _key("spec.labels", "modelplat.io/variant"), "value": "shadow"}, "documentIndex": 1},
            {"equal": {"path": "spec.router.route", "value": {"http": {"refs": [{"name": p.name}]}}}, **primary},
        ], {"canary.enabled": False, "mirror.enabled": True, "mirror.storageUri": "hf://example/shadow"}),
        _case("labels the (decode) pods for the mesh policies, and keeps the model's own labels off them", [
            {"equal": {"path": _key("spec.labels", "modelplat.io/model"), "value": p.name}},
            {"equal": {"path": _key("spec.labels", "modelplat.io/traffic"), "value": "live"}, **primary},
            {"equal": {"path": _key("spec.labels", "modelplat.io/role"), "value": "decode" if prefill else "both"}},
            {"notExists": {"path": _key("spec.labels", "example.com/any")}},
        ], {"labels": {"example.com/any": "x"}}),
        _case("leaves the replicas to the HPA when autoscaling" if scaling else "fixes the replicas without autoscaling",
              [{"notExists": {"path": "spec.replicas"}}] if scaling else
              [{"equal": {"path": "spec.replicas", "value": v["replicaCount"]}}]),
        _case("with a GPU: asks for it, tolerates the GPU taint and requires the GPU node group", [
            {"equal": {"path": _key(f"{main}.resources.requests", gpu_name), "value": str(gpus or 2)}},
            {"equal": {"path": _key(f"{main}.resources.limits", gpu_name), "value": str(gpus or 2)}},
            {"contains": {"path": "spec.template.tolerations",
                          "content": {"key": platform["gpuTaintKey"], "operator": "Exists"}}},
            {"equal": {"path": "spec.template.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                               ".nodeSelectorTerms[0].matchExpressions[0].operator", "value": "In"}},
        ], {"resources.requestGPU": gpus or 2, "resources.limitGPU": gpus or 2}),
        _case("passes tensor parallelism to KServe, and data parallelism across pods makes a worker", [
            {"equal": {"path": "spec.parallelism.tensor", "value": 4}},
            {"equal": {"path": "spec.parallelism.data", "value": 8}},
            {"equal": {"path": "spec.parallelism.dataLocal", "value": 4}},
            {"exists": {"path": "spec.worker.containers[0]"}},
        ], {"llm.parallelism": {"tensor": 4, "data": 8, "dataLocal": 4}, "resources.requestGPU": 4,
            "resources.limitGPU": 4}),
        _case("renders nothing for a model served as an InferenceService", [{"hasDocuments": {"count": 0}}],
              {"model.serving": "inferenceservice"}),
    ]
    if v["rdma"]["enabled"]:
        tests.append(_case("attaches the RDMA networks to the pods and asks for the RDMA devices", [
            {"exists": {"path": _key("spec.annotations", "k8s.v1.cni.cncf.io/networks")}},
            {"contains": {"path": f"{main}.securityContext.capabilities.add", "content": "IPC_LOCK"}},
        ] + [{"equal": {"path": _key(f"{main}.resources.limits", r), "value": str(n)}}
             for r, n in v["rdma"]["resources"].items()]))
    if prefill:
        kv = lambda role: {"contains": {"path": f"{'spec.prefill.template' if role == 'kv_producer' else 'spec.template'}"
                                                ".containers[0].env", "any": True,
                                        "content": {"name": "VLLM_ADDITIONAL_ARGS"}}}
        tests.append(_case("runs prefill pods that hand the KV cache to the decode pods", [
            {"equal": {"path": "spec.prefill.replicas", "value": prefill["replicaCount"]}},
            {"equal": {"path": _key("spec.prefill.labels", "modelplat.io/role"), "value": "prefill"}},
            {"equal": {"path": _key("spec.prefill.labels", "modelplat.io/traffic"), "value": "internal"}},
            {"equal": {"path": "spec.prefill.template.containers[0].name", "value": "main"}},
            kv("kv_producer"), kv("kv_consumer"),
        ]))
    return {"suite": f"{p.name} LLMInferenceService", "templates": ["templates/llminferenceservice.yaml"],
            "release": _release(p), "tests": tests}


def inferenceobjective_suite(p: ModelPlan) -> dict[str, Any]:
    objectives = p.chart_values["llm"]["objectives"]
    first = objectives[0]
    return {"suite": f"{p.name} InferenceObjectives", "templates": ["templates/inferenceobjective.yaml"],
            "release": _release(p), "tests": [
        _case("renders one InferenceObjective per caller priority, on the model's InferencePool", [
            # A canary's pool gets the same objectives (<name>-canary-<objective>).
            {"hasDocuments": {"count": len(objectives) * (2 if p.chart_values["canary"]["enabled"] else 1)}},
            {"isKind": {"of": "InferenceObjective"}, "documentIndex": 0},
            {"equal": {"path": "metadata.name", "value": f"{p.name}-{first['name']}"}, "documentIndex": 0},
            {"equal": {"path": "spec.priority", "value": first["priority"]}, "documentIndex": 0},
            {"equal": {"path": "spec.poolRef.name", "value": f"{p.name}-inference-pool"}, "documentIndex": 0},
        ]),
        _case("repeats them on a canary's own InferencePool", [
            {"hasDocuments": {"count": 2 * len(objectives)}},
            {"equal": {"path": "metadata.name", "value": f"{p.name}-canary-{first['name']}"},
             "documentIndex": len(objectives)},
            {"equal": {"path": "spec.poolRef.name", "value": f"{p.name}-canary-inference-pool"},
             "documentIndex": len(objectives)},
        ], {"canary.enabled": True, "canary.storageUri": "hf://example/canary", "primaryLoad": 90}),
        _case("renders none without objectives", [{"hasDocuments": {"count": 0}}], {"llm.objectives": []}),
    ]}


SUITES = {
    "llminferenceservice.yaml": ("llminferenceservice_test.yaml", llminferenceservice_suite),
    "inferenceobjective.yaml": ("inferenceobjective_test.yaml", inferenceobjective_suite),
    "inferenceservice.yaml": ("inferenceservice_test.yaml", inferenceservice_suite),
    "hpa.yaml": ("hpa_test.yaml", hpa_suite),
    "hpa-canary.yaml": ("hpa-canary_test.yaml", lambda p: hpa_suite(p, "canary")),
    "poddisruptionbudget.yaml": ("poddisruptionbudget_test.yaml", pdb_suite),
    "telemetry.yaml": ("telemetry_test.yaml", telemetry_suite),
    "prometheusrule.yaml": ("prometheusrule_test.yaml", prometheusrule_suite),
    "podmonitor.yaml": ("podmonitor_test.yaml", podmonitor_suite),
    "networkattachmentdefinition.yaml": ("networkattachmentdefinition_test.yaml", nad_suite),
    "peerauthentication.yaml": ("peerauthentication_test.yaml", peerauthentication_suite),
    "authorizationpolicy.yaml": ("authorizationpolicy_test.yaml", authorizationpolicy_suite),
    "requestauthentication.yaml": ("requestauthentication_test.yaml", requestauthentication_suite),
    "authorizationpolicy-custom.yaml": ("authorizationpolicy-custom_test.yaml", custom_authz_suite),
    "virtualservice.yaml": ("virtualservice_test.yaml", virtualservice_suite),
    "httproute.yaml": ("httproute_test.yaml", httproute_suite),
    "envoyfilter-ratelimit.yaml": ("envoyfilter-ratelimit_test.yaml", ratelimit_suite),
    "envoyfilter-tokenlimit.yaml": ("envoyfilter-tokenlimit_test.yaml", tokenlimit_suite),
    "envoyfilter-identity.yaml": ("envoyfilter-identity_test.yaml", identity_suite),
    "envoyfilter-safety.yaml": ("envoyfilter-safety_test.yaml", safety_suite),
    "inferenceservice-canary.yaml": ("inferenceservice-canary_test.yaml", lambda p: variant_suite(p, "canary")),
    "inferenceservice-shadow.yaml": ("inferenceservice-shadow_test.yaml", lambda p: variant_suite(p, "shadow")),
}


# The suite files of a chart: the templates' behaviour, and what its values.schema.json refuses.
CHART_SUITE = "chart_test.yaml"
SCHEMA_SUITE = "schema_test.yaml"


_UNSET = object()


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON documents: 1, 1.0 and true are three values (Python's == says one)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _changes(set_: dict[str, Any], values: dict[str, Any]) -> tuple:
    """What a case's `set` changes of the chart's values, as a key: the settings that already hold
    the value set (a GPU model's case setting a GPU) change nothing, (). A null is always a change
    (Helm drops a key set to null). Keys are equal when the changes are the same JSON values:
    each value keyed with its class (1, 1.0 and true are equal in Python), a list or mapping by its
    JSON text."""
    if not set_:
        return ()
    changed = []
    for path, value in set_.items():
        now: Any = values
        for step in path.split("."):
            now = now.get(step, _UNSET) if isinstance(now, dict) else _UNSET
        if value is None or not _same(now, value):
            cls = value.__class__
            changed.append((path, cls, json.dumps(value, sort_keys=True) if cls is dict or cls is list else value))
    return tuple(sorted(changed, key=lambda change: change[0]))


def _merged(cases: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases that render the template with the same values as one case, named by their
    behaviours joined with "; " and holding all their assertions, at the place of the first (whose
    `set` it keeps). helm-unittest pays ~10 ms a case whatever it asserts (the values merged, the
    chart loaded and rendered, its output parsed), and a template rendered with the same values
    renders the same: so the cases of the model as configured, and those of each flipped setting,
    are one render each (qwen-chat's chart suite: 72 cases, 53 renders). A case expecting the
    template to fail stays alone. helm-unittest's report of a failure names the case and the
    failing assertion's index, path and values."""
    merged: list[dict[str, Any]] = []
    by_values: dict[str, dict[str, Any]] = {}
    for case in cases:
        alone = any("failedTemplate" in a for a in case["asserts"])
        key = _changes(case.get("set") or {}, values)
        into = None if alone else by_values.get(key)
        if into is None:
            into = {"it": case["it"]} | {k: v for k, v in case.items() if k not in ("it", "asserts")}
            into["asserts"] = list(case["asserts"])
            merged.append(into)
            if not alone:
                by_values[key] = into
        else:
            into["it"] += f"; {case['it']}"
            into["asserts"] += case["asserts"]
    return merged


def suites(p: ModelPlan) -> dict[str, list[dict[str, Any]]]:
    """File name (under the chart's tests/) → its suites, one YAML document each: the chart's
    cases, a suite per template, and the cases whose outcome is the values schema's (when there
    are any).

    A suite per template: helm-unittest renders, for each case, only the templates its suite
    lists, so one suite listing every template the chart turns on rendered all of them for every
    case (qwen-chat's 72 cases: 1.65 s as one suite, 0.45 s as 14). One file holds them all: a file
    less per template is a few thousand files less to create for a thousand models.

    The schema's cases are apart so `modelplat lint` can run the others with
    `--skip-schema-validation`: Helm compiles the schema (and its 2020-12 metaschema) for every
    case, ~45% of a case's time, while the chart's own values are checked against it by helm lint
    and helm template, and every case's `set` values by tests/test_render.py. `helm unittest .`
    runs both files, with the schema.
    """
    chart: list[dict[str, Any]] = []
    schema_tests: list[dict[str, Any]] = []
    for template in p.templates:
        suite = SUITES[template][1](p)
        (path,) = suite["templates"]
        kind = suite["suite"].removeprefix(f"{p.name} ")
        tests = []
        for case in _merged([case for case in suite["tests"] if not case.get(SCHEMA)], p.chart_values):
            tests.append({"it": f"{kind}: {case['it']}", "template": path} | {k: v for k, v in case.items() if k != "it"})
        for case in suite["tests"]:
            if case.get(SCHEMA):
                schema_tests.append({"it": f"{kind}: {case['it']}", "template": path} |
                                    {k: v for k, v in case.items() if k != "it" and k != SCHEMA})
        if tests:
            chart.append({"suite": f"{p.name} {kind}", "templates": [path], "release": _release(p), "tests": tests})
    out = {CHART_SUITE: chart}
    if schema_tests:
        out[SCHEMA_SUITE] = [{"suite": f"{p.name} values.schema.json",
                              "templates": sorted({case["template"] for case in schema_tests}),
                              "release": _release(p), "tests": schema_tests}]
    return out
