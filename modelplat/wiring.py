"""The objects that tie the models together and that they rely on, beside their charts: Flux's
GitRepository and Kustomizations, the project namespaces, prometheus-adapter, and the rate
limit service with every model's limits and every tenant's token quota (render.render_wiring
writes them under charts-out/_platform and the project folders).
"""

from __future__ import annotations

from typing import Any

from .config import PlatformSettings
from .resolve import IP_KEY, SA_KEY, rate_limit_domain, safety_events, token_domain

PLATFORM_DIR = "_platform"
# The folders (relative to the output root) a Flux Kustomization builds: the models' root, which
# also lists _platform/flux, and the platform services' (flux_kustomizations).
KUSTOMIZE_ROOTS = ("", PLATFORM_DIR)


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


def flux_kustomizations(platform: PlatformSettings) -> dict[str, dict[str, Any]]:
    """The two Flux Kustomizations, as Flux's own multi-tenant layouts split them: the platform
    services first (`wait`: Ready only once every object it applied is healthy), then the models,
    which depend on it. The models' one also applies `_platform/flux` (the source and both
    Kustomizations), so Flux keeps its own configuration in sync with Git."""
    flux, src = platform.flux, platform.flux.gitRepository

    def flux_kustomization(name: str, path: str, **extra: Any) -> dict[str, Any]:
        return {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": src.namespace},
            "spec": {
                "interval": flux.interval,
                "path": path,
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": src.name},
                "timeout": flux.timeout,
                **extra,
            },
        }

    root = flux.path.rstrip("/")
    return {
        "platform.yaml": flux_kustomization(flux.platformKustomizationName, f"{root}/{PLATFORM_DIR}", wait=True),
        "sync.yaml": flux_kustomization(flux.kustomizationName, root,
                                   dependsOn=[{"name": flux.platformKustomizationName}]),
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


# Model Armor's events (GKE's supportedEvents) for each of ours.
GKE_EVENTS = {"requestHeaders": "RequestHeaders", "requestBody": "RequestBody",
              "responseHeaders": "ResponseHeaders", "responseBody": "ResponseBody"}


def model_armor_extension(platform: PlatformSettings, armor: list[tuple]) -> dict[str, Any]:
    """The platform's one GCPTrafficExtension on the Gateway (GKE attaches one traffic extension to
    a Gateway's load balancer): a chain for each Model Armor provider and what it screens, whose CEL
    matches the requests of every model screened that way. armor: (provider, screen, CEL) of each
    screened model, in a stable order."""
    chains: dict[tuple[str, str], list[str]] = {}
    for provider, screen, match in armor:
        chains.setdefault((provider, screen), []).append(match)
    gateway_ns, gateway = platform.gatewayApi.gateway.split("/", 1)
    out = []
    for (provider, screen), matches in sorted(chains.items()):
        armor = platform.safety.providers[provider].gkeModelArmor
        out.append({
            "name": f"{provider}-{screen}",
            "matchCondition": {"celExpressions": [{"celMatcher": " || ".join(f"({m})" for m in matches)}]},
            "extensions": [{
                "name": "model-armor", "googleAPIServiceName": f"modelarmor.{armor.region}.rep.googleapis.com",
                "supportedEvents": [GKE_EVENTS[e] for e in safety_events(screen, tuple(GKE_EVENTS))],
                "timeout": armor.timeout, "failOpen": armor.failureMode == "open",
                "metadata": {"extensionPolicy": f"projects/{armor.project}/locations/{armor.region}/templates/"
                                                f"{armor.template}",
                             "sanitizeUserPrompt": "true" if screen in ("prompts", "both") else "false",
                             "sanitizeUserResponse": "true" if screen in ("responses", "both") else "false"},
            }],
        })
    return {
        "apiVersion": "networking.gke.io/v1", "kind": "GCPTrafficExtension",
        "metadata": {"name": "modelplat-safety", "namespace": gateway_ns,
                     "labels": {"app.kubernetes.io/managed-by": "modelplat",
                                "app.kubernetes.io/part-of": "modelplat-safety"}},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway}],
                 "extensionChains": out},
    }


def token_quota_config_file(tenant: str) -> str:
    """The tenant's key in the rate limit service's ConfigMap."""
    return f"tokens.{tenant}.yaml"


def token_quota_config(tenant: str, scopes: dict[str, tuple]) -> dict[str, Any]:
    """The rate limit service's config for one tenant: each scope's quotas in tokens per unit."""
    descriptors = []
    for scope, windows in sorted(scopes.items()):
        descriptors.append({"key": "scope", "value": scope, "descriptors": [
            {"key": key, "rate_limit": {"unit": unit, "requests_per_unit": tokens}} for key, unit, tokens in windows
        ]})
    return {"domain": token_domain(tenant), "descriptors": descriptors}
