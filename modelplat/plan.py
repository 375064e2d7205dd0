"""Planning: which resources a model gets, their names, and the chart's values. Pure: no I/O.

Everything later stages need is decided here once, so render only formats and tests can assert
on the plan directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import PlatformSettings
from .records import ModelFolders, WiringIdentity
from .resolve import (LLM_PORT, TOKEN_WINDOWS, Identity, default_protocol, exposure_host, llm_owns_route, metrics_port,
                      proto_duration, rate_limit_domain, resolved_resources, safety, serving_kind, token_limit,
                      token_scope)
from .values import LLMServing, ModelValues

# Chart templates (in templates/chart/templates/) and the features that include them.
TEMPLATE_FOR_FEATURE = {
    "serving": "inferenceservice.yaml",
    "llm serving": "llminferenceservice.yaml",
    "inference objectives": "inferenceobjective.yaml",
    "autoscaling": "hpa.yaml",
    "disruption budget": "poddisruptionbudget.yaml",
    "access log": "telemetry.yaml",
    "alerts": "prometheusrule.yaml",
    "pod monitor": "podmonitor.yaml",
    "rdma networks": "networkattachmentdefinition.yaml",
    "canary": "inferenceservice-canary.yaml",
    "llm canary": "llminferenceservice.yaml",
    "llm mirroring": "llminferenceservice.yaml",
    "canary autoscaling": "hpa-canary.yaml",
    "mirroring": "inferenceservice-shadow.yaml",
    "traffic routing": "virtualservice.yaml",
    "gateway api routing": "httproute.yaml",
    "auth": "peerauthentication.yaml",
    "authorization": "authorizationpolicy.yaml",
    "jwt": "requestauthentication.yaml",
    "custom authz": "authorizationpolicy-custom.yaml",
    "rate limits": "envoyfilter-ratelimit.yaml",
    "identity headers": "envoyfilter-identity.yaml",
    "token limits": "envoyfilter-tokenlimit.yaml",
    "prompt safety": "envoyfilter-safety.yaml",
}

# Output template → (jinja source, extra context). The canary and the shadow are the primary's
# InferenceService rendered again with another suffix, model and image: one template, three uses.
TEMPLATE_SOURCES = {
    "inferenceservice-canary.yaml": ("inferenceservice.yaml", {"variant": "canary"}),
    "hpa-canary.yaml": ("hpa.yaml", {"variant": "canary"}),
    "inferenceservice-shadow.yaml": ("inferenceservice.yaml", {"variant": "shadow"}),
}


@dataclass
class ModelPlan(ModelFolders):
    identity: Identity
    source: str  # values file relative to the input root (stable across machines; stamped in the chart)
    values: ModelValues
    chart_values: dict[str, Any]
    features: list[str]
    templates: list[str]
    gpu: bool
    llm: bool
    shared_memory: bool
    serving: str = "inferenceservice"  # or "llm": an LLMInferenceService
    labels: dict[str, str] = field(default_factory=dict)
    file: str = ""  # values file as the user sees it (relative to the working directory)


def plan(values: ModelValues, platform: PlatformSettings, ident: Identity, source: str, file: str = "") -> ModelPlan:
    res = values.resources
    gpu = bool(res.requestGPU or res.limitGPU)
    llm = values.model.protocol == "openai"
    kind = serving_kind(values, platform)
    shm = values.sharedMemory.enabled if values.sharedMemory.enabled is not None else (gpu or llm)
    pdb = values.podDisruptionBudget.enabled
    pdb = pdb if pdb is not None else values.replicaCount > 1
    features = ["llm serving" if kind == "llm" else "serving", "gpu" if gpu else "cpu"]
    if values.metrics.enabled:
        features.append("metrics")
        if platform.scrape in ("podMonitor", "both"):
            features.append("pod monitor")
    if values.logger is not None:
        features.append("logger")
    if kind == "llm" and values.llm and values.llm.objectives:
        features.append("inference objectives")
    if values.autoscaling.enabled:
        features.append("autoscaling")
    if pdb:
        features.append("disruption budget")
    if values.observability.accessLog:
        features.append("access log")
    if values.observability.alerts.enabled:
        features.append("alerts")
    if values.rdma.enabled:
        features.append("rdma")
        if any(n.type != "existing" for n in values.rdma.networks):
            features.append("rdma networks")
    if values.canary.enabled:
        # An LLM's canary is the LLMInferenceService template's second document (<name>-canary).
        features.append("llm canary" if kind == "llm" else "canary")
        if values.autoscaling.enabled:
            features.append("canary autoscaling")
    if values.mirror.enabled:
        features.append("llm mirroring" if kind == "llm" else "mirroring")
    # An LLMInferenceService is routed by the HTTPRoute KServe makes on the platform's Gateway, unless
    # it needs what KServe's route cannot carry (a mirror, a header-matched canary): the chart's own.
    doc = chart_values(values, platform, ident, shm, kind)
    if kind == "llm":
        if llm_owns_route(doc):
            features.append("gateway api routing")
    elif values.exposeModel.enabled or values.canary.enabled or values.mirror.enabled:
        features.append("gateway api routing" if platform.routing == "gateway-api" else "traffic routing")
    if rate_limits(values):
        features.append("rate limits")
    if values.auth.enabled:
        features += ["auth", "authorization"]
        if values.auth.jwt.enabled:
            features += ["jwt", "identity headers"]
        if values.auth.customAuthz.enabled:
            features.append("custom authz")
    if values.tokenLimit.enabled:
        features.append("token limits")
    if doc["safety"].get("kind") == "extProc":
        features.append("prompt safety")
    elif doc["safety"].get("kind") == "gkeModelArmor":
        features.append("model armor")
    doc["podDisruptionBudget"]["enabled"] = pdb
    return ModelPlan(
        identity=ident,
        source=source,
        values=values,
        chart_values=doc,
        features=features,
        templates=list(dict.fromkeys(TEMPLATE_FOR_FEATURE[f] for f in features if f in TEMPLATE_FOR_FEATURE)),
        gpu=gpu,
        llm=llm,
        shared_memory=shm,
        serving=kind,
        labels=common_labels(ident, platform),
        file=file or source,
    )


def chart_values(values: ModelValues, platform: PlatformSettings, ident: Identity, shm: bool,
                 kind: str = "inferenceservice") -> dict[str, Any]:
    """The model's validated values with every default resolved, plus the platform facts.

    This one document is both the chart's values.yaml and the HelmRelease's spec.values, so what
    Flux applies is exactly what `helm template` was checked with.
    """
    doc = values.model_dump(mode="json", exclude_none=True)
    doc["name"], doc["project"], doc["namespace"] = ident.name, ident.project, ident.namespace
    # Keep the key order of the schema: name, project, namespace first.
    doc = {k: doc[k] for k in ("name", "project", "namespace")} | {
        k: v for k, v in doc.items() if k not in ("name", "project", "namespace")
    }
    if values.model.runtime is None and not values.model.protocol:
        protocol = default_protocol(values.model.format)
        if protocol:
            doc["model"]["protocol"] = protocol
    doc["resources"] = resolved_resources(doc["resources"], platform.defaults.resources)
    if values.transformer is not None:
        transformer = doc["transformer"]
        transformer["resources"] = resolved_resources(transformer["resources"], platform.defaults.resources)
        transformer.setdefault("replicaCount", values.replicaCount)
    doc["model"]["serving"] = kind
    if kind == "llm":
        doc["model"]["port"] = LLM_PORT
        doc["llm"] = llm_values(values, platform)
    doc["sharedMemory"] = {"enabled": shm, "sizeLimit": values.sharedMemory.sizeLimit or platform.defaults.sharedMemorySize}
    for path in (("labels",), ("annotations",), ("podAnnotations",), ("scheduling", "nodeSelector"), ("rdma", "resources"),
                 ("canary", "headerMatch")):
        parent = doc
        for part in path[:-1]:
            parent = parent.get(part, {})
        if isinstance(parent.get(path[-1]), dict):
            parent[path[-1]] = dict(sorted(parent[path[-1]].items()))
    metrics = doc["metrics"]
    doc["metrics"] = {"enabled": metrics["enabled"], "port": metrics_port(values, kind),
                      **{k: v for k, v in metrics.items() if k not in ("enabled", "port")}}
    if values.exposeModel.enabled and kind != "llm":
        doc["exposeModel"]["host"] = values.exposeModel.host or exposure_host(
            platform, ident.name, ident.namespace, values.exposeModel.type)
    jwt = doc["auth"]["jwt"]
    if values.auth.jwt.enabled:
        # The platform's identity provider unless the model names its own.
        for key in ("issuer", "jwksUri"):
            jwt.setdefault(key, getattr(platform.jwt, key))
        jwt["audiences"] = jwt["audiences"] or list(platform.jwt.audiences)
    doc["tokenLimit"] = token_limit(values, platform)
    doc["safety"] = safety(values, platform, ident, kind, (doc.get("exposeModel") or {}).get("host"))
    limits = platform.rateLimit
    host = f"ratelimit.{limits.namespace}.svc.cluster.local"
    doc["platform"] = {
        "clusterName": platform.clusterName,
        "rateLimit": {"domain": rate_limit_domain(ident.namespace, ident.name),
                      "cluster": f"outbound|{limits.grpcPort}||{host}", "authority": host,
                      "timeout": proto_duration(limits.timeout), "failureModeDeny": limits.failureModeDeny},
        "gateway": platform.gateway,
        # The pods that forward exposed traffic: the Gateway API Gateway's for an LLMInferenceService.
        "gatewayNamespace": (platform.gatewayApi.gateway.split("/", 1)[0]
                             if kind == "llm" or platform.routing == "gateway-api" else
                             platform.gatewayNamespace or platform.gateway.split("/", 1)[0]),
        "routing": platform.routing,
        "gatewayApi": {"namespace": platform.gatewayApi.gateway.split("/", 1)[0],
                       "name": platform.gatewayApi.gateway.split("/", 1)[1]},
        "jwtClaims": {k: getattr(platform.jwt, k) for k in
                      ("serviceAccountClaim", "serviceAccountHeader", "tenantClaim", "tenantHeader")},
        "scrape": platform.scrape,
        "metricLabels": platform.metricLabels.model_dump(),
        "gpuNodeGroupLabel": platform.gpu.nodeGroupLabel,
        "gpuNodeGroup": platform.gpu_node_group,
        "gpuTaintKey": platform.gpu.taintKey,
        "gpuResourceName": platform.gpu.resourceName,
        "gpuProductLabel": platform.gpu.productLabel,
        "sharedMemorySize": platform.defaults.sharedMemorySize,
    }
    return doc


def llm_values(values: ModelValues, platform: PlatformSettings) -> dict[str, Any]:
    """The `llm` section with its defaults resolved: a prefill role takes the decode role's
    resources, parallelism and RDMA NICs unless it sets its own."""
    llm = (values.llm or LLMServing()).model_dump(mode="json", exclude_none=True)
    prefill = llm.get("prefill")
    if prefill is not None:
        own = prefill.get("resources") or values.resources.model_dump(mode="json", exclude_none=True)
        prefill["resources"] = resolved_resources(own, platform.defaults.resources)
        prefill.setdefault("parallelism", llm["parallelism"])
        rdma = prefill.get("rdma") or values.rdma.model_dump(mode="json", exclude_none=True)
        prefill["rdma"] = rdma | {"resources": dict(sorted(rdma.get("resources", {}).items()))}
    return llm


def common_labels(ident: Identity, platform: PlatformSettings) -> dict[str, str]:
    """Labels on the Flux objects (the chart computes its own from values)."""
    return {
        "app.kubernetes.io/name": ident.name,
        "app.kubernetes.io/part-of": ident.project,
        "app.kubernetes.io/managed-by": "modelplat",
        "modelplat.io/environment": platform.environment,
    }


# --- what the wiring needs of each model (wiring.py renders the rest) --------------------------------


def wiring_identity(p: "ModelPlan") -> WiringIdentity:
    """What the Flux wiring and the platform services need of one model (cached with it)."""
    limits = rate_limits(p.values)
    rdma = p.values.rdma
    networks = tuple((index, net.name) for index, net in enumerate(rdma.networks if rdma.enabled else [])
                     if net.type != "existing")
    return WiringIdentity(p.name, p.identity.project, p.namespace, tuple(limits) if limits else None,
                          token_quota(p.chart_values), model_armor(p.chart_values), networks or None)


def model_armor(chart_values: dict[str, Any]) -> tuple | None:
    """(provider, screen, CEL) of a model screened by GKE's Model Armor: the platform's one
    GCPTrafficExtension on the Gateway screens it (wiring.model_armor_extension)."""
    safety = chart_values["safety"]
    if not safety["enabled"] or safety.get("kind") != "gkeModelArmor":
        return None
    return (safety["provider"], safety["screen"], safety["gkeModelArmor"]["match"])


def rate_limits(values: ModelValues) -> list[int | None] | None:
    """[per client IP, per service account] requests a minute, or None without limits."""
    limits = [values.ratelimitIPPerMinute, values.ratelimitEachSAPerMinute]
    return limits if any(v is not None for v in limits) else None


def token_quota(chart_values: dict[str, Any]) -> tuple | None:
    """(tenant, scope, ((descriptor key, unit, tokens), ...)) of a model with token limits."""
    tokens = chart_values["tokenLimit"]
    if not tokens["enabled"]:
        return None
    scope = token_scope(chart_values["namespace"], chart_values["name"], tokens["shareTenantQuota"])
    windows = tuple((key, unit, tokens[field]) for field, key, unit in TOKEN_WINDOWS if field in tokens)
    return (tokens["tenantId"], scope, windows)
