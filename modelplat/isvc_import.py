"""Turns KServe v1beta1 InferenceServices into modelplat model values mappings (kserve_import.import_file
is `modelplat import`: InferenceServices here, LLMInferenceServices in llm_import.py, seed
HelmReleases through importer.py).

The counterpart of importer.py (seed HelmReleases) for teams whose InferenceServices are already in
Git. Every field is mapped, or reported with the reason it is not; it does no file I/O.
docs/coming-from-kserve.md is the same mapping as a table.
"""

from __future__ import annotations

from typing import Any

from .importer import _FORMAT_ALIASES, _env, _filter, _ordered, _plain, _resources

API_GROUP = "serving.kserve.io/"

# Fields the API server or KServe's controller write: cluster state, not configuration.
_SERVER_METADATA = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                    "selfLink", "finalizers", "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds"}

# The old one-key-per-framework predictor shape (spec.predictor.sklearn: {...}) → model.format.
_FRAMEWORKS = {"sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm", "tensorflow": "tensorflow",
               "pytorch": "pytorch", "onnx": "onnx", "triton": "triton", "huggingface": "huggingface"}

# InferenceService annotations modelplat expresses otherwise, or decides itself.
_HANDLED_ANNOTATIONS = {
    "serving.kserve.io/deploymentMode", "serving.kserve.io/autoscalerClass", "serving.kserve.io/metric",
    "serving.kserve.io/targetUtilizationPercentage", "kubectl.kubernetes.io/last-applied-configuration",
}

# Node labels that name a GPU, whatever the platform's own product label is.
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GPU_PRODUCT_LABELS = ("nvidia.com/gpu.product",)

# Pod fields modelplat sets itself or does not offer, with the reason given to the user.
_POD_FIELDS = {
    "tolerations": "modelplat tolerates the platform's GPU taint for GPU pods and no other taint",
    "affinity": "modelplat places pods by GPU (the platform's node group, gpu.product, gpu.accelerator); "
                "plain node label matches go in scheduling.nodeSelector",
    "imagePullSecrets": "modelplat does not set pull secrets per model; attach them to the service account "
                        "(serviceAccountName)",
    "securityContext": "the platform's admission policy sets pod security; modelplat does not override it",
    "volumes": "modelplat mounts only the model (storageUri) and /dev/shm (sharedMemory)",
    "terminationGracePeriodSeconds": "modelplat keeps Kubernetes' default",
    "hostNetwork": "not allowed for model pods", "hostIPC": "not allowed for model pods",
    "hostPID": "not allowed for model pods",
    "initContainers": "KServe's storage initializer is the only init container",
    "dnsPolicy": "modelplat keeps the cluster's DNS", "dnsConfig": "modelplat keeps the cluster's DNS",
    "runtimeClassName": "not offered per model", "topologySpreadConstraints": "not offered per model",
}
# Fields of KServe's component extension that have no RawDeployment meaning or modelplat equivalent.
_COMPONENT_FIELDS = {
    "timeout": "a Knative request timeout; RawDeployment has none (set timeouts in the model server)",
    "containerConcurrency": "a Knative hard per-pod limit; RawDeployment has none (scale on it with "
                            "autoscaling.targetConcurrency)",
    "batcher": "KServe's agent batcher is not offered; batch in the model server (e.g. Triton's dynamic batching)",
    "deploymentStrategy": "modelplat keeps KServe's rolling update",
    "scaleMetricType": "modelplat picks the target type per metric (Utilization for cpu and memory, "
                       "AverageValue per pod otherwise)",
    "workerSpec": "multi-node serving is not offered by modelplat yet",
    "storageUris": "one model per InferenceService: model.storageUri",
}
_CONTAINER_FIELDS = {
    "volumeMounts": "modelplat mounts only the model (storageUri) and /dev/shm (sharedMemory)",
    "securityContext": "the platform's admission policy sets container security",
    "imagePullPolicy": "modelplat leaves the pull policy to Kubernetes",
    "lifecycle": "not offered per model", "workingDir": "not offered per model",
    "envFrom": "only env with value or secretKeyRef is supported; list the variables",
    "stdin": "not offered", "tty": "not offered", "terminationMessagePath": "not offered",
    "terminationMessagePolicy": "not offered",
}


def is_inferenceservice(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == "InferenceService" \
        and str(document.get("apiVersion", "")).startswith(API_GROUP)


class _Report:
    """What could not be carried over, as 'dotted.path: reason' lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, path: str, reason: str) -> None:
        self.lines.append(f"{path}: {reason}")

    def rest(self, where: str, block: dict, known: dict[str, str], handled: set[str]) -> None:
        for key in sorted(set(block) - handled, key=str):
            self(f"{where}.{key}", known.get(key, "no modelplat equivalent"))


def import_inferenceservice(document: dict, platform=None) -> tuple[dict, list[str]]:
    """(values mapping, unmapped fields) for one InferenceService (plain data). `platform`
    (optional) names the platform's GPU labels, so node selectors on them become gpu.* keys."""
    from .values import ModelValues

    document = _plain(document)
    report = _Report()
    out: dict[str, Any] = {}
    _metadata(document.get("metadata") or {}, out, report)
    spec = document.get("spec") or {}
    predictor = spec.get("predictor") if isinstance(spec.get("predictor"), dict) else {}
    if not predictor:
        report("spec.predictor", "missing: an InferenceService without a predictor serves nothing")
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    _predictor(predictor, annotations, out, report, platform)
    if isinstance(spec.get("transformer"), dict):
        _transformer(spec["transformer"], out, report)
    for key in sorted(set(spec) - {"predictor", "transformer"}, key=str):
        reason = ("KServe's explainer component is not offered by modelplat" if key == "explainer"
                  else "no modelplat equivalent")
        report(f"spec.{key}", reason)
    for key in sorted(set(document) - {"apiVersion", "kind", "metadata", "spec", "status"}, key=str):
        report(key, "not part of an InferenceService")
    kept, problems = _filter(ModelValues, out, "")
    for problem in problems:  # a value this importer placed where the schema has no key: a bug here
        report("(importer)", problem)
    return _ordered(kept), report.lines


def _metadata(metadata: dict, out: dict, report: _Report) -> None:
    if metadata.get("name"):
        out["name"] = metadata["name"]
    if metadata.get("namespace"):
        out["namespace"] = metadata["namespace"]
    _labels(metadata.get("labels"), "metadata.labels", out, report)
    annotations = metadata.get("annotations") or {}
    mode = annotations.get("serving.kserve.io/deploymentMode")
    if mode and mode != "RawDeployment":
        report("metadata.annotations.serving.kserve.io/deploymentMode",
               f"modelplat serves every model in RawDeployment mode (no Knative), not {mode}")
    autoscaler = annotations.get("serving.kserve.io/autoscalerClass")
    if autoscaler not in (None, "hpa", "external", "none"):
        report("metadata.annotations.serving.kserve.io/autoscalerClass",
               f"{autoscaler} is not offered: modelplat scales with a HorizontalPodAutoscaler (autoscaling)")
    from .rules import OWNED_ANNOTATIONS, _owned

    kept = {}
    for key, value in annotations.items():
        if key in _HANDLED_ANNOTATIONS:
            continue
        why = _owned(key, OWNED_ANNOTATIONS)
        if why:
            report(f"metadata.annotations.{key}", f"modelplat or KServe owns it ({why})")
        else:
            kept[key] = value if isinstance(value, str) else str(value)
    if kept:
        out["annotations"] = kept
    for key in sorted(set(metadata) - {"name", "namespace", "labels", "annotations"} - _SERVER_METADATA, key=str):
        report(f"metadata.{key}", "no modelplat equivalent")


def _labels(labels: Any, where: str, out: dict, report: _Report) -> None:
    from .rules import OWNED_LABELS, _owned

    for key, value in (labels or {}).items():
        why = _owned(str(key), OWNED_LABELS)
        if why:
            report(f"{where}.{key}", f"modelplat or KServe owns it ({why})")
        elif key in out.get("labels", {}) and out["labels"][key] != value:
            report(f"{where}.{key}", f"labels.{key} is already {out['labels'][key]!r}")
        else:
            out.setdefault("labels", {})[key] = value


def _predictor(predictor: dict, annotations: dict, out: dict, report: _Report, platform) -> None:
    tolerations = [t for t in predictor.get("tolerations") or []
                   if not (platform is not None and isinstance(t, dict) and t.get("key") == platform.gpu.taintKey)]
    if tolerations:  # the platform's GPU taint is tolerated by every GPU pod modelplat renders
        report("spec.predictor.tolerations", _POD_FIELDS["tolerations"])
    handled = {"model", "containers", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "tolerations",
               "canaryTrafficPercent", "logger", "serviceAccountName", "nodeSelector", "priorityClassName",
               "schedulerName", "labels", "annotations", *_FRAMEWORKS}
    _replicas(predictor, out, report)
    if "canaryTrafficPercent" in predictor:
        percent = predictor["canaryTrafficPercent"]
        report("spec.predictor.canaryTrafficPercent",
               f"KServe's rollout sends {percent}% to this spec and keeps the previous revision for the rest; "
               "modelplat's canary is a second InferenceService: keep the previous model in model.storageUri, "
               f"put this one in canary.storageUri, and set canary.enabled: true and primaryLoad: "
               f"{100 - percent if isinstance(percent, int) else '100 - the percent'}")
    logger = predictor.get("logger")
    if isinstance(logger, dict):
        out["logger"] = {k: v for k, v in logger.items() if k in ("mode", "url")}
        for key in sorted(set(logger) - {"mode", "url"}, key=str):
            report(f"spec.predictor.logger.{key}", "modelplat's logger takes mode and url")
    if predictor.get("serviceAccountName"):
        out["serviceAccountName"] = predictor["serviceAccountName"]
    scheduling = {k: predictor[k] for k in ("priorityClassName", "schedulerName") if predictor.get(k)}
    _node_selector(predictor.get("nodeSelector") or {}, out, scheduling, report, platform)
    if scheduling:
        out["scheduling"] = scheduling
    _labels(predictor.get("labels"), "spec.predictor.labels", out, report)
    if predictor.get("annotations"):
        from .rules import OWNED_POD_ANNOTATIONS, _owned

        for key, value in predictor["annotations"].items():
            why = _owned(str(key), OWNED_POD_ANNOTATIONS)
            if why:
                report(f"spec.predictor.annotations.{key}", f"modelplat or KServe owns it ({why})")
            else:
                out.setdefault("podAnnotations", {})[key] = str(value)

    frameworks = [k for k in _FRAMEWORKS if isinstance(predictor.get(k), dict)]
    if isinstance(predictor.get("model"), dict):
        _model(predictor["model"], "spec.predictor.model", None, out, report)
        for key in frameworks:
            report(f"spec.predictor.{key}", "predictor.model is already set; one model per InferenceService")
    elif frameworks:
        _model(predictor[frameworks[0]], f"spec.predictor.{frameworks[0]}", _FRAMEWORKS[frameworks[0]], out, report)
        for key in frameworks[1:]:
            report(f"spec.predictor.{key}", f"spec.predictor.{frameworks[0]} is already set")
    elif isinstance(predictor.get("containers"), list) and predictor["containers"]:
        _custom(predictor["containers"], out, report)
    else:
        report("spec.predictor", "no model, framework or containers: nothing to serve")
    if predictor.get("containers") and (predictor.get("model") or frameworks):
        report("spec.predictor.containers", "sidecar containers beside a model are not offered")
    report.rest("spec.predictor", predictor, {**_POD_FIELDS, **_COMPONENT_FIELDS}, handled)
    _scaling(predictor, annotations, out, report)


def _replicas(predictor: dict, out: dict, report: _Report) -> None:
    minimum = predictor.get("minReplicas")
    if isinstance(minimum, int) and minimum >= 1:
        out["replicaCount"] = minimum
    elif minimum == 0:
        report("spec.predictor.minReplicas", "scale to zero needs Knative; modelplat keeps at least 1 replica")
    maximum = predictor.get("maxReplicas")
    if isinstance(maximum, int) and maximum > max(out.get("replicaCount", 1), 1):
        out["autoscaling"] = {"enabled": True, "maxReplicaCount": maximum}
    elif maximum == 0:
        report("spec.predictor.maxReplicas", "0 means no maximum in KServe; modelplat needs one: set "
                                             "autoscaling.maxReplicaCount")


def _scaling(predictor: dict, annotations: dict, out: dict, report: _Report) -> None:
    # The annotations are the pre-0.9 spelling of scaleMetric and scaleTarget.
    metric = predictor.get("scaleMetric", annotations.get("serving.kserve.io/metric"))
    target = predictor.get("scaleTarget", annotations.get("serving.kserve.io/targetUtilizationPercentage"))
    scaling = out.get("autoscaling")
    if scaling is None:
        if metric is not None or target is not None:
            report("spec.predictor.scaleMetric", "no effect without maxReplicas above minReplicas (the model "
                                                 "does not scale)")
        return
    if isinstance(target, str) and target.isdigit():
        target = int(target)
    metric = metric or "cpu"
    key = {"cpu": "targetCPUUtilizationPercentage", "memory": "targetMemoryUtilizationPercentage",
           "concurrency": "targetConcurrency", "rps": "targetRequestRate"}.get(metric)
    if key is None:
        report("spec.predictor.scaleMetric", f"{metric} is not a KServe metric modelplat knows "
                                             "(cpu, memory, concurrency, rps)")
        return
    if target is None:  # KServe's own default target in RawDeployment, written out
        target = 80
    scaling[key] = target


def _node_selector(selector: dict, out: dict, scheduling: dict, report: _Report, platform) -> None:
    product_labels = set(GPU_PRODUCT_LABELS)
    group_label = None
    if platform is not None:
        product_labels.add(platform.gpu.productLabel)
        group_label = platform.gpu.nodeGroupLabel
    for key, value in selector.items():
        if key == GKE_ACCELERATOR:
            out.setdefault("gpu", {})["accelerator"] = value
        elif key in product_labels:
            if platform is not None and key != platform.gpu.productLabel:
                report(f"spec.predictor.nodeSelector.{key}",
                       f"gpu.product selects on the platform's product label {platform.gpu.productLabel}, not {key}; "
                       f"the value {value!r} was kept as gpu.product: check that it names the same GPUs")
            out.setdefault("gpu", {})["product"] = value
        elif key == group_label:
            report(f"spec.predictor.nodeSelector.{key}", "modelplat chooses the node group: GPU pods go to the "
                                                         "platform's GPU node group, others stay out of it")
        else:
            scheduling.setdefault("nodeSelector", {})[key] = value


def _model(model: dict, where: str, framework: str | None, out: dict, report: _Report) -> None:
    spec: dict[str, Any] = {}
    handled = {"modelFormat", "storageUri", "runtime", "runtimeVersion", "protocolVersion", "args", "env",
               "resources", "readinessProbe", "livenessProbe", "startupProbe", "name", "image"}
    fmt = model.get("modelFormat") if isinstance(model.get("modelFormat"), dict) else {}
    name = fmt.get("name", framework)
    if name is None:
        report(f"{where}.modelFormat", "missing: modelplat needs the model's format")
    else:
        spec["format"] = _FORMAT_ALIASES.get(str(name).lower(), str(name).lower())
    if fmt.get("version"):
        report(f"{where}.modelFormat.version", "KServe's runtime choice by format version is not offered: pin the "
                                               "runtime with model.runtime (and model.runtimeVersion)")
    for key, target in (("storageUri", "storageUri"), ("runtime", "runtime"), ("runtimeVersion", "runtimeVersion"),
                        ("protocolVersion", "protocol")):
        if model.get(key) is not None:
            spec[target] = model[key]
    args = list(model.get("args") or [])
    served = _served_name(args)
    if served is not None:
        spec["servedModelName"], args = served
    if args:
        spec["args"] = args
    if model.get("image"):
        report(f"{where}.image", "KServe's runtime brings its image; pin its version with model.runtimeVersion, "
                                 "or serve your own image with format custom (predictor.containers)")
    out["model"] = spec
    _container_common(model, where, out, report)
    report.rest(where, model, _CONTAINER_FIELDS | {"ports": "a runtime's ports are the runtime's",
                                                   "command": "a runtime's command is the runtime's",
                                                   "storage": "KServe's storage spec is not offered: use storageUri"},
                handled)


def _served_name(args: list) -> tuple[str, list] | None:
    """--model_name=X among a runtime's args: that is model.servedModelName (the variants keep it)."""
    for index, arg in enumerate(args):
        if isinstance(arg, str) and arg.startswith("--model_name="):
            return arg.split("=", 1)[1], args[:index] + args[index + 1:]
        if arg == "--model_name" and index + 1 < len(args):
            return str(args[index + 1]), args[:index] + args[index + 2:]
    return None


# The fields of a container modelplat takes over (the rest are reported with _CONTAINER_FIELDS).
_OWN_CONTAINER = {"name", "image", "command", "args", "ports", "env", "resources", "readinessProbe",
                  "livenessProbe", "startupProbe"}


def _own_container(containers: list, where: str, spec: dict, values: dict, report: _Report,
                   gpus: bool = True) -> None:
    """A container of the InferenceService's own (a custom predictor, a transformer) into `spec`
    (model or transformer) and `values`' env, resources and probes; one container only."""
    first = f"{where}[0]"
    container = containers[0] if isinstance(containers[0], dict) else {}
    if container.get("name") not in (None, "kserve-container"):
        report(f"{first}.name", f"KServe serves the container named kserve-container; {container['name']!r} is "
                                "renamed")
    for key in ("image", "command", "args"):
        if container.get(key):
            spec[key] = container[key]
    port = _port(container.get("ports"), f"{first}.ports", report)
    if port is not None:
        spec["port"] = port
    env = []
    for item in container.get("env") or []:
        if spec.get("format") == "custom" and isinstance(item, dict) and item.get("name") == "STORAGE_URI" \
                and isinstance(item.get("value"), str):
            spec["storageUri"] = item["value"]  # modelplat writes STORAGE_URI from model.storageUri
        else:
            env.append(item)
    _container_common({**container, "env": env}, first, values, report, gpus)
    report.rest(first, container, _CONTAINER_FIELDS, _OWN_CONTAINER)
    for index in range(1, len(containers)):
        report(f"{where}[{index}]", "sidecar containers are not offered: one container")


def _custom(containers: list, out: dict, report: _Report) -> None:
    out["model"] = {"format": "custom"}
    _own_container(containers, "spec.predictor.containers", out["model"], out, report)


def _port(ports: Any, where: str, report: _Report) -> int | None:
    if not ports:
        return None
    if not isinstance(ports, list) or not isinstance(ports[0], dict):
        report(where, "expected a list of container ports")
        return None
    first = ports[0]
    for key in sorted(set(first) - {"containerPort", "protocol", "name"}, key=str):
        report(f"{where}[0].{key}", "modelplat declares the serving port only")
    if first.get("name") not in (None, "http1", "h2c", "http"):
        report(f"{where}[0].name", "the port name is KServe's (http1 or h2c)")
    for index in range(1, len(ports)):
        report(f"{where}[{index}]", "one serving port per container (model.port)")
    return first.get("containerPort")


def _container_common(container: dict, where: str, target: dict, report: _Report, gpus: bool = True) -> None:
    """env, resources and probes into `target` (the values, or their transformer section): the
    same shape on the predictor and the transformer, which gets no GPUs (`gpus`)."""
    if container.get("env"):
        target["env"] = [_env(item, f"{where}.env[{i}]", report.lines) for i, item in enumerate(container["env"])]
    if isinstance(container.get("resources"), dict):
        converted = _resources(container["resources"], f"{where}.resources", report.lines)
        if not gpus:
            for key in ("requestGPU", "limitGPU"):
                if converted.pop(key, None):
                    report(f"{where}.resources", "a transformer gets no GPU in modelplat")
        target["resources"] = converted
    probes = {}
    for kind, key in (("readinessProbe", "readiness"), ("livenessProbe", "liveness"), ("startupProbe", "startup")):
        if isinstance(container.get(kind), dict):
            probe = _probe(container[kind], f"{where}.{kind}", report)
            if probe is not None:
                probes[key] = probe
    if probes:
        target["probes"] = probes


def _probe(probe: dict, where: str, report: _Report) -> dict | None:
    out: dict[str, Any] = {}
    handlers = [k for k in ("httpGet", "tcpSocket", "grpc", "exec") if isinstance(probe.get(k), dict)]
    if not handlers:
        report(where, "no httpGet, tcpSocket, grpc or exec handler")
        return None
    handler, body = handlers[0], probe[handlers[0]]
    if handler == "httpGet":
        out["path"] = body.get("path", "/")
        for key in sorted(set(body) - {"path", "port"}, key=str):
            report(f"{where}.httpGet.{key}", "modelplat's HTTP probes are plain GETs on the pod")
    else:
        out["type"] = {"tcpSocket": "tcp", "grpc": "grpc", "exec": "exec"}[handler]
    if handler == "exec":
        out["command"] = body.get("command") or []
    if handler == "grpc" and body.get("service"):
        out["service"] = body["service"]
    if "port" in body:
        if isinstance(body["port"], int):
            out["port"] = body["port"]
        else:
            report(f"{where}.{handler}.port", f"named port {body['port']!r}: modelplat probes the container's port "
                                              "by number (the container's port is used)")
    for key in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"):
        if key in probe:
            out[key] = probe[key]
    for key in sorted(set(probe) - set(out) - {"httpGet", "tcpSocket", "grpc", "exec"}, key=str):
        if key == "successThreshold" and probe[key] == 1:
            continue  # Kubernetes' default, which modelplat keeps
        report(f"{where}.{key}", "no modelplat equivalent" if key != "successThreshold" else
               "Kubernetes' default (1) is kept")
    return out


def _transformer(transformer: dict, out: dict, report: _Report) -> None:
    where = "spec.transformer"
    containers = transformer.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        report(where, "only a transformer given as containers (a custom image) is imported")
        return
    target = out.setdefault("transformer", {})
    _own_container(containers, f"{where}.containers", target, target, report, gpus=False)
    if isinstance(transformer.get("minReplicas"), int) and transformer["minReplicas"] >= 1:
        target["replicaCount"] = transformer["minReplicas"]
    if transformer.get("maxReplicas") not in (None, 0, transformer.get("minReplicas")):
        report(f"{where}.maxReplicas", "the transformer runs transformer.replicaCount replicas; autoscaling applies "
                                       "to the predictor")
    report.rest(where, transformer, {**_POD_FIELDS, **_COMPONENT_FIELDS},
                {"containers", "minReplicas", "maxReplicas"})
