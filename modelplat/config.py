"""The platform settings file: what the platform team sets once for every model.

A pydantic model like values.py (exported to JSON Schema); no I/O and no rendering here.
"""


from typing import Annotated, Literal, Optional

from pydantic import Field, StringConstraints, model_validator

from .values import (DEFAULT_SAFETY_PATHS, DEFAULT_TOKEN_PATHS, DNSLabel, HttpPath, LabelKey, Port, Quantity, Section,
                     TokenQuota, Url)

Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")]


class GPUSettings(Section):
    """How GPU nodes are labelled and tainted (seed: EKS node groups, NVIDIA device plugin)."""

    nodeGroupLabel: LabelKey = Field(
        default="eks.amazonaws.com/nodegroup", description="Node label naming the node group."
    )
    nodeGroup: Optional[DNSLabel] = Field(
        default=None, description="The GPU node group's label value; unset: `<clusterName>-gpu`."
    )
    taintKey: LabelKey = Field(default="nvidia.com/gpu", description="Taint key on GPU nodes, tolerated by GPU pods.")
    resourceName: LabelKey = Field(default="nvidia.com/gpu", description="Extended resource name of a GPU.")
    productLabel: LabelKey = Field(
        default="nvidia.com/gpu.product", description="Node label holding the GPU product (GPU feature discovery)."
    )


class ResourceDefaults(Section):
    requestCPU: Quantity = Field(default="500m")
    limitCPU: Optional[Quantity] = Field(default=None, description="Unset: a model's CPU limit is its request (KServe would otherwise impose its own default).")
    requestMemory: Quantity = Field(default="1Gi")
    limitMemory: Optional[Quantity] = Field(default="2Gi")


class Defaults(Section):
    """Defaults every model inherits unless it sets its own."""

    resources: ResourceDefaults = Field(default_factory=ResourceDefaults)
    sharedMemorySize: Quantity = Field(default="2Gi", description="/dev/shm size for GPU and LLM models.")


class GitRepositorySettings(Section):
    name: DNSLabel = Field(default="modelplat", description="Flux GitRepository holding the rendered output.")
    namespace: DNSLabel = Field(default="flux-system")
    # Plain http is Flux's too: a Git server on a trusted network, or the engines' loopback one.
    url: Annotated[str, StringConstraints(pattern=r"^(https?|ssh)://[^\s]+$")] = Field(
        default="ssh://git@git.example.com/platform/models.git",
        description="Repository URL (ssh://, https://, or http:// on a trusted network).",
    )
    branch: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]+$")] = Field(default="main")
    secretRef: Optional[DNSLabel] = Field(default=None, description="Secret with the Git credentials.")


class FluxSettings(Section):
    """How Flux finds and applies the rendered output."""

    gitRepository: GitRepositorySettings = Field(default_factory=GitRepositorySettings)
    path: Annotated[str, StringConstraints(pattern=r"^\./[A-Za-z0-9._/-]*$")] = Field(
        default="./charts-out", description="Path of the rendered output inside the repository."
    )
    interval: Duration = Field(default="10m", description="Reconcile interval of HelmReleases and the Kustomization.")
    timeout: Duration = Field(default="15m", description="Helm install/upgrade timeout (GPU models load slowly).")
    retries: Annotated[int, Field(ge=0, le=20)] = Field(default=3, description="Install/upgrade remediation retries.")
    kustomizationName: DNSLabel = Field(
        default="modelplat-models",
        description="Flux Kustomization that applies the models (and the Flux objects themselves); it waits for the platform's.")
    platformKustomizationName: DNSLabel = Field(
        default="modelplat-platform",
        description="Flux Kustomization that applies the platform services the models use (rate-limit service, "
                    "prometheus-adapter) and waits until they are healthy.")


class MetricLabels(Section):
    """Label names that tie metric series to pods, as the platform's Prometheus scrapes them."""

    namespace: LabelKey = Field(default="namespace", description="Namespace label on Istio and model-server series.")
    pod: LabelKey = Field(default="pod", description="Pod label on Istio and model-server series.")
    dcgmNamespace: LabelKey = Field(
        default="exported_namespace",
        description="Namespace label on DCGM exporter series (scraped through a Service, the exporter's own "
        "namespace/pod labels are renamed exported_*).",
    )
    dcgmPod: LabelKey = Field(default="exported_pod", description="Pod label on DCGM exporter series.")


class PrometheusAdapterSettings(Section):
    """The prometheus-adapter release that serves the HPAs' custom metrics (rendered under _platform/)."""

    enabled: bool = Field(default=True, description="Render the prometheus-adapter HelmRelease.")
    namespace: DNSLabel = Field(default="monitoring")
    chartVersion: Annotated[str, StringConstraints(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")] = Field(
        default="4.14.1", description="prometheus-community/prometheus-adapter chart version."
    )
    repositoryUrl: Annotated[str, StringConstraints(pattern=r"^(https|oci)://[^\s]+$")] = Field(
        default="https://prometheus-community.github.io/helm-charts"
    )
    prometheusUrl: Annotated[str, StringConstraints(pattern=r"^https?://[^\s:]+$")] = Field(
        default="http://prometheus-operated.monitoring.svc", description="Prometheus the adapter queries (no port)."
    )
    prometheusPort: Annotated[int, Field(ge=1, le=65535)] = Field(default=9090)


class RateLimitSettings(Section):
    """The platform's global rate limit service (envoyproxy/ratelimit + Redis), rendered under _platform/."""

    namespace: DNSLabel = Field(default="ratelimit")
    image: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/:@-]*:[A-Za-z0-9_.-]+$")] = Field(
        default="envoyproxy/ratelimit:3fb70258", description="envoyproxy/ratelimit image (pinned)."
    )
    redisImage: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/:@-]*:[A-Za-z0-9_.-]+$")] = Field(
        default="redis:7.4.2-alpine", description="Redis image holding the shared counters."
    )
    grpcPort: Annotated[int, Field(ge=1, le=65535)] = Field(default=8081)
    timeout: Duration = Field(default="0.25s", description="How long a sidecar waits for the service.")
    failureModeDeny: bool = Field(
        default=False,
        description="Refuse requests when the service cannot be reached (false: let them through).",
    )


class TokenLimitDefaults(Section):
    """Cluster-wide defaults of every model's `tokenLimit` (a model's own setting wins)."""

    saLimit: Optional[TokenQuota] = Field(default=None, description="Tokens per service account per day.")
    ipLimit: Optional[TokenQuota] = Field(default=None, description="Tokens per client IP per day.")
    saLimitPerMinute: Optional[TokenQuota] = Field(default=None)
    ipLimitPerMinute: Optional[TokenQuota] = Field(default=None)
    paths: list[HttpPath] = Field(
        default_factory=lambda: list(DEFAULT_TOKEN_PATHS), description="Request paths whose responses are counted."
    )
    missingIdentity: Literal["refuse", "countByIP"] = Field(default="refuse")
    failureMode: Literal["closed", "open"] = Field(
        default="closed", description="When the rate limit service is down: refuse (closed) or allow (open)."
    )


class JWTSettings(Section):
    """The platform's identity provider; models may override issuer, JWKS and audiences."""

    issuer: Optional[Url] = Field(default=None, examples=["https://idp.example.com"])
    jwksUri: Optional[Url] = Field(default=None, examples=["https://idp.example.com/.well-known/jwks.json"])
    audiences: list[str] = Field(default_factory=list)
    serviceAccountClaim: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]+$")] = Field(
        default="sub", description="Claim naming the calling service account (copied to serviceAccountHeader)."
    )
    serviceAccountHeader: Annotated[str, StringConstraints(pattern=r"^x-[a-z0-9-]+$")] = Field(
        default="x-modelplat-sa", description="Header the service-account claim is copied to (rate and token limits)."
    )
    tenantClaim: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]+$")] = Field(
        default="tenant", description="Claim naming the caller's tenant."
    )
    tenantHeader: Annotated[str, StringConstraints(pattern=r"^x-[a-z0-9-]+$")] = Field(
        default="x-modelplat-tenant", description="Header the tenant claim is copied to."
    )


class GatewayAPISettings(Section):
    """The platform's Gateway API Gateway: where LLM-native models (LLMInferenceServices) are routed."""

    gateway: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$")] = Field(
        default="istio-system/inference-gateway",
        description="Gateway `<namespace>/<name>` the models' HTTPRoutes attach to (it must exist: KServe creates "
        "no routing for a model whose Gateway is missing).")
    gatewayClass: DNSLabel = Field(
        default="istio", description="GatewayClass of that Gateway: which implementation runs it (istio: the "
        "gateway is an Envoy that Istio configures, and calls the endpoint picker).")


# What a safety provider can be sent: the prompt's events and the response's.
REQUEST_EVENTS = ("requestHeaders", "requestBody")
RESPONSE_EVENTS = ("responseHeaders", "responseBody")
SAFETY_EVENTS = REQUEST_EVENTS + RESPONSE_EVENTS
ServiceHost = Annotated[str, StringConstraints(
    pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$", max_length=253)]


class ExtProcProvider(Section):
    """A screening service behind Envoy's external processing protocol (gRPC `ext_proc`): what Llama
    Guard, NeMo Guardrails or a company's own service sit behind. The model's sidecar calls it."""

    service: ServiceHost = Field(
        description="The service's in-mesh host (the sidecar reaches it through the mesh, mTLS included).",
        examples=["llm-guard.safety.svc.cluster.local"])
    port: Port = Field(description="Its gRPC port.", examples=[9000])
    timeout: Duration = Field(
        default="500ms", description="How long the sidecar waits for the service's answer to one message "
        "(a buffered prompt or response, or one streamed chunk).")
    events: list[Literal["requestHeaders", "requestBody", "responseHeaders", "responseBody"]] = Field(
        default_factory=lambda: list(SAFETY_EVENTS), min_length=1,
        description="What the service is sent, of what a model chooses to screen (prompts: the request events; "
        "responses: the response events).")
    bodyMode: Literal["buffered", "streamed"] = Field(
        default="buffered", description="`buffered`: a body is sent whole (a streamed response is held until it "
        "ends); `streamed`: each chunk is sent as it arrives, so a streamed response keeps streaming.")
    failureMode: Literal["open", "closed"] = Field(
        default="closed", description="When the service fails or times out: `closed` refuses the request (500), "
        "`open` lets it through unscreened. Either way an alert fires.")


class ModelArmorProvider(Section):
    """Google's Model Armor, called by GKE's Gateway through a `GCPTrafficExtension` (only for models
    routed through a GKE Gateway: `gatewayApi.gatewayClass` gke-l7-*)."""

    project: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")] = Field(
        description="Google Cloud project holding the template.", examples=["ml-prod-123"])
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]+-[a-z]+[0-9]+$")] = Field(
        description="Region of the template and of Model Armor's regional endpoint.", examples=["us-central1"])
    template: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")] = Field(
        description="Model Armor template (its filters and their confidence levels).", examples=["llm-default"])
    timeout: Annotated[str, StringConstraints(pattern=r"^([1-9][0-9]{1,2}ms|1s)$")] = Field(
        default="1s", description="How long the load balancer waits for Model Armor (10ms to 1s, GKE's bounds).")
    failureMode: Literal["open", "closed"] = Field(
        default="closed", description="When Model Armor cannot be reached: `closed` refuses, `open` lets through.")


class SafetyProvider(Section):
    """One named safety provider: exactly one of `extProc` and `gkeModelArmor`."""

    extProc: Optional[ExtProcProvider] = Field(default=None)
    gkeModelArmor: Optional[ModelArmorProvider] = Field(default=None)

    @model_validator(mode="after")
    def _one_kind(self) -> "SafetyProvider":
        if (self.extProc is None) == (self.gkeModelArmor is None):
            raise ValueError("a safety provider is exactly one of extProc and gkeModelArmor")
        return self


class SafetySettings(Section):
    """Prompt and response safety: the providers models may name in their `safety` section."""

    providers: dict[DNSLabel, SafetyProvider] = Field(
        default_factory=dict, description="Providers by name.",
        examples=[{"llm-guard": {"extProc": {"service": "llm-guard.safety.svc.cluster.local", "port": 9000}}}])
    paths: list[HttpPath] = Field(
        default_factory=lambda: list(DEFAULT_SAFETY_PATHS), min_length=1,
        description="Request paths screened when a model names none (default: the OpenAI completion, chat and "
        "embedding paths, with and without KServe's /openai prefix).")

    @model_validator(mode="after")
    def _chain_names(self) -> "SafetySettings":
        # A Model Armor provider names its chains on the Gateway, <provider>-<screen>: 63 characters at most.
        long = [name for name, p in self.providers.items() if p.gkeModelArmor is not None and len(name) > 53]
        if long:
            raise ValueError(f"a Model Armor provider's name is at most 53 characters: {', '.join(long)}")
        return self


class LLMServingSettings(Section):
    """How OpenAI-protocol models are served when their values do not say (`model.serving`)."""

    default: Literal["inferenceservice", "llm"] = Field(
        default="inferenceservice",
        description="`llm`: every `protocol: openai` model without `model.serving` becomes an LLMInferenceService.")


class PlatformSettings(Section):
    """The platform settings file (e.g. `platform.yaml`)."""

    clusterName: DNSLabel = Field(description="Cluster name; the GPU node group is `<clusterName>-gpu`.", examples=["ml-prod"])
    environment: DNSLabel = Field(default="prod", description="Environment name, stamped as a label.")
    kubernetesVersion: Annotated[str, StringConstraints(pattern=r"^1\.[0-9]{2}$")] = Field(
        default="1.33", description="Kubernetes minor version the output is validated against."
    )
    domain: Optional[Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")]] = Field(
        default=None, description="Base domain of exposed models.", examples=["models.example.com"]
    )
    gateway: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$")] = Field(
        default="istio-system/model-gateway", description="Istio gateway `<namespace>/<name>` models are published on."
    )
    gatewayNamespace: Optional[DNSLabel] = Field(
        default=None,
        description="Namespace the gateway's pods run in, when it is not the namespace of `gateway` (the "
                    "Gateway resource): requests they forward must never read an exposed model's metrics.",
        examples=["istio-ingress"],
    )
    hostPattern: Annotated[str, StringConstraints(
        pattern=r"^([a-z0-9.-]|\{name\}|\{namespace\}|\{type\}|\{domain\})+$")] = Field(
        default="{name}-predictor-{namespace}.{type}.{domain}",
        description="Host of an exposed model; {name}, {namespace}, {type} (exposeModel.type) and {domain} are "
        "filled in. Never a wildcard.",
    )
    istioVersion: Annotated[str, StringConstraints(pattern=r"^1\.[0-9]{1,3}$")] = Field(
        default="1.27",
        description="Oldest Istio minor version in the cluster. Token quotas need 1.25 or newer (Envoy 1.33: "
        "rate-limit hits taken from dynamic metadata, applied when the stream is done).",
    )
    istioInjection: bool = Field(default=True, description="Label model namespaces for Istio sidecar injection.")
    scrape: Literal["annotations", "podMonitor", "both"] = Field(
        default="annotations", description="How Prometheus finds model metrics."
    )
    gpu: GPUSettings = Field(default_factory=GPUSettings)
    metricLabels: MetricLabels = Field(default_factory=MetricLabels)
    prometheusAdapter: PrometheusAdapterSettings = Field(default_factory=PrometheusAdapterSettings)
    rateLimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    tokenLimit: TokenLimitDefaults = Field(default_factory=TokenLimitDefaults)
    defaults: Defaults = Field(default_factory=Defaults)
    flux: FluxSettings = Field(default_factory=FluxSettings)
    jwt: JWTSettings = Field(default_factory=JWTSettings)
    gatewayApi: GatewayAPISettings = Field(default_factory=GatewayAPISettings)
    routing: Literal["istio", "gateway-api"] = Field(
        default="istio",
        description="How InferenceServices are exposed, split to a canary and mirrored: `istio` (a VirtualService on "
        "`gateway` and the mesh) or `gateway-api` (HTTPRoutes on `gatewayApi.gateway`, and on the model's Service for "
        "in-mesh callers). LLMInferenceServices are always routed by the HTTPRoute KServe makes.")
    llmServing: LLMServingSettings = Field(default_factory=LLMServingSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)

    @property
    def gpu_node_group(self) -> str:
        return self.gpu.nodeGroup or f"{self.clusterName}-gpu"
