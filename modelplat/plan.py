"""Planning: which resources a model gets, their names, and the chart's values. Pure: no I/O.

Everything later stages need is decided here once, so render only formats and tests can assert
on the plan directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .config import PlatformSettings
from .values import ModelValues

# Chart templates (in templates/chart/templates/) and the features that include them.
TEMPLATE_FOR_FEATURE = {
    "serving": "inferenceservice.yaml",
    "autoscaling": "hpa.yaml",
    "disruption budget": "poddisruptionbudget.yaml",
    "access log": "telemetry.yaml",
    "alerts": "prometheusrule.yaml",
    "pod monitor": "podmonitor.yaml",
    "rdma networks": "networkattachmentdefinition.yaml",
    "canary": "inferenceservice-canary.yaml",
    "canary autoscaling": "hpa-canary.yaml",
    "mirroring": "inferenceservice-shadow.yaml",
    "traffic routing": "virtualservice.yaml",
    "auth": "peerauthentication.yaml",
    "authorization": "authorizationpolicy.yaml",
    "jwt": "requestauthentication.yaml",
    "custom authz": "authorizationpolicy-custom.yaml",
    "rate limits": "envoyfilter-ratelimit.yaml",
    "identity headers": "envoyfilter-identity.yaml",
    "token limits": "envoyfilter-tokenlimit.yaml",
}

# Output template → (jinja source, extra context). The canary and the shadow are the primary's
# InferenceService rendered again with another suffix, model and image: one template, three uses.
TEMPLATE_SOURCES = {
    "inferenceservice-canary.yaml": ("inferenceservice.yaml", {"variant": "canary"}),
    "hpa-canary.yaml": ("hpa.yaml", {"variant": "canary"}),
    "inferenceservice-shadow.yaml": ("inferenceservice.yaml", {"variant": "shadow"}),
}


@dataclass(frozen=True)
class Identity:
    name: str
    project: str
    namespace: str


@dataclass
class ModelPlan:
    identity: Identity
    source: str  # values file relative to the input root (stable across machines; stamped in the chart)
    values: ModelValues
    chart_values: dict[str, Any]
    features: list[str]
    templates: list[str]
    gpu: bool
    llm: bool
    shared_memory: bool
    labels: dict[str, str] = field(default_factory=dict)
    file: str = ""  # values file as the user sees it (relative to the working directory)

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def namespace(self) -> str:
        return self.identity.namespace

    @property
    def model_dir(self) -> str:
        """Output folder of this model, relative to the output root."""
        return f"{self.identity.project}/{self.identity.name}"

    @property
    def chart_dir(self) -> str:
        return f"{self.model_dir}/chart"


def identity(values: ModelValues, file_stem: str, folder: str | None) -> Identity:
    """Name from the file name, project from the folder, unless the file says otherwise."""
    name = values.name or file_stem
    project = values.project or folder or ""
    return Identity(name=name, project=project, namespace=values.namespace or project)


def plan(values: ModelValues, platform: PlatformSettings, ident: Identity, source: str, file: str = "") -> ModelPlan:
    res = values.resources
    gpu = bool(res.requestGPU or res.limitGPU)
    llm = values.model.protocol == "openai"
    shm = values.sharedMemory.enabled if values.sharedMemory.enabled is not None else (gpu or llm)
    pdb = values.podDisruptionBudget.enabled
    pdb = pdb if pdb is not None else values.replicaCount > 1
    features = ["serving", "gpu" if gpu else "cpu"]
    if values.metrics.enabled:
        features.append("metrics")
        if platform.scrape in ("podMonitor", "both"):
            features.append("pod monitor")
    if values.logger is not None:
        features.append("logger")
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
        features.append("canary")
        if values.autoscaling.enabled:
            features.append("canary autoscaling")
    if values.mirror.enabled:
        features.append("mirroring")
    if values.exposeModel.enabled or values.canary.enabled or values.mirror.enabled:
        features.append("traffic routing")
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
    doc = chart_values(values, platform, ident, shm)
    doc["podDisruptionBudget"]["enabled"] = pdb
    return ModelPlan(
        identity=ident,
        source=source,
        values=values,
        chart_values=doc,
        features=features,
        templates=[TEMPLATE_FOR_FEATURE[f] for f in features if f in TEMPLATE_FOR_FEATURE],
        gpu=gpu,
        llm=llm,
        shared_memory=shm,
        labels=common_labels(ident, platform),
        file=file or source,
    )


def chart_values(values: ModelValues, platform: PlatformSettings, ident: Identity, shm: bool) -> dict[str, Any]:
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
        from .rules import default_protocol

        protocol = default_protocol(values.model.format)
        if protocol:
            doc["model"]["protocol"] = protocol
    defaults = platform.defaults.resources
    resources = doc["resources"]
    for key in ("requestCPU", "limitCPU", "requestMemory", "limitMemory"):
        if key not in resources and getattr(defaults, key) is not None:
            resources[key] = getattr(defaults, key)
    doc["resources"] = {k: resources[k] for k in
                        ("requestCPU", "limitCPU", "requestMemory", "limitMemory", "requestGPU", "limitGPU") if k in resources}
    doc["sharedMemory"] = {"enabled": shm, "sizeLimit": values.sharedMemory.sizeLimit or platform.defaults.sharedMemorySize}
    for path in (("labels",), ("scheduling", "nodeSelector"), ("rdma", "resources"), ("canary", "headerMatch")):
        parent = doc
        for part in path[:-1]:
            parent = parent.get(part, {})
        if isinstance(parent.get(path[-1]), dict):
            parent[path[-1]] = dict(sorted(parent[path[-1]].items()))
    from .rules import metrics_port

    metrics = doc["metrics"]
    doc["metrics"] = {"enabled": metrics["enabled"], "port": metrics_port(values),
                      **{k: v for k, v in metrics.items() if k not in ("enabled", "port")}}
    if values.exposeModel.enabled:
        from .rules import exposure_host

        doc["exposeModel"]["host"] = values.exposeModel.host or exposure_host(
            platform, ident.name, ident.namespace, values.exposeModel.type)
    jwt = doc["auth"]["jwt"]
    if values.auth.jwt.enabled:
        # The platform's identity provider unless the model names its own.
        for key in ("issuer", "jwksUri"):
            jwt.setdefault(key, getattr(platform.jwt, key))
        jwt["audiences"] = jwt["audiences"] or list(platform.jwt.audiences)
    doc["tokenLimit"] = token_limit(values, platform)
    limits = platform.rateLimit
    host = f"ratelimit.{limits.namespace}.svc.cluster.local"
    doc["platform"] = {
        "clusterName": platform.clusterName,
        "rateLimit": {"domain": rate_limit_domain(ident.namespace, ident.name),
                      "cluster": f"outbound|{limits.grpcPort}||{host}", "authority": host,
                      "timeout": limits.timeout, "failureModeDeny": limits.failureModeDeny},
        "gateway": platform.gateway,
        "gatewayNamespace": platform.gatewayNamespace or platform.gateway.split("/", 1)[0],
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


def common_labels(ident: Identity, platform: PlatformSettings) -> dict[str, str]:
    """Labels on the Flux objects (the chart computes its own from values)."""
    return {
        "app.kubernetes.io/name": ident.name,
        "app.kubernetes.io/part-of": ident.project,
        "app.kubernetes.io/managed-by": "modelplat",
        "modelplat.io/environment": platform.environment,
    }


# --- Flux objects ------------------------------------------------------------------------------


def helm_release(p: ModelPlan, platform: PlatformSettings) -> dict[str, Any]:
    flux = platform.flux
    source = flux.gitRepository
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
        "spec": {
            "interval": flux.interval,
            "releaseName": p.name,
            "timeout": flux.timeout,
            "chart": {
                "spec": {
                    "chart": f"{flux.path.rstrip('/')}/{p.chart_dir}",
                    # The chart version carries a hash of the chart's content (chart_version),
                    # so a chart is re-released when it changes and only then. `Revision`
                    # would upgrade every model on every commit to the repository.
                    "reconcileStrategy": "ChartVersion",
                    "sourceRef": {"kind": "GitRepository", "name": source.name, "namespace": source.namespace},
                    "interval": flux.interval,
                }
            },
            "install": {"remediation": {"retries": flux.retries}},
            "upgrade": {
                "cleanupOnFail": True,
                "remediation": {"retries": flux.retries, "remediateLastFailure": True},
            },
            "values": p.chart_values,
        },
    }


def namespace(project_namespace: str, platform: PlatformSettings) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "modelplat", "modelplat.io/environment": platform.environment}
    if platform.istioInjection:
        labels["istio-injection"] = "enabled"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": project_namespace, "labels": labels}}


def kustomization(resources: list[str]) -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}


def git_repository(platform: PlatformSettings) -> dict[str, Any]:
    src = platform.flux.gitRepository
    spec: dict[str, Any] = {"interval": platform.flux.interval, "url": src.url, "ref": {"branch": src.branch}}
    if src.secretRef:
        spec["secretRef"] = {"name": src.secretRef}
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": src.name, "namespace": src.namespace},
        "spec": spec,
    }


def flux_kustomization(platform: PlatformSettings) -> dict[str, Any]:
    src = platform.flux.gitRepository
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": platform.flux.kustomizationName, "namespace": src.namespace},
        "spec": {
            "interval": platform.flux.interval,
            "path": platform.flux.path,
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": src.name},
            "timeout": platform.flux.timeout,
        },
    }


def chart_version(chart_files: dict[str, bytes]) -> str:
    """modelplat's version plus, as semver build metadata, a hash of the chart's files."""
    import hashlib

    digest = hashlib.sha256()
    for rel in sorted(chart_files):
        digest.update(rel.encode() + b"\0" + chart_files[rel] + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


def chart_metadata(p: ModelPlan, version: str = __version__) -> dict[str, Any]:
    description = p.values.description or f"KServe model service {p.name} ({p.values.model.format})"
    return {
        "apiVersion": "v2",
        "name": p.name,
        "description": description,
        "type": "application",
        # Stamped from the generator, with a hash of the chart's content (see chart_version).
        "version": version,
        "appVersion": __version__,
        "annotations": {"modelplat.io/generator": f"modelplat {__version__}", "modelplat.io/source": p.source},
    }


def prometheus_adapter(platform: PlatformSettings) -> dict[str, list[dict[str, Any]] | dict[str, Any]]:
    """The platform's prometheus-adapter: a HelmRepository and a HelmRelease whose rules serve
    exactly the custom metrics the charts' HPAs use (modelplat.metrics)."""
    from . import metrics

    adapter = platform.prometheusAdapter
    source_ns = platform.flux.gitRepository.namespace
    repository = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "prometheus-community", "namespace": source_ns},
        "spec": {"interval": "1h", "url": adapter.repositoryUrl,
                 **({"type": "oci"} if adapter.repositoryUrl.startswith("oci://") else {})},
    }
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "prometheus-adapter", "namespace": adapter.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "modelplat"}},
        "spec": {
            "interval": platform.flux.interval,
            "chart": {"spec": {
                "chart": "prometheus-adapter",
                "version": adapter.chartVersion,
                "sourceRef": {"kind": "HelmRepository", "name": "prometheus-community", "namespace": source_ns},
            }},
            "install": {"remediation": {"retries": platform.flux.retries}},
            "upgrade": {"remediation": {"retries": platform.flux.retries}},
            "values": {
                "prometheus": {"url": adapter.prometheusUrl, "port": adapter.prometheusPort},
                # Only the metrics modelplat's HPAs use; CPU and memory come from metrics-server.
                "rules": {"default": False, "custom": metrics.adapter_rules(platform.metricLabels)},
            },
        },
    }
    return {"helmrepository.yaml": repository, "helmrelease.yaml": release}


# --- request rate limits --------------------------------------------------------------------------


def wiring_identity(p: "ModelPlan") -> tuple:
    """What the Flux wiring and the platform services need of one model (cached with it):
    (name, project, namespace, request limits or None, token quota or None)."""
    limits = rate_limits(p.values)
    return (p.name, p.identity.project, p.namespace, tuple(limits) if limits else None, token_quota(p.chart_values))


def rate_limits(values: ModelValues) -> list[int | None] | None:
    """[per client IP, per service account] requests a minute, or None without limits."""
    limits = [values.ratelimitIPPerMinute, values.ratelimitEachSAPerMinute]
    return limits if any(v is not None for v in limits) else None


def rate_limit_domain(namespace: str, name: str) -> str:
    # One domain per model: envoyproxy/ratelimit refuses two config files with the same domain,
    # and a domain of its own keeps one model's limits from ever counting another's requests.
    return f"modelplat.{namespace}.{name}"


# The descriptor keys the EnvoyFilter's actions send (templates/.../envoyfilter-ratelimit.yaml.j2):
# remote_address is Envoy's own key for the client address action; service_account is ours.
IP_KEY = "remote_address"
SA_KEY = "service_account"


def rate_limit_config_file(namespace: str, name: str) -> str:
    """The model's file in the rate limit service's config folder (its key in the ConfigMap)."""
    return f"{namespace}.{name}.yaml"


def rate_limit_config(namespace: str, name: str, limits: list[int | None]) -> dict[str, Any]:
    """The ratelimit service's config for one model: per-minute limits, keyed as the actions send."""
    descriptors = []
    if limits[0] is not None:
        descriptors.append({"key": IP_KEY, "rate_limit": {"unit": "minute", "requests_per_unit": limits[0]}})
    if limits[1] is not None:
        descriptors.append({"key": SA_KEY, "rate_limit": {"unit": "minute", "requests_per_unit": limits[1]}})
    return {"domain": rate_limit_domain(namespace, name), "descriptors": descriptors}


def rate_limit_service(platform: PlatformSettings, configs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The platform's rate limit service: Redis, envoyproxy/ratelimit, and one ConfigMap holding
    every model's config file (the service reads all files of its config folder)."""
    settings = platform.rateLimit
    ns = settings.namespace
    labels = {"app.kubernetes.io/managed-by": "modelplat", "app.kubernetes.io/part-of": "modelplat-ratelimit"}

    def deployment(name: str, container: dict[str, Any], volumes: list | None = None) -> dict[str, Any]:
        pod: dict[str, Any] = {"containers": [container]}
        if volumes:
            pod["volumes"] = volumes
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels | {"app.kubernetes.io/name": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": {"metadata": {"labels": labels | {"app.kubernetes.io/name": name}}, "spec": pod}},
        }

    def service(name: str, port: int, port_name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"selector": {"app.kubernetes.io/name": name},
                         "ports": [{"name": port_name, "port": port, "targetPort": port}]}}

    env = {
        "LOG_LEVEL": "warn", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "redis:6379", "USE_STATSD": "false",
        "RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit", "RUNTIME_WATCH_ROOT": "false",
        "RUNTIME_IGNOREDOTFILES": "true", "GRPC_PORT": str(settings.grpcPort),
    }
    ratelimit = deployment("ratelimit", {
        "name": "ratelimit", "image": settings.image, "command": ["/bin/ratelimit"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"containerPort": settings.grpcPort, "name": "grpc"}],
        "volumeMounts": [{"name": "config", "mountPath": "/data/ratelimit/config"}],
    }, [{"name": "config", "configMap": {"name": "ratelimit-config"}}])
    redis = deployment("redis", {"name": "redis", "image": settings.redisImage,
                                 "ports": [{"containerPort": 6379, "name": "redis"}]})
    return {
        "namespace.yaml": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
        "configmap.yaml": {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "ratelimit-config", "namespace": ns, "labels": labels},
                           "data": dict(sorted(configs.items()))},
        "ratelimit.yaml": ratelimit,
        "ratelimit-service.yaml": service("ratelimit", settings.grpcPort, "grpc"),
        "redis.yaml": redis,
        "redis-service.yaml": service("redis", 6379, "redis"),
    }


# --- token quotas ---------------------------------------------------------------------------------
# Counted by the platform's rate limit service: one domain per tenant, one `scope` per quota (the
# tenant's shared one, or one model's), then one descriptor key per identity and window. The
# descriptors the EnvoyFilter's actions send (envoyfilter-tokenlimit.yaml.j2) follow the same
# names: `scope` from a generic_key action, the identity from the Lua filter's dynamic metadata.

TOKEN_WINDOWS = (("saLimit", "sa_day", "day"), ("saLimitPerMinute", "sa_minute", "minute"),
                 ("ipLimit", "ip_day", "day"), ("ipLimitPerMinute", "ip_minute", "minute"))
SHARED_SCOPE = "tenant"


def token_limit(values: ModelValues, platform: PlatformSettings) -> dict[str, Any]:
    """The model's tokenLimit with the platform defaults filled in (what the chart receives)."""
    own, defaults = values.tokenLimit, platform.tokenLimit
    doc: dict[str, Any] = {"enabled": own.enabled}
    if own.tenantId is not None:
        doc["tenantId"] = own.tenantId
    for key, _, _ in TOKEN_WINDOWS:
        value = getattr(own, key) if getattr(own, key) is not None else getattr(defaults, key)
        if value is not None:
            doc[key] = value
    doc["paths"] = list(own.paths if own.paths is not None else defaults.paths)
    doc["missingIdentity"] = own.missingIdentity or defaults.missingIdentity
    doc["failureMode"] = own.failureMode or defaults.failureMode
    doc["shareTenantQuota"] = own.shareTenantQuota
    return doc


def token_domain(tenant: str) -> str:
    return f"modelplat.tokens.{tenant}"


def token_quota_config_file(tenant: str) -> str:
    """The tenant's key in the rate limit service's ConfigMap."""
    return f"tokens.{tenant}.yaml"


def token_scope(namespace: str, name: str, shared: bool) -> str:
    return SHARED_SCOPE if shared else f"{namespace}.{name}"


def token_quota(chart_values: dict[str, Any]) -> tuple | None:
    """(tenant, scope, ((descriptor key, unit, tokens), ...)) of a model with token limits."""
    tokens = chart_values["tokenLimit"]
    if not tokens["enabled"]:
        return None
    scope = token_scope(chart_values["namespace"], chart_values["name"], tokens["shareTenantQuota"])
    windows = tuple((key, unit, tokens[field]) for field, key, unit in TOKEN_WINDOWS if field in tokens)
    return (tokens["tenantId"], scope, windows)


def token_quota_config(tenant: str, scopes: dict[str, tuple]) -> dict[str, Any]:
    """The rate limit service's config for one tenant: each scope's quotas in tokens per unit."""
    descriptors = []
    for scope, windows in sorted(scopes.items()):
        descriptors.append({"key": "scope", "value": scope, "descriptors": [
            {"key": key, "rate_limit": {"unit": unit, "requests_per_unit": tokens}} for key, unit, tokens in windows
        ]})
    return {"domain": token_domain(tenant), "descriptors": descriptors}
