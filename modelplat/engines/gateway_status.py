"""The status a Gateway API implementation writes, for the engines' Gateway (no gateway proxy runs).

KServe's LLMInferenceService controller reads that status before it routes: it marks a model's
router ready only when the Gateway is Programmed, its HTTPRoute Accepted with ResolvedRefs, and its
InferencePool accepted by the Gateway; it moves its route from the old InferencePool group to v1
when the Gateway refuses the old one; and a routing group (a canary) counts only members whose
router is ready. So without this status the engines could not show what KServe does with a canary.

It judges what a Gateway implementation judges, the way Istio's does for the InferencePool groups
(v1 supported, the x-k8s v1alpha2 group refused as an invalid kind): a route is Accepted on the
platform's Gateway only; its refs are resolved only when every backend (a mirror's too) names a
Service or v1 InferencePool that exists. A pool is accepted by the Gateway when an accepted route sends to it.
It never writes the status of what it does not accept, so a route KServe got wrong stays unready.
"""

from __future__ import annotations

from .kube import Kube, KubeError

# What a route's and a pool's status name as the implementation that wrote it.
CONTROLLER = "modelplat.dev/engines-gateway-status"
GATEWAY_GROUP = "gateway.networking.k8s.io"
POOL_GROUP = "inference.networking.k8s.io"
OLD_POOL_GROUP = "inference.networking.x-k8s.io"


def _condition(kind: str, ok: bool, reason: str, generation: int, message: str = "") -> dict:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"}


def _same(have: list[dict], want: list[dict]) -> bool:
    """Status entries equal but for the transition times (which a rewrite must not churn)."""
    strip = lambda entries: [{**e, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}  # noqa: E731
                                                  for c in e.get("conditions") or []]} for e in entries]
    return strip(have) == strip(want)


def _patch_status(kube: Kube, kind: str, namespace: str, name: str, status: dict) -> None:
    try:
        kube.patch_status(kind, namespace, name, {"status": status})
    except KubeError as exc:  # deleted since it was listed: nothing to acknowledge
        if exc.status != 404:
            raise


def _on_gateway(ref: dict, route_namespace: str, gateway: tuple[str, str]) -> bool:
    return ((ref.get("group") or GATEWAY_GROUP) == GATEWAY_GROUP and (ref.get("kind") or "Gateway") == "Gateway"
            and (ref.get("namespace") or route_namespace, ref.get("name")) == gateway)


def _unresolved(route: dict, services: set[str], pools: set[str]) -> str:
    """Why a route's backends do not resolve ("" when they all do)."""
    for rule in route["spec"].get("rules") or []:
        mirrors = [(f.get("requestMirror") or {}).get("backendRef") or {} for f in rule.get("filters") or []
                   if f.get("type") == "RequestMirror"]
        for backend in [*(rule.get("backendRefs") or []), *mirrors]:
            group, kind, name = backend.get("group") or "", backend.get("kind") or "Service", backend.get("name")
            if (group, kind) == ("", "Service"):
                if name not in services:
                    return f"BackendNotFound: Service {name}"
            elif (group, kind) == (POOL_GROUP, "InferencePool"):
                if name not in pools:
                    return f"BackendNotFound: InferencePool {name}"
            else:
                return f"InvalidKind: {kind} of group {group!r} is not supported"
    return ""


def acknowledge(kube: Kube, gateway: tuple[str, str], namespaces: list[str]) -> None:
    """Writes the Gateway's, its HTTPRoutes' and their InferencePools' status as the Gateway's
    implementation would (only what changed). gateway is (namespace, name)."""
    gw = kube.get("Gateway", *gateway)
    if gw is None:
        return
    generation = gw["metadata"].get("generation", 1)
    conditions = [_condition("Accepted", True, "Accepted", generation), _condition("Programmed", True, "Programmed", generation)]
    if not _same([{"conditions": (gw.get("status") or {}).get("conditions") or []}], [{"conditions": conditions}]):
        _patch_status(kube, "Gateway", *gateway, {"conditions": conditions})
    for ns in namespaces:
        try:
            routes = kube.list("HTTPRoute", ns)
        except KubeError as exc:  # Gateway API is not installed: nothing routes here
            if exc.status == 404:
                continue
            raise
        services = {s["metadata"]["name"] for s in kube.list("Service", ns)}
        pools = {p["metadata"]["name"]: p for p in kube.list("InferencePool", ns)}
        pool_parents: dict[str, list[dict]] = {}
        for route in routes:
            generation = route["metadata"].get("generation", 1)
            entries = []
            for ref in route["spec"].get("parentRefs") or []:
                if not _on_gateway(ref, ns, gateway):
                    continue
                why = _unresolved(route, services, set(pools))
                entries.append({"parentRef": ref, "controllerName": CONTROLLER, "conditions": [
                    _condition("Accepted", True, "Accepted", generation),
                    _condition("ResolvedRefs", not why, why.split(":")[0] if why else "ResolvedRefs", generation, why),
                ]})
                if not why:
                    for rule in route["spec"].get("rules") or []:
                        for backend in rule.get("backendRefs") or []:
                            if backend.get("kind") == "InferencePool":
                                pool_parents.setdefault(backend["name"], [])
            if entries and not _same((route.get("status") or {}).get("parents") or [], entries):
                _patch_status(kube, "HTTPRoute", ns, route["metadata"]["name"], {"parents": entries})
        for name in sorted(pool_parents):
            pool = pools[name]  # resolved: the route was accepted only if it exists
            generation = pool["metadata"].get("generation", 1)
            entries = [{"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gateway[0], "name": gateway[1]},
                        "controllerName": CONTROLLER, "conditions": [
                            _condition("Accepted", True, "Accepted", generation),
                            _condition("ResolvedRefs", True, "ResolvedRefs", generation)]}]
            if not _same((pool.get("status") or {}).get("parents") or [], entries):
                _patch_status(kube, "InferencePool", ns, name, {"parents": entries})
