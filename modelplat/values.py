"""The model values vocabulary: what a model owner may write, field by field.

Descriptions and examples here become the published JSON Schema; the model must not do I/O.
Key names follow the seed platform (requestGPU, replicaCount, primaryLoad, ...) so migrating
users keep what they already write; one concept has one name in values, templates and docs.
"""


import math
import re
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from . import prebuilt

# --- shared scalar types --------------------------------------------------------------------

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNSLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]

# Kubernetes resource.Quantity, as a string ("500m", "32Gi") or a plain number (2, 0.5).
QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkKMGTPE]|[KMGTPE]i)?$"
_QUANTITY_RE = re.compile(QUANTITY)


def _quantity(value: object) -> object:
    # One validator instead of a Union, so a bad value gives one clear error, not one per member.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PydanticCustomError("quantity", "expected a Kubernetes quantity such as 500m, 2 or 32Gi")
    if isinstance(value, (int, float)):
        if value < 0 or not math.isfinite(value):
            raise PydanticCustomError("quantity", "a quantity must be a finite number, at least 0")
        return value
    if not _QUANTITY_RE.match(value):
        raise PydanticCustomError("quantity", "expected a Kubernetes quantity such as 500m, 2 or 32Gi, got '{value}'", {"value": value})
    return value


class _Plain:
    """A field checked by one function, its value kept as given (pydantic's PlainValidator, minus
    the serializer it wraps around an untyped value: a lambda, which would keep the model's core
    schema from being pickled into the render cache, see prebuilt.py)."""

    __slots__ = ("check",)

    def __init__(self, check):
        self.check = check

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(self.check)


Quantity = Annotated[
    object,
    _Plain(_quantity),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": QUANTITY}, {"type": "number", "minimum": 0}], "examples": ["500m", 2, "32Gi"]}
    ),
]


class _NumberCheck:
    """An int or a float (kept as written, so 10 stays 10 in the output) within bounds; a class,
    not a closure, so the validator can be pickled (prebuilt.py)."""

    __slots__ = ("gt", "ge", "le", "lt")

    def __init__(self, gt: float | None, ge: float | None, le: float | None, lt: float | None):
        self.gt, self.ge, self.le, self.lt = gt, ge, le, lt

    def __reduce__(self):
        return _NumberCheck, (self.gt, self.ge, self.le, self.lt)

    def __call__(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PydanticCustomError("number", "expected a finite number")
        if self.gt is not None and not value > self.gt:
            raise PydanticCustomError("number_range", "must be greater than {gt}", {"gt": self.gt})
        if self.ge is not None and not value >= self.ge:
            raise PydanticCustomError("number_range", "must be at least {ge}", {"ge": self.ge})
        if self.le is not None and not value <= self.le:
            raise PydanticCustomError("number_range", "must be at most {le}", {"le": self.le})
        if self.lt is not None and not value < self.lt:
            raise PydanticCustomError("number_range", "must be less than {lt}", {"lt": self.lt})
        return value


def Number(*, gt: float | None = None, ge: float | None = None, le: float | None = None,
           lt: float | None = None) -> object:
    """An int or a float (kept as written, so 10 stays 10 in the output) within bounds."""
    schema: dict = {"type": "number"}
    if gt is not None:
        schema["exclusiveMinimum"] = gt
    if ge is not None:
        schema["minimum"] = ge
    if le is not None:
        schema["maximum"] = le
    if lt is not None:
        schema["exclusiveMaximum"] = lt
    return Annotated[object, _Plain(_NumberCheck(gt, ge, le, lt)), WithJsonSchema(schema)]

# Storage schemes KServe's storage initializer understands.
STORAGE_URI = r"^(hf|s3|gs|pvc|oci|https?|hdfs|webhdfs)://[^\s]+$"
StorageUri = Annotated[str, StringConstraints(pattern=STORAGE_URI, max_length=2048)]

# An image reference; the "no latest tag" rule lives in rules.py (it needs a hint, not a regex).
IMAGE = r"^[a-z0-9]([a-z0-9._/:@-]*[a-z0-9])?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
Image = Annotated[str, StringConstraints(pattern=IMAGE, max_length=512)]

LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY, max_length=316)]
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=63)]

HttpPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$", max_length=1024)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Percent = Annotated[StrictInt, Field(ge=1, le=100)]
# Free text that ends up as data in YAML; control characters (C0, DEL, C1) are refused outright.
NO_CONTROL = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
Text = Annotated[str, StringConstraints(pattern=NO_CONTROL, max_length=2000)]
# One line: no control character at all (tab and newline included), and none of Unicode's bidi
# controls, which make the text read in another order than it is stored. The bidi characters are
# written as themselves, not as escapes: Python's and Go's (Helm's) regular expressions spell
# escapes differently, and the exported schema must mean the same to both.
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f" + "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069" + "]*$"
OneLine = Annotated[str, StringConstraints(pattern=ONE_LINE, max_length=500)]
# An HTTP header value matched exactly: visible ASCII and inner spaces, as a client can send it.
HEADER_VALUE = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
HeaderValue = Annotated[str, StringConstraints(pattern=HEADER_VALUE, max_length=256)]
HEADER_NAME = r"^[a-z0-9-]+$"
# A host an AuthorizationPolicy operation matches: a DNS name (optionally *. for any subdomain, and a port).
AUTHZ_HOST = r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
# An image tag (runtimeVersion, canary.imageTag), as OCI references allow it.
IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
TENANT_ID = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Annotation values: any text without control characters but newline and tab, as Kubernetes stores it.
AnnotationValue = Annotated[str, StringConstraints(pattern=NO_CONTROL, max_length=8192)]
# Container args and env values: any printable text (it is YAML data, never template code).
Arg = Annotated[str, StringConstraints(pattern=NO_CONTROL, max_length=4096)]


class Section(BaseModel):
    """Base of every values section: unknown keys are errors, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    @classmethod
    def model_rebuild(cls, *, force: bool = False, raise_errors: bool = True, _parent_namespace_depth: int = 2,
                      _types_namespace=None) -> bool | None:
        # pydantic completes a deferred class here on its first use: from the core schema an
        # earlier run built, when the render cache has it (prebuilt.py).
        if not force and not cls.__pydantic_complete__ and prebuilt.install(cls):
            return True
        done = super().model_rebuild(force=force, raise_errors=raise_errors,
                                     _parent_namespace_depth=_parent_namespace_depth + 1,
                                     _types_namespace=_types_namespace)
        if done:
            prebuilt.built(cls)
        return done


# --- serving ----------------------------------------------------------------------------------

ModelFormat = Literal[
    "sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "onnx", "triton", "huggingface", "custom"
]


class ModelSpec(Section):
    """What is served and by which runtime."""

    format: ModelFormat = Field(
        description=(
            "Model format. A KServe runtime is chosen for every format but `custom`, which runs "
            "`image` as the serving container (e.g. a vLLM OpenAI server)."
        ),
        examples=["sklearn", "huggingface", "custom"],
    )
    storageUri: Optional[StorageUri] = Field(
        default=None,
        description=(
            "Where the model artefacts live; KServe's storage initializer downloads them to "
            "/mnt/models. Schemes: hf://, s3://, gs://, pvc://, oci://, https://, hdfs://. "
            "Required for every format but `custom`."
        ),
        examples=["s3://models/fraud/xgb/v3", "hf://Qwen/Qwen2.5-7B-Instruct", "pvc://models-pvc/sklearn/iris"],
    )
    runtime: Optional[DNSLabel] = Field(
        default=None,
        description="Name of a (Cluster)ServingRuntime to use instead of KServe's automatic choice.",
        examples=["kserve-sklearnserver"],
    )
    runtimeVersion: Optional[Annotated[str, StringConstraints(pattern=IMAGE_TAG)]] = Field(
        default=None, description="Runtime image tag to use instead of the runtime's default.", examples=["1.5.0"]
    )
    protocol: Optional[Literal["v1", "v2", "grpc-v2", "openai"]] = Field(
        default=None,
        description=(
            "Inference protocol the server speaks. `openai` marks an LLM served through "
            "OpenAI-style routes (/v1/chat/completions ...): it gets /dev/shm and may use token "
            "limits. Unset: the runtime's default."
        ),
        examples=["v2", "openai"],
    )
    image: Optional[Image] = Field(
        default=None,
        description="Serving container image for `format: custom`. A tag other than `latest`, or a digest, is required.",
        examples=["vllm/vllm-openai:v0.8.5"],
    )
    command: Optional[list[Arg]] = Field(
        default=None, description="Container entrypoint override (custom format).", examples=[["python3", "-m", "server"]]
    )
    args: list[Arg] = Field(
        default_factory=list,
        description="Arguments for the serving container.",
        examples=[["--model", "/mnt/models", "--served-model-name", "qwen"]],
    )
    port: Port = Field(default=8080, description="Port the serving container listens on (custom format).")
    serving: Optional[Literal["inferenceservice", "llm"]] = Field(
        default=None,
        description=(
            "How KServe serves the model: `inferenceservice` (an InferenceService) or `llm` (an "
            "LLMInferenceService: vLLM, an endpoint picker and Gateway API routing; protocol openai only). "
            "Unset: the platform's choice for the protocol (`llmServing.default`)."
        ),
        examples=["llm"],
    )
    servedModelName: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")]] = Field(
        default=None,
        description="Model name clients send in requests; the same for primary, canary and shadow.",
        examples=["qwen2.5-7b-instruct"],
    )


class ContainerResources(Section):
    """CPU and memory of a container (seed key names). Unset: the platform defaults; a limit without
    a request makes the request equal to the limit, as Kubernetes does."""

    requestCPU: Optional[Quantity] = Field(default=None, description="CPU request; unset: limitCPU if set, "
                                           "else the platform default.", examples=["2"])
    limitCPU: Optional[Quantity] = Field(default=None, description="CPU limit; must be >= requestCPU.", examples=["4"])
    requestMemory: Optional[Quantity] = Field(default=None, description="Memory request; unset: limitMemory if "
                                              "set, else the platform default.", examples=["8Gi"])
    limitMemory: Optional[Quantity] = Field(
        default=None, description="Memory limit; must be >= requestMemory.", examples=["16Gi"]
    )


class Resources(ContainerResources):
    """Compute requests and limits (seed key names). Unset CPU/memory values take the platform
    defaults; a limit without a request makes the request equal to the limit, as Kubernetes does."""

    requestGPU: StrictInt = Field(
        default=0, ge=0, le=16, description="GPUs requested. Any GPU schedules the pod onto the GPU node group."
    )
    limitGPU: StrictInt = Field(
        default=0,
        ge=0,
        le=16,
        description="GPU limit. GPUs cannot be overcommitted: when both are set they must be equal.",
    )


class SharedMemory(Section):
    """A memory-backed /dev/shm volume (PyTorch data loaders and NCCL need more than Docker's 64 MiB)."""

    enabled: Optional[StrictBool] = Field(
        default=None, description="Mount /dev/shm. Unset: on for GPU and `protocol: openai` models, off otherwise."
    )
    sizeLimit: Optional[Quantity] = Field(
        default=None, description="Size limit of /dev/shm. Unset: the platform default.", examples=["8Gi"]
    )


class GPU(Section):
    """GPU placement beyond the GPU node group."""

    product: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9]$")]] = (
        Field(
            default=None,
            description="Required GPU product (value of the platform's GPU product node label, e.g. "
                        "nvidia.com/gpu.product from GPU feature discovery), on any cloud.",
            examples=["NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"],
        )
    )
    accelerator: Optional[Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]] = (
        Field(
            default=None,
            description="GKE accelerator type (node label cloud.google.com/gke-accelerator): GKE labels its GPU "
                        "node pools with it whatever the platform's product label is.",
            examples=["nvidia-l4", "nvidia-tesla-a100", "nvidia-h100-80gb"],
        )
    )


class SecretKeyRef(Section):
    name: DNSLabel = Field(description="Secret name.")
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        description="Key in the secret."
    )


class EnvVar(Section):
    """One environment variable: a literal `value` or a `secretKeyRef`, not both."""

    name: Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=256)] = Field(
        description="Variable name.", examples=["HF_HUB_OFFLINE"]
    )
    value: Optional[Arg] = Field(default=None, description="Literal value.", examples=["1"])
    secretKeyRef: Optional[SecretKeyRef] = Field(default=None, description="Take the value from a Secret key.")


class Probe(Section):
    """A probe on a container: HTTP GET (`path`), TCP connect, gRPC health check or a command."""

    type: Literal["http", "tcp", "grpc", "exec"] = Field(
        default="http", description="`http` GETs `path`; `tcp` opens a connection; `grpc` calls the gRPC health "
        "service; `exec` runs `command` in the container.")
    path: Optional[HttpPath] = Field(default=None, description="HTTP path (type http, required there).",
                                     examples=["/v2/health/ready", "/health"])
    port: Optional[Port] = Field(default=None, description="Port (http, tcp, grpc); unset: the container's port.")
    service: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,253}$")]] = Field(
        default=None, description="gRPC health service name (type grpc); unset: the server's overall health.")
    command: Optional[list[Arg]] = Field(
        default=None, description="Command run in the container (type exec, required there); exit 0 is healthy.",
        examples=[["cat", "/tmp/ready"]])
    initialDelaySeconds: StrictInt = Field(default=0, ge=0, le=3600)
    periodSeconds: StrictInt = Field(default=10, ge=1, le=3600)
    timeoutSeconds: StrictInt = Field(default=1, ge=1, le=3600)
    failureThreshold: StrictInt = Field(default=3, ge=1, le=1000)


class Probes(Section):
    readiness: Optional[Probe] = Field(default=None, description="Readiness probe; unset: the runtime's.")
    liveness: Optional[Probe] = Field(default=None, description="Liveness probe; unset: none.")
    startup: Optional[Probe] = Field(
        default=None, description="Startup probe: give slow-loading LLMs time before liveness applies."
    )


class Transformer(Section):
    """KServe's transformer: a pre/post-processing container (e.g. a tokenizer) in front of the
    predictor. Clients reach the transformer; KServe tells it the predictor's address."""

    image: Image = Field(description="Transformer image; a tag other than `latest`, or a digest.",
                         examples=["registry.example.com/nlp/bert-tokenizer:1.4.0"])
    command: Optional[list[Arg]] = Field(default=None, description="Container entrypoint override.")
    args: list[Arg] = Field(default_factory=list, description="Arguments of the transformer container.",
                            examples=[["--model_name=bert", "--predictor_protocol=v2"]])
    port: Port = Field(default=8080, description="Port the transformer listens on.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment of the transformer container.")
    resources: ContainerResources = Field(default_factory=ContainerResources,
                                          description="CPU and memory of the transformer (no GPUs).")
    probes: Probes = Field(default_factory=Probes, description="Probes of the transformer container.")
    replicaCount: Optional[StrictInt] = Field(default=None, ge=1, le=1000,
                                             description="Transformer replicas; unset: the model's replicaCount.")


class Scheduling(Section):
    """Scheduler choice beyond the GPU rules (e.g. Volcano for gang/queue scheduling)."""

    schedulerName: Optional[DNSLabel] = Field(default=None, description="Pod scheduler.", examples=["volcano"])
    queue: Optional[DNSLabel] = Field(
        default=None, description="Volcano queue (annotation scheduling.volcano.sh/queue-name).", examples=["llm"]
    )
    priorityClassName: Optional[DNSLabel] = Field(
        default=None, description="PriorityClass of the pods.", examples=["inference-high"]
    )
    nodeSelector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Extra node labels the pods require."
    )


# --- autoscaling and observability --------------------------------------------------------------


class ScalingBehavior(Section):
    """HPA behaviour; defaults suit GPU models that take minutes to start."""

    scaleDownStabilizationSeconds: StrictInt = Field(default=600, ge=0, le=3600)
    scaleUpStabilizationSeconds: StrictInt = Field(default=0, ge=0, le=3600)
    scaleUpPods: StrictInt = Field(default=2, ge=1, le=100, description="Pods added at most per scale-up period.")
    scaleUpPeriodSeconds: StrictInt = Field(default=60, ge=1, le=1800)


class Autoscaling(Section):
    """A HorizontalPodAutoscaler on KServe's `<name>-predictor` Deployment (KServe's own HPA off).

    `replicaCount` is the minimum.
    """

    enabled: StrictBool = Field(default=False, description="Scale between replicaCount and maxReplicaCount.")
    maxReplicaCount: StrictInt = Field(default=1, ge=1, le=1000,
                                       description="Upper bound of replicas; required when autoscaling is enabled.")
    targetCPUUtilizationPercentage: Optional[Percent] = Field(default=None, examples=[70])
    targetMemoryUtilizationPercentage: Optional[Percent] = Field(default=None, examples=[80])
    targetRequestRate: Optional[Number(gt=0)] = Field(
        default=None, description="Requests per second per pod (metric requests_per_second).", examples=[20]
    )
    targetGPUUtilizationPercentage: Optional[Percent] = Field(
        default=None,
        description="Average GPU utilisation (metric gpu_utilization). Saturates under one request: pair it with a queue signal.",
        examples=[80],
    )
    targetKVCacheUtilizationPercentage: Optional[Percent] = Field(
        default=None, description="vLLM KV-cache usage per pod (LLMs).", examples=[70]
    )
    targetQueueDepth: Optional[Annotated[StrictInt, Field(ge=1)]] = Field(
        default=None, description="vLLM waiting requests per pod (LLMs).", examples=[10]
    )
    targetConcurrency: Optional[Number(gt=0)] = Field(
        default=None,
        description="Requests in flight per pod (KServe's scaleMetric concurrency; metric requests_in_flight: "
                    "the seconds Istio saw requests take per second, which is the mean number in flight).",
        examples=[8],
    )
    behavior: ScalingBehavior = Field(default_factory=ScalingBehavior)


class Metrics(Section):
    """Prometheus scraping of the serving container."""

    enabled: StrictBool = Field(default=True, description="Scrape the model server's metrics.")
    port: Optional[Port] = Field(
        default=None,
        description="Metrics port; unset: where the model server serves them (KServe's runtimes: 8080, "
                    "TorchServe 8082, Triton 8002; custom: model.port).",
    )
    path: HttpPath = Field(default="/metrics", description="Metrics path.")


class ChartMetrics(Metrics):
    """Prometheus scraping of the serving container, its port resolved."""

    port: Port = Field(default=8080, description="Metrics port (resolved by modelplat from the runtime).")


class Logger(Section):
    """KServe's inference logger: sends requests and/or responses as CloudEvents to a sink."""

    mode: Literal["all", "request", "response"] = Field(default="all", description="What to log.")
    url: Url = Field(description="Message sink URL.", examples=["http://message-dumper.logging.svc.cluster.local"])


class Alerts(Section):
    """PrometheusRule alerts; thresholds follow the vendor guide's defaults."""

    enabled: StrictBool = Field(default=False)
    p99LatencySeconds: Number(gt=0) = Field(default=10)
    # Alerts fire above the threshold: at 100 % they never could, so 100 is refused.
    errorRatePercent: Number(gt=0, lt=100) = Field(default=5, description="Percent of failing requests (5xx) "
                                                    "above which the alert fires; below 100.")
    queueSize: Annotated[StrictInt, Field(ge=1)] = Field(default=50)
    kvCacheUtilizationPercent: Annotated[StrictInt, Field(ge=1, le=99)] = Field(default=90)
    gpuUtilizationPercent: Annotated[StrictInt, Field(ge=1, le=99)] = Field(default=95)
    forMinutes: Annotated[StrictInt, Field(ge=1, le=1440)] = Field(default=5)


class Observability(Section):
    accessLog: StrictBool = Field(default=False, description="Istio Telemetry access logging for this model.")
    alerts: Alerts = Field(default_factory=Alerts)


class PodDisruptionBudget(Section):
    enabled: Optional[StrictBool] = Field(
        default=None, description="Unset: a PDB whenever the minimum replicas exceed 1."
    )
    maxUnavailable: StrictInt = Field(default=1, ge=1)


# --- traffic and security ------------------------------------------------------------------------


class ExposeModel(Section):
    """Publishing through the platform's Istio gateway."""

    enabled: StrictBool = Field(default=False, description="Publish the model on the platform gateway.")
    type: Literal["int", "ext"] = Field(default="int", description="Internal or external exposure (seed: int/ext).")
    host: Optional[
        Annotated[
            str,
            StringConstraints(
                pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$", max_length=253
            ),
        ]
    ] = Field(default=None, description="Host override; wildcards are never allowed.", examples=["fraud.int.example.com"])


class ClaimHeader(Section):
    claim: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]+$", max_length=128)]
    header: Annotated[str, StringConstraints(pattern=r"^x-[a-z0-9-]+$", max_length=128)]


class JWT(Section):
    """JWT validation (RequestAuthentication); issuer and JWKS default to the platform's."""

    enabled: StrictBool = Field(default=False, description="Require a valid JWT from callers outside the namespace.")
    issuer: Optional[Url] = Field(default=None, description="Issuer override.")
    jwksUri: Optional[Url] = Field(default=None, description="JWKS URL override.")
    audiences: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(default_factory=list)
    forwardOriginalToken: StrictBool = Field(default=True)
    claimsToHeaders: list[ClaimHeader] = Field(
        default_factory=list, description="Extra claims copied to request headers."
    )


class CustomAuthz(Section):
    """A CUSTOM AuthorizationPolicy delegating to a named ext-authz provider."""

    enabled: StrictBool = Field(default=False)
    provider: Optional[DNSLabel] = Field(default=None, description="Mesh extension provider name.")
    includePaths: list[HttpPath] = Field(
        default_factory=list, description="Only these paths are sent to the provider (empty: all)."
    )
    excludePaths: list[HttpPath] = Field(
        default_factory=list, description="These paths are never sent to the provider."
    )
    hosts: list[Annotated[str, StringConstraints(pattern=AUTHZ_HOST, max_length=253)]] = Field(
        default_factory=list,
        description="Only requests for these hosts (Host header; a leading `*.` matches any subdomain) are "
                    "sent to the provider, e.g. the model's exposed host, so calls inside the mesh skip it; "
                    "empty: any host.",
        examples=[["qwen-chat-predictor-llm.ext.models.example.com"]],
    )


class Auth(Section):
    """Istio security for every model: mTLS STRICT and an ALLOW policy (same namespace, JWT, metrics)."""

    enabled: StrictBool = Field(
        default=True,
        description="PeerAuthentication STRICT and an AuthorizationPolicy for the model's pods. Turn off only "
        "for a model outside the mesh.",
    )
    jwt: JWT = Field(default_factory=JWT)
    allowedPrincipals: list[Annotated[str, StringConstraints(pattern=r"^[^\s*]+/[^\s*]+$", max_length=512)]] = Field(
        default_factory=list,
        description="Only these JWT request principals (`<iss>/<sub>`) may call from outside; empty: any valid JWT.",
        examples=[["https://idp.example.com/svc-search"]],
    )
    allowedNamespaces: list[DNSLabel] = Field(
        default_factory=list, description="Other namespaces whose workloads may call without a token."
    )
    customAuthz: CustomAuthz = Field(default_factory=CustomAuthz)


DEFAULT_TOKEN_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/openai/v1/chat/completions",
    "/openai/v1/completions",
    "/openai/v1/embeddings",
)

TokenQuota = Annotated[StrictInt, Field(ge=1, le=1_000_000_000_000)]
# What prompt safety screens by default: the same OpenAI paths as token quotas.
DEFAULT_SAFETY_PATHS = DEFAULT_TOKEN_PATHS


class TokenLimit(Section):
    """LLM token quotas per service account and per client IP, held across replicas and models by
    the platform's rate limit service (seed: tenant_id, sa_limit, ip_limit). Unset fields take the
    platform file's `tokenLimit` defaults."""

    enabled: StrictBool = Field(default=False, description="Count the tokens of every response and refuse "
                                "callers over their quota (429).")
    tenantId: Optional[Annotated[str, StringConstraints(pattern=TENANT_ID)]] = Field(
        default=None, description="Tenant the quotas belong to (seed: tenant_id). Lowercase letters, digits, "
        "`_`, `.` and `-`.", examples=["team-search"]
    )
    saLimit: Optional[TokenQuota] = Field(
        default=None, description="Tokens per service account per day (seed: sa_limit).", examples=[12000]
    )
    ipLimit: Optional[TokenQuota] = Field(
        default=None, description="Tokens per client IP per day (seed: ip_limit).", examples=[400]
    )
    saLimitPerMinute: Optional[TokenQuota] = Field(
        default=None, description="Tokens per service account per minute (bursts), beside the daily quota.",
        examples=[2000],
    )
    ipLimitPerMinute: Optional[TokenQuota] = Field(
        default=None, description="Tokens per client IP per minute, beside the daily quota.", examples=[200]
    )
    paths: Optional[list[HttpPath]] = Field(
        default=None,
        description="Exact request paths whose responses are counted (query strings ignored); unset: the "
        "platform's list (default: the OpenAI chat, completions and embeddings paths, with and without "
        "KServe's /openai prefix).",
        examples=[list(DEFAULT_TOKEN_PATHS[:2])],
    )
    missingIdentity: Optional[Literal["refuse", "countByIP"]] = Field(
        default=None, description="A counted request without a service-account claim: `refuse` (401) or "
        "`countByIP` (only the client-IP quota applies). Unset: the platform's (default refuse)."
    )
    failureMode: Optional[Literal["closed", "open"]] = Field(
        default=None, description="When the rate limit service cannot be reached: `closed` refuses (503), "
        "`open` lets requests through uncounted. Unset: the platform's (default closed)."
    )
    shareTenantQuota: StrictBool = Field(
        default=False, description="Count against the tenant's quota shared by every model of the tenant that "
        "sets this (they must declare the same limits), instead of a quota of this model's own."
    )



class Safety(Section):
    """Prompt and response screening by one of the platform's safety providers (platform file
    `safety.providers`), before the model sees a prompt and before a caller sees a response."""

    enabled: StrictBool = Field(default=False, description="Screen this model's LLM traffic.")
    provider: Optional[DNSLabel] = Field(
        default=None, description="A provider the platform file defines under safety.providers.",
        examples=["llm-guard"])
    screen: Literal["prompts", "responses", "both"] = Field(
        default="both", description="What is screened: the prompts (requests), the responses, or both.")
    paths: Optional[list[HttpPath]] = Field(
        default=None, description="Exact request paths screened (query strings ignored); unset: the platform's "
        "list (default: the OpenAI chat, completions and embeddings paths, with and without KServe's /openai "
        "prefix).", examples=[["/v1/chat/completions"]])

class Canary(Section):
    """A second InferenceService `<name>-canary` that differs by model version and/or image tag."""

    enabled: StrictBool = Field(default=False)
    storageUri: Optional[StorageUri] = Field(default=None, description="The canary's model (seed: newStorageUri).")
    imageTag: Optional[Annotated[str, StringConstraints(pattern=IMAGE_TAG)]] = Field(
        default=None, description="The canary's image tag (custom format) or runtime version."
    )
    headerMatch: Optional[dict[Annotated[str, StringConstraints(pattern=HEADER_NAME)], HeaderValue]] = Field(
        default=None,
        description="Requests with these headers always go to the canary.",
        examples=[{"x-model-canary": "true"}],
    )


class Mirror(Section):
    """A shadow InferenceService `<name>-shadow` receiving a copy of the primary's traffic."""

    enabled: StrictBool = Field(default=False)
    storageUri: Optional[StorageUri] = Field(default=None)
    image: Optional[Image] = Field(default=None)
    percentage: Number(ge=0, le=100) = Field(
        default=100, description="Share of primary traffic mirrored (fractions allowed)."
    )


# --- RDMA -----------------------------------------------------------------------------------------


class RDMANetwork(Section):
    name: DNSLabel = Field(description="NetworkAttachmentDefinition name.")
    type: Literal["sriov", "host-device", "macvlan", "existing"] = Field(
        description="CNI of the NAD modelplat renders, or `existing` for a platform-owned NAD."
    )
    namespace: Optional[DNSLabel] = Field(default=None, description="Namespace of an `existing` NAD.")
    resourceName: Optional[Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+/[a-zA-Z0-9_.-]+$")]] = Field(
        default=None, description="Device-plugin pool (k8s.v1.cni.cncf.io/resourceName).", examples=["nvidia.com/rdma_vf"]
    )
    master: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")]] = Field(
        default=None, description="Host interface for macvlan/host-device."
    )
    subnet: Optional[Annotated[str, StringConstraints(pattern=r"^[0-9.]+/[0-9]{1,2}$")]] = Field(
        default=None, description="IPAM subnet (whereabouts).", examples=["192.168.100.0/24"]
    )
    rdmaCni: StrictBool = Field(
        default=False,
        description="Chain the rdma CNI plugin after sriov, which moves the VF's RDMA device into the pod "
                    "(nodes whose RDMA subsystem runs in exclusive netns mode need it). sriov only.",
    )


class RDMA(Section):
    """A second, RDMA-capable NIC through Multus (KV-cache transfer between prefill and decode)."""

    enabled: StrictBool = Field(default=False)
    networks: list[RDMANetwork] = Field(default_factory=list)
    resources: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+/[a-zA-Z0-9_.-]+$")], Annotated[StrictInt, Field(ge=1)]] = Field(
        default_factory=dict, description="RDMA device resources.", examples=[{"rdma/roce_gdr": 1}]
    )
    ncclHints: StrictBool = Field(
        default=False, description="Set NCCL_IB_DISABLE=0 and NCCL_SOCKET_IFNAME=eth0 (collectives over the RDMA NIC)."
    )


# --- LLM-native serving (KServe's LLMInferenceService) ---------------------------------------------


class Parallelism(Section):
    """How vLLM splits the model over GPUs and pods (KServe's spec.parallelism)."""

    tensor: Optional[Annotated[StrictInt, Field(ge=1, le=64)]] = Field(
        default=None, description="Tensor-parallel size: GPUs one copy of the model spans.", examples=[8])
    pipeline: Optional[Annotated[StrictInt, Field(ge=1, le=64)]] = Field(
        default=None, description="Pipeline-parallel size: pods (stages) one copy spans; > 1 runs a leader "
        "and workers (a LeaderWorkerSet).", examples=[2])
    data: Optional[Annotated[StrictInt, Field(ge=1, le=1024)]] = Field(
        default=None, description="Data-parallel size: ranks in all; with dataLocal, data/dataLocal pods form one "
        "replica (a LeaderWorkerSet).", examples=[16])
    dataLocal: Optional[Annotated[StrictInt, Field(ge=1, le=64)]] = Field(
        default=None, description="Data-parallel ranks per pod (usually its GPU count).", examples=[8])
    expert: StrictBool = Field(default=False, description="Expert parallelism (mixture-of-experts models).")


class KVTransfer(Section):
    """How prefill pods hand each request's KV cache to decode pods (vLLM's kv_transfer_config)."""

    connector: Literal["NixlConnector"] = Field(
        default="NixlConnector", description="vLLM KV connector; NIXL moves the cache over RDMA when the pods have "
        "an RDMA NIC (rdma), else over TCP.")


class PrefillRole(Section):
    """The prefill pods of a disaggregated LLM: they compute the prompt's KV cache, decode pods generate."""

    replicaCount: StrictInt = Field(default=1, ge=1, le=1000, description="Prefill replicas.")
    resources: Optional[Resources] = Field(
        default=None, description="Resources of a prefill pod; unset: the same as a decode pod's (`resources`).")
    parallelism: Optional[Parallelism] = Field(
        default=None, description="Parallelism of the prefill pods; unset: `llm.parallelism`.")
    rdma: Optional[RDMA] = Field(
        default=None, description="RDMA NICs of the prefill pods; unset: the same as the decode pods' (`rdma`).")


class LoRAAdapter(Section):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")] = Field(
        description="Model name clients send to use this adapter.", examples=["qwen-support"])
    storageUri: StorageUri = Field(description="Where the adapter's files live (hf://, s3://, pvc://).",
                                   examples=["hf://acme/qwen-support-lora"])


class LoRA(Section):
    """LoRA adapters served on top of the base model (vLLM --enable-lora)."""

    adapters: list[LoRAAdapter] = Field(min_length=1, description="Adapters, each a model name of its own.")
    maxRank: Optional[Annotated[StrictInt, Field(ge=1, le=512)]] = Field(
        default=None, description="Largest adapter rank (vLLM --max-lora-rank); unset: vLLM's 16.")


class KVCacheOffloading(Section):
    """Offload the KV cache to CPU memory (and a local disk), so more of it survives between requests."""

    cpu: Quantity = Field(description="Memory for the CPU tier (added to the pod's memory).", examples=["32Gi"])
    disk: Optional[Quantity] = Field(
        default=None, description="Size of a node-local disk tier (an emptyDir) behind the CPU tier.",
        examples=["200Gi"])


class Objective(Section):
    """A priority class of callers (llm-d InferenceObjective): under load, lower priorities wait or are shed first."""

    name: DNSLabel = Field(description="Objective name (suffix of the InferenceObjective).", examples=["interactive"])
    priority: StrictInt = Field(ge=-1000, le=1000, description="Higher is served first; negative may be shed.")


class LLMServing(Section):
    """KServe's LLMInferenceService for `model.serving: llm`: vLLM pods, an endpoint picker that routes
    by KV-cache and queue state (InferencePool), and an HTTPRoute on the platform's Gateway."""

    parallelism: Parallelism = Field(default_factory=Parallelism, description="Parallelism of the (decode) pods.")
    prefill: Optional[PrefillRole] = Field(
        default=None, description="Disaggregated serving: prefill pods beside the decode pods; unset: one role.")
    kvTransfer: KVTransfer = Field(default_factory=KVTransfer, description="KV-cache hand-over (with prefill).")
    lora: Optional[LoRA] = Field(default=None, description="LoRA adapters; unset: none.")
    kvCacheOffloading: Optional[KVCacheOffloading] = Field(default=None, description="KV-cache offloading; unset: off.")
    schedulerReplicas: StrictInt = Field(default=1, ge=1, le=10, description="Endpoint picker replicas.")
    objectives: list[Objective] = Field(
        default_factory=list, description="Caller priorities (InferenceObjectives); a request picks one with the "
        "x-gateway-inference-objective header.")


# --- the file -------------------------------------------------------------------------------------


class ModelValues(Section):
    """One model service, as its owner writes it in `models/<project>/<name>.yaml`."""

    name: Optional[DNSLabel] = Field(
        default=None,
        description="Model service name; unset: the file name. At most 46 characters (KServe adds -canary-predictor).",
        examples=["fraud-xgb"],
    )
    project: Optional[DNSLabel] = Field(default=None, description="Project; unset: the folder name.")
    namespace: Optional[DNSLabel] = Field(default=None, description="Namespace; unset: the project.")
    description: Optional[OneLine] = Field(default=None, description="One line about the model.")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, description="Extra labels on every resource "
                                               "(and the pods); keys modelplat or KServe own are refused.")
    annotations: dict[LabelKey, AnnotationValue] = Field(
        default_factory=dict, description="Annotations on the InferenceService; keys modelplat or KServe own are "
        "refused.", examples=[{"example.com/owner": "team-fraud"}])
    podAnnotations: dict[LabelKey, AnnotationValue] = Field(
        default_factory=dict, description="Annotations on the model's pods; keys modelplat or KServe own are "
        "refused.", examples=[{"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}])
    model: ModelSpec
    transformer: Optional[Transformer] = Field(
        default=None, description="A pre/post-processing container in front of the predictor (KServe's "
        "spec.transformer); unset: none.")
    resources: Resources = Field(default_factory=Resources)
    gpu: GPU = Field(default_factory=GPU)
    sharedMemory: SharedMemory = Field(default_factory=SharedMemory)
    env: list[EnvVar] = Field(default_factory=list, description="Environment of the serving container.")
    probes: Probes = Field(default_factory=Probes)
    serviceAccountName: Optional[DNSLabel] = Field(
        default=None, description="Service account of the pods (e.g. one holding storage credentials)."
    )
    replicaCount: StrictInt = Field(default=1, ge=1, le=1000, description="Replicas; the HPA minimum when autoscaling.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    metrics: Metrics = Field(default_factory=Metrics)
    logger: Optional[Logger] = Field(default=None, description="KServe inference logger; unset: off.")
    observability: Observability = Field(default_factory=Observability)
    podDisruptionBudget: PodDisruptionBudget = Field(default_factory=PodDisruptionBudget)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    exposeModel: ExposeModel = Field(default_factory=ExposeModel)
    auth: Auth = Field(default_factory=Auth)
    ratelimitIPPerMinute: Optional[Annotated[StrictInt, Field(ge=1)]] = Field(
        default=None, description="Requests per client IP per minute, across replicas.", examples=[10]
    )
    ratelimitEachSAPerMinute: Optional[Annotated[StrictInt, Field(ge=1)]] = Field(
        default=None, description="Requests per service account per minute, across replicas.", examples=[100]
    )
    tokenLimit: TokenLimit = Field(default_factory=TokenLimit)
    safety: Safety = Field(default_factory=Safety)
    primaryLoad: Optional[Annotated[StrictInt, Field(ge=0, le=100)]] = Field(
        default=None, description="Percent of traffic to the primary; the canary gets the rest.", examples=[90]
    )
    canary: Canary = Field(default_factory=Canary)
    mirror: Mirror = Field(default_factory=Mirror)
    rdma: RDMA = Field(default_factory=RDMA)
    llm: Optional[LLMServing] = Field(
        default=None, description="LLM-native serving settings (`model.serving: llm`); unset: the defaults.")


# --- what the chart receives -------------------------------------------------------------------


class ChartMetricLabels(Section):
    namespace: LabelKey
    pod: LabelKey
    dcgmNamespace: LabelKey
    dcgmPod: LabelKey


class ChartJWTClaims(Section):
    serviceAccountClaim: str
    serviceAccountHeader: str
    tenantClaim: str
    tenantHeader: str


class ChartRateLimit(Section):
    domain: str
    cluster: str
    authority: str
    timeout: str
    failureModeDeny: StrictBool


class ChartGatewayRef(Section):
    namespace: DNSLabel
    name: DNSLabel


class ChartExtProcMode(Section):
    request_header_mode: Literal["SEND", "SKIP"]
    response_header_mode: Literal["SEND", "SKIP"]
    request_body_mode: Literal["NONE", "BUFFERED", "STREAMED"]
    response_body_mode: Literal["NONE", "BUFFERED", "STREAMED"]
    request_trailer_mode: Literal["SKIP"]
    response_trailer_mode: Literal["SKIP"]


class ChartExtProc(Section):
    """An ext_proc provider as the model's sidecar calls it."""

    cluster: str = Field(description="Istio's outbound cluster of the provider's Service.")
    authority: str
    timeout: str = Field(description="Per-message timeout, in protobuf JSON (\"0.5s\").")
    failureMode: Literal["open", "closed"]
    bodyMode: Literal["buffered", "streamed"]
    port: Port = Field(description="The pod port clients' requests arrive at (its inbound routes are screened).")
    events: list[Literal["requestHeaders", "requestBody", "responseHeaders", "responseBody"]]
    processingMode: ChartExtProcMode


class ChartModelArmor(Section):
    """What selects the model's requests in the platform's traffic extension on GKE's Gateway."""

    match: str = Field(description="CEL expression selecting the model's screened requests on the Gateway.")


class ChartSafety(Safety):
    """`safety` with the provider's settings resolved by modelplat."""

    kind: Optional[Literal["extProc", "gkeModelArmor"]] = Field(default=None)
    extProc: Optional[ChartExtProc] = Field(default=None)
    gkeModelArmor: Optional[ChartModelArmor] = Field(default=None)


class ChartPlatform(Section):
    """Platform settings a chart needs at template time (filled in by modelplat, not by owners)."""

    clusterName: DNSLabel
    rateLimit: ChartRateLimit = Field(description="Where the model's sidecars ask the global rate limit service.")
    gateway: str = Field(description="Istio gateway `<namespace>/<name>` exposed models are published on.")
    gatewayNamespace: DNSLabel = Field(description="Namespace the gateway's pods run in.")
    gatewayApi: ChartGatewayRef = Field(description="The Gateway API Gateway LLMInferenceServices are routed on.")
    routing: Literal["istio", "gateway-api"] = Field(
        default="istio", description="VirtualService (istio) or HTTPRoutes (gateway-api) for exposure, canary, mirror.")
    jwtClaims: ChartJWTClaims = Field(description="Claims copied to request headers for rate and token limits.")
    scrape: Literal["annotations", "podMonitor", "both"] = Field(description="How Prometheus finds model metrics.")
    metricLabels: ChartMetricLabels = Field(description="Label names tying metric series to pods (alert expressions).")
    gpuNodeGroupLabel: LabelKey = Field(description="Node label whose value names the node group.")
    gpuNodeGroup: LabelValue = Field(description="Value of that label on GPU nodes (<clusterName>-gpu).")
    gpuTaintKey: LabelKey
    gpuResourceName: LabelKey
    gpuProductLabel: LabelKey
    sharedMemorySize: Quantity


class ChartValues(ModelValues):
    """The chart's values: the model's validated values, defaults resolved, plus platform facts."""

    name: DNSLabel = Field(description="Model service name; every resource is named from it.")
    project: DNSLabel = Field(description="Project the model belongs to (its folder).")
    namespace: DNSLabel = Field(description="Namespace the model runs in.")
    platform: ChartPlatform = Field(description="Platform facts filled in by modelplat from the platform file.")
    metrics: ChartMetrics = Field(default_factory=ChartMetrics, description="Prometheus scraping of the serving container.")
    safety: ChartSafety = Field(default_factory=ChartSafety, description="Prompt and response safety, resolved.")
