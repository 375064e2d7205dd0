"""Schema validation: plain data → typed values, or positioned diagnostics a person can act on.

Wraps pydantic and translates its errors (unknown key → "did you mean", pattern → what the value
must look like); semantic checks that need several fields live in rules.py, not here.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from .loader import Source

T = TypeVar("T")

# Patterns are unreadable in an error message; say what the value must look like instead.
_PATTERN_HELP = {
    "DNS_LABEL": "a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit",
    "STORAGE_URI": "a storage URI: hf://, s3://, gs://, pvc://, oci://, https://, hdfs:// or webhdfs://",
    "IMAGE": "an image reference such as registry.example.com/team/server:1.2.3",
    "LABEL_KEY": "a Kubernetes label key such as example.com/team",
    "NO_CONTROL": "text without control characters (tab and newline are fine)",
    "ONE_LINE": "one line of text: no tab, newline or other control character, and no bidi control",
    "LABEL_VALUE": "a label value: at most 63 letters, digits, '-', '_' and '.', starting and ending "
                   "with a letter or digit",
    "HEADER_NAME": "an HTTP header name in lower case: letters, digits and '-'",
    "HEADER_VALUE": "an HTTP header value: visible ASCII characters and inner spaces, on one line",
    "IMAGE_TAG": "an image tag: letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'",
    "ENV_NAME": "an environment variable name: letters, digits and '_', not starting with a digit",
    "TENANT_ID": "a tenant id: lower-case letters, digits, '_', '.' and '-', at most 63, starting with a "
                 "letter or digit",
}


# KServe InferenceService keys people carry over by habit → what modelplat calls them. Asked only for
# a key the section does not know, so a real modelplat key is never shadowed.
KSERVE_KEYS = {
    "minReplicas": "replicaCount (KServe's minReplicas)",
    "maxReplicas": "autoscaling.maxReplicaCount, with autoscaling.enabled: true",
    "canaryTrafficPercent": "canary.enabled: true with primaryLoad: <100 - canaryTrafficPercent> (modelplat's canary "
                            "is a second InferenceService)",
    "scaleMetric": "an autoscaling target per metric: cpu → autoscaling.targetCPUUtilizationPercentage, memory → "
                   "targetMemoryUtilizationPercentage, concurrency → targetConcurrency, rps → targetRequestRate",
    "scaleTarget": "the value of an autoscaling target, e.g. autoscaling.targetCPUUtilizationPercentage: 70",
    "serviceAccount": "serviceAccountName",
    "containers": "model.format: custom with model.image, model.command, model.args and model.port",
    "predictor": "modelplat's keys directly (model, resources, ...); `modelplat import FILE` converts an "
                 "InferenceService",
    "modelFormat": "model.format",
    "protocolVersion": "model.protocol",
    "storageUri": "model.storageUri",
    "runtimeVersion": "model.runtimeVersion",
    "httpGet": "path and port: a probe is an HTTP GET unless type says tcp, grpc or exec",
    "tcpSocket": "type: tcp with port",
    "grpc": "type: grpc with port",
    "exec": "type: exec with command",
    "readinessProbe": "probes.readiness", "livenessProbe": "probes.liveness", "startupProbe": "probes.startup",
    "requests": "requestCPU, requestMemory and requestGPU",
    "limits": "limitCPU, limitMemory and limitGPU",
    "nvidia.com/gpu": "resources.requestGPU",
    "nodeSelector": "scheduling.nodeSelector (a GPU model: gpu.product or gpu.accelerator)",
    "tolerations": "nothing: GPU pods tolerate the platform's GPU taint by themselves",
    "priorityClassName": "scheduling.priorityClassName",
    "schedulerName": "scheduling.schedulerName",
    "annotations": "annotations (the InferenceService's) or podAnnotations (the pods'), at the top level",
    "metadata": "name, namespace, labels and annotations at the top level",
    "spec": "modelplat's keys directly (model, resources, ...); `modelplat import FILE` converts an InferenceService",
}


def _pattern_help() -> dict[str, str]:
    from . import values

    return {getattr(values, name): text for name, text in _PATTERN_HELP.items()}


def validate(source: Source, model: type[T], data: Any = None) -> tuple[T | None, list]:
    """Validate `data` (default: the source's) against `model`; return (instance, diagnostics)."""
    from pydantic import ValidationError

    data = source.data if data is None else data
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        return None, [source.diagnostic((), "not-a-mapping", f"expected a mapping of keys to values, got {kind}")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        diagnostics = [_diagnostic(source, model, err) for err in exc.errors(include_url=False)]
        return None, sorted(set(diagnostics))


def _diagnostic(source: Source, model: type, err: dict):
    loc = tuple(err["loc"])
    kind = err["type"]
    key = loc[-1] if loc else ""
    where = ".".join(str(p) for p in loc)
    value = err.get("input")
    hint = ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        if str(key) in KSERVE_KEYS:
            return source.diagnostic(loc, "unknown-key", f"unknown key '{key}' (a KServe key)",
                                     f"did you mean {KSERVE_KEYS[str(key)]}?")
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if not close:  # seed files often differ only by case (e.g. requestGpu)
            close = [k for k in allowed if k.lower() == str(key).lower()][:1]
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
        return source.diagnostic(loc, "unknown-key", f"unknown key '{key}'", hint)
    if kind == "missing":
        return source.diagnostic(loc[:-1], "missing-key", f"missing required key '{where}'")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else ""
        return source.diagnostic(loc, "invalid-value", f"{where}: expected one of {expected}, got {value!r}", hint)
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        what = _pattern_help().get(pattern, f"a string matching {pattern}")
        return source.diagnostic(loc, "invalid-value", f"{where}: {value!r} is not {what}")
    if kind.endswith("_type") or kind in {"model_type", "dict_type", "list_type"}:
        got = "null" if value is None else type(value).__name__
        expected = kind.removesuffix("_type").replace("model", "mapping").replace("dict", "mapping")
        expected = {"int": "an integer", "bool": "true or false", "string": "a string", "list": "a list"}.get(
            expected, f"a {expected}"
        )
        hint = "quote numbers that are meant as text; write integers without quotes" if got == "str" else ""
        if got == "str" and key in ("requestGPU", "limitGPU"):
            hint = f"GPU counts are integers: write {value} without quotes (KServe's resources take them as text)"
        return source.diagnostic(loc, "wrong-type", f"{where}: expected {expected}, got {got} {value!r}", hint)
    message = err["msg"]
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than", "too_long", "too_short",
                "string_too_long", "string_too_short", "number_range"}:
        return source.diagnostic(loc, "out-of-range", f"{where}: {message[0].lower() + message[1:]} (got {value!r})")
    return source.diagnostic(loc, "invalid-value", f"{where}: {message}")


def _allowed_keys(model: type, loc: tuple) -> list[str]:
    """Field names of the section at `loc` (walking through lists and optionals)."""
    current: Any = model
    for part in loc:
        current = unwrap(current)
        if isinstance(part, int):
            continue  # list index: the item type is already unwrapped
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    current = unwrap(current)
    return list(getattr(current, "model_fields", {}).keys())


def unwrap(tp: Any) -> Any:
    """Optional[X] → X, list[X] → X, Annotated[X, ...] → X."""
    for _ in range(5):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return tp
    return tp
