"""Turns KServe LLMInferenceServices (serving.kserve.io v1alpha1 or v1alpha2) into modelplat model
values with `model.serving: llm` (kserve_import.import_file dispatches here).

Every field is mapped, or reported with the reason it is not; no file I/O. The mapping is the
reverse of templates/chart/templates/llminferenceservice.yaml.j2 (docs/features/llm-serving.md).
"""

from __future__ import annotations

from typing import Any

from .importer import _filter, _ordered, _plain
from .isvc_import import _container_common, _metadata, _node_selector, _Report

KIND = "LLMInferenceService"
LLM_CONTAINER = "main"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
# Env modelplat sets on the pods of a prefill/decode pair (the NIXL KV hand-over).
KV_ENV = {"VLLM_ADDITIONAL_ARGS", "VLLM_NIXL_SIDE_CHANNEL_HOST", "KSERVE_INFER_ROCE"}
_PARALLELISM = ("tensor", "pipeline", "data", "dataLocal", "expert")
_SPEC_REASONS = {
    "storageInitializer": "modelplat keeps KServe's storage initializer on (it downloads hf:// and s3:// models)",
    "tracing": "tracing is not offered yet",
    "baseRefs": "modelplat renders KServe's own presets only (no LLMInferenceServiceConfig of its own)",
}


def is_llminferenceservice(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == KIND \
        and str(document.get("apiVersion", "")) in ("serving.kserve.io/v1alpha1", "serving.kserve.io/v1alpha2")


def import_llminferenceservice(document: dict, platform=None) -> tuple[dict, list[str]]:
    """(values mapping, unmapped fields) for one LLMInferenceService."""
    from .values import ModelValues

    document = _plain(document)
    report = _Report()
    out: dict[str, Any] = {}
    metadata = dict(document.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    networks = annotations.pop(NETWORKS, None)  # KServe copies it onto the pods: RDMA NICs
    _metadata({**metadata, "annotations": annotations}, out, report)
    spec = document.get("spec") if isinstance(document.get("spec"), dict) else {}
    llm: dict[str, Any] = {}
    model = {"format": "huggingface", "protocol": "openai", "serving": "llm"}
    out["model"] = model
    _model(spec.get("model") if isinstance(spec.get("model"), dict) else {}, metadata.get("name"), model, llm, report)
    _replicas(spec, "spec", out, report)
    if isinstance(spec.get("parallelism"), dict):
        llm["parallelism"] = _parallelism(spec["parallelism"], "spec.parallelism", report)
    _workload(spec, "spec", out, model, report, platform, networks)
    prefill = spec.get("prefill")
    if isinstance(prefill, dict):
        llm["prefill"] = _prefill(prefill, out, report, platform)
    _offloading(spec.get("kvCacheOffloading"), llm, report)
    _router(spec.get("router"), out, llm, report)
    handled = {"model", "replicas", "scaling", "parallelism", "template", "worker", "labels", "annotations",
               "prefill", "kvCacheOffloading", "router"}
    report.rest("spec", spec, _SPEC_REASONS, handled)
    for key in sorted(set(document) - {"apiVersion", "kind", "metadata", "spec", "status"}, key=str):
        report(key, "not part of an LLMInferenceService")
    if llm:
        out["llm"] = llm
    kept, problems = _filter(ModelValues, out, "")
    for problem in problems:
        report("(importer)", problem)
    return _ordered(kept), report.lines


def _model(spec: dict, name: str | None, model: dict, llm: dict, report: _Report) -> None:
    if spec.get("uri"):
        model["storageUri"] = spec["uri"]
    else:
        report("spec.model.uri", "missing: KServe needs the model's URI")
    if spec.get("name") and spec["name"] != name:
        model["servedModelName"] = spec["name"]
    lora = spec.get("lora")
    if isinstance(lora, dict):
        adapters = []
        for i, adapter in enumerate(lora.get("adapters") or []):
            if isinstance(adapter, dict) and adapter.get("name") and adapter.get("uri"):
                adapters.append({"name": adapter["name"], "storageUri": adapter["uri"]})
                for key in sorted(set(adapter) - {"name", "uri"}, key=str):
                    report(f"spec.model.lora.adapters[{i}].{key}", "an adapter is a name and a URI in modelplat")
            else:
                report(f"spec.model.lora.adapters[{i}]", "an adapter needs a name and a uri")
        if adapters:
            llm["lora"] = {"adapters": adapters}
            if lora.get("maxRank"):
                llm["lora"]["maxRank"] = lora["maxRank"]
        report.rest("spec.model.lora", lora, {"maxAdapters": "KServe's default (the number of adapters) is kept",
                                              "maxCpuAdapters": "KServe's default (the number of adapters) is kept"},
                    {"adapters", "maxRank"})
    report.rest("spec.model", spec, {"criticality": "set a priority per caller with llm.objectives instead",
                                     "confidential": "confidential serving is not offered"},
                {"uri", "name", "lora"})


def _replicas(spec: dict, where: str, out: dict, report: _Report) -> None:
    if isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1:
        out["replicaCount"] = spec["replicas"]
    elif spec.get("replicas") == 0:
        report(f"{where}.replicas", "modelplat keeps at least 1 replica")
    scaling = spec.get("scaling")
    if isinstance(scaling, dict):
        if isinstance(scaling.get("minReplicas"), int) and scaling["minReplicas"] >= 1:
            out["replicaCount"] = scaling["minReplicas"]
        if isinstance(scaling.get("maxReplicas"), int):
            out["autoscaling"] = {"enabled": True, "maxReplicaCount": scaling["maxReplicas"]}
        report.rest(f"{where}.scaling", scaling, {
            "wva": "modelplat scales with its own HPA (llm-d's variant autoscaler is not used): set "
                   "autoscaling.targetKVCacheUtilizationPercentage and/or targetQueueDepth"},
            {"minReplicas", "maxReplicas"})


def _parallelism(spec: dict, where: str, report: _Report) -> dict:
    out = {k: spec[k] for k in _PARALLELISM if spec.get(k) is not None}
    report.rest(where, spec, {"dataRPCPort": "KServe's default port (5555) is kept"}, set(_PARALLELISM))
    return out


def _workload(spec: dict, where: str, out: dict, model: dict, report: _Report, platform, networks) -> None:
    """The pod template of the decode (or only) pods: into the model's own keys."""
    _pod_annotations(spec.get("annotations") or {}, f"{where}.annotations", out, report, networks)
    if spec.get("labels"):
        report(f"{where}.labels", "modelplat puts fixed labels on an LLM's pods (KServe also selects them with "
                                  "these): the model's labels stay on the LLMInferenceService")
    template = spec.get("template")
    if isinstance(template, dict):
        _pod(template, f"{where}.template", out, model, report, platform)
    if isinstance(spec.get("worker"), dict):
        report(f"{where}.worker", "modelplat gives the workers of a data-parallel replica the pod spec of its leader "
                                  "(llm.parallelism.data and dataLocal)")


def _pod(pod: dict, where: str, target: dict, model: dict | None, report: _Report, platform) -> None:
    """A role's PodSpec: its `main` container (image, args, env, resources) and where it runs."""
    containers = [c for c in pod.get("containers") or [] if isinstance(c, dict)]
    for i, container in enumerate(containers):
        at = f"{where}.containers[{i}]"
        if container.get("name") != LLM_CONTAINER:
            report(at, f"KServe's presets run vLLM in the container named main; {container.get('name')!r} is not "
                       "offered")
            continue
        if model is not None:
            for key in ("image", "args"):
                if container.get(key):
                    model[key] = container[key]
        resources = dict(container.get("resources") or {})
        rdma: dict[str, Any] = {}
        for section in ("requests", "limits"):
            if isinstance(resources.get(section), dict):
                block = dict(resources[section])
                for name in [n for n in block if "rdma" in str(n)]:
                    rdma[name] = int(str(block.pop(name)))
                resources[section] = block
        if rdma:
            target.setdefault("rdma", {"enabled": True})["resources"] = rdma
        env = [e for e in container.get("env") or [] if not (isinstance(e, dict) and e.get("name") in KV_ENV)]
        for e in container.get("env") or []:
            if isinstance(e, dict) and e.get("name") in KV_ENV:
                report(f"{at}.env.{e['name']}", "modelplat sets it on the pods of a prefill/decode pair "
                                                "(llm.kvTransfer)")
        probes = [k for k in ("readinessProbe", "livenessProbe", "startupProbe") if k in container]
        _container_common({"env": env, "resources": resources}, at, target, report)
        for kind in probes:
            report(f"{at}.{kind}", "KServe's presets probe vLLM's /health; modelplat keeps theirs")
        report.rest(at, container, {"command": "KServe's presets start vLLM with their own script: pass flags in "
                                               "model.args"},
                    {"name", "image", "args", "env", "resources", *probes})
    if model is not None and pod.get("serviceAccountName"):
        target["serviceAccountName"] = pod["serviceAccountName"]
    scheduling = {k: pod[k] for k in ("priorityClassName", "schedulerName") if pod.get(k)}
    if model is not None:
        _node_selector(pod.get("nodeSelector") or {}, target, scheduling, report, platform)
        if scheduling:
            target["scheduling"] = scheduling
        for volume in pod.get("volumes") or []:
            if isinstance(volume, dict) and volume.get("name") == "dshm":
                size = (volume.get("emptyDir") or {}).get("sizeLimit")
                if size:
                    target["sharedMemory"] = {"sizeLimit": size}
    handled = {"containers", "serviceAccountName", "priorityClassName", "schedulerName", "nodeSelector", "volumes",
               "tolerations", "affinity"}
    if pod.get("tolerations"):
        report(f"{where}.tolerations", "modelplat tolerates the platform's GPU taint on GPU pods")
    if pod.get("affinity"):
        report(f"{where}.affinity", "modelplat requires the GPU node group for GPU pods, keeps CPU pods out of it")
    if any(isinstance(v, dict) and v.get("name") != "dshm" for v in pod.get("volumes") or []):
        report(f"{where}.volumes", "volumes other than /dev/shm (dshm) are not offered")
    report.rest(where, pod, {}, handled)


def _pod_annotations(annotations: dict, where: str, out: dict, report: _Report, networks: str | None) -> None:
    from .rules import OWNED_POD_ANNOTATIONS, _owned

    networks = annotations.get(NETWORKS, networks)
    if networks:
        out.setdefault("rdma", {"enabled": True})["networks"] = [
            {"name": n.split("/")[-1], "type": "existing", **({"namespace": n.split("/")[0]} if "/" in n else {})}
            for n in str(networks).split(",") if n.strip()]
    for key, value in annotations.items():
        if key == NETWORKS:
            continue
        why = _owned(str(key), OWNED_POD_ANNOTATIONS)
        if why:
            report(f"{where}.{key}", f"modelplat or KServe owns it ({why})")
        else:
            out.setdefault("podAnnotations", {})[key] = str(value)


def _prefill(spec: dict, out: dict, report: _Report, platform) -> dict:
    prefill: dict[str, Any] = {}
    if isinstance(spec.get("replicas"), int):
        prefill["replicaCount"] = spec["replicas"]
    if isinstance(spec.get("parallelism"), dict):
        prefill["parallelism"] = _parallelism(spec["parallelism"], "spec.prefill.parallelism", report)
    own: dict[str, Any] = {}
    if isinstance(spec.get("template"), dict):
        _pod(spec["template"], "spec.prefill.template", own, None, report, platform)
    if own.get("resources") and own["resources"] != out.get("resources"):
        prefill["resources"] = own["resources"]
    if own.get("env") and own["env"] != out.get("env"):
        report("spec.prefill.template.containers[main].env", "a prefill pod gets the model's env")
    # KServe copies the LLMInferenceService's networks annotation onto every role's pods: the
    # prefill pods differ from the decode pods' RDMA only where their own annotations or devices do.
    role: dict[str, Any] = {}
    _pod_annotations(spec.get("annotations") or {}, "spec.prefill.annotations", role, report, None)
    rdma = dict(out.get("rdma") or {})
    for part in (role.get("rdma") or {}, own.get("rdma") or {}):
        rdma.update(part)
    if rdma and rdma != out.get("rdma"):
        prefill["rdma"] = rdma
    report.rest("spec.prefill", spec, {"scaling": "the prefill pods keep llm.prefill.replicaCount",
                                       "worker": "a multi-node prefill role is not offered",
                                       "labels": "modelplat puts fixed labels on an LLM's pods"},
                {"replicas", "parallelism", "template", "annotations"})
    return prefill


def _offloading(spec: Any, llm: dict, report: _Report) -> None:
    if not isinstance(spec, dict):
        return
    offload: dict[str, Any] = {"cpu": spec.get("cpu")}
    for i, tier in enumerate(spec.get("secondary") or []):
        size = (((tier or {}).get("fileSystem") or {}).get("emptyDir") or {}).get("size")
        if i == 0 and size:
            offload["disk"] = size
        else:
            report(f"spec.kvCacheOffloading.secondary[{i}]", "one node-local disk tier (emptyDir) is offered")
    llm["kvCacheOffloading"] = offload
    report.rest("spec.kvCacheOffloading", spec, {"evictionPolicy": "KServe's default (lru) is kept"},
                {"cpu", "secondary"})


def _router(router: Any, out: dict, llm: dict, report: _Report) -> None:
    if not isinstance(router, dict) or "route" not in router:
        report("spec.router", "modelplat always routes an LLMInferenceService through the platform's Gateway "
                              "(an HTTPRoute and the endpoint picker)")
    out["exposeModel"] = {"enabled": True}
    if not isinstance(router, dict):
        return
    for key, reason in (("gateway", "the platform file's gatewayApi.gateway is used"),
                        ("route", "KServe's managed HTTPRoute is used")):
        if isinstance(router.get(key), dict) and router[key]:
            report(f"spec.router.{key}", reason)
    scheduler = router.get("scheduler")
    if not isinstance(scheduler, dict):
        report("spec.router.scheduler", "modelplat always adds KServe's endpoint picker (an InferencePool)")
    else:
        if isinstance(scheduler.get("replicas"), int):
            llm["schedulerReplicas"] = scheduler["replicas"]
        report.rest("spec.router.scheduler", scheduler, {
            "pool": "KServe's own InferencePool is used", "config": "KServe's scheduler preset is used",
            "template": "KServe's scheduler preset is used"}, {"replicas"})
    report.rest("spec.router", router, {"ingress": "routing is through the Gateway API"},
                {"gateway", "route", "scheduler"})
