"""Facts derived from a model's values (and the platform settings), each worked out in one place:
its identity, the protocol and metrics port of its runtime, its exposed host, its token quota
with the platform's defaults filled in. The rules judge them and planning serialises them into
the chart values; neither works them out again.

Imports only values and config, so every other module may import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .config import REQUEST_EVENTS, RESPONSE_EVENTS, PlatformSettings
from .values import ModelValues


@dataclass(frozen=True)
class Identity:
    name: str
    project: str
    namespace: str


def identity(values: ModelValues, file_stem: str, folder: str | None) -> Identity:
    """Name from the file name, project from the folder, unless the file says otherwise."""
    name = values.name or file_stem
    project = values.project or folder or ""
    return Identity(name=name, project=project, namespace=values.namespace or project)


# The protocols KServe v0.20's default ClusterServingRuntimes serve each format over (config/runtimes:
# tensorflow-serving v1; Triton v2/grpc-v2 for onnx, tensorflow and triton; TorchServe v1/v2/grpc-v2;
# the Python servers and MLServer v1/v2). Without protocolVersion KServe asks for v1, and a format
# no runtime serves over that protocol gets no Deployment ("no runtime found"), which the engines
# tests saw for onnx. An `openai` model sets no protocolVersion (v1 to KServe).
RUNTIME_PROTOCOLS = {
    "sklearn": ("v1", "v2"), "xgboost": ("v1", "v2"), "lightgbm": ("v1", "v2"), "huggingface": ("v1", "v2"),
    "tensorflow": ("v1", "v2", "grpc-v2"), "pytorch": ("v1", "v2", "grpc-v2"),
    "onnx": ("v2", "grpc-v2"), "triton": ("v2", "grpc-v2"),
}


def default_protocol(fmt: str) -> str | None:
    """What modelplat sets when model.protocol is unset: nothing (KServe's v1) where a runtime
    serves v1, else v2 (onnx and triton are served by Triton only)."""
    served = RUNTIME_PROTOCOLS.get(fmt)
    return None if served is None or "v1" in served else "v2"

# The ClusterServingRuntime KServe v0.20 picks when model.runtime is unset: among the runtimes that
# auto-select the format and serve the protocol, the highest priority (sortSupportedRuntimeByPriority).
# "openai" models are served over KServe's v1 routes.
DEFAULT_RUNTIMES = {
    ("sklearn", "v1"): "kserve-sklearnserver", ("sklearn", "v2"): "kserve-mlserver",
    ("xgboost", "v1"): "kserve-xgbserver", ("xgboost", "v2"): "kserve-mlserver",
    ("lightgbm", "v1"): "kserve-lgbserver", ("lightgbm", "v2"): "kserve-mlserver",
    ("huggingface", "v1"): "kserve-huggingfaceserver", ("huggingface", "v2"): "kserve-huggingfaceserver",
    ("tensorflow", "v1"): "kserve-tensorflow-serving", ("tensorflow", "v2"): "kserve-tritonserver",
    ("tensorflow", "grpc-v2"): "kserve-tritonserver",
    ("pytorch", "v1"): "kserve-torchserve", ("pytorch", "v2"): "kserve-torchserve",
    ("pytorch", "grpc-v2"): "kserve-torchserve",
    ("onnx", "v2"): "kserve-tritonserver", ("onnx", "grpc-v2"): "kserve-tritonserver",
    ("triton", "v2"): "kserve-tritonserver", ("triton", "grpc-v2"): "kserve-tritonserver",
}

# How each runtime decides the model name clients send (found in the runtimes' code; the engines
# tests read it back from the Deployments KServe's controller makes):
# - "arg": the runtime's args hold --model_name={{.Name}}, KServe appends the InferenceService's args
#   after them, and the server keeps the last one (Python argparse; TF Serving's Flags::Parse).
# - "env": MLServer reads MLSERVER_MODEL_NAME, which KServe sets to the InferenceService's name only
#   when the spec does not set it. Its runtime has no args: any args replace `mlserver start`.
# - "artefacts": TorchServe (config.properties model_snapshot) and Triton (model repository folder
#   names) name models after the model's files, whatever the InferenceService is called.
SERVED_NAME_BY = {
    "kserve-sklearnserver": "arg", "kserve-xgbserver": "arg", "kserve-lgbserver": "arg",
    "kserve-huggingfaceserver": "arg", "kserve-tensorflow-serving": "arg",
    "kserve-mlserver": "env", "kserve-torchserve": "artefacts", "kserve-tritonserver": "artefacts",
}


def serving_runtime(values: ModelValues) -> str | None:
    """The ClusterServingRuntime that serves the model (None: a custom container)."""
    spec = values.model
    if spec.format == "custom":
        return None
    if spec.runtime:
        return spec.runtime
    protocol = spec.protocol or default_protocol(spec.format) or "v1"
    return DEFAULT_RUNTIMES.get((spec.format, "v1" if protocol == "openai" else protocol))


def served_name_by(values: ModelValues) -> str | None:
    """"arg", "env" or "artefacts" (see SERVED_NAME_BY); None for a runtime modelplat does not know."""
    runtime = serving_runtime(values)
    return SERVED_NAME_BY.get(runtime) if runtime else None


# KServe v0.20's LLMInferenceService presets (config/llmisvcconfig): clients and the endpoint
# picker reach a pod on 8000, where vLLM listens, or, on a decode pod of a prefill/decode pair, the
# llm-d routing sidecar, which passes requests on to vLLM on 8001.
LLM_PORT = 8000
LLM_DECODE_VLLM_PORT = 8001


def llm_owns_route(chart_values: dict) -> bool:
    """An LLMInferenceService whose route the chart writes (httproute.yaml), not KServe: KServe's
    route cannot carry a mirror or a header-matched canary. On the chart's values (the plan's,
    the unit suites' and the engines' checks read the same dict)."""
    canary = chart_values.get("canary") or {}
    return bool((chart_values.get("mirror") or {}).get("enabled") or (canary.get("enabled") and canary.get("headerMatch")))


def serving_kind(values: ModelValues, platform: PlatformSettings) -> str:
    """"llm" (an LLMInferenceService) or "inferenceservice": model.serving, else the platform's
    default for OpenAI-protocol models."""
    if values.model.serving:
        return values.model.serving
    if values.model.protocol == "openai":
        return platform.llmServing.default
    return "inferenceservice"


# Where KServe v0.20's default runtimes serve Prometheus metrics (their prometheus.kserve.io/port
# annotation): the Python servers and MLServer on their HTTP port 8080, TorchServe on 8082,
# Triton (onnx, triton, tensorflow over v2) on 8002. A custom container serves them on model.port.
RUNTIME_METRICS_PORTS = {"pytorch": 8082, "triton": 8002, "onnx": 8002}


def metrics_port(values: ModelValues, kind: str = "inferenceservice") -> int:
    """The port the model's metrics are scraped on: metrics.port, else the model server's own (for
    an LLMInferenceService, vLLM's on a decode pod)."""
    if values.metrics.port is not None:
        return values.metrics.port
    if kind == "llm":
        return LLM_DECODE_VLLM_PORT if values.llm and values.llm.prefill else LLM_PORT
    if values.model.format == "custom":
        return values.model.port
    if values.model.format == "tensorflow" and (values.model.protocol or "v1") != "v1":
        return 8002  # tensorflow over v2 is served by Triton
    return RUNTIME_METRICS_PORTS.get(values.model.format, 8080)


def resolved_resources(own: dict[str, Any], defaults) -> dict[str, Any]:
    """A container's requests and limits as Kubernetes resolves them: a limit without a request is
    also the request; what is still unset takes the platform's `defaults.resources`."""
    resources = dict(own)
    for kind in ("CPU", "Memory"):
        if f"request{kind}" not in resources and f"limit{kind}" in resources:
            resources[f"request{kind}"] = resources[f"limit{kind}"]
    for key in ("requestCPU", "limitCPU", "requestMemory", "limitMemory"):
        if key not in resources and getattr(defaults, key) is not None:
            resources[key] = getattr(defaults, key)
    return {k: resources[k] for k in
            ("requestCPU", "limitCPU", "requestMemory", "limitMemory", "requestGPU", "limitGPU") if k in resources}


def exposure_host(platform: PlatformSettings, name: str, namespace: str, kind: str) -> str:
    """The host an exposed model gets from the platform pattern (never a wildcard)."""
    return platform.hostPattern.format(name=name, namespace=namespace, type=kind, domain=platform.domain or "")


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def proto_duration(duration: str) -> str:
    """A settings duration ("250ms", "1m30s") as protobuf JSON ("0.25s", "90s"): what Envoy's
    configuration accepts (it refuses "250ms")."""
    seconds = sum((Decimal(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(duration)), Decimal(0))
    text = format(seconds.normalize(), "f")
    return f"{text}s"


# --- prompt and response safety ------------------------------------------------------------------



def safety_events(screen: str, offered: tuple[str, ...] | list[str]) -> list[str]:
    """The events a provider is sent for what a model screens: of those it is offered, the
    request events for prompts, the response events for responses."""
    wanted = (REQUEST_EVENTS if screen in ("prompts", "both") else ()) + \
             (RESPONSE_EVENTS if screen in ("responses", "both") else ())
    return [event for event in wanted if event in offered]


def safety_port(values: ModelValues, kind: str) -> int:
    """The pod port clients' requests arrive at: the transformer's, else the model server's."""
    if values.transformer is not None:
        return values.transformer.port
    return LLM_PORT if kind == "llm" else values.model.port


# The header KServe's default route dispatches shared /v1/... paths by (its ModelBasedRoutingHeaderName).
MODEL_ROUTING_HEADER = "x-gateway-model-name"


def gateway_match(values: ModelValues, ident: Identity, kind: str, host: str | None, paths: list[str]) -> str:
    """A CEL expression (GKE's matcher language) selecting a model's screened requests on the
    Gateway. An LLMInferenceService is reached at every address KServe's default route gives it:
    /<namespace>/<name>/<path> (and its canary's), /publishers/<namespace>/models/<served
    name>/<path>, and <path> itself with the model-routing header naming it. An InferenceService
    at its host. Strings are double-quoted: a path may hold an apostrophe, never a quote."""
    def starts(prefix: str) -> str:
        return " || ".join(f'request.path.startsWith("{prefix}{path}")' for path in paths)

    if kind != "llm":
        return f'request.host == "{host}" && ({starts("")})'
    served = values.model.servedModelName or ident.name
    publisher = f"publishers/{ident.namespace}/models/{served}"
    members = [ident.name] + ([f"{ident.name}-canary"] if values.canary.enabled else [])
    own = " || ".join(starts(prefix) for prefix in [f"/{ident.namespace}/{m}" for m in members] + [f"/{publisher}"])
    header = f'"{MODEL_ROUTING_HEADER}" in request.headers && request.headers["{MODEL_ROUTING_HEADER}"] == "{publisher}"'
    return f"{own} || ({header} && ({starts('')}))"


def safety(values: ModelValues, platform: PlatformSettings, ident: Identity, kind: str,
           host: str | None = None) -> dict[str, Any]:
    """The model's `safety` with its provider's settings resolved (what the chart receives)."""
    own = values.safety
    if not own.enabled:
        return {"enabled": False}
    paths = list(own.paths if own.paths is not None else platform.safety.paths)
    doc: dict[str, Any] = {"enabled": True, "provider": own.provider, "screen": own.screen, "paths": paths}
    provider = platform.safety.providers.get(own.provider or "")
    if provider is None:  # refused by the rules (safety-unknown-provider); nothing more to resolve
        return doc
    if provider.extProc is not None:
        ext = provider.extProc
        events = safety_events(own.screen, ext.events)
        body = "STREAMED" if ext.bodyMode == "streamed" else "BUFFERED"
        doc["kind"] = "extProc"
        doc["extProc"] = {
            "cluster": f"outbound|{ext.port}||{ext.service}", "authority": ext.service,
            "timeout": proto_duration(ext.timeout), "failureMode": ext.failureMode, "bodyMode": ext.bodyMode,
            "port": safety_port(values, kind), "events": events,
            "processingMode": {
                "request_header_mode": "SEND" if "requestHeaders" in events else "SKIP",
                "response_header_mode": "SEND" if "responseHeaders" in events else "SKIP",
                "request_body_mode": body if "requestBody" in events else "NONE",
                "response_body_mode": body if "responseBody" in events else "NONE",
                "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP",
            },
        }
        return doc
    # Screened on the Gateway by the platform's one traffic extension (wiring.model_armor_extension):
    # the chart holds what selects this model's requests there, nothing it renders.
    doc["kind"] = "gkeModelArmor"
    doc["gkeModelArmor"] = {"match": gateway_match(values, ident, kind, host, paths)}
    return doc


# One rate-limit descriptor key per identity and window (plan.token_quota and the EnvoyFilter use them).
TOKEN_WINDOWS = (("saLimit", "sa_day", "day"), ("saLimitPerMinute", "sa_minute", "minute"),
                 ("ipLimit", "ip_day", "day"), ("ipLimitPerMinute", "ip_minute", "minute"))


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


# --- rate-limit descriptors, as data -------------------------------------------------------------

def rate_limit_domain(namespace: str, name: str) -> str:
    # One domain per model: envoyproxy/ratelimit refuses two config files with the same domain,
    # and a domain of its own keeps one model's limits from ever counting another's requests.
    return f"modelplat.{namespace}.{name}"


# The descriptor keys the EnvoyFilter's actions send (templates/.../envoyfilter-ratelimit.yaml.j2):
# remote_address is Envoy's own key for the client address action; service_account is ours.
IP_KEY = "remote_address"
SA_KEY = "service_account"


# Counted by the platform's rate limit service: one domain per tenant, one `scope` per quota (the
# tenant's shared one, or one model's), then one descriptor key per identity and window. The
# descriptors the EnvoyFilter's actions send (envoyfilter-tokenlimit.yaml.j2) follow the same
# names: `scope` from a generic_key action, the identity from the Lua filter's dynamic metadata.

SHARED_SCOPE = "tenant"


def token_domain(tenant: str) -> str:
    return f"modelplat.tokens.{tenant}"


def token_scope(namespace: str, name: str, shared: bool) -> str:
    return SHARED_SCOPE if shared else f"{namespace}.{name}"
