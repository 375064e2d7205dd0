"""The engines' stand-in for a Gateway implementation's status (modelplat/engines/gateway_status.py):
it must accept only what a Gateway implementation would, or the engines' KServe checks would pass
on a route no Gateway takes. Run against an in-memory API (the engines tests run it against the
real API server, with KServe's controller reading what it writes)."""

from __future__ import annotations

import copy

from modelplat.engines import gateway_status
from modelplat.engines.kube import KubeError

GATEWAY = ("istio-system", "inference-gateway")


class FakeKube:
    """Objects by (kind, namespace, name); status patches merged as the API server's merge patch."""

    def __init__(self, *objects: dict):
        self.objects = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): copy.deepcopy(o)
                        for o in objects}
        self.patches: list[tuple[str, str, str]] = []

    def get(self, kind, namespace, name):
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def list(self, kind, namespace=None, **_):
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items()) if k == kind and ns == namespace]

    def patch_status(self, kind, namespace, name, patch):
        if (kind, namespace, name) not in self.objects:
            raise KubeError(404, "not found")
        self.patches.append((kind, namespace, name))
        self.objects[(kind, namespace, name)].setdefault("status", {}).update(patch["status"])


def obj(kind: str, name: str, namespace: str = "llm", **fields) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace, "generation": 2}, **fields}


def route(name: str, *backends: dict, parent=GATEWAY) -> dict:
    return obj("HTTPRoute", name, spec={
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": parent[0], "name": parent[1]}],
        "rules": [{"backendRefs": list(backends)}]})


V1 = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat-inference-pool", "port": 8000}
OLD = {**V1, "group": "inference.networking.x-k8s.io"}


def conditions(kube: FakeKube, kind: str, name: str, namespace: str = "llm") -> dict[str, tuple[str, str]]:
    status = kube.objects[(kind, namespace, name)].get("status") or {}
    (entry,) = status.get("parents") or [{"conditions": status.get("conditions", [])}]
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


def cluster(*routes: dict) -> FakeKube:
    return FakeKube(obj("Gateway", GATEWAY[1], GATEWAY[0]), obj("InferencePool", "chat-inference-pool"),
                    obj("Service", "chat-kserve-workload-svc"), *routes)


def test_the_gateway_is_programmed_and_a_route_to_an_existing_v1_pool_is_accepted_with_its_pool():
    kube = cluster(route("chat-kserve-route", V1, {"name": "chat-kserve-workload-svc", "port": 8000}))
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    assert conditions(kube, "Gateway", GATEWAY[1], GATEWAY[0]) == {"Accepted": ("True", "Accepted"),
                                                                    "Programmed": ("True", "Programmed")}
    assert conditions(kube, "HTTPRoute", "chat-kserve-route") == {"Accepted": ("True", "Accepted"),
                                                                   "ResolvedRefs": ("True", "ResolvedRefs")}
    pool = kube.objects[("InferencePool", "llm", "chat-inference-pool")]["status"]["parents"][0]
    assert pool["parentRef"]["name"] == GATEWAY[1] and pool["conditions"][0]["observedGeneration"] == 2


def test_the_pre_v1_pool_group_is_refused_as_an_invalid_kind_and_its_pool_stays_unaccepted():
    kube = cluster(route("chat-kserve-route", OLD))
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    assert conditions(kube, "HTTPRoute", "chat-kserve-route")["ResolvedRefs"] == ("False", "InvalidKind")
    assert "status" not in kube.objects[("InferencePool", "llm", "chat-inference-pool")]


def test_a_missing_backend_leaves_the_refs_unresolved_and_another_gateways_route_untouched():
    missing = {**V1, "name": "other-inference-pool"}
    kube = cluster(route("missing", missing), route("elsewhere", V1, parent=("other", "gw")))
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    assert conditions(kube, "HTTPRoute", "missing")["ResolvedRefs"] == ("False", "BackendNotFound")
    assert "status" not in kube.objects[("HTTPRoute", "llm", "elsewhere")]
    assert "status" not in kube.objects[("InferencePool", "llm", "chat-inference-pool")]


def test_a_second_pass_writes_nothing_and_a_missing_gateway_writes_nothing_at_all():
    kube = cluster(route("chat-kserve-route", V1))
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    written = len(kube.patches)
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    assert written == 3 and len(kube.patches) == written  # no churn: KServe reconciles on every write
    bare = FakeKube(obj("HTTPRoute", "r", spec={"parentRefs": [], "rules": []}))
    gateway_status.acknowledge(bare, GATEWAY, ["llm"])
    assert bare.patches == []


def test_a_mirror_to_a_missing_service_leaves_the_refs_unresolved_and_an_existing_one_resolves():
    def mirrored(target: str) -> dict:
        r = route("chat", V1)
        r["spec"]["rules"][0]["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": target, "port": 8000}, "percent": 10}}]
        return r
    kube = cluster(mirrored("chat-shadow-kserve-workload-svc"))
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    assert conditions(kube, "HTTPRoute", "chat")["ResolvedRefs"] == ("False", "BackendNotFound")
    kube = cluster(mirrored("chat-kserve-workload-svc"))
    gateway_status.acknowledge(kube, GATEWAY, ["llm"])
    assert conditions(kube, "HTTPRoute", "chat")["ResolvedRefs"] == ("True", "ResolvedRefs")
