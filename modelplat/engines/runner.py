"""One engines run over a rendered tree: deliver it through Flux, let KServe and
kube-controller-manager act, generate Istio's Envoy config for every model pod and the gateway,
and collect the findings of checks.py per model.

Used by `modelplat lint --engines` and by the tests (which also drive upgrades and prunes through
GitOps directly). The caller owns the control plane's lifetime.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from .. import tools, yamlout
from ..config import PlatformSettings
from ..manifests import split_manifests
from . import checks, gateway_status, istio
from .cluster_state import ModelState, model_state
from .controlplane import ControlPlane
from .gitops import GitOps, Settled, engine_platform
from .kube import KubeError

ISTIO_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", "EnvoyFilter",
               "VirtualService", "Telemetry")
# Rollouts and HPA minimums after the HelmReleases are Ready: pods are marked Running at once, and
# the HPA controller syncs every 2 s (controlplane.py).
ROLLOUT_SECONDS = 60
# Beyond it, while only LLMInferenceServices' routing still settles (await_rollouts).
LLM_ROUTING_SECONDS = 60
# What the API server adds that Istio's config loader and the report do not need.
_NOISE = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "ownerReferences")


@dataclass
class EngineReport:
    settled: Settled
    states: dict[str, ModelState]  # "<namespace>/<name>" -> what the engines made of it
    findings: list[checks.Finding]
    proxies: dict[str, istio.ProxyConfig] = field(default_factory=dict)
    pod_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (model, variant) -> proxy name
    ports: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, variant) -> serving pod port
    prerequisites: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def by_model(self, model: str, engine: str | None = None) -> list[checks.Finding]:
        return [f for f in self.findings if f.model == model and (engine is None or f.engine == engine)]


def chart_objects(plans, platform: PlatformSettings, root) -> dict[str, set[tuple[str, str]]]:
    """{model: {(kind, name)}} of each chart as `helm template` renders it with its HelmRelease's
    values: what helm-controller must install."""
    helm = tools.find("helm")
    out = {}
    for p in plans:
        values = root / p.model_dir / ".engines-values.yaml"
        values.write_text(yamlout.dump(p.chart_values))
        res = tools.run([helm, "template", p.name, str(root / p.chart_dir), "-f", str(values),
                         "--namespace", p.namespace])
        values.unlink()
        out[f"{p.namespace}/{p.name}"] = {(d.kind, d.name) for d in split_manifests(res.output)} if res.ok else set()
    return out


def prerequisites(plans, platform: PlatformSettings | None = None) -> list[dict]:
    """Cluster objects the models name but do not own, which a platform team creates once:
    PriorityClasses and ServiceAccounts (the API server refuses pods naming a missing one), and
    for LLM-native models the platform's Gateway and its GatewayClass (KServe creates no routing
    for a model whose Gateway is missing)."""
    objects, seen = [], set()
    if platform is not None and any(p.serving == "llm" for p in plans):
        namespace, name = platform.gatewayApi.gateway.split("/", 1)
        objects += [
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
             "metadata": {"name": platform.gatewayApi.gatewayClass},
             "spec": {"controllerName": f"{platform.gatewayApi.gatewayClass}.io/gateway-controller"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
             "metadata": {"name": name, "namespace": namespace},
             "spec": {"gatewayClassName": platform.gatewayApi.gatewayClass, "listeners": [
                 {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        ]
    for p in plans:
        values = p.chart_values
        priority = (values.get("scheduling") or {}).get("priorityClassName")
        if priority and ("pc", priority) not in seen:
            seen.add(("pc", priority))
            objects.append({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                            "metadata": {"name": priority}, "value": 1000})
        account = values.get("serviceAccountName")
        if account and (p.namespace, account) not in seen:
            seen.add((p.namespace, account))
            objects += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": p.namespace}},
                        {"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": account, "namespace": p.namespace}}]
    return objects


def chart_versions(files: dict[str, bytes], plans) -> dict[tuple[str, str], str]:
    """The chart version of each model in a rendered tree (it carries the chart's digest, so
    helm-controller's lastAttemptedRevision tells which render it acted on)."""
    versions = {}
    for p in plans:
        found = re.search(rb'^version: "?([^"\n]+)"?$', files.get(f"{p.chart_dir}/Chart.yaml", b""), re.M)
        if found:
            versions[(p.namespace, p.name)] = found.group(1).decode()
    return versions


def deliver(plane: ControlPlane, gitops: GitOps, files: dict[str, bytes], plans, message: str) -> Settled:
    commit = gitops.publish(files, message)
    return gitops.reconcile(commit, {(p.namespace, p.name) for p in plans}, chart_versions=chart_versions(files, plans))


def verify(plane: ControlPlane, gitops: GitOps, plans, settled: Settled,
           expected_objects: dict[str, set[tuple[str, str]]], *, istio_config: bool = True) -> EngineReport:
    """Reads what the engines made of every model and judges it (checks.py); Istio's config
    generation (the slowest part) unless istio_config is False."""
    kube = plane.kube
    started = time.monotonic()
    namespaces = sorted({p.namespace for p in plans})
    gateway = None
    routed = sorted({p.namespace for p in plans if p.serving == "llm"})
    if routed:
        gateway = tuple(gitops.platform.gatewayApi.gateway.split("/", 1))
    await_rollouts(kube, namespaces, gateway=gateway, routed=routed)
    timings = {"rollouts": time.monotonic() - started}
    started = time.monotonic()
    listed = {ns: (kube.list("Pod", ns), kube.list("Deployment", ns), kube.list("ReplicaSet", ns)) for ns in namespaces}
    # The newest Warning event of each InferenceService: KServe's reason when it makes nothing.
    warnings: dict[str, dict[str, str]] = {}
    for ns in namespaces:
        newest: dict[str, tuple[str, str]] = {}
        for event in kube.list("Event", ns, field_selector="type=Warning,involvedObject.kind=InferenceService"):
            name, when = event["involvedObject"]["name"], event.get("lastTimestamp") or event.get("eventTime") or ""
            if name not in newest or when >= newest[name][0]:
                newest[name] = (when, event.get("message", ""))
        warnings[ns] = {name: message for name, (_, message) in newest.items()}
    states: dict[str, ModelState] = {}
    for p in plans:
        pods, deployments, replicasets = listed[p.namespace]
        states[f"{p.namespace}/{p.name}"] = model_state(kube, p.namespace, p.name, pods=pods, deployments=deployments,
                                                        replicasets=replicasets)
    findings: list[checks.Finding] = []
    for p in plans:
        key = f"{p.namespace}/{p.name}"
        findings += checks.flux_findings(key, settled.releases.get((p.namespace, p.name)), states[key],
                                         expected_objects.get(key, set()))
        if p.serving == "llm":
            findings += checks.llm_findings(key, p.chart_values, states[key], listed[p.namespace][0])
        else:
            findings += checks.kserve_findings(key, p.chart_values, states[key], warnings[p.namespace])
        findings += checks.selector_findings(key, states[key], listed[p.namespace][0], states)
    report = EngineReport(settled, states, findings, timings={**timings, "read": time.monotonic() - started})
    if not istio_config:
        return report
    started = time.monotonic()
    _istio(report, plans, gitops.platform, kube)
    report.timings["istio"] = time.monotonic() - started
    return report


def unsettled_rollouts(kube, namespaces) -> list[str]:
    """What still moves: an (LLM)InferenceService KServe has not reconciled yet, a Deployment whose
    rollout is incomplete (as `kubectl rollout status` judges it), or one whose HPA has not yet
    brought it within its bounds. With KServe's
    autoscalerClass external the Deployment starts at one replica; kube-controller-manager's HPA
    controller raises it to the minimum on its next sync."""
    moving = []
    for ns in namespaces:
        # An InferenceService KServe has not reconciled yet has no status: Helm's wait (kstatus)
        # counts it as current at once, so the release can be Ready before its Deployment exists.
        for kind in ("InferenceService", "LLMInferenceService"):
            try:
                objects = kube.list(kind, ns)
            except KubeError as exc:  # the kind is not installed (no LLM-native model)
                if exc.status != 404:
                    raise
                objects = []
            for obj in objects:
                if not (obj.get("status") or {}).get("conditions") or (kind == "LLMInferenceService"
                                                                        and _llm_settling(obj, objects)):
                    moving.append(f"{kind} {ns}/{obj['metadata']['name']}")
        deployments = {d["metadata"]["name"]: d for d in kube.list("Deployment", ns)}
        for name, d in deployments.items():
            spec, status = d["spec"], d.get("status") or {}
            want = spec.get("replicas", 1)
            if (status.get("observedGeneration", 0) < d["metadata"].get("generation", 0)
                    or status.get("replicas", 0) != want or status.get("updatedReplicas", 0) != want
                    or status.get("availableReplicas", 0) != want):
                moving.append(f"Deployment {ns}/{name}")
        for hpa in kube.list("HorizontalPodAutoscaler", ns):
            target = deployments.get(hpa["spec"]["scaleTargetRef"]["name"])
            if target is None:
                continue  # a wrong target is the selector check's finding, not something to wait for
            replicas = target["spec"].get("replicas", 1)
            if not hpa["spec"].get("minReplicas", 1) <= replicas <= hpa["spec"]["maxReplicas"]:
                moving.append(f"HorizontalPodAutoscaler {ns}/{hpa['metadata']['name']}")
    return moving


def _llm_settling(obj: dict, namespace_llms: list[dict]) -> bool:
    """An LLMInferenceService whose conditions are not yet True (KServe's controller updates them
    after the Deployments it watches become available, or the Gateway accepted the route, a moment
    later), or whose routing group does not yet list every member: a member counts the others once
    their routers are ready, so the weights reach its route last."""
    conditions = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
    if any(conditions.get(kind) != "True" for kind in checks.llm_conditions(obj)):
        return True
    group = checks.routing_group(obj)
    if group is None:
        return False
    members = {o["metadata"]["name"] for o in namespace_llms if checks.routing_group(o) == group}
    listed = {m.get("name") for m in (((obj.get("status") or {}).get("router") or {}).get("group") or {}).get("members") or []}
    return listed != members


def await_rollouts(kube, namespaces, timeout: float = ROLLOUT_SECONDS,
                   gateway: tuple[str, str] | None = None, routed: list[str] | None = None) -> list[str]:
    """Waits until nothing in `namespaces` still moves (or the timeout: what stays unsettled is
    then judged by the checks as it stands, which names the field). With a gateway (namespace,
    name), a thread writes its status and that of its routes in `routed` as they change
    (gateway_status.py), within a tenth of a second as a Gateway implementation would: KServe's
    routing group takes a member out while its route's status is stale, so a slow writer kept two
    members taking each other out of their routes."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def write_status() -> None:
        while not stop.is_set():
            try:
                gateway_status.acknowledge(kube, gateway, routed or namespaces)
            except KubeError:
                pass  # a conflict or a timeout: the next pass writes it
            except BaseException as exc:  # noqa: BLE001 - raised in the waiting thread below
                failures.append(exc)
                return
            stop.wait(0.1)

    writer = threading.Thread(target=write_status, daemon=True) if gateway is not None else None
    if writer is not None:
        writer.start()
    started = time.monotonic()
    try:
        while True:
            moving = unsettled_rollouts(kube, namespaces)
            waited = time.monotonic() - started
            # A routing group settles last, in several rounds between KServe and the Gateway (route,
            # its pool group, the members' readiness, the weights): it may take a while longer.
            routing = all(m.startswith("LLMInferenceService ") for m in moving)
            if failures or not moving or waited >= timeout + (LLM_ROUTING_SECONDS if routing else 0):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        if writer is not None:
            writer.join()
    if failures:
        raise failures[0]
    return moving


def _clean(obj: dict) -> dict:
    # Annotations only matter to Istio on Pods (sidecar and traffic settings).
    drop = _NOISE if obj.get("kind") == "Pod" else (*_NOISE, "annotations")
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k not in drop}}


def _istio(report: EngineReport, plans, platform: PlatformSettings, kube) -> None:
    """Istio's config generation for one pod of every variant and for the gateway; findings for
    the inbound filter chains and routes of each pod, and the gateway and mesh routes."""
    kube_objects, config, providers, hosts = [], [], [], []
    proxies: list[istio.Proxy] = []
    namespaces = sorted({p.namespace for p in plans})
    for key, state in report.states.items():
        for (kind, _), obj in state.installed.items():
            if kind in ISTIO_KINDS:
                config.append(_clean(obj))
                if kind == "AuthorizationPolicy" and obj["spec"].get("action") == "CUSTOM":
                    providers.append(obj["spec"]["provider"]["name"])
                if kind == "VirtualService" and platform.gateway in obj["spec"].get("gateways", []):
                    hosts += [h for h in obj["spec"]["hosts"] if not h.endswith(".svc.cluster.local")]
        for variant, v in state.variants.items():
            # One pod of each component: the predictor's, the transformer's when there is one, an
            # LLM's prefill pods' (its decode pods are its "predictor").
            for component, pods in (("predictor", v.pods), ("transformer", v.transformer_pods),
                                    ("prefill", v.prefill_pods)):
                if pods:
                    pod = pods[0]
                    name = f"{key}/{variant}" + ("" if component == "predictor" else f"/{component}")
                    ip = (pod.get("status") or {}).get("podIP", "")
                    proxies.append(istio.Proxy(name, state.namespace, pod["metadata"].get("labels") or {}, ip))
                    report.pod_of[(key, variant if component == "predictor" else f"{variant}/{component}")] = name
    services: dict[tuple[str, str], dict] = {}
    for ns in namespaces:
        for kind in ("Service", "Pod", "EndpointSlice"):
            for o in kube.list(kind, ns):
                kube_objects.append(_clean(o))
                if kind == "Service":
                    services[(ns, o["metadata"]["name"])] = o
    gw_config, gw_kube = istio.gateway_objects(platform.gateway, hosts)
    proxies.append(istio.Proxy("gateway", platform.gateway.split("/")[0], dict(istio.GATEWAY_LABELS),
                               istio.GATEWAY_IP, "router"))
    mesh, provider_services = istio.mesh_config(providers)
    try:
        report.proxies = istio.generate(istio.Inputs(config + gw_config, kube_objects + gw_kube + provider_services,
                                                     mesh), proxies)
    except istio.IstioError as exc:
        report.findings += [checks.Finding(f"{p.namespace}/{p.name}", "istio", "config generation", "", str(exc))
                            for p in plans]
        return
    for p in plans:
        key = f"{p.namespace}/{p.name}"
        state = report.states[key]
        for variant, v in state.variants.items():
            for component, pods in (("predictor", v.pods), ("transformer", v.transformer_pods),
                                    ("prefill", v.prefill_pods)):
                at = variant if component == "predictor" else f"{variant}/{component}"
                proxy = report.pod_of.get((key, at))
                if proxy is None:
                    continue
                port = report.ports[(key, at)] = serving_port(services, v, component)
                report.findings += checks.istio_findings(key, p.chart_values, variant, pods[0]["metadata"]["name"],
                                                         port, report.proxies[proxy], component)
        report.findings += checks.gateway_findings(key, p.chart_values, report.proxies["gateway"], state,
                                                   platform)
        caller = report.pod_of.get((key, "primary"))
        if caller:
            report.findings += checks.mesh_route_findings(key, p.chart_values, report.proxies[caller], state)


def serving_port(services: dict[tuple[str, str], dict], v, component: str = "predictor") -> int:
    """The pod port traffic for this variant arrives on: the targetPort of the Service KServe
    made for it (its agent's port when the inference logger is on, not the model's)."""
    isvc = v.isvc["metadata"]
    # KServe's Service of an LLMInferenceService selects its decode and prefill pods alike.
    service_name = (f"{isvc['name']}-kserve-workload-svc" if v.isvc.get("kind") == "LLMInferenceService"
                    else f"{isvc['name']}-{component}")
    service = services.get((isvc["namespace"], service_name)) or {}
    pod = {"transformer": v.transformer_pods, "prefill": v.prefill_pods}.get(component, v.pods)[0]
    for port in (service.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, int):
            return target
        for container in pod["spec"]["containers"]:  # a named target port
            for p in container.get("ports") or []:
                if p.get("name") == target:
                    return int(p["containerPort"])
    container = next((c for c in pod["spec"]["containers"] if c["name"] == checks.KSERVE_CONTAINER),
                     pod["spec"]["containers"][0])
    return int(((container.get("ports") or [{}])[0]).get("containerPort", 8080))


def run(plane: ControlPlane, plans, platform: PlatformSettings, root, message: str = "modelplat render") -> EngineReport:
    """The whole run over freshly rendered plans: prerequisites, delivery, verdicts."""
    from .. import render

    gitops = GitOps(plane, engine_platform(platform, plane.git.repo_url))
    needed = prerequisites(plans, gitops.platform)
    if needed:
        plane.apply("---\n".join(yamlout.dump(o) for o in needed))
    files = render.render_tree(plans, gitops.platform)
    started = time.monotonic()
    settled = deliver(plane, gitops, files, plans, message)
    delivered = time.monotonic() - started
    report = verify(plane, gitops, plans, settled, chart_objects(plans, gitops.platform, root))
    report.prerequisites = [f"{o['kind']} {o['metadata'].get('namespace', '') + '/' if o['metadata'].get('namespace') else ''}"
                            f"{o['metadata']['name']}" for o in needed if o["kind"] != "Namespace"]
    report.timings["flux"] = delivered
    return report
