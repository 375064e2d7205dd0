"""Semantic rules: checks across fields that a JSON Schema cannot express.

Each rule reads validated values (and the platform settings) and returns diagnostics; rules never
change values and never render. A setting that would have no effect is refused, never ignored.
"""

from __future__ import annotations

import difflib
import re

from decimal import Decimal, InvalidOperation
from typing import Callable, Iterator

from .config import REQUEST_EVENTS, RESPONSE_EVENTS, PlatformSettings
from .errors import Diagnostic
from .loader import Source
from .metrics import POD_METRICS
from .resolve import (RUNTIME_PROTOCOLS, Identity, exposure_host, metrics_port, resolved_resources, served_name_by,
                      serving_kind, serving_runtime, token_limit)
from .values import ModelValues


# Longest suffix KServe and modelplat append to a model name: "<name>-canary-predictor" must stay
# a 63-character DNS label (it names a Service), so names are capped for every model, even one
# without a canary today, so that turning canary on later never forces a rename.
LONGEST_SUFFIX = "-canary-predictor"
MAX_NAME = 63 - len(LONGEST_SUFFIX)

_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "K": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def quantity(value: object) -> Decimal:
    """A Kubernetes quantity as a number of base units ("500m" → 0.5, "1Ki" → 1024)."""
    text = str(value)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, Decimal(1)
    try:
        return Decimal(number) * scale
    except InvalidOperation:
        raise ValueError(f"not a quantity: {value!r}") from None



# --- the rules -------------------------------------------------------------------------------------

Rule = Callable[[ModelValues, PlatformSettings, Source, Identity], Iterator[Diagnostic]]


def name_length(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    name = ident.name
    if len(name) > MAX_NAME:
        key = ("name",) if values.name else ()
        yield src.diagnostic(
            key, "name-too-long",
            f"model name '{name}' has {len(name)} characters; at most {MAX_NAME} are allowed",
            f"KServe names the canary's Service '<name>{LONGEST_SUFFIX}', which must fit a 63-character DNS label",
        )


def _limit_below_request(src: Source, at: tuple, own, platform: PlatformSettings) -> Iterator[Diagnostic]:
    """A container's limits, as the chart resolves them (resolve.resolved_resources), are at least
    its requests; `at` is the values path of its resources section."""
    resolved = resolved_resources(own.model_dump(exclude_none=True), platform.defaults.resources)
    label = ".".join(at)
    for kind in ("CPU", "Memory"):
        request, limit = resolved.get(f"request{kind}"), resolved.get(f"limit{kind}")
        if request is None or limit is None:
            continue
        if quantity(limit) < quantity(request):
            explicit = f"limit{kind}" if getattr(own, f"limit{kind}") is not None else f"request{kind}"
            yield src.diagnostic(
                (*at, explicit), "limit-below-request",
                f"{label}.limit{kind} ({limit}) is below {label}.request{kind} ({request})",
                "a limit must be at least the request" + ("" if explicit == f"limit{kind}" else
                                                         "; the limit comes from the platform defaults, set limit" + kind),
            )


def resource_bounds(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    res = values.resources
    yield from _limit_below_request(src, ("resources",), res, platform)
    if res.requestGPU and res.limitGPU and res.requestGPU != res.limitGPU:
        yield src.diagnostic(
            ("resources", "limitGPU"), "gpu-overcommit",
            f"resources.requestGPU ({res.requestGPU}) and resources.limitGPU ({res.limitGPU}) differ",
            "GPUs cannot be overcommitted: Kubernetes requires request == limit; set one or both to the same number",
        )


def model_spec(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    spec = values.model
    if serving_kind(values, platform) == "llm":
        return  # llm_rules: KServe's LLM presets bring the container
    if spec.format == "custom":
        if not spec.image:
            yield src.diagnostic(("model",), "custom-needs-image", "model.format custom needs model.image",
                                 "set model.image to the serving container, e.g. vllm/vllm-openai:v0.8.5")
        for key in ("runtime", "runtimeVersion"):
            if getattr(spec, key) is not None:
                yield src.diagnostic(("model", key), "runtime-needs-runtime-format",
                                     f"model.{key} picks a KServe runtime, which format custom does not use",
                                     "remove it, or choose the runtime's format instead of custom")
        if spec.protocol in ("v1", "v2", "grpc-v2"):
            yield src.diagnostic(("model", "protocol"), "protocol-needs-runtime-format",
                                 f"protocol {spec.protocol} sets a KServe runtime's protocolVersion; a custom container "
                                 "serves whatever protocol it implements",
                                 "remove it, or use protocol: openai for an OpenAI-compatible server")
    else:
        if spec.image:
            yield src.diagnostic(("model", "image"), "image-needs-custom",
                                 f"model.image is only used with format custom (format is {spec.format})",
                                 "use model.runtime/runtimeVersion to pick a runtime, or set format: custom")
        if spec.command:
            yield src.diagnostic(("model", "command"), "command-needs-custom",
                                 "model.command is only used with format custom")
        if not spec.storageUri:
            yield src.diagnostic(("model",), "missing-storage-uri", f"model.storageUri is required for format {spec.format}",
                                 "e.g. s3://bucket/path/to/model or hf://org/model")
        served = RUNTIME_PROTOCOLS.get(spec.format, ())
        protocol = "v1" if spec.protocol == "openai" else spec.protocol
        if spec.runtime is None and protocol and protocol not in served:
            yield src.diagnostic(("model", "protocol"), "no-runtime-for-protocol",
                                 f"KServe's runtimes serve format {spec.format} over {', '.join(served)}, "
                                 f"not {spec.protocol}: KServe would find no runtime and create no Deployment",
                                 f"use protocol {served[0]}" if served else "pick a runtime with model.runtime")
    name_by = served_name_by(values)
    if spec.servedModelName and name_by not in ("arg", "env"):
        runtime = serving_runtime(values)
        why = ("TorchServe and Triton name models after the model's files (config.properties, the repository's "
               "folders)" if name_by == "artefacts" else
               f"modelplat does not know how runtime {runtime} takes a model name" if runtime else
               "a custom container takes the name its own way")
        yield src.diagnostic(("model", "servedModelName"), "served-model-name-unsupported",
                             f"model.servedModelName cannot be passed to {runtime or 'format custom'}: {why}",
                             "pass your server's own flag in model.args (e.g. --served-model-name for vLLM), or "
                             "name the model in its files")
    if name_by == "env" and spec.args:
        yield src.diagnostic(("model", "args"), "args-replace-command",
                             "KServe's MLServer runtime (sklearn, xgboost and lightgbm over v2) has no args of its own: "
                             "these would replace its `mlserver start` command and the container would not start",
                             "remove model.args; configure MLServer with env (MLSERVER_*), or use protocol v1")
    gpu = bool(values.resources.requestGPU or values.resources.limitGPU)
    for key in ("product", "accelerator"):
        if getattr(values.gpu, key) and not gpu:
            yield src.diagnostic(("gpu", key), f"gpu-{key}-needs-gpu",
                                 f"gpu.{key} only applies to pods that request a GPU",
                                 f"set resources.requestGPU/limitGPU, or remove gpu.{key}")
    transformer = values.transformer.image if values.transformer else None
    for key, image in (("model", spec.image), ("mirror", values.mirror.image), ("transformer", transformer)):
        if image:
            yield from _image_tag(src, (key, "image"), image)
    for key, tag in ((("canary", "imageTag"), values.canary.imageTag), (("model", "runtimeVersion"), spec.runtimeVersion)):
        if tag == "latest":
            yield src.diagnostic(key, "latest-tag", "the 'latest' tag is not allowed",
                                 "pin a version so that a rollout is a reviewed change")


# A digest as OCI image references spell it: algorithm, then the hex of the hash (sha256: 64).
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _image_tag(src: Source, key: tuple, image: str) -> Iterator[Diagnostic]:
    if "@" in image:
        if not DIGEST.search(image):
            yield src.diagnostic(
                key, "malformed-digest", f"image '{image}' has a digest that is not @sha256: and 64 hex digits",
                "copy the digest whole, e.g. `docker buildx imagetools inspect IMAGE` prints it")
        return
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag or tag == "latest":
        yield src.diagnostic(
            key, "latest-tag", f"image '{image}' has {'no tag' if not tag else 'the latest tag'}",
            "pin a version tag or a digest so that every change to the model is a reviewed commit",
        )


def env_vars(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    lists = [(("env",), values.env)]
    if values.transformer:
        lists.append((("transformer", "env"), values.transformer.env))
    for at, env in lists:
        seen: set[str] = set()
        for index, var in enumerate(env):
            if (var.value is None) == (var.secretKeyRef is None):
                yield src.diagnostic((*at, index), "env-value",
                                     f"{'.'.join(at)}[{index}] ({var.name}) needs exactly one of value or secretKeyRef")
            if var.name in seen:
                yield src.diagnostic((*at, index, "name"), "duplicate-env", f"environment variable {var.name} is set twice")
            seen.add(var.name)
            if var.name == "STORAGE_URI" and at == ("env",):
                yield src.diagnostic((*at, index, "name"), "reserved-env",
                                     "STORAGE_URI is set by modelplat from model.storageUri")
            if var.name == "MLSERVER_MODEL_NAME" and at == ("env",):
                yield src.diagnostic((*at, index, "name"), "reserved-env",
                                     "MLSERVER_MODEL_NAME is set by modelplat from model.servedModelName (the "
                                     "canary and shadow keep it)", "set model.servedModelName instead")


def _istio_minor(platform: PlatformSettings) -> int:
    return int(platform.istioVersion.split(".")[1])


def _token_limit_rules(values: ModelValues, platform: PlatformSettings, src: Source, openai: bool) -> Iterator[Diagnostic]:
    own = values.tokenLimit
    resolved = token_limit(values, platform)  # exactly what the chart receives: platform defaults filled in

    if not openai:
        yield src.diagnostic(("tokenLimit", "enabled"), "token-limit-needs-openai",
                             "token limits count OpenAI-style usage; set model.protocol: openai")
    if not own.tenantId:
        yield src.diagnostic(("tokenLimit",), "token-limit-needs-tenant", "tokenLimit.tenantId is required",
                             "name the tenant whose quota this model's calls count against, e.g. tenantId: team-search")
    sa = "saLimit" in resolved or "saLimitPerMinute" in resolved
    ip = "ipLimit" in resolved or "ipLimitPerMinute" in resolved
    if not sa and not ip:
        yield src.diagnostic(("tokenLimit",), "token-limit-empty",
                             "no token quota is set here or in the platform file's tokenLimit defaults",
                             "set tokenLimit.saLimit and/or tokenLimit.ipLimit (tokens a day)")
    if sa and not values.auth.jwt.enabled:
        yield src.diagnostic(("tokenLimit", "saLimit" if own.saLimit is not None else "enabled"),
                             "token-limit-needs-jwt",
                             "a per-service-account token quota needs the caller's identity from a verified JWT",
                             "set auth.jwt.enabled: true (or use only ipLimit)")
    if resolved["missingIdentity"] == "countByIP" and not ip:
        yield src.diagnostic(("tokenLimit", "missingIdentity"), "token-limit-uncounted",
                             "missingIdentity: countByIP counts callers without an identity under their client IP, "
                             "but no client-IP quota is set, so they would never be counted",
                             "set tokenLimit.ipLimit, or missingIdentity: refuse")
    if _istio_minor(platform) < 25:
        yield src.diagnostic(("tokenLimit", "enabled"), "token-limit-needs-istio",
                             f"token quotas need Istio 1.25 or newer (Envoy 1.33); the platform file says "
                             f"istioVersion {platform.istioVersion}",
                             "upgrade Istio and raise istioVersion in the platform file")
    if not resolved["paths"]:
        yield src.diagnostic(("tokenLimit", "paths"), "token-limit-no-paths",
                             "tokenLimit.paths is empty: no response would ever be counted",
                             "list the OpenAI-style paths the model serves, or leave paths unset")


def feature_consistency(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    """Rules for the whole vocabulary, so a file is judged the same before and after a feature lands."""
    openai = values.model.protocol == "openai"
    gpu = bool(values.resources.requestGPU or values.resources.limitGPU)
    if values.tokenLimit.enabled:
        yield from _token_limit_rules(values, platform, src, openai)
    if values.ratelimitEachSAPerMinute is not None and not values.auth.jwt.enabled:
        yield src.diagnostic(("ratelimitEachSAPerMinute",), "sa-limit-needs-jwt",
                             "a per-service-account limit needs the caller's identity", "set auth.jwt.enabled: true")
    if values.canary.enabled:
        if values.canary.storageUri in (None, values.model.storageUri) and values.canary.imageTag is None:
            yield src.diagnostic(("canary",), "canary-identical",
                                 "the canary must differ from the primary by storageUri and/or imageTag")
        if values.primaryLoad is None:
            yield src.diagnostic(("canary", "enabled"), "canary-needs-primary-load",
                                 "set primaryLoad (percent of traffic the primary keeps, e.g. 90)")
    elif values.primaryLoad not in (None, 100):
        yield src.diagnostic(("primaryLoad",), "primary-load-without-canary",
                             "primaryLoad below 100 needs canary.enabled: true")
    if values.mirror.enabled:
        same_model = values.mirror.storageUri in (None, values.model.storageUri)
        same_image = values.mirror.image in (None, values.model.image)
        if same_model and same_image:
            yield src.diagnostic(("mirror",), "mirror-identical",
                                 "the shadow must differ from the primary by storageUri and/or image")
    if values.auth.customAuthz.enabled and not values.auth.customAuthz.provider:
        yield src.diagnostic(("auth", "customAuthz"), "custom-authz-needs-provider",
                             "auth.customAuthz.provider is required (an extension provider in the mesh config)")
    if values.rdma.enabled:
        if not gpu:
            yield src.diagnostic(("rdma", "enabled"), "rdma-needs-gpu", "RDMA is for GPU models; request a GPU")
        if not values.rdma.networks:
            yield src.diagnostic(("rdma",), "rdma-needs-network", "rdma.networks needs at least one network")
    if values.autoscaling.enabled and "maxReplicaCount" not in values.autoscaling.model_fields_set:
        yield src.diagnostic(("autoscaling", "enabled"), "autoscaling-needs-maximum",
                             "autoscaling.enabled needs autoscaling.maxReplicaCount: without it the HPA would be "
                             f"held at {values.replicaCount} replica{'s' if values.replicaCount > 1 else ''}",
                             f"set autoscaling.maxReplicaCount (KServe: maxReplicas), e.g. {max(values.replicaCount * 3, 3)}")
    elif values.autoscaling.enabled and values.autoscaling.maxReplicaCount == values.replicaCount:
        yield src.diagnostic(("autoscaling", "maxReplicaCount"), "autoscaling-fixed",
                             f"autoscaling.maxReplicaCount equals replicaCount ({values.replicaCount}): the HPA can "
                             "never scale", "raise maxReplicaCount, or turn autoscaling off", severity="warning")
    if values.autoscaling.enabled and values.autoscaling.maxReplicaCount < values.replicaCount:
        yield src.diagnostic(("autoscaling", "maxReplicaCount"), "max-below-min",
                             f"autoscaling.maxReplicaCount ({values.autoscaling.maxReplicaCount}) is below replicaCount ({values.replicaCount})")
    llm_signals = values.autoscaling.targetKVCacheUtilizationPercentage or values.autoscaling.targetQueueDepth
    if llm_signals and not openai:
        yield src.diagnostic(("autoscaling",), "llm-signal-needs-openai",
                             "KV-cache and queue targets read vLLM metrics; set model.protocol: openai")
    if values.scheduling.queue and values.scheduling.schedulerName != "volcano":
        yield src.diagnostic(("scheduling", "queue"), "queue-needs-volcano",
                             "scheduling.queue is a Volcano queue", "set scheduling.schedulerName: volcano")


def _explicit(section, field: str) -> bool:
    return field in section.model_fields_set


def autoscaling_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    scaling = values.autoscaling
    targets = [f for f in ("targetCPUUtilizationPercentage", "targetMemoryUtilizationPercentage", *POD_METRICS)
               if getattr(scaling, f) is not None]
    if not scaling.enabled:
        for field in sorted(scaling.model_fields_set - {"enabled"}):
            yield src.diagnostic(("autoscaling", field), "autoscaling-disabled",
                                 f"autoscaling.{field} has no effect while autoscaling.enabled is false",
                                 "set autoscaling.enabled: true, or remove it")
        return
    if not targets:
        yield src.diagnostic(("autoscaling", "enabled"), "autoscaling-needs-target",
                             "autoscaling needs at least one target",
                             "e.g. targetCPUUtilizationPercentage: 70, or for an LLM targetQueueDepth: 10")
    gpu = bool(values.resources.requestGPU or values.resources.limitGPU)
    if scaling.targetGPUUtilizationPercentage is not None:
        if not gpu:
            yield src.diagnostic(("autoscaling", "targetGPUUtilizationPercentage"), "gpu-target-needs-gpu",
                                 "a GPU utilisation target needs a model that requests a GPU")
        elif targets == ["targetGPUUtilizationPercentage"]:
            yield src.diagnostic(
                ("autoscaling", "targetGPUUtilizationPercentage"), "gpu-target-alone",
                "GPU utilisation saturates under a single request, so scaling on it alone runs away",
                "pair it with targetQueueDepth or targetRequestRate", severity="warning")


def observability_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    alerts = values.observability.alerts
    gpu = bool(values.resources.requestGPU or values.resources.limitGPU)
    llm = values.model.protocol == "openai"
    pdb = values.podDisruptionBudget
    pdb_on = pdb.enabled if pdb.enabled is not None else values.replicaCount > 1
    if not pdb_on and _explicit(pdb, "maxUnavailable"):
        yield src.diagnostic(("podDisruptionBudget", "maxUnavailable"), "pdb-disabled",
                             "podDisruptionBudget.maxUnavailable has no effect without a budget "
                             "(one is made when replicaCount > 1, or with enabled: true)")
    if not values.metrics.enabled and (_explicit(values.metrics, "port") or _explicit(values.metrics, "path")):
        yield src.diagnostic(("metrics",), "metrics-disabled", "metrics.port/path have no effect while metrics are disabled")
    if values.metrics.enabled and platform.scrape != "annotations" and metrics_port(values) != values.model.port:
        # Prometheus keeps a PodMonitor target only for a port some container declares, and the
        # serving container declares only its serving port.
        yield src.diagnostic(("metrics", "port"), "podmonitor-port",
                             f"a PodMonitor scrapes only declared container ports; this model declares {values.model.port}",
                             f"serve metrics on {values.model.port} (KServe's model servers do), or use scrape: annotations")
    explicit = alerts.model_fields_set - {"enabled"}
    if not alerts.enabled:
        for field in sorted(explicit):
            yield src.diagnostic(("observability", "alerts", field), "alerts-disabled",
                                 f"observability.alerts.{field} has no effect while alerts.enabled is false",
                                 "set observability.alerts.enabled: true, or remove it")
        return
    for field, applies, why in (("queueSize", llm, "needs model.protocol: openai (vLLM metrics)"),
                                ("kvCacheUtilizationPercent", llm, "needs model.protocol: openai (vLLM metrics)"),
                                ("gpuUtilizationPercent", gpu, "needs a model that requests a GPU")):
        if field in explicit and not applies:
            yield src.diagnostic(("observability", "alerts", field), "alert-does-not-apply",
                                 f"observability.alerts.{field} {why}; this model gets no such alert")


def rdma_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    rdma = values.rdma
    if not rdma.enabled:
        for field in sorted(rdma.model_fields_set - {"enabled"}):
            yield src.diagnostic(("rdma", field), "rdma-disabled", f"rdma.{field} has no effect while rdma.enabled is false",
                                 "set rdma.enabled: true, or remove it")
        return
    seen: set[str] = set()
    for index, net in enumerate(rdma.networks):
        where = ("rdma", "networks", index)
        if net.name in seen:
            yield src.diagnostic(where + ("name",), "duplicate-network", f"network {net.name} is declared twice")
        seen.add(net.name)
        if net.type == "existing":
            for field in ("resourceName", "master", "subnet", "rdmaCni"):
                if getattr(net, field) not in (None, False):
                    yield src.diagnostic(where + (field,), "existing-network-field",
                                         f"{field} describes a NAD modelplat renders; an existing NAD is used as it is")
            continue
        if net.namespace is not None:
            yield src.diagnostic(where + ("namespace",), "network-namespace",
                                 "namespace is only for type: existing; rendered NADs live in the model's namespace")
        if net.rdmaCni and net.type != "sriov":
            yield src.diagnostic(where + ("rdmaCni",), "rdma-cni-needs-sriov",
                                 f"the rdma CNI plugin moves an SR-IOV VF's RDMA device; a {net.type} network has none",
                                 "use type: sriov, or remove rdmaCni")
        if net.type == "sriov":
            if not net.resourceName:
                yield src.diagnostic(where, "sriov-needs-resource", "an SR-IOV network needs resourceName (its device pool)")
            elif net.resourceName not in rdma.resources:
                yield src.diagnostic(where + ("resourceName",), "sriov-resource-not-requested",
                                     f"the pods do not request {net.resourceName}, so they get no VF from this pool",
                                     f"add '{net.resourceName}: 1' to rdma.resources")
        elif not net.master:
            yield src.diagnostic(where, "network-needs-master", f"a {net.type} network needs master (the host interface)")
    if not rdma.resources:
        yield src.diagnostic(("rdma",), "rdma-needs-resources", "rdma.resources needs the RDMA device to request",
                             "e.g. rdma/roce_gdr: 1 (your RDMA device plugin's resource name)")


def _set_while_disabled(src: Source, section, path: tuple, label: str) -> Iterator[Diagnostic]:
    """Every key of a switched-off section that is set anyway (it would have no effect)."""
    for field in sorted(section.model_fields_set - {"enabled"}):
        yield src.diagnostic(path + (field,), "feature-disabled",
                             f"{label}.{field} has no effect while {label}.enabled is false",
                             f"set {label}.enabled: true, or remove it")


def traffic_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    """Exposure, auth, canary and mirroring: every setting takes effect or is refused."""
    name, namespace = ident.name, ident.namespace  # the folder's namespace too, not only the file's
    for section, key, label in ((values.canary, "canary", "canary"), (values.mirror, "mirror", "mirror"),
                                (values.auth.customAuthz, ("auth", "customAuthz"), "auth.customAuthz"),
                                (values.auth.jwt, ("auth", "jwt"), "auth.jwt")):
        if not section.enabled:
            yield from _set_while_disabled(src, section, key if isinstance(key, tuple) else (key,), label)
    expose = values.exposeModel
    if not expose.enabled:
        yield from _set_while_disabled(src, expose, ("exposeModel",), "exposeModel")
    elif serving_kind(values, platform) == "llm":
        if expose.host:
            yield src.diagnostic(("exposeModel", "host"), "llm-host",
                                 "an LLMInferenceService's HTTPRoute matches paths (/<namespace>/<name>/v1/...) "
                                 "on the platform's Gateway, not a host", "remove exposeModel.host")
        if not values.auth.jwt.enabled:
            yield src.diagnostic(("exposeModel", "enabled"), "exposure-without-jwt",
                                 "an exposed model without auth.jwt refuses every caller from outside its namespace",
                                 "set auth.jwt.enabled: true (the platform's issuer is used by default)")
    else:
        if not expose.host and not platform.domain:
            yield src.diagnostic(("exposeModel", "enabled"), "exposure-needs-host",
                                 "the platform file sets no domain, so no host can be derived",
                                 "set exposeModel.host, or domain in the platform file")
        host = expose.host or exposure_host(platform, name, namespace, expose.type)
        first = host.split(".", 1)[0]
        if len(first) > 63 or len(host) > 253:
            yield src.diagnostic(("exposeModel",), "host-too-long",
                                 f"host {host} does not fit DNS limits (63 per label, 253 in all)",
                                 "set a shorter exposeModel.host")
        if not values.auth.jwt.enabled:
            yield src.diagnostic(("exposeModel", "enabled"), "exposure-without-jwt",
                                 "an exposed model without auth.jwt refuses every caller from outside its namespace",
                                 "set auth.jwt.enabled: true (the platform's issuer is used by default)")
    auth = values.auth
    if not auth.enabled:
        for field in ("jwt", "customAuthz", "allowedPrincipals", "allowedNamespaces"):
            if field in auth.model_fields_set:
                yield src.diagnostic(("auth", field), "auth-disabled",
                                     f"auth.{field} has no effect while auth.enabled is false")
        if expose.enabled:
            yield src.diagnostic(("auth", "enabled"), "exposure-needs-auth",
                                 "a model published on the gateway must keep auth (mTLS and the ALLOW policy)")
    if auth.jwt.enabled:
        if not (auth.jwt.issuer or platform.jwt.issuer) or not (auth.jwt.jwksUri or platform.jwt.jwksUri):
            yield src.diagnostic(("auth", "jwt"), "jwt-needs-issuer",
                                 "JWT validation needs an issuer and a JWKS URL",
                                 "set them in the platform file (jwt.issuer, jwt.jwksUri) or in auth.jwt")
    elif auth.allowedPrincipals:
        yield src.diagnostic(("auth", "allowedPrincipals"), "principals-need-jwt",
                             "request principals come from validated JWTs", "set auth.jwt.enabled: true")
    if values.mirror.image and values.model.format != "custom":
        yield src.diagnostic(("mirror", "image"), "image-needs-custom",
                             f"mirror.image is only used with format custom (format is {values.model.format})",
                             "give the shadow another mirror.storageUri instead")
    if values.primaryLoad == 100 and not values.canary.enabled:  # below 100: primary-load-without-canary
        yield src.diagnostic(("primaryLoad",), "feature-disabled", "primaryLoad has no effect without a canary",
                             "set canary.enabled: true, or remove it")
    if expose.enabled and expose.host and "type" in expose.model_fields_set:
        yield src.diagnostic(("exposeModel", "type"), "feature-disabled",
                             "exposeModel.type only shapes the derived host; it has no effect with exposeModel.host")
    if (values.canary.enabled or values.mirror.enabled) and values.model.format != "custom" \
            and serving_kind(values, platform) != "llm" and served_name_by(values) is None:
        yield src.diagnostic(("canary" if values.canary.enabled else "mirror",), "variant-model-name",
                             f"modelplat does not know how runtime {serving_runtime(values)} names models: it may "
                             "serve the canary/shadow under their own InferenceService names (<name>-canary)",
                             "pass the primary's name with the runtime's own flag in model.args",
                             severity="warning")
    if values.mirror.enabled and values.mirror.percentage == 0:
        yield src.diagnostic(("mirror", "percentage"), "mirror-nothing", "mirror.percentage 0 mirrors nothing",
                             "set a percentage above 0, or turn mirroring off")


# Keys of labels and annotations that modelplat or KServe set: an owner's value would be lost,
# clash with the chart's own key, or break what the platform relies on. (prefix, why)
OWNED_LABELS = (
    ("app.kubernetes.io/", "modelplat's standard labels name the model, its release and project"),
    ("modelplat.io/", "modelplat's selectors (policies, rate limits, HPAs) read these"),
    ("serving.kserve.io/", "KServe's controller sets and selects on these"),
    ("helm.sh/", "Helm owns these"),
    ("app", "KServe's controller labels every pod app=isvc.<name>-<component>"),
    ("component", "KServe's controller labels every pod with its component"),
)
OWNED_ANNOTATIONS = (
    ("modelplat.io/", "modelplat's own"),
    ("serving.kserve.io/deploymentMode", "modelplat serves every model in RawDeployment mode"),
    ("serving.kserve.io/autoscalerClass", "set from autoscaling: the chart's HPA owns replicas"),
    ("serving.kserve.io/metric", "set from autoscaling (autoscaling.target*)"),
    ("serving.kserve.io/targetUtilizationPercentage", "set from autoscaling (autoscaling.target*)"),
    ("autoscaling.knative.dev/", "modelplat runs no Knative"),
    ("meta.helm.sh/", "Helm owns these"),
    ("helm.sh/", "Helm owns these"),
    ("kubectl.kubernetes.io/last-applied-configuration", "kubectl owns it"),
)
OWNED_POD_ANNOTATIONS = OWNED_ANNOTATIONS + (
    ("prometheus.io/", "set from metrics (enabled, port, path)"),
    ("k8s.v1.cni.cncf.io/", "set from rdma.networks"),
    ("scheduling.volcano.sh/queue-name", "set from scheduling.queue"),
    ("sidecar.istio.io/inject", "every model runs in the mesh: auth, rate and token limits live in its sidecar"),
    ("serving.kserve.io/", "KServe's controller reads and sets these"),
)


def _owned(key: str, owned: tuple) -> str | None:
    for prefix, why in owned:
        if key == prefix or (prefix.endswith("/") and key.startswith(prefix)) or key == prefix.rstrip("/"):
            return why
    return None


def ownership_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    """Labels and annotations an owner may add, except the keys modelplat or KServe own."""
    for field, owned, where in (("labels", OWNED_LABELS, "a label"), ("annotations", OWNED_ANNOTATIONS, "an annotation"),
                                ("podAnnotations", OWNED_POD_ANNOTATIONS, "a pod annotation")):
        for key in getattr(values, field):
            why = _owned(key, owned)
            if why:
                keys = ", ".join(p + "*" if p.endswith("/") else p for p, _ in owned)
                yield src.diagnostic((field, key), "owned-key", f"{field}.{key}: {where} modelplat or KServe owns ({why})",
                                     f"remove it; the {field} keys modelplat or KServe own: {keys}")
    provider = platform.safety.providers.get(values.safety.provider or "")
    if values.safety.enabled and provider is not None and provider.extProc is not None and \
            "proxy.istio.io/config" in values.podAnnotations:
        yield src.diagnostic(("podAnnotations", "proxy.istio.io/config"), "owned-key",
                             "podAnnotations.proxy.istio.io/config: a screened model's sidecars take their proxy "
                             "config from modelplat (it publishes the safety filter's stats)",
                             "remove it, or ask the platform team to set what it holds mesh-wide")


def _probe_rules(src: Source, at: tuple, probes) -> Iterator[Diagnostic]:
    for kind in ("readiness", "liveness", "startup"):
        probe = getattr(probes, kind)
        if probe is None:
            continue
        key = (*at, kind)
        needs = {"http": "path", "exec": "command"}.get(probe.type)
        if needs and getattr(probe, needs) is None:
            example = "path: /health" if needs == "path" else "command: [cat, /tmp/ready]"
            yield src.diagnostic(key, "probe-incomplete", f"a {probe.type} probe needs {needs}", f"e.g. {example}")
        for field, only in (("path", "http"), ("command", "exec"), ("service", "grpc")):
            if getattr(probe, field) is not None and probe.type != only:
                yield src.diagnostic((*key, field), "probe-field-unused",
                                     f"{field} is only used by a {only} probe (this one is {probe.type})",
                                     f"set type: {only}, or remove {field}")
        if probe.type == "exec" and probe.port is not None:
            yield src.diagnostic((*key, "port"), "probe-field-unused", "an exec probe has no port", "remove port")


def container_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    """Probes of the serving and transformer containers; the transformer's own fields."""
    yield from _probe_rules(src, ("probes",), values.probes)
    transformer = values.transformer
    if transformer is None:
        return
    yield from _probe_rules(src, ("transformer", "probes"), transformer.probes)
    yield from _limit_below_request(src, ("transformer", "resources"), transformer.resources, platform)


def llm_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    """LLM-native serving (an LLMInferenceService): what KServe v0.20's controller and presets accept."""
    spec = values.model
    if serving_kind(values, platform) != "llm":
        if values.llm is not None:
            yield src.diagnostic(("llm",), "llm-needs-llm-serving",
                                 "the llm section applies to an LLMInferenceService only, and this model is served "
                                 "as an InferenceService",
                                 "set model.serving: llm (protocol openai), or remove the llm section")
        return
    if spec.protocol != "openai":
        yield src.diagnostic(("model", "serving"), "llm-needs-openai",
                             "model.serving llm runs vLLM's OpenAI-compatible server: the model must say protocol openai",
                             "set model.protocol: openai, or serve it as an InferenceService")
    if spec.format not in ("custom", "huggingface"):
        yield src.diagnostic(("model", "format"), "llm-format",
                             f"an LLMInferenceService serves a Hugging Face-style model with vLLM, not format {spec.format}",
                             "use format huggingface (or custom with your own vLLM image)")
    if not spec.storageUri:
        yield src.diagnostic(("model",), "missing-storage-uri", "an LLMInferenceService needs model.storageUri",
                             "e.g. hf://Qwen/Qwen2.5-7B-Instruct or pvc://models/llama-70b")
    elif not spec.storageUri.startswith(("hf://", "s3://", "pvc://", "oci://")):
        yield src.diagnostic(("model", "storageUri"), "llm-storage-scheme",
                             "KServe's LLMInferenceService fetches models from hf://, s3://, pvc:// or oci:// only",
                             "copy the model to one of those")
    for key in ("runtime", "runtimeVersion", "command"):
        if getattr(spec, key) is not None:
            yield src.diagnostic(("model", key), f"llm-{key.lower()}",
                                 f"model.{key} has no effect on an LLMInferenceService: KServe's LLM presets run vLLM "
                                 "through their own start script",
                                 "remove it; pass vLLM flags in model.args, or set model.image")
    if spec.image:
        yield from _image_tag(src, ("model", "image"), spec.image)
    if values.canary.enabled and platform.gatewayApi.gatewayClass == "istio":
        yield src.diagnostic(("canary", "enabled"), "llm-canary-picker",
                             "Istio's gateway calls one endpoint picker per route rule, the last pool's: on a rule that "
                             f"splits between the two members' InferencePools, {ident.name}-canary's picker sees every "
                             "request, and "
                             f"the {values.primaryLoad}% that go to the primary's pool skip its picker (round robin "
                             "over its pods, no KV-cache or queue awareness) (read in Istio's route conversion)",
                             "keep the canary short, and test it on purpose first: at its own address, or with "
                             "canary.headerMatch (a rule to its pool alone keeps its picker)", severity="warning")
    if values.canary.enabled and values.canary.imageTag and not spec.image:
        yield src.diagnostic(("canary", "imageTag"), "llm-canary-image-tag",
                             "canary.imageTag changes the tag of model.image, and this model runs the image of "
                             "KServe's preset",
                             "set model.image to the vLLM image the primary runs, or give the canary another storageUri")
    if values.transformer is not None:
        yield src.diagnostic(("transformer",), "llm-transformer",
                             "an LLMInferenceService has no transformer: the endpoint picker is the only hop before "
                             "vLLM",
                             "serve the model as an InferenceService (model.serving: inferenceservice) for it")
    if not values.exposeModel.enabled:
        yield src.diagnostic(("exposeModel",), "llm-needs-gateway",
                             "an LLMInferenceService is reached through the platform's Gateway "
                             f"({platform.gatewayApi.gateway}), where its endpoint picker routes each request",
                             "set exposeModel.enabled: true (auth still decides who may call it)")
    for name in ("VLLM_ADDITIONAL_ARGS", "VLLM_NIXL_SIDE_CHANNEL_HOST", "KSERVE_INFER_ROCE"):
        for i, env in enumerate(values.env):
            if env.name == name and values.llm and values.llm.prefill:
                yield src.diagnostic(("env", i, "name"), "llm-env-reserved",
                                     f"{name} is set by modelplat on the pods of a prefill/decode pair (KV transfer)",
                                     "put vLLM flags in model.args")
    llm = values.llm
    if llm is None:
        return
    roles = [(("llm", "parallelism"), llm.parallelism, values.resources)]
    if llm.prefill is not None:
        roles.append((("llm", "prefill", "parallelism"), llm.prefill.parallelism or llm.parallelism,
                      llm.prefill.resources or values.resources))
        if llm.kvCacheOffloading is not None:
            yield src.diagnostic(("llm", "kvCacheOffloading"), "llm-offloading-with-prefill",
                                 "KV-cache offloading and a prefill/decode pair both need vLLM's --kv-transfer-config, "
                                 "and KServe's preset drops the offloading when the flag is already set",
                                 "choose one: remove llm.kvCacheOffloading or llm.prefill")
        yield from _limit_below_request(src, ("llm", "prefill", "resources"), llm.prefill.resources or values.resources,
                                        platform)
    for at, p, resources in roles:
        if p.pipeline and p.pipeline > 1:
            yield src.diagnostic(at + ("pipeline",), "llm-pipeline",
                                 "KServe v0.20 ships no pipeline-parallel preset: its controller would stop at "
                                 "ConfigNotFound and create no pods",
                                 "use tensor parallelism within a pod, or data parallelism (data, dataLocal) across pods")
        if p.data and p.dataLocal and p.data > p.dataLocal:
            yield src.diagnostic(at + ("data",), "llm-capabilities",
                                 "KServe v0.20's data-parallel preset grants each pod of the group IPC_LOCK, SYS_RAWIO "
                                 "and NET_RAW (for DeepEP over RDMA); the LLMInferenceService cannot take them back",
                                 "allow them for this namespace in your admission policy, or keep the model on one "
                                 "pod (dataLocal = data)", severity="warning")
        if (p.data is None) != (p.dataLocal is None):
            yield src.diagnostic(at, "llm-data-parallel",
                                 "data parallelism needs both data (ranks in all) and dataLocal (ranks per pod)",
                                 "set both, e.g. data: 16, dataLocal: 8 for two pods of eight ranks")
        elif p.data and p.dataLocal and p.data % p.dataLocal:
            yield src.diagnostic(at + ("data",), "llm-data-parallel",
                                 f"data ({p.data}) must be a multiple of dataLocal ({p.dataLocal}): each pod runs "
                                 "dataLocal ranks", f"e.g. data: {p.dataLocal * max(1, p.data // p.dataLocal)}")
        gpus = max(resources.requestGPU, resources.limitGPU)
        per_pod = (p.tensor or 1) * (p.dataLocal or 1)
        if (p.tensor or p.dataLocal) and per_pod > max(gpus, 1) and gpus:
            yield src.diagnostic(at, "llm-parallelism-gpus",
                                 f"tensor x dataLocal is {per_pod} GPUs a pod, but the pod has {gpus}",
                                 f"request {per_pod} GPUs, or lower the parallelism")
    if llm.lora is not None:
        served = spec.servedModelName or ident.name
        seen: set[str] = set()
        for i, adapter in enumerate(llm.lora.adapters):
            if adapter.name == served or adapter.name in seen:
                yield src.diagnostic(("llm", "lora", "adapters", i, "name"), "llm-lora-name",
                                     f"adapter name {adapter.name} is already used (by the model or another adapter)",
                                     "give each adapter a model name of its own")
            seen.add(adapter.name)
    names = [o.name for o in llm.objectives]
    for i, name in enumerate(names):
        if name in names[:i]:
            yield src.diagnostic(("llm", "objectives", i, "name"), "llm-objective-name",
                                 f"objective {name} is defined twice", "give each objective its own name")


def safety_rules(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> Iterator[Diagnostic]:
    """Prompt and response safety: an LLM's, with a provider the platform defines and can apply to
    this model's traffic."""
    own = values.safety
    if not own.enabled:
        yield from _set_while_disabled(src, own, ("safety",), "safety")
        return
    providers = platform.safety.providers
    defined = ", ".join(sorted(providers)) or "none"
    if values.model.protocol != "openai":
        yield src.diagnostic(("safety", "enabled"), "safety-needs-llm",
                             "safety screens LLM prompts and responses (OpenAI-style requests); this model does "
                             "not serve them", "set model.protocol: openai for an LLM, or remove safety")
    if not own.provider:
        yield src.diagnostic(("safety",), "safety-needs-provider", "safety.provider is required",
                             f"name one of the platform's safety providers ({defined})")
        return
    provider = providers.get(own.provider)
    if provider is None:
        close = difflib.get_close_matches(own.provider, list(providers), n=1, cutoff=0.6)
        yield src.diagnostic(("safety", "provider"), "safety-unknown-provider",
                             f"the platform file defines no safety provider {own.provider!r} (defined: {defined})",
                             f"did you mean {close[0]!r}?" if close else
                             "use a provider from the platform file's safety.providers, or ask the platform team "
                             "to add one")
        return
    paths = own.paths if own.paths is not None else platform.safety.paths
    if not paths:
        yield src.diagnostic(("safety", "paths"), "safety-no-paths", "safety.paths is empty: nothing would be "
                             "screened", "list the OpenAI-style paths to screen, or leave paths unset")
    kind = serving_kind(values, platform)
    if provider.extProc is not None:
        offered = provider.extProc.events
        for part, events in (("prompts", REQUEST_EVENTS), ("responses", RESPONSE_EVENTS)):
            if own.screen in (part, "both") and not any(e in offered for e in events):
                yield src.diagnostic(("safety", "screen"), "safety-provider-events",
                                     f"provider {own.provider!r} is sent no {part} (its events: "
                                     f"{', '.join(offered)}), so screen: {own.screen} cannot be honoured",
                                     "screen only what it sees, or use another provider")
        if not platform.istioInjection:
            yield src.diagnostic(("safety", "provider"), "safety-needs-sidecar",
                                 f"provider {own.provider!r} is called by the model's Istio sidecar, and the "
                                 "platform file turns sidecar injection off (istioInjection: false)",
                                 "turn sidecar injection on, or use a provider on the Gateway")
        if provider.extProc.bodyMode == "buffered" and own.screen in ("responses", "both") and \
                "responseBody" in offered:
            yield src.diagnostic(("safety", "screen"), "safety-buffers-streams",
                                 f"provider {own.provider!r} screens whole bodies (bodyMode: buffered): a streamed "
                                 "response (stream: true) reaches the caller only when it has ended",
                                 "screen only prompts, or ask the platform team for a streamed provider",
                                 severity="warning")
        return
    # GKE's Model Armor is called by GKE's Gateway: only for traffic that goes through it.
    if not platform.gatewayApi.gatewayClass.startswith("gke-l7"):
        yield src.diagnostic(("safety", "provider"), "safety-needs-gke-gateway",
                             f"provider {own.provider!r} is Model Armor, which GKE's Gateway calls; the platform's "
                             f"Gateway is of class {platform.gatewayApi.gatewayClass!r}",
                             "use an extProc provider, or route models through a GKE Gateway (gatewayApi.gatewayClass: "
                             "gke-l7-...)")
    elif kind != "llm" and (platform.routing != "gateway-api" or not values.exposeModel.enabled):
        yield src.diagnostic(("safety", "provider"), "safety-needs-gateway-route",
                             f"provider {own.provider!r} screens traffic on the Gateway, and this model is not "
                             "reached through it", "serve it as an LLMInferenceService (model.serving: llm), or "
                             "expose it (exposeModel.enabled) on a platform with routing: gateway-api")
    if own.screen in ("responses", "both"):
        yield src.diagnostic(("safety", "screen"), "model-armor-streams",
                             "Model Armor screens whole responses: a streamed response (stream: true) passes "
                             "unscreened", "have callers of this model ask for non-streamed responses, or screen "
                             "with an extProc provider in streamed mode", severity="warning")


RULES: list[Rule] = [name_length, resource_bounds, model_spec, env_vars, feature_consistency,
                     autoscaling_rules, observability_rules, rdma_rules, traffic_rules, ownership_rules,
                     container_rules, llm_rules, safety_rules]


def check(values: ModelValues, platform: PlatformSettings, src: Source, ident: Identity) -> list[Diagnostic]:
    """Every rule over one model, whose identity (name, project, namespace) is already resolved."""
    out: list[Diagnostic] = []
    for rule in RULES:
        out.extend(rule(values, platform, src, ident))
    return out
