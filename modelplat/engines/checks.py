"""The engines' verdicts on each model: what Flux, KServe and Istio did with the rendered output,
compared with what the model's values asked for.

Expectations come from the model's validated values (the HelmRelease's spec.values), never from
the templates; observations come from the engines' own objects and output. Each finding names
the model, the engine, the resource and the field. Nothing here starts or changes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..resolve import llm_owns_route
from .cluster_state import VARIANT_SUFFIX, ModelState, Variant, selects
from .gitops import Release
from .istio import ROUTER, ProxyConfig, http_filter_names, http_filters, inline_routes
from .kube import condition

KSERVE_CONTAINER = "kserve-container"
ENGINES = ("flux", "kserve", "istio")


@dataclass(frozen=True)
class Finding:
    model: str  # "<namespace>/<name>"
    engine: str  # flux, kserve or istio
    resource: str  # e.g. "Deployment iris-canary-predictor"
    field: str  # where in that resource, e.g. "spec.template.spec.tolerations"
    message: str

    def __str__(self) -> str:
        return f"{self.model}: {self.engine}: {self.resource} {self.field}: {self.message}"


def condition_status(obj: dict) -> str | None:
    """The status of an object's Ready condition ("True", "False", "Unknown"; None without one)."""
    return condition(obj).get("status")


# --- Flux -------------------------------------------------------------------------------------------

def flux_findings(model: str, release: Release | None, state: ModelState, chart_objects: set[tuple[str, str]]) -> list[Finding]:
    """The HelmRelease is Ready and Helm's release record holds exactly the chart's objects, each
    of them present in the cluster."""
    where = f"HelmRelease {model}"
    if release is None:
        return [Finding(model, "flux", where, "", "no HelmRelease in the cluster")]
    out = []
    if release.ready != "True":
        out.append(Finding(model, "flux", where, "status.conditions[Ready]",
                           f"{release.reason}: {release.message}"))
        return out
    recorded = {(kind, name) for kind, _, name in state.release_objects}
    for kind, name in sorted(chart_objects - recorded):
        out.append(Finding(model, "flux", where, "release manifest", f"the chart's {kind} {name} was not installed"))
    for kind, name in sorted(recorded - chart_objects):
        out.append(Finding(model, "flux", where, "release manifest", f"{kind} {name} installed but not in the chart"))
    return out


# --- KServe -----------------------------------------------------------------------------------------

def _variants_asked(values: dict) -> list[str]:
    asked = ["primary"]
    if (values.get("canary") or {}).get("enabled"):
        asked.append("canary")
    if (values.get("mirror") or {}).get("enabled"):
        asked.append("shadow")
    return asked


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_FACTORS = {"": 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
            "Gi": 2**30, "Ti": 2**40}


def quantity(value) -> float | None:
    """A Kubernetes quantity as a number (so "1", 1 and "1000m" compare equal)."""
    if value is None:
        return None
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _FACTORS:
        return None
    return float(match.group(1)) * _FACTORS[match.group(2)]


def kserve_findings(model: str, values: dict, state: ModelState, events: dict[str, str] | None = None) -> list[Finding]:
    """Each InferenceService the values ask for exists, is Ready as far as the controller can
    make it, and its Deployment and Pods carry what the values asked."""
    out: list[Finding] = []
    for variant in _variants_asked(values):
        v = state.variants.get(variant)
        suffix = {"primary": "", "canary": "-canary", "shadow": "-shadow"}[variant]
        isvc_name = f"InferenceService {state.name}{suffix}"
        if v is None:
            out.append(Finding(model, "kserve", isvc_name, "", "not in the cluster"))
            continue
        for cond in (v.isvc.get("status") or {}).get("conditions") or []:
            # Readiness conditions only: "Stopped" False is the healthy state.
            if cond.get("type", "").endswith("Ready") and cond.get("status") != "True":
                detail = " ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
                out.append(Finding(model, "kserve", isvc_name, f"status.conditions[{cond.get('type')}]",
                                   f"{cond.get('status')}" + (f": {detail}" if detail else "")))
        found = _deployment_findings(model, values, variant, v) + _transformer_findings(model, values, variant, v)
        why = (events or {}).get(v.isvc["metadata"]["name"])
        if found and why:  # KServe's own words, when it gave up on this InferenceService
            found.append(Finding(model, "kserve", isvc_name, "events", why))
        out += found
    out += _served_name_findings(model, state)
    for variant in set(state.variants) - set(_variants_asked(values)):
        out.append(Finding(model, "kserve", f"InferenceService {state.variants[variant].isvc['metadata']['name']}", "",
                           f"a {variant} exists but the values do not ask for one"))
    return out


def served_name(deployment: dict) -> str | None:
    """The model name the server in a KServe Deployment answers to, read the way the runtimes read
    it (modelplat.resolve.SERVED_NAME_BY): MLSERVER_MODEL_NAME for MLServer, else the last
    --model_name argument (the runtime's own, with KServe's {{.Name}} filled in, then the
    InferenceService's); None when the name comes from the model's files (TorchServe, Triton)."""
    return container_model_name(_container(deployment["spec"]["template"]["spec"], KSERVE_CONTAINER) or {})


def container_model_name(container: dict) -> str | None:
    """The model name a container's args and env give its server (see served_name); also reads an
    InferenceService's predictor.model, which has the same fields."""
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    if "MLSERVER_MODEL_NAME" in env:
        return env["MLSERVER_MODEL_NAME"]
    names = [str(a).split("=", 1)[1] for a in container.get("args") or [] if str(a).startswith("--model_name=")]
    return names[-1] if names else None


def _served_name_findings(model: str, state: ModelState) -> list[Finding]:
    """A canary or shadow answers to the primary's model name: clients send one name, whichever
    variant the split or the mirror picks."""
    primary = state.variants.get("primary")
    if primary is None or len(primary.deployments) != 1:
        return []
    want = served_name(primary.deployments[0])
    out = []
    for variant in ("canary", "shadow"):
        v = state.variants.get(variant)
        if v is None or len(v.deployments) != 1:
            continue
        have = served_name(v.deployments[0])
        if have != want:
            out.append(Finding(model, "kserve", f"Deployment {v.deployments[0]['metadata']['name']}",
                               f"spec.template.spec.containers[{KSERVE_CONTAINER}] model name",
                               f"serves {have!r}, the primary serves {want!r}: clients' requests to the {variant} fail"))
    return out


def _container(spec: dict, name: str) -> dict | None:
    return next((c for c in spec.get("containers") or [] if c.get("name") == name), None)


def _deployment_findings(model: str, values: dict, variant: str, v: Variant) -> list[Finding]:
    isvc = v.isvc["metadata"]["name"]
    expected = f"{isvc}-predictor"
    names = [d["metadata"]["name"] for d in v.deployments]
    if names != [expected]:
        return [Finding(model, "kserve", f"InferenceService {isvc}", "Deployments",
                        f"KServe made {names or 'no Deployment'}, modelplat's HPA and docs expect [{expected!r}]")]
    deployment = v.deployments[0]
    where = f"Deployment {expected}"
    template = deployment["spec"]["template"]
    spec = template["spec"]
    out: list[Finding] = []

    def bad(field: str, message: str) -> None:
        out.append(Finding(model, "kserve", where, field, message))

    container = _container(spec, KSERVE_CONTAINER)
    if container is None:
        bad("spec.template.spec.containers", f"no container named {KSERVE_CONTAINER!r}: "
            f"{[c.get('name') for c in spec.get('containers') or []]}")
        return out
    cpath = f"spec.template.spec.containers[{KSERVE_CONTAINER}]"
    _template_findings(bad, values, template, container, cpath, values.get("resources") or {}, values.get("rdma") or {})
    model_values = values.get("model") or {}
    if model_values.get("image") and variant == "primary" and container.get("image") != model_values["image"]:
        bad(f"{cpath}.image", f"{container.get('image')!r}, the values ask for {model_values['image']!r}")
    args = container.get("args") or []
    wanted = [str(a) for a in model_values.get("args") or []]
    if wanted and not _in_order(wanted, args):
        bad(f"{cpath}.args", f"{args}, the values' args {wanted} are not all there in order")
    replicas = values.get("replicaCount", 1)
    if deployment["spec"].get("replicas") != replicas:
        bad("spec.replicas", f"{deployment['spec'].get('replicas')}, the values ask for {replicas}")
    out += _pod_findings(model, values, variant, v, expected)
    return out


def _template_findings(bad, values: dict, template: dict, container: dict, cpath: str, res: dict,
                       rdma: dict, granted: frozenset = frozenset()) -> None:
    """A serving pod template as the values ask it (resources `res`, NICs `rdma`: a prefill pod's
    may differ from the model's): resources and GPUs, GPU placement, /dev/shm, RDMA, scheduling."""
    platform = values.get("platform") or {}
    spec = template["spec"]
    got = container.get("resources") or {}
    for section, key, value_key in (("requests", "cpu", "requestCPU"), ("requests", "memory", "requestMemory"),
                                    ("limits", "cpu", "limitCPU"), ("limits", "memory", "limitMemory")):
        # An unset limit is the request (docs/values.md), never KServe's configured default.
        want = res.get(value_key) or (res.get(value_key.replace("limit", "request")) if section == "limits" else None)
        have = (got.get(section) or {}).get(key)
        if want is not None and quantity(want) != quantity(have):
            bad(f"{cpath}.resources.{section}.{key}", f"{have!r}, the values ask for {want!r}")
    gpus = max(int(res.get("requestGPU") or 0), int(res.get("limitGPU") or 0))
    gpu_name = platform.get("gpuResourceName", "nvidia.com/gpu")
    for section in ("requests", "limits"):
        have = (got.get(section) or {}).get(gpu_name)
        if quantity(have or 0) != gpus:
            bad(f"{cpath}.resources.{section}.{gpu_name}", f"{have!r}, the values ask for {gpus}")

    taint = platform.get("gpuTaintKey", "nvidia.com/gpu")
    tolerated = [t for t in spec.get("tolerations") or [] if t.get("key") == taint]
    if gpus and not any(t.get("operator") == "Exists" for t in tolerated):
        bad("spec.template.spec.tolerations", f"a GPU pod does not tolerate the {taint} taint")
    if not gpus and tolerated:
        bad("spec.template.spec.tolerations", f"a CPU pod tolerates the GPU taint {taint}")
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    group_key, group = platform.get("gpuNodeGroupLabel"), platform.get("gpuNodeGroup")
    operator = "In" if gpus else "NotIn"
    if group_key and not any(e.get("key") == group_key and e.get("operator") == operator and group in (e.get("values") or [])
                             for term in terms for e in term.get("matchExpressions") or []):
        bad("spec.template.spec.affinity", f"no required node affinity {group_key} {operator} {group}")
    product = (values.get("gpu") or {}).get("product")
    if gpus and product:
        label = platform.get("gpuProductLabel", "nvidia.com/gpu.product")
        if (spec.get("nodeSelector") or {}).get(label) != product:
            bad("spec.template.spec.nodeSelector", f"{label} is not {product!r}")

    shm = values.get("sharedMemory") or {}
    if shm.get("enabled"):
        volume = next((vol for vol in spec.get("volumes") or [] if (vol.get("emptyDir") or {}).get("medium") == "Memory"), None)
        mounted = any(m.get("mountPath") == "/dev/shm" for m in container.get("volumeMounts") or [])
        if volume is None or not mounted:
            bad("spec.template.spec.volumes", "no memory-backed /dev/shm mounted in the model container")
        elif quantity(volume["emptyDir"].get("sizeLimit")) != quantity(shm.get("sizeLimit")):
            bad("spec.template.spec.volumes", f"/dev/shm sizeLimit {volume['emptyDir'].get('sizeLimit')!r}, "
                f"the values ask for {shm.get('sizeLimit')!r}")

    annotations = template["metadata"].get("annotations") or {}
    caps = ((container.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
    if rdma.get("enabled"):
        if not annotations.get("k8s.v1.cni.cncf.io/networks"):
            bad("spec.template.metadata.annotations", "no Multus networks annotation on an RDMA model's pods")
        for resource, count in (rdma.get("resources") or {}).items():
            for section in ("requests", "limits"):
                if quantity((got.get(section) or {}).get(resource)) != quantity(count):
                    bad(f"{cpath}.resources.{section}.{resource}", f"not {count}")
        if set(caps) != {"IPC_LOCK"} | granted:
            bad(f"{cpath}.securityContext.capabilities.add", f"{caps}, an RDMA model needs exactly "
                f"{sorted({'IPC_LOCK'} | granted)}")
    elif set(caps) != set(granted):
        bad(f"{cpath}.securityContext.capabilities.add", f"{caps} on a model without RDMA" +
            (f" (KServe's preset grants {sorted(granted)})" if granted else ""))

    scheduling = values.get("scheduling") or {}
    for key, field in (("schedulerName", "schedulerName"), ("priorityClassName", "priorityClassName")):
        if scheduling.get(key) and spec.get(field) != scheduling[key]:
            bad(f"spec.template.spec.{field}", f"{spec.get(field)!r}, the values ask for {scheduling[key]!r}")
    if scheduling.get("queue") and annotations.get("scheduling.volcano.sh/queue-name") != scheduling["queue"]:
        bad("spec.template.metadata.annotations", f"no Volcano queue {scheduling['queue']!r}")
    if values.get("serviceAccountName") and spec.get("serviceAccountName") != values["serviceAccountName"]:
        bad("spec.template.spec.serviceAccountName", f"{spec.get('serviceAccountName')!r}")



def _transformer_findings(model: str, values: dict, variant: str, v: Variant) -> list[Finding]:
    """KServe's transformer Deployment: what the values' transformer section asks, and none without one."""
    isvc = v.isvc["metadata"]["name"]
    transformer = values.get("transformer")
    names = [d["metadata"]["name"] for d in v.transformers]
    if not transformer:
        return [Finding(model, "kserve", f"InferenceService {isvc}", "Deployments",
                        f"{names}: a transformer the values do not ask for")] if names else []
    expected = f"{isvc}-transformer"
    if names != [expected]:
        return [Finding(model, "kserve", f"InferenceService {isvc}", "Deployments",
                        f"KServe made {names or 'no transformer Deployment'}, the values ask for [{expected!r}]")]
    deployment = v.transformers[0]
    where = f"Deployment {expected}"
    spec = deployment["spec"]["template"]["spec"]
    out: list[Finding] = []
    container = _container(spec, KSERVE_CONTAINER) or {}
    cpath = f"spec.template.spec.containers[{KSERVE_CONTAINER}]"
    if container.get("image") != transformer.get("image"):
        out.append(Finding(model, "kserve", where, f"{cpath}.image",
                           f"{container.get('image')!r}, the values ask for {transformer.get('image')!r}"))
    args = [str(a) for a in container.get("args") or []]
    if not _in_order([str(a) for a in transformer.get("args") or []], args):
        out.append(Finding(model, "kserve", where, f"{cpath}.args", f"{args}, the values' args are not all there"))
    # KServe names the model the transformer asks its predictor for (--model_name): the primary's.
    names = [a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
             for i, a in enumerate(args) if a == "--model_name" or a.startswith("--model_name=")]
    served = (values.get("model") or {}).get("servedModelName") or values.get("name")
    if not any(a.startswith("--model_name") for a in transformer.get("args") or []) and names[-1:] != [served]:
        out.append(Finding(model, "kserve", where, f"{cpath}.args",
                           f"asks its predictor for model {names[-1:] or None}, the primary serves {served!r}"))
    res = transformer.get("resources") or {}
    got = container.get("resources") or {}
    for section, key, value_key in (("requests", "cpu", "requestCPU"), ("requests", "memory", "requestMemory")):
        if res.get(value_key) is not None and quantity(res[value_key]) != quantity((got.get(section) or {}).get(key)):
            out.append(Finding(model, "kserve", where, f"{cpath}.resources.{section}.{key}",
                               f"{(got.get(section) or {}).get(key)!r}, the values ask for {res[value_key]!r}"))
    replicas = transformer.get("replicaCount", 1)
    if deployment["spec"].get("replicas") != replicas:
        out.append(Finding(model, "kserve", where, "spec.replicas",
                           f"{deployment['spec'].get('replicas')}, the values ask for {replicas}"))
    if len(v.transformer_pods) != replicas:
        out.append(Finding(model, "kserve", where, "pods", f"{len(v.transformer_pods)} pod(s), the values ask for {replicas}"))
    return out


def _pod_findings(model: str, values: dict, variant: str, v: Variant, deployment: str) -> list[Finding]:
    """What KServe's pod mutator (a webhook, run on real Pods) adds: the storage initializer,
    and the logger's agent container."""
    out: list[Finding] = []
    replicas = values.get("replicaCount", 1)
    if len(v.pods) != replicas:
        return [Finding(model, "kserve", f"Deployment {deployment}", "pods",
                        f"{len(v.pods)} pod(s) created, the values ask for {replicas}")]
    for pod in v.pods[:1]:
        where = f"Pod {pod['metadata']['name']}"
        spec = pod["spec"]
        uri = (values.get("model") or {}).get("storageUri") or ""
        inits = [c.get("name") for c in spec.get("initContainers") or []]
        if uri and not uri.startswith(("pvc://", "oci://")) and "storage-initializer" not in inits:
            out.append(Finding(model, "kserve", where, "spec.initContainers",
                               f"no storage-initializer for {uri.split(':')[0]}:// (init containers: {inits})"))
        logger = values.get("logger")
        agent = _container(spec, "agent")
        if logger and variant != "shadow":
            if agent is None:
                out.append(Finding(model, "kserve", where, "spec.containers", "no KServe agent (inference logger)"))
            elif not any(logger["url"] in str(a) for a in agent.get("args") or []):
                out.append(Finding(model, "kserve", where, "spec.containers[agent].args",
                                   f"the logger URL {logger['url']!r} is not passed to the agent"))
    return out


def _in_order(wanted: list[str], have: list[str]) -> bool:
    it = iter(have)
    return all(any(w == h for h in it) for w in wanted)


# --- KServe's LLMInferenceService -------------------------------------------------------------------

LLM_CONTAINER = "main"  # the container KServe's LLM presets run vLLM in


def routing_group(llmisvc: dict) -> str | None:
    """The KServe routing group an LLMInferenceService is a member of (its canary's), if any."""
    return (((llmisvc.get("spec") or {}).get("router") or {}).get("route") or {}).get("group")


def llm_conditions(llmisvc: dict) -> list[str]:
    """The conditions KServe's controller can bring to True here, for this LLMInferenceService.
    The router's (GatewaysReady, HTTPRoutesReady, InferencePoolReady, RouterReady) follow the
    status the engines' Gateway writes (gateway_status.py); a routing group's GroupReady too. A
    multi-node role (a `worker`) is a LeaderWorkerSet, ready once the LeaderWorkerSet controller
    made its pods, which the engines do not run: the group's spec is judged instead
    (_llm_group_findings), and the overall Ready, which needs it, is not expected."""
    spec = llmisvc.get("spec") or {}
    wanted = ["PresetsCombined"] + ([] if spec.get("worker") else ["MainWorkloadReady"])
    prefill = spec.get("prefill") or {}
    if prefill and not prefill.get("worker"):
        wanted.append("PrefillWorkloadReady")
    if not spec.get("router"):
        return wanted  # a shadow: reached by the mirror through its workload Service, no router
    wanted += ["SchedulerWorkloadReady", "GatewaysReady", "HTTPRoutesReady", "InferencePoolReady", "RouterReady"]
    if routing_group(llmisvc):
        wanted.append("GroupReady")
    if not spec.get("worker") and not prefill.get("worker"):
        wanted.append("Ready")
    return wanted


def llm_findings(model: str, values: dict, state: ModelState, namespace_pods: list[dict]) -> list[Finding]:
    """The LLMInferenceService exists and its presets combined; the Deployments KServe made for the
    decode and prefill pods carry what the values ask (resources, GPUs and their placement, RDMA,
    parallelism, the KV hand-over, the served name); the InferencePool selects exactly the model's
    pods, its endpoint picker runs, and the HTTPRoute on the platform's Gateway points at the pool.
    With a canary, all of that for <name>-canary too, and each member's route splits by the weights."""
    out: list[Finding] = []
    canary, mirror = (values.get("canary") or {}).get("enabled"), (values.get("mirror") or {}).get("enabled")
    members = ("primary",) + (("canary",) if canary else ()) + (("shadow",) if mirror else ())
    for variant in members:
        member = state.name + VARIANT_SUFFIX[variant]
        v = state.variants.get(variant)
        if v is None or v.isvc.get("kind") != "LLMInferenceService":
            out.append(Finding(model, "kserve", f"LLMInferenceService {member}", "", "not in the cluster"))
            continue
        out += _llm_member_findings(model, values, member, v, namespace_pods, variant)
    for variant in ("canary", "shadow"):
        if variant not in members and variant in state.variants:
            out.append(Finding(model, "kserve", f"LLMInferenceService {state.name}-{variant}", "",
                               f"in the cluster, and the values ask for no {variant}"))
    if llm_owns_route(values):
        out += _llm_own_route_findings(model, values, state, namespace_pods)
    elif canary and "canary" in state.variants:
        out += _llm_canary_findings(model, values, state)
    pools = {f"{state.name}{suffix}-inference-pool" for suffix in ("", "-canary") if suffix == "" or canary}
    for (kind, obj_name), obj in state.installed.items():
        if kind == "InferenceObjective" and (obj["spec"].get("poolRef") or {}).get("name") not in pools:
            out.append(Finding(model, "kserve", f"InferenceObjective {obj_name}", "spec.poolRef",
                               f"{obj['spec'].get('poolRef')} is not a pool of the model's: {sorted(pools)}"))
    return out


def _llm_own_route_findings(model: str, values: dict, state: ModelState, namespace_pods: list[dict]) -> list[Finding]:
    """The chart's HTTPRoute <name> carries the model's routing: KServe made no route of its own
    for a member that refers to it, and the shadow's workload Service the route mirrors to selects
    the shadow's (decode) pods and no pod of the namespace but the shadow's (the Gateway's
    acceptance of the route, every backend resolved, is each member's HTTPRoutesReady)."""
    out: list[Finding] = []
    for variant, v in state.variants.items():
        if variant != "shadow" and "HTTPRoute.kserve" in v.routing:
            out.append(Finding(model, "kserve", f"HTTPRoute {v.isvc['metadata']['name']}-kserve-route", "",
                               f"made by KServe, though the member refers to the chart's route {state.name}"))
    shadow = state.variants.get("shadow")
    if (values.get("mirror") or {}).get("enabled") and shadow is not None:
        service = shadow.routing.get("Service.workload")
        where = f"Service {state.name}-shadow-kserve-workload-svc"
        if service is None:
            return out + [Finding(model, "kserve", where, "", "not in the cluster: the mirror has no target")]
        decode = {p["metadata"]["name"] for p in shadow.pods}
        pods = decode | {p["metadata"]["name"] for p in shadow.prefill_pods}
        selector = {"matchLabels": (service.get("spec") or {}).get("selector") or {}}
        picked = {p["metadata"]["name"] for p in namespace_pods if selects(selector, p["metadata"].get("labels") or {})}
        if not decode or not decode <= picked <= pods:
            out.append(Finding(model, "kserve", where, "spec.selector",
                               f"selects {sorted(picked)}, the shadow's decode pods are {sorted(decode)}"))
    return out


def _llm_member_findings(model: str, values: dict, name: str, v: Variant, namespace_pods: list[dict],
                         variant: str = "primary") -> list[Finding]:
    """One LLMInferenceService of the model (name: the primary's, <name>-canary or <name>-shadow)."""
    where = f"LLMInferenceService {name}"
    llm = values.get("llm") or {}
    prefill = llm.get("prefill")
    out: list[Finding] = []
    conditions = {c.get("type"): c for c in (v.isvc.get("status") or {}).get("conditions") or []}
    for kind in llm_conditions(v.isvc):
        cond = conditions.get(kind) or {}
        if cond.get("status") != "True":
            detail = " ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
            out.append(Finding(model, "kserve", where, f"status.conditions[{kind}]",
                               f"{cond.get('status', 'missing')}" + (f": {detail}" if detail else "")))
    traffic = "mirrored" if variant == "shadow" else "live"
    roles = [("decode" if prefill else "both", f"{name}-kserve", v.deployments, v.pods, values.get("resources") or {},
              values.get("rdma") or {}, llm.get("parallelism") or {}, values.get("replicaCount", 1))]
    if prefill:
        roles.append(("prefill", f"{name}-kserve-prefill", v.prefills, v.prefill_pods, prefill["resources"],
                      prefill.get("rdma") or {}, prefill.get("parallelism") or {}, prefill["replicaCount"]))
    elif v.prefills:
        out.append(Finding(model, "kserve", where, "Deployments", "prefill pods the values do not ask for"))
    for role, expected, deployments, pods, res, rdma, parallelism, replicas in roles:
        if multi_node(parallelism):
            group = f"{name}-kserve-mn" + ("-prefill" if role == "prefill" else "")
            out += _llm_group_findings(model, values, role, group, v.groups, res, rdma, parallelism, replicas)
            continue
        out += _llm_workload_findings(model, values, role, expected, deployments, pods, res, rdma, parallelism, replicas,
                                      traffic)
    if variant == "shadow":  # no router: the chart's route mirrors to its workload Service
        if v.schedulers or v.routing.get("HTTPRoute.kserve"):
            out.append(Finding(model, "kserve", where, "router", "KServe routes the shadow, which has no router"))
        return out
    schedulers = [d["metadata"]["name"] for d in v.schedulers]
    if schedulers != [f"{name}-kserve-router-scheduler"]:
        out.append(Finding(model, "kserve", where, "Deployments", f"endpoint picker Deployments {schedulers}, "
                           f"expected [{name}-kserve-router-scheduler]"))
    elif v.schedulers[0]["spec"].get("replicas") != llm.get("schedulerReplicas", 1):
        out.append(Finding(model, "kserve", f"Deployment {schedulers[0]}", "spec.replicas",
                           f"{v.schedulers[0]['spec'].get('replicas')}, the values ask for {llm.get('schedulerReplicas', 1)}"))
    return out + _llm_routing_findings(model, values, name, v, namespace_pods)


def _llm_canary_findings(model: str, values: dict, state: ModelState) -> list[Finding]:
    """KServe's routing group of a model and its canary: each member reports both members with
    their weights, and each member's HTTPRoute sends the requests it shares with the group (not
    those on its own /<namespace>/<member>/ address) to both InferencePools by those weights."""
    out: list[Finding] = []
    primary_load = values.get("primaryLoad")
    want = {state.name: primary_load, f"{state.name}-canary": 100 - primary_load}
    pools = {f"{member}-inference-pool": weight for member, weight in want.items()}
    for variant in ("primary", "canary"):
        v = state.variants[variant]
        member = v.isvc["metadata"]["name"]
        group = ((v.isvc.get("status") or {}).get("router") or {}).get("group") or {}
        reported = {m.get("name"): m.get("weight") for m in group.get("members") or []}
        if group.get("name") != state.name or reported != want:
            out.append(Finding(model, "kserve", f"LLMInferenceService {member}", "status.router.group",
                               f"group {group.get('name')!r} with {reported}, expected {state.name!r} with {want}"))
        route = v.routing.get("HTTPRoute")
        if route is None:
            continue  # _llm_routing_findings names it
        own = f"/{state.namespace}/{member}"
        on_own = lambda m: (path := ((m.get("path") or {}).get("value") or "")) == own or path.startswith(own + "/")  # noqa: E731
        shared = [rule for rule in route["spec"].get("rules") or []
                  if any(b.get("kind") == "InferencePool" for b in rule.get("backendRefs") or [])
                  and not any(on_own(m) for m in rule.get("matches") or [])]
        where = f"HTTPRoute {member}-kserve-route"
        if not shared:
            out.append(Finding(model, "kserve", where, "spec.rules", "no rule outside the member's own address "
                               "sends to an InferencePool: the group's split has nowhere to apply"))
        for rule in shared:
            got = {b.get("name"): b.get("weight", 1) for b in rule.get("backendRefs") or [] if b.get("kind") == "InferencePool"}
            if got != pools:
                out.append(Finding(model, "kserve", where, f"spec.rules[{rule.get('name', '?')}].backendRefs",
                                   f"{got}, the canary split is {pools}"))
                break
    return out


# What KServe v0.20's data-parallel presets grant the main container (for DeepEP over RDMA), whatever
# the LLMInferenceService says: seen in the engines, and warned about by lint (llm-capabilities).
DATA_PARALLEL_CAPABILITIES = frozenset({"IPC_LOCK", "SYS_RAWIO", "NET_RAW"})


def _command_line(container: dict) -> str:
    """vLLM's command line, as KServe's preset script renders it from the spec (command and args)."""
    return " ".join(str(a) for a in (container.get("command") or []) + (container.get("args") or []))


def multi_node(parallelism: dict) -> bool:
    """data/dataLocal pods make one replica: KServe runs the role as a LeaderWorkerSet."""
    data, local = parallelism.get("data"), parallelism.get("dataLocal")
    return bool(data and local and data > local)


def _llm_group_findings(model, values, role, expected, groups, res, rdma, parallelism, replicas) -> list[Finding]:
    """A multi-node role: KServe's LeaderWorkerSet, a group of data/dataLocal pods per replica, its
    leader and workers each running vLLM's data-parallel ranks with the resources asked."""
    found = [g for g in groups if g["metadata"]["name"] == expected]
    if not found:
        return [Finding(model, "kserve", f"LLMInferenceService {model.split('/')[1]}", "LeaderWorkerSets",
                        f"KServe made {[g['metadata']['name'] for g in groups] or 'none'} for the {role} pods, "
                        f"expected [{expected!r}]")]
    group = found[0]
    where = f"LeaderWorkerSet {expected}"
    out: list[Finding] = []

    def bad(field: str, message: str) -> None:
        out.append(Finding(model, "kserve", where, field, message))

    spec = group["spec"]
    template = spec.get("leaderWorkerTemplate") or {}
    size = parallelism["data"] // parallelism["dataLocal"]
    if template.get("size") != size:
        bad("spec.leaderWorkerTemplate.size", f"{template.get('size')}, data/dataLocal is {size}")
    if spec.get("replicas") != replicas:
        bad("spec.replicas", f"{spec.get('replicas')}, the values ask for {replicas}")
    for part in ("leaderTemplate", "workerTemplate"):
        pod = template.get(part)
        if not isinstance(pod, dict):
            bad(f"spec.leaderWorkerTemplate.{part}", "missing")
            continue
        container = _container(pod.get("spec") or {}, LLM_CONTAINER)
        cpath = f"spec.leaderWorkerTemplate.{part}.spec.containers[{LLM_CONTAINER}]"
        if container is None:
            bad(cpath, "missing")
            continue
        _template_findings(bad, values, pod, container, cpath, res, rdma, DATA_PARALLEL_CAPABILITIES)
        command = _command_line(container)
        for flag in (f"--data-parallel-size {parallelism['data']}", f"--data-parallel-size-local {parallelism['dataLocal']}",
                     *(["--enable-expert-parallel"] if parallelism.get("expert") else [])):
            if flag not in command:
                bad(f"{cpath}.command", f"vLLM is not started with {flag}")
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get("modelplat.io/model") != values.get("name"):
            bad(f"spec.leaderWorkerTemplate.{part}.metadata.labels", "no modelplat.io/model: the mesh policies "
                f"would not select these pods ({sorted(labels)})")
    return out


def _llm_workload_findings(model, values, role, expected, deployments, pods, res, rdma, parallelism,
                           replicas, traffic: str = "live") -> list[Finding]:
    names = [d["metadata"]["name"] for d in deployments]
    if names != [expected]:
        return [Finding(model, "kserve", f"LLMInferenceService {model.split('/')[1]}", "Deployments",
                        f"KServe made {names or 'no Deployment'} for the {role} pods, expected [{expected!r}]")]
    deployment = deployments[0]
    where = f"Deployment {expected}"
    template = deployment["spec"]["template"]
    out: list[Finding] = []

    def bad(field: str, message: str) -> None:
        out.append(Finding(model, "kserve", where, field, message))

    container = _container(template["spec"], LLM_CONTAINER)
    if container is None:
        bad("spec.template.spec.containers", f"no container named {LLM_CONTAINER!r}")
        return out
    cpath = f"spec.template.spec.containers[{LLM_CONTAINER}]"
    _template_findings(bad, values, template, container, cpath, res, rdma)
    command = _command_line(container)
    served = (values.get("model") or {}).get("servedModelName") or values.get("name")
    if f'--served-model-name "{served}"' not in command:
        bad(f"{cpath}.command", f"vLLM is not started with --served-model-name {served!r}")
    tensor = parallelism.get("tensor")
    if tensor and f"--tensor-parallel-size {tensor}" not in command:
        bad(f"{cpath}.command", f"vLLM is not started with --tensor-parallel-size {tensor}")
    wanted = [str(a) for a in (values.get("model") or {}).get("args") or []]
    if wanted and not _in_order(wanted, [str(a) for a in container.get("args") or []]):
        bad(f"{cpath}.args", f"the values' args {wanted} are not passed to vLLM in order")
    env = {e.get("name"): e for e in container.get("env") or []}
    if role in ("decode", "prefill"):
        kv_role = "kv_producer" if role == "prefill" else "kv_consumer"
        if kv_role not in str((env.get("VLLM_ADDITIONAL_ARGS") or {}).get("value", "")):
            bad(f"{cpath}.env[VLLM_ADDITIONAL_ARGS]", f"no --kv_transfer_config with {kv_role}")
    labels = template["metadata"].get("labels") or {}
    want_labels = {"modelplat.io/model": values.get("name"), "modelplat.io/role": role,
                   "modelplat.io/traffic": "internal" if role == "prefill" else traffic}
    for key, value in want_labels.items():
        if labels.get(key) != value:
            bad(f"spec.template.metadata.labels[{key}]", f"{labels.get(key)!r}, expected {value!r}")
    if deployment["spec"].get("replicas") != replicas:
        bad("spec.replicas", f"{deployment['spec'].get('replicas')}, the values ask for {replicas}")
    if len(pods) != replicas:
        bad("pods", f"{len(pods)} pod(s) created, the values ask for {replicas}")
    return out


def _llm_routing_findings(model, values, name: str, v: Variant, namespace_pods) -> list[Finding]:
    out: list[Finding] = []
    pool = v.routing.get("InferencePool")
    if pool is None:
        return [Finding(model, "kserve", f"InferencePool {name}-inference-pool", "", "not in the cluster")]
    where = f"InferencePool {name}-inference-pool"
    selector = (pool.get("spec") or {}).get("selector") or {}
    want = {p["metadata"]["name"] for p in v.pods + v.prefill_pods}
    have = {p["metadata"]["name"] for p in namespace_pods if selects(selector, p["metadata"].get("labels") or {})}
    if v.groups:
        # No LeaderWorkerSet controller runs here, so there are no pods: the pool must select the
        # group leaders (they serve the API) by their template's labels.
        for group in v.groups:
            leader = ((group["spec"].get("leaderWorkerTemplate") or {}).get("leaderTemplate") or {})
            if not selects(selector, (leader.get("metadata") or {}).get("labels") or {}):
                out.append(Finding(model, "kserve", where, "spec.selector",
                                   f"does not select the leaders of LeaderWorkerSet {group['metadata']['name']}"))
    elif not want or want != have:
        out.append(Finding(model, "kserve", where, "spec.selector",
                           f"selects {sorted(have)}, the model's decode and prefill pods are {sorted(want)}"))
    ports = [p.get("number") for p in (pool.get("spec") or {}).get("targetPorts") or []]
    if ports != [values["model"]["port"]]:
        out.append(Finding(model, "kserve", where, "spec.targetPorts", f"{ports}, the pods serve on {values['model']['port']}"))
    picker = ((pool.get("spec") or {}).get("endpointPickerRef") or {}).get("name")
    epp = v.routing.get("Service")
    if epp is None or epp["metadata"]["name"] != picker:
        out.append(Finding(model, "kserve", where, "spec.endpointPickerRef",
                           f"names Service {picker!r}, which KServe did not make"))
    route = v.routing.get("HTTPRoute")
    where = f"HTTPRoute {route['metadata']['name'] if route else name + '-kserve-route'}"
    if route is None:
        return out + [Finding(model, "kserve", where, "", "not in the cluster")]
    gateway = values["platform"]["gatewayApi"]
    parents = [(p.get("namespace"), p.get("name")) for p in route["spec"].get("parentRefs") or []]
    if parents != [(gateway["namespace"], gateway["name"])]:
        out.append(Finding(model, "kserve", where, "spec.parentRefs",
                           f"{parents}, the platform's Gateway is {gateway['namespace']}/{gateway['name']}"))
    pools = [b for rule in route["spec"].get("rules") or [] for b in rule.get("backendRefs") or []
             if b.get("kind") == "InferencePool"]
    if not pools:
        out.append(Finding(model, "kserve", where, "spec.rules", "no rule sends requests to the InferencePool"))
    # A canary's routing group, or the chart's own route, adds the other member's pool (judged by
    # _llm_canary_findings, and the unit tests of the chart's route).
    base = values["name"]
    group = {f"{base}{s}-inference-pool" for s in ("", "-canary")} if (values.get("canary") or {}).get("enabled") \
        else {f"{name}-inference-pool"}
    for backend in pools:
        key = "InferencePool.x-k8s.io" if backend.get("group") == "inference.networking.x-k8s.io" else "InferencePool"
        if backend.get("name") not in group or (backend.get("name") == f"{name}-inference-pool" and key not in v.routing):
            out.append(Finding(model, "kserve", where, "spec.rules[].backendRefs",
                               f"{backend.get('group')}/{backend.get('name')} is not a pool KServe made for {name}"))
            break
    return out


# --- Selectors ----------------------------------------------------------------------------------------

ALL = ("primary", "canary", "shadow")
# Request limits and token quotas count each client request once: the shadow's traffic is a copy.
LIVE = ("primary", "canary")
PRIMARY = ("primary",)
# Which of its model's variants each selecting object must select (the documented intent).
INTENT = {
    "PeerAuthentication": ALL, "AuthorizationPolicy": ALL, "RequestAuthentication": ALL,
    "EnvoyFilter/identity": ALL, "EnvoyFilter/ratelimit": LIVE, "EnvoyFilter/tokenlimit": LIVE,
    "EnvoyFilter/safety": LIVE,
    "PodDisruptionBudget": PRIMARY, "PodMonitor": PRIMARY, "Telemetry": PRIMARY,
}
ENTRY_ONLY = {"EnvoyFilter/ratelimit", "EnvoyFilter/tokenlimit", "EnvoyFilter/safety"}
SELECTING_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", "EnvoyFilter",
                   "PodDisruptionBudget", "PodMonitor", "Telemetry")


def intent_key(kind: str, name: str, model: str) -> str:
    if kind == "EnvoyFilter":
        return f"EnvoyFilter/{name.removeprefix(model + '-')}"
    return kind


def selector_of(obj: dict) -> dict | None:
    spec = obj.get("spec") or {}
    if obj["kind"] == "EnvoyFilter":
        return {"matchLabels": (spec.get("workloadSelector") or {}).get("labels") or {}}
    return spec.get("selector")


def selector_findings(model: str, state: ModelState, namespace_pods: list[dict],
                      all_states: dict[str, ModelState]) -> list[Finding]:
    """Every selecting object the release installed selects exactly the pods KServe created for
    the intended variants of its model (pods found by owner references), and no other pod of the
    namespace; the HPAs target the Deployment KServe made for their variant."""
    out: list[Finding] = []
    owner_of: dict[str, str] = {}  # pod name -> "<model>/<variant>", for readable messages
    for other in all_states.values():
        for variant, v in other.variants.items():
            for pod in v.model_pods:
                owner_of[pod["metadata"]["name"]] = f"{other.name}/{variant}"
    for (kind, name), obj in sorted(state.installed.items()):
        if kind == "HorizontalPodAutoscaler":
            out += _hpa_findings(model, state, obj)
            continue
        if kind not in SELECTING_KINDS:
            continue
        key = intent_key(kind, name, state.name)
        intended = INTENT.get(key)
        if intended is None:
            out.append(Finding(model, "kserve", f"{kind} {name}", "selector", "no documented intent for this object"))
            continue
        # Request limits and token quotas count where clients arrive (the transformer, when there
        # is one); every other object covers all of a variant's pods.
        entry = key in ENTRY_ONLY
        want = {p["metadata"]["name"] for variant in intended if variant in state.variants
                for p in (state.variants[variant].entry_pods if entry else state.variants[variant].model_pods)}
        have = {p["metadata"]["name"] for p in namespace_pods
                if selects(selector_of(obj), (p["metadata"].get("labels") or {}))}
        if want != have:
            missing = sorted(f"{p} ({owner_of.get(p, '?')})" for p in want - have)
            extra = sorted(f"{p} ({owner_of.get(p, 'not a model pod')})" for p in have - want)
            detail = "; ".join(part for part in (f"misses {missing}" if missing else "",
                                                  f"also selects {extra}" if extra else "") if part)
            out.append(Finding(model, "kserve", f"{kind} {name}", "selector",
                               f"must select the {'/'.join(intended)} pods of {state.name}: {detail}"))
    return out


def _hpa_findings(model: str, state: ModelState, hpa: dict) -> list[Finding]:
    target = hpa["spec"]["scaleTargetRef"]
    where = f"HorizontalPodAutoscaler {hpa['metadata']['name']}"
    groups = [g["metadata"]["name"] for v in state.variants.values() for g in v.groups]
    if groups:  # a multi-node LLM scales its LeaderWorkerSet by whole groups
        if (target.get("kind"), target.get("name")) != ("LeaderWorkerSet", f"{state.name}-kserve-mn") \
                or target["name"] not in groups:
            return [Finding(model, "kserve", where, "spec.scaleTargetRef",
                            f"{target.get('kind')} {target.get('name')} is not the LeaderWorkerSet KServe made")]
        return []
    variant = next((vr for vr, v in state.variants.items()
                    if any(d["metadata"]["name"] == target.get("name") for d in v.deployments)), None)
    if target.get("kind") != "Deployment" or variant is None:
        return [Finding(model, "kserve", where, "spec.scaleTargetRef",
                        f"{target.get('kind')} {target.get('name')} is not a Deployment KServe made for {state.name}")]
    expected = "canary" if hpa["metadata"]["name"].endswith("-canary") else "primary"
    if variant != expected:
        return [Finding(model, "kserve", where, "spec.scaleTargetRef", f"scales the {variant}, not the {expected}")]
    return []


# --- Istio --------------------------------------------------------------------------------------------

IDENTITY_LUA = "modelplat.identity.lua"
TOKENS_LUA = "modelplat.tokens.lua"
JWT = "envoy.filters.http.jwt_authn"
RBAC = "envoy.filters.http.rbac"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
RATELIMIT = "envoy.filters.http.ratelimit"
SAFETY = "modelplat.safety"


def _counted(values: dict, variant: str, component: str) -> bool:
    """Whether clients' requests are counted (request limits, token quotas) at this pod: not the
    shadow's, not a predictor's behind a transformer, not an LLM's prefill pods (their requests
    come from the decode pods' routing sidecar)."""
    if variant not in LIVE or component == "prefill":
        return False
    return component == "transformer" or not values.get("transformer")


def expected_filters(values: dict, variant: str, component: str = "predictor") -> list[str]:
    """The inbound HTTP filters modelplat promises (docs/checks.md), in Istio's order: the identity
    Lua first (INSERT_FIRST); a CUSTOM policy's rbac filter (it marks the requests the policy
    covers) and ext_authz, which Istio puts before JWT verification; jwt_authn; the ALLOW
    policy's rbac; then the counting filters, request limits before token quotas (pinned by the
    EnvoyFilters' priority), prompt safety between them (after the request limits, so a caller
    over its limit never reaches the provider; before the token quotas, so a refused prompt costs
    no tokens), and the router last."""
    auth = values.get("auth") or {}
    on = auth.get("enabled")
    jwt = on and (auth.get("jwt") or {}).get("enabled")
    counted = _counted(values, variant, component)
    names = [IDENTITY_LUA] if jwt else []
    if on and (auth.get("customAuthz") or {}).get("enabled"):
        names += [RBAC, EXT_AUTHZ]
    if jwt:
        names.append(JWT)
    if on:
        names.append(RBAC)
    if (values.get("ratelimitIPPerMinute") or values.get("ratelimitEachSAPerMinute")) and counted:
        names.append(RATELIMIT)
    if _screened(values) and counted:
        names.append(SAFETY)
    token = values.get("tokenLimit") or {}
    if token.get("enabled") and counted:
        names.append(TOKENS_LUA)
        if token.get("saLimit") or token.get("saLimitPerMinute"):
            names.append("modelplat.tokens.sa")
        if token.get("ipLimit") or token.get("ipLimitPerMinute"):
            names.append("modelplat.tokens.ip")
    names.append(ROUTER)
    return names


TRACKED = {IDENTITY_LUA, TOKENS_LUA, JWT, RBAC, EXT_AUTHZ, RATELIMIT, SAFETY, ROUTER, "modelplat.tokens.sa",
           "modelplat.tokens.ip"}


def _screened(values: dict) -> bool:
    """Whether an ext_proc safety provider screens this model at its sidecars."""
    safety = values.get("safety") or {}
    return bool(safety.get("enabled")) and safety.get("kind") == "extProc"


def istio_findings(model: str, values: dict, variant: str, pod: str, port: int, config: ProxyConfig,
                   component: str = "predictor") -> list[Finding]:
    where = f"sidecar of {pod} ({variant}{'' if component == 'predictor' else ', ' + component})"
    chains = config.inbound_chains(port)
    if not chains:
        return [Finding(model, "istio", where, f"listener virtualInbound port {port}",
                        "no HTTP filter chain for the model's port")]
    out = []
    want = expected_filters(values, variant, component)
    counted = _counted(values, variant, component)
    for chain in chains:
        names = http_filter_names(chain)
        seen = [n for n in names if n in TRACKED]
        if seen != want:
            out.append(Finding(model, "istio", where, f"virtualInbound:{port} http_filters",
                               f"{seen}, expected {want}"))
            continue
        out += _route_findings(model, values, counted, where, port, chain)
        if _screened(values) and counted:
            out += _safety_findings(model, values, where, port, chain)
    return out


def _safety_findings(model: str, values: dict, where: str, port: int, chain: dict) -> list[Finding]:
    """Prompt safety at this sidecar: the ext_proc filter is off in the chain, and on only in a
    route of its own for each screened path, in order, before Istio's catch-all route, going where
    that route goes the same way (cluster, timeouts, retries)."""
    out = []
    (flt,) = [f for f in http_filters(chain) if f.get("name") == SAFETY]
    if not flt.get("disabled"):
        out.append(Finding(model, "istio", where, f"virtualInbound:{port} {SAFETY}",
                           "on for every route (expected off, turned on by the screened routes only)"))
    paths = values["safety"]["paths"]
    for vh in inline_routes(chain):
        routes = vh.get("routes") or []
        on = [r for r in routes if SAFETY in (r.get("typed_per_filter_config") or {})]
        screened = [((r.get("match") or {}).get("path"), r.get("name")) for r in on]
        expected = [(path, f"modelplat-safety-{i}") for i, path in enumerate(paths)]
        if screened != expected:
            out.append(Finding(model, "istio", where, f"virtual host {vh.get('name')} routes",
                               f"the safety filter is on for {screened}, expected {expected}"))
            continue
        for r in on:
            config = r["typed_per_filter_config"][SAFETY]
            if config.get("disabled") or not config.get("config"):
                out.append(Finding(model, "istio", where, f"route {r.get('name')} typed_per_filter_config",
                                   f"does not turn {SAFETY} on: {config}"))
        default = routes[-1] if routes else {}
        if default.get("name") != "default" or routes.index(on[-1]) > len(routes) - 2:
            out.append(Finding(model, "istio", where, f"virtual host {vh.get('name')} routes",
                               f"the screened routes are not before Istio's catch-all: {[r.get('name') for r in routes]}"))
            continue
        keys = ("cluster", "timeout", "max_stream_duration", "retry_policy")
        want = {k: (default.get("route") or {}).get(k) for k in keys}
        for r in on:
            got = {k: (r.get("route") or {}).get(k) for k in keys}
            if got != want:
                out.append(Finding(model, "istio", where, f"route {r.get('name')} route",
                                   f"{got}, expected what Istio's own route does: {want}"))
    return out


def _route_findings(model: str, values: dict, counted: bool, where: str, port: int, chain: dict) -> list[Finding]:
    """The inbound routes' settings; `counted`: this pod is where clients' requests are counted."""
    out = []
    vhosts = inline_routes(chain)
    routes = [r for vh in vhosts for r in vh.get("routes") or []]
    if not routes:
        return [Finding(model, "istio", where, f"virtualInbound:{port} routes", "no inbound route")]
    token = values.get("tokenLimit") or {}
    if token.get("enabled") and counted:
        for route in routes:
            meta = ((route.get("metadata") or {}).get("filter_metadata") or {}).get(TOKENS_LUA)
            if not meta or meta.get("tenantId") != token.get("tenantId"):
                out.append(Finding(model, "istio", where, f"route {route.get('name')} metadata",
                                   f"no {TOKENS_LUA} settings for tenant {token.get('tenantId')!r}"))
            per_filter = route.get("typed_per_filter_config") or {}
            for kind, keys in (("sa", ("saLimit", "saLimitPerMinute")), ("ip", ("ipLimit", "ipLimitPerMinute"))):
                if any(token.get(k) for k in keys) and not (per_filter.get(f"modelplat.tokens.{kind}") or {}).get("rate_limits"):
                    out.append(Finding(model, "istio", where, f"route {route.get('name')} typed_per_filter_config",
                                       f"no rate_limits for modelplat.tokens.{kind}"))
    auth = values.get("auth") or {}
    if auth.get("enabled") and (auth.get("jwt") or {}).get("enabled"):
        for route in routes:
            if IDENTITY_LUA not in ((route.get("metadata") or {}).get("filter_metadata") or {}):
                out.append(Finding(model, "istio", where, f"route {route.get('name')} metadata",
                                   f"no {IDENTITY_LUA} settings (the header names it strips)"))
    if (values.get("ratelimitIPPerMinute") or values.get("ratelimitEachSAPerMinute")) and counted:
        for vh in vhosts:
            actions = [a for rl in vh.get("rate_limits") or [] for a in rl.get("actions") or []]
            if values.get("ratelimitIPPerMinute") and not any("remote_address" in a for a in actions):
                out.append(Finding(model, "istio", where, f"virtual host {vh.get('name')} rate_limits",
                                   "no remote_address descriptor"))
            if values.get("ratelimitEachSAPerMinute") and not any("request_headers" in a for a in actions):
                out.append(Finding(model, "istio", where, f"virtual host {vh.get('name')} rate_limits",
                                   "no service-account descriptor"))
    return out


# --- Istio: the gateway's and the callers' routes ---------------------------------------------------

def _cluster(host: str) -> str:
    return f"outbound|80||{host}"


def _vhosts_for(config: ProxyConfig, host: str) -> list[dict]:
    """The virtual hosts serving `host` on port 80: a gateway lists it among a vhost's domains; a
    sidecar has a route configuration of its own per service (`<host>:80`, domains "*")."""
    return [vh for rc in config.routes for vh in rc.get("virtual_hosts") or []
            if rc.get("name") == f"{host}:80" or host in (vh.get("domains") or [])
            or f"{host}:80" in (vh.get("domains") or [])]


def _traffic_findings(model: str, values: dict, where: str, vhosts: list[dict], namespace: str, name: str) -> list[Finding]:
    """The VirtualService's split, header match and mirror as Envoy routes: weights primaryLoad /
    100 - primaryLoad, the header route to the canary first, the mirror to the shadow at the
    values' percentage."""
    component = "transformer" if values.get("transformer") else "predictor"  # where clients arrive
    host = lambda n: f"{n}-{component}.{namespace}.svc.cluster.local"  # noqa: E731
    primary, canary, shadow = _cluster(host(name)), _cluster(host(f"{name}-canary")), _cluster(host(f"{name}-shadow"))
    routes = [r for vh in vhosts for r in vh.get("routes") or []]
    out = []
    if not routes:
        return [Finding(model, "istio", where, "routes", "no route for the model's host")]
    last = routes[-1]
    action = last.get("route") or {}
    canary_on = (values.get("canary") or {}).get("enabled")
    if canary_on:
        weights = {c["name"]: int(c.get("weight") or 0)
                   for c in (action.get("weighted_clusters") or {}).get("clusters") or []}
        load = int(values.get("primaryLoad", 100))
        want = {k: w for k, w in ((primary, load), (canary, 100 - load)) if w}
        if {k: w for k, w in weights.items() if w} != want and not (want == {primary: 100} and action.get("cluster") == primary):
            out.append(Finding(model, "istio", where, f"route {last.get('name')} weighted_clusters",
                               f"{weights or action.get('cluster')}, the values ask for {want}"))
        header = (values.get("canary") or {}).get("headerMatch") or {}
        if header:
            first = routes[0]
            matched = {h.get("name"): ((h.get("string_match") or {}).get("exact"))
                       for h in (first.get("match") or {}).get("headers") or []}
            if (first.get("route") or {}).get("cluster") != canary or any(matched.get(k) != v for k, v in header.items()):
                out.append(Finding(model, "istio", where, f"route {first.get('name')}",
                                   f"the first route must send {header} to the canary"))
    elif action.get("cluster") != primary:
        out.append(Finding(model, "istio", where, f"route {last.get('name')}", f"goes to {action.get('cluster') or action}"))
    mirror = values.get("mirror") or {}
    policies = action.get("request_mirror_policies") or []
    if mirror.get("enabled"):
        fraction = ((policies[0].get("runtime_fraction") or {}).get("default_value") or {}) if policies else {}
        denominator = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}.get(fraction.get("denominator", "HUNDRED"))
        percent = 100.0 * int(fraction.get("numerator") or 0) / denominator if policies else 0.0
        if not policies or policies[0].get("cluster") != shadow or abs(percent - float(mirror.get("percentage", 100))) > 1e-6:
            out.append(Finding(model, "istio", where, f"route {last.get('name')} request_mirror_policies",
                               f"{policies}, the values ask for {mirror.get('percentage')}% to the shadow"))
    elif policies:
        out.append(Finding(model, "istio", where, f"route {last.get('name')}", "mirrors without mirror.enabled"))
    return out


def gateway_findings(model: str, values: dict, gateway: ProxyConfig, state: ModelState, platform) -> list[Finding]:
    """An exposed model's host on the platform gateway routes as the values ask."""
    expose = values.get("exposeModel") or {}
    if not expose.get("enabled") or (values.get("model") or {}).get("serving") == "llm":
        return []  # an LLMInferenceService is routed by KServe's HTTPRoute (llm_findings)
    host = expose.get("host")
    vhosts = _vhosts_for(gateway, host)
    if not vhosts:
        return [Finding(model, "istio", f"gateway {platform.gateway}", "routes", f"no virtual host for {host}")]
    return _traffic_findings(model, values, f"gateway {platform.gateway} host {host}", vhosts, state.namespace, state.name)


def mesh_route_findings(model: str, values: dict, caller: ProxyConfig, state: ModelState) -> list[Finding]:
    """In-mesh callers of <name>-predictor are split and mirrored like gateway traffic."""
    if not ((values.get("canary") or {}).get("enabled") or (values.get("mirror") or {}).get("enabled")):
        return []
    if (values.get("model") or {}).get("serving") == "llm":
        return []  # an LLM is split and mirrored on its HTTPRoutes, not in the mesh (llm_findings)
    component = "transformer" if values.get("transformer") else "predictor"
    host = f"{state.name}-{component}.{state.namespace}.svc.cluster.local"
    vhosts = _vhosts_for(caller, host)
    if not vhosts:
        return [Finding(model, "istio", "a caller's sidecar", "outbound routes", f"no virtual host for {host}")]
    return _traffic_findings(model, values, f"a caller's sidecar, host {host}", vhosts, state.namespace, state.name)
