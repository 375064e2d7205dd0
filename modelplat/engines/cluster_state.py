"""What the engines made of each model, read back from the cluster: its Helm release (the
objects helm-controller installed), its InferenceServices, and the Deployments and Pods KServe
and kube-controller-manager created for each variant, found by owner references, never by the
labels modelplat's templates put on them.

Pure reads; the judging is in checks.py.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field

from ..manifests import split_manifests
from .kube import Kube

VARIANT_SUFFIX = {"primary": "", "canary": "-canary", "shadow": "-shadow"}


@dataclass
class Variant:
    """One InferenceService of a model and what the controllers made of it."""

    name: str  # primary, canary or shadow
    isvc: dict
    deployments: list[dict] = field(default_factory=list)  # the predictor's
    pods: list[dict] = field(default_factory=list)  # the predictor's
    transformers: list[dict] = field(default_factory=list)  # KServe's <isvc>-transformer Deployment
    transformer_pods: list[dict] = field(default_factory=list)
    # An LLMInferenceService (isvc): its decode Deployment and pods above, its prefill pods here,
    # and the endpoint picker's Deployment (<name>-kserve-router-scheduler), not a model pod.
    prefills: list[dict] = field(default_factory=list)
    prefill_pods: list[dict] = field(default_factory=list)
    schedulers: list[dict] = field(default_factory=list)
    # A multi-node LLM's LeaderWorkerSets (<name>-kserve-mn, <name>-kserve-mn-prefill) instead of
    # Deployments: their pods come from the LeaderWorkerSet controller, which the engines do not run.
    groups: list[dict] = field(default_factory=list)
    # An LLMInferenceService's routing as KServe made it: "InferencePool", "InferencePool.x-k8s.io",
    # "HTTPRoute" (KServe's, or the chart's the members refer to), "HTTPRoute.kserve" (KServe's own),
    # "Service" (the endpoint picker's), "Service.workload" (<member>-kserve-workload-svc) -> the object.
    routing: dict[str, dict] = field(default_factory=dict)

    @property
    def model_pods(self) -> list[dict]:
        """Every pod that runs the model: predictor, transformer, or an LLM's decode and prefill."""
        return self.pods + self.transformer_pods + self.prefill_pods

    @property
    def entry_pods(self) -> list[dict]:
        """The pods clients' requests arrive at: the transformer's when there is one."""
        return self.transformer_pods or self.pods


@dataclass
class ModelState:
    namespace: str
    name: str
    release_objects: list[tuple[str, str, str]]  # (kind, namespace, name) from Helm's release record
    variants: dict[str, Variant]
    installed: dict[tuple[str, str], dict]  # (kind, name) -> the object as the cluster holds it

    @property
    def routing(self) -> dict[str, dict]:
        """The primary LLMInferenceService's routing ({} for an InferenceService)."""
        primary = self.variants.get("primary")
        return primary.routing if primary is not None else {}


def helm_release_manifest(kube: Kube, namespace: str, release: str) -> tuple[int, str]:
    """(revision, manifest) of the release's newest record, as Helm stores it: a Secret
    `sh.helm.release.v1.<release>.v<revision>` holding base64(gzip(JSON)). (0, "") when none."""
    secrets = kube.list("Secret", namespace, label_selector=f"owner=helm,name={release}")
    if not secrets:
        return 0, ""
    newest = max(secrets, key=lambda s: int(s["metadata"]["labels"].get("version", "0")))
    blob = base64.b64decode(base64.b64decode(newest["data"]["release"]))
    record = json.loads(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)
    return int(record.get("version", 0)), record.get("manifest", "")


def owner(obj: dict, kind: str) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return ref["name"]
    return None


def model_state(kube: Kube, namespace: str, name: str, *, pods: list[dict] | None = None,
                deployments: list[dict] | None = None, replicasets: list[dict] | None = None) -> ModelState:
    """Reads one model. Pass the namespace's pods/deployments/replicasets to share one list call."""
    _, manifest = helm_release_manifest(kube, namespace, name)
    objects = [(d.kind, d.namespace or namespace, d.name) for d in split_manifests(manifest)] if manifest else []
    installed = {}
    for kind, ns, obj_name in objects:
        try:
            got = kube.get(kind, ns, obj_name)
        except KeyError:  # a kind the reader does not know: not one the checks read
            continue
        if got is not None:
            installed[(kind, obj_name)] = got
    pods = kube.list("Pod", namespace) if pods is None else pods
    deployments = kube.list("Deployment", namespace) if deployments is None else deployments
    replicasets = kube.list("ReplicaSet", namespace) if replicasets is None else replicasets
    rs_deployment = {rs["metadata"]["name"]: owner(rs, "Deployment") for rs in replicasets}

    def pods_of(owned: list[dict]) -> list[dict]:
        names = {d["metadata"]["name"] for d in owned}
        return [p for p in pods if rs_deployment.get(owner(p, "ReplicaSet") or "") in names]

    variants = {}
    for variant, suffix in VARIANT_SUFFIX.items():
        isvc = kube.get("InferenceService", namespace, name + suffix)
        if isvc is None:
            continue
        mine = [d for d in deployments if owner(d, "InferenceService") == name + suffix]
        transformers = [d for d in mine if d["metadata"]["name"] == f"{name}{suffix}-transformer"]
        predictors = [d for d in mine if d not in transformers]
        variants[variant] = Variant(variant, isvc, predictors, pods_of(predictors), transformers, pods_of(transformers))
    for variant in ("primary", "canary", "shadow"):  # an LLM's canary and shadow are LLMInferenceServices too
        member = name + VARIANT_SUFFIX[variant]
        llm = kube.get("LLMInferenceService", namespace, member)
        if llm is None:
            continue
        mine = [d for d in deployments if owner(d, "LLMInferenceService") == member]
        role = lambda d: (d["spec"]["template"]["metadata"].get("labels") or {}).get("app.kubernetes.io/component")  # noqa: E731
        decode = [d for d in mine if role(d) == "llminferenceservice-workload"]
        prefill = [d for d in mine if role(d) == "llminferenceservice-workload-prefill"]
        scheduler = [d for d in mine if d not in decode and d not in prefill]
        groups = [g for g in (kube.get("LeaderWorkerSet", namespace, f"{member}-kserve-mn{suffix}")
                              for suffix in ("", "-prefill")) if g is not None]
        routing: dict[str, dict] = {}
        for kind in ("InferencePool", "InferencePool.x-k8s.io"):
            pool = kube.get(kind, namespace, f"{member}-inference-pool")
            if pool is not None:
                routing[kind] = pool
        # KServe's own route, or the one the members refer to (router.route.http.refs).
        refs = ((((llm.get("spec") or {}).get("router") or {}).get("route") or {}).get("http") or {}).get("refs") or []
        managed = kube.get("HTTPRoute", namespace, f"{member}-kserve-route")
        if managed is not None:
            routing["HTTPRoute.kserve"] = managed
        route = kube.get("HTTPRoute", namespace, refs[0]["name"]) if refs else managed
        if route is not None:
            routing["HTTPRoute"] = route
        workload = kube.get("Service", namespace, f"{member}-kserve-workload-svc")
        if workload is not None:
            routing["Service.workload"] = workload
        epp = kube.get("Service", namespace, f"{member}-epp-service")
        if epp is not None:
            routing["Service"] = epp
        variants[variant] = Variant(variant, llm, decode, pods_of(decode), prefills=prefill,
                                    prefill_pods=pods_of(prefill), schedulers=scheduler, groups=groups,
                                    routing=routing)
    return ModelState(namespace, name, objects, variants, installed)


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a label set.
    An empty selector selects everything, as for Istio and PodDisruptionBudgets."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
