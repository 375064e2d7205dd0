"""The engines that consume the output agree with it: Flux delivers it from Git, KServe's controller
and webhooks turn every InferenceService into the Deployment and Pods the values asked for, every
policy selects exactly the pods KServe made, and Istio's own config generation puts modelplat's
filters and routes where the docs say.

One local control plane a session (modelplat.engines.controlplane), on loopback, always stopped.
The examples and the generated models (tests/engine_models.py) are delivered together; the tests
below then change, break and delete models through Git, in the order they are written.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelplat.engines import checks
from modelplat.engines.cluster_state import helm_release_manifest
from modelplat.engines.controlplane import ControlPlane, Engines
from modelplat.engines.istio import hcm, http_filters, inline_routes

import engine_models
from conftest import EXAMPLES, IN_CI
from envoy_lua import Filter

pytestmark = pytest.mark.engines


def need_engines() -> Engines:
    """The engine binaries. Missing: a failure under CI=true, a skip elsewhere."""
    engines, missing = Engines.find()
    if missing:
        message = f"the engines need {', '.join(missing)} (scripts/install-tools.sh)"
        if IN_CI:
            pytest.fail(message + ": required under CI=true")
        pytest.skip(message)  # never reached when IN_CI: failed above
    return engines


@pytest.fixture(scope="session")
def warmup(request) -> engine_models.Warmup:
    """The control plane and first delivery, started in the background when the session began
    (conftest.py); these tests run last and wait for it here."""
    need_engines()
    warm = getattr(request.config, "engines_warmup", None)
    if warm is None:  # run alone (e.g. -p no:... or a single test id): start it now
        warm = request.config.engines_warmup = engine_models.Warmup()
        warm.start()
    warm.join()
    return warm


@pytest.fixture(scope="session")
def control_plane(warmup) -> ControlPlane:
    return warmup.plane


@pytest.fixture(scope="module")
def models(warmup) -> engine_models.Models:
    print(f"first delivery of {len(warmup.models.plans)} models: Flux settled in "
          f"{warmup.models.report.settled.seconds:.1f}s (control plane: {warmup.plane.timings})")
    return warmup.models


def _findings(report, engine: str, exclude_fields=()) -> list[str]:
    return [str(f) for f in report.findings if f.engine == engine and f.field not in exclude_fields]


# --- 1. Flux -----------------------------------------------------------------------------------------

def test_flux_delivers_every_model_and_each_release_holds_exactly_its_charts_objects(models):
    report = models.report
    assert len(models.plans) >= 26  # every example, the generated models and the runtime models
    assert {(p.namespace, p.name) for p in models.plans} == set(report.settled.releases)
    for release in report.settled.releases.values():
        assert (release.ready, release.revision) == ("True", 1), release
    for name, kustomization in report.settled.kustomizations.items():
        assert checks.condition_status(kustomization) == "True", name
    assert [f for f in report.findings if f.engine == "flux"] == []
    # The release record is Helm's own: it names every object the chart renders, and no more.
    for key, state in report.states.items():
        assert state.release_objects, key
        served_as = {f"{p.namespace}/{p.name}": ("LLMInferenceService" if p.serving == "llm" else "InferenceService")
                     for p in models.plans}[key]
        assert {k for k, _, _ in state.release_objects} >= {served_as, "PeerAuthentication"}, key


def test_flux_applies_the_platform_services_first_and_the_models_after_them(models):
    """Two Kustomizations, as Flux's multi-tenant layouts have them: the platform's applies the
    rate-limit service and waits until it is healthy; the models' depends on it and holds every
    HelmRelease (and Flux's own objects), never a platform service."""
    platform = models.gitops.platform.flux
    kustomizations = models.report.settled.kustomizations
    services, apps = kustomizations[platform.platformKustomizationName], kustomizations[platform.kustomizationName]
    assert apps["spec"]["dependsOn"] == [{"name": platform.platformKustomizationName}]
    assert services["spec"]["wait"] is True

    def inventory(kustomization) -> set[tuple[str, str]]:
        # Flux's entry ids: <namespace>_<name>_<group>_<kind>
        return {(entry["id"].split("_")[-1], entry["id"].split("_")[1])
                for entry in kustomization["status"]["inventory"]["entries"]}

    assert {("Deployment", "ratelimit"), ("Deployment", "redis")} <= inventory(services)
    assert not {kind for kind, _ in inventory(services)} & {"HelmRelease", "Kustomization", "GitRepository"}
    assert {("HelmRelease", p.name) for p in models.plans} <= inventory(apps)
    assert {("Kustomization", platform.platformKustomizationName), ("GitRepository", platform.gitRepository.name)} \
        <= inventory(apps)
    assert not {name for kind, name in inventory(apps) if kind == "Deployment"}
    # Health was checked, not assumed: Flux says so in the Ready message of the platform's.
    assert services["status"]["lastAppliedRevision"] == apps["status"]["lastAppliedRevision"]


# --- 2. KServe ---------------------------------------------------------------------------------------

def test_kserve_turns_every_inferenceservice_into_what_the_values_ask_for(models):
    report = models.report
    assert _findings(report, "kserve", exclude_fields=("selector", "spec.scaleTargetRef")) == []
    variants = [(key, name) for key, s in report.states.items() for name in s.variants]
    assert {v for _, v in variants} == {"primary", "canary", "shadow"}
    for key, state in _isvc_states(report):
        for variant, v in state.variants.items():
            assert checks.condition_status(v.isvc) == "True", (key, variant, v.isvc.get("status"))
            (deployment,) = v.deployments
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert container["name"] == "kserve-container"


def _isvc_states(report):
    return [(key, state) for key, state in report.states.items()
            if state.variants and state.variants["primary"].isvc["kind"] == "InferenceService"]


def test_kserve_llm_controller_makes_the_workloads_pool_and_route_the_values_ask_for(models):
    """KServe's LLMInferenceService controller (cmd/llmisvc) reconciled the LLM-native examples:
    decode and prefill Deployments, the endpoint picker, the InferencePool and the HTTPRoute (the
    field by field judging is checks.llm_findings, asserted empty above; this reads a few of the
    things it judged back from the cluster, so a check that passes vacuously shows here)."""
    report = models.report
    llama, qwen = report.states["llm-70b/llama-70b"], report.states["llm-native/qwen-chat"]
    assert [f for f in report.findings if f.model in ("llm-70b/llama-70b", "llm-native/qwen-chat")] == []
    v = llama.variants["primary"]
    assert v.isvc["kind"] == "LLMInferenceService"
    (decode,), (prefill,) = v.deployments, v.prefills
    assert (decode["metadata"]["name"], prefill["metadata"]["name"]) == ("llama-70b-kserve", "llama-70b-kserve-prefill")
    assert (decode["spec"]["replicas"], prefill["spec"]["replicas"]) == (2, 3)  # the HPA's minimum; fixed
    assert (len(v.pods), len(v.prefill_pods)) == (2, 3)
    pod = decode["spec"]["template"]
    # The P/D decode preset puts llm-d's routing sidecar in front of vLLM (a native sidecar).
    assert "llm-d-routing-sidecar" in [c["name"] for c in pod["spec"].get("initContainers") or []]
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert main["resources"]["limits"]["nvidia.com/rdma_vf"] == "1"
    assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "llm-70b/kv-transfer"
    assert "--tensor-parallel-size 8" in " ".join(main.get("command", []) + main.get("args", []))
    # The pool selects the model's decode and prefill pods, and nothing else (not the endpoint picker).
    pool = llama.routing["InferencePool"]
    pods = models.plane.kube.list("Pod", "llm-70b")
    selected = {p["metadata"]["name"] for p in pods if checks.selects(pool["spec"]["selector"], p["metadata"]["labels"])}
    assert selected == {p["metadata"]["name"] for p in v.pods + v.prefill_pods}
    assert [d["metadata"]["name"] for d in v.schedulers] == ["llama-70b-kserve-router-scheduler"]
    route = llama.routing["HTTPRoute"]
    assert route["spec"]["parentRefs"][0]["name"] == "inference-gateway"
    assert {b["name"] for r in route["spec"]["rules"] for b in r["backendRefs"] if b["kind"] == "InferencePool"} \
        == {"llama-70b-inference-pool"}
    # LoRA adapters reach vLLM; the objectives name the model's pool.
    qmain = next(c for c in qwen.variants["primary"].deployments[0]["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "main")
    assert "--enable-lora" in qmain.get("args", []) and "--max-lora-rank=32" in qmain.get("args", [])
    objectives = {name: o for (kind, name), o in qwen.installed.items() if kind == "InferenceObjective"}
    assert {name: (o["spec"]["priority"], o["spec"]["poolRef"]["name"]) for name, o in objectives.items()} == {
        "qwen-chat-interactive": (10, "qwen-chat-inference-pool"), "qwen-chat-batch": (-10, "qwen-chat-inference-pool"),
        "qwen-chat-canary-interactive": (10, "qwen-chat-canary-inference-pool"),
        "qwen-chat-canary-batch": (-10, "qwen-chat-canary-inference-pool")}


def test_kserve_splits_an_llms_requests_between_it_and_its_canary_by_the_weights(models):
    """qwen-chat (primaryLoad 90) and qwen-chat-canary form KServe's routing group: once the
    Gateway accepted both members' routes (gateway_status.py plays its status), each member's
    HTTPRoute sends the requests they share to both InferencePools, 90:10, and keeps the member's own
    /<namespace>/<member>/ address to its own pool; the canary's pods run the canary's model."""
    qwen = models.report.states["llm-native/qwen-chat"]
    primary, canary = qwen.variants["primary"], qwen.variants["canary"]
    assert canary.isvc["metadata"]["name"] == "qwen-chat-canary" and len(canary.pods) == 2
    weights = {"qwen-chat-inference-pool": 90, "qwen-chat-canary-inference-pool": 10}
    for v in (primary, canary):
        member = v.isvc["metadata"]["name"]
        conditions = {c["type"]: c["status"] for c in v.isvc["status"]["conditions"]}
        assert conditions["Ready"] == conditions["GroupReady"] == "True"
        group = v.isvc["status"]["router"]["group"]
        assert {m["name"]: m["weight"] for m in group["members"]} == {"qwen-chat": 90, "qwen-chat-canary": 10}
        split, own = [], []
        # The Gateway refused the pre-v1 pool group (as Istio does): KServe moved its route to v1.
        assert {b.get("group") for r in v.routing["HTTPRoute"]["spec"]["rules"] for b in r["backendRefs"]
                if b["kind"] == "InferencePool"} == {"inference.networking.k8s.io"}
        for rule in v.routing["HTTPRoute"]["spec"]["rules"]:
            pools = {b["name"]: b.get("weight") for b in rule["backendRefs"] if b["kind"] == "InferencePool"}
            paths = [(m.get("path") or {}).get("value", "") for m in rule.get("matches") or []]
            if pools and any(path.startswith(f"/llm-native/{member}/") for path in paths):
                own.append(pools)
            elif pools:
                split.append(pools)
        assert split and all(pools == weights for pools in split)
        assert own and all(pools == {f"{member}-inference-pool": 1} for pools in own)
    # What the controller made of each member's model: the canary's pods fetch the canary's model.
    def fetched(v) -> str:
        template = v.deployments[0]["spec"]["template"]["spec"]
        return " ".join(a for c in template.get("initContainers") or [] for a in c.get("args") or [])
    assert "hf://Qwen/Qwen2.5-7B-Instruct-1M" in fetched(canary)
    assert "hf://Qwen/Qwen2.5-7B-Instruct-1M" not in fetched(primary)


def test_an_llm_mirrored_and_canaried_by_header_is_routed_by_the_charts_route(models):
    """llm-shadow/chat: a header-matched canary and a mirror, which KServe's route cannot carry. The
    chart's HTTPRoute chat is the route both members refer to (KServe makes none of its own), and
    the Gateway accepted it with every backend resolved; the mirror's target, the shadow's workload
    Service, selects the shadow's pods, which have no router, are mirrored traffic, and whose
    sidecars count no tokens and no requests (a mirrored prompt is never charged twice)."""
    report, key = models.report, "llm-shadow/chat"
    state = report.states[key]
    assert [f for f in report.findings if f.model == key] == []
    assert set(state.variants) == {"primary", "canary", "shadow"}
    route = state.variants["primary"].routing["HTTPRoute"]
    assert route["metadata"]["name"] == "chat" and state.variants["canary"].routing["HTTPRoute"] is not None
    assert not any("HTTPRoute.kserve" in v.routing for v in state.variants.values())
    (parent,) = route["status"]["parents"]
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {"Accepted": "True", "ResolvedRefs": "True"}
    mirror = route["spec"]["rules"][-1]["filters"][-1]["requestMirror"]
    assert mirror["backendRef"]["name"] == "chat-shadow-kserve-workload-svc"
    shadow = state.variants["shadow"]
    assert "router" not in shadow.isvc["spec"] and not shadow.schedulers and len(shadow.pods) == 1
    selector = shadow.routing["Service.workload"]["spec"]["selector"]
    assert all(checks.selects({"matchLabels": selector}, p["metadata"]["labels"]) for p in shadow.pods)
    assert shadow.pods[0]["metadata"]["labels"]["modelplat.io/traffic"] == "mirrored"
    filters = lambda at: [f["name"] for f in http_filters(  # noqa: E731
        report.proxies[report.pod_of[(key, at)]].inbound_chains(report.ports[(key, at)])[0])]
    assert checks.TOKENS_LUA in filters("primary") and checks.TOKENS_LUA in filters("canary")
    assert checks.TOKENS_LUA not in filters("shadow") and checks.JWT in filters("shadow")


def test_an_llms_limits_count_at_its_decode_pods_never_at_its_prefill_pods(models):
    """Istio's config generation for the pods KServe made for llama-70b: the request limit and token
    quota filters sit on the decode pods' sidecars (where a client's request arrives once) and not
    on the prefill pods', whose requests come from the decode pods' routing sidecar; the mesh's
    authentication and authorization guard both."""
    report, key = models.report, "llm-70b/llama-70b"

    def filters(at: str) -> list[str]:
        config = report.proxies[report.pod_of[(key, at)]]
        (chain, *_) = config.inbound_chains(report.ports[(key, at)])
        return [f["name"] for f in http_filters(chain)]

    decode, prefill = filters("primary"), filters("primary/prefill")
    assert report.ports[(key, "primary")] == report.ports[(key, "primary/prefill")] == 8000
    for counted in (checks.RATELIMIT, checks.TOKENS_LUA):
        assert counted in decode and counted not in prefill
    for guard in (checks.JWT, checks.RBAC):
        assert guard in decode and guard in prefill


def test_a_multi_node_llm_is_a_leaderworkerset_of_data_parallel_groups(models):
    """llm-dp/moe: data 4 over dataLocal 2 makes each replica a LeaderWorkerSet group of two pods,
    both running vLLM's data-parallel ranks with the GPUs asked; the HPA scales whole groups."""
    report, key = models.report, "llm-dp/moe"
    assert report.by_model(key) == []
    v = report.states[key].variants["primary"]
    assert v.deployments == [] and [g["metadata"]["name"] for g in v.groups] == ["moe-kserve-mn"]
    template = v.groups[0]["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    for part in ("leaderTemplate", "workerTemplate"):
        main = next(c for c in template[part]["spec"]["containers"] if c["name"] == "main")
        assert main["resources"]["limits"]["nvidia.com/gpu"] == "2"
        command = " ".join(main.get("command", []) + main.get("args", []))
        assert "--data-parallel-size 4" in command and "--enable-expert-parallel" in command
        # Granted by KServe's data-parallel preset though the values ask for none (lint warns:
        # llm-capabilities); the engines check the exact set.
        assert set(main["securityContext"]["capabilities"]["add"]) == checks.DATA_PARALLEL_CAPABILITIES
    (hpa,) = [o for (kind, _), o in report.states[key].installed.items() if kind == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                                             "name": "moe-kserve-mn"}


def test_what_kserve_adds_on_its_own_is_known(models):
    """KServe's defaulting and pod mutator add things the values never asked for: each is listed
    here (and in docs/checks.md) so a new KServe release that changes them is noticed."""
    for key, state in _isvc_states(models.report):
        v = state.variants["primary"]
        pod = v.pods[0]
        containers = [c["name"] for c in pod["spec"]["containers"]]
        assert containers[0] == "kserve-container", (key, containers)
        values = next(p.chart_values for p in models.plans if f"{p.namespace}/{p.name}" == key)
        assert set(containers) <= {"kserve-container", "agent"}, (key, containers)
        assert ("agent" in containers) == bool(values.get("logger")), (key, containers)
        uri = values["model"]["storageUri"]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        assert inits == ["storage-initializer"], (key, uri, inits)


# --- 3. Selectors ------------------------------------------------------------------------------------

def test_every_policy_selects_exactly_the_pods_kserve_made_for_its_model(models):
    report = models.report
    assert [str(f) for f in report.findings if f.field in ("selector", "spec.scaleTargetRef")] == []
    selecting = [(key, kind) for key, s in report.states.items() for (kind, _) in s.installed
                 if kind in checks.SELECTING_KINDS or kind == "HorizontalPodAutoscaler"]
    assert {kind for _, kind in selecting} == set(checks.SELECTING_KINDS) | {"HorizontalPodAutoscaler"}


# --- 4. Istio ----------------------------------------------------------------------------------------

def test_istio_puts_every_promised_filter_and_route_config_on_each_model_pod(models):
    report = models.report
    assert _findings(report, "istio") == []
    # Every variant of every model got a proxy config (a transformer's pod one more), and the gateway.
    transformers = sum(1 for s in report.states.values() for v in s.variants.values() if v.transformer_pods)
    assert transformers == 2  # runtimes/bert: the primary's and the canary's
    prefills = sum(1 for s in report.states.values() for v in s.variants.values() if v.prefill_pods)
    assert prefills == 1  # llm-70b/llama-70b
    # A multi-node LLM's pods come from the LeaderWorkerSet controller, which the engines do not run.
    with_pods = sum(1 for s in report.states.values() for v in s.variants.values() if v.pods)
    assert with_pods == sum(len(s.variants) for s in report.states.values()) - 1  # llm-dp/moe
    assert len(report.proxies) == with_pods + transformers + prefills + 1


def _chain(models, key: str, variant: str = "primary"):
    report = models.report
    config = report.proxies[report.pod_of[(key, variant)]]
    (chain, *_) = config.inbound_chains(report.ports[(key, variant)])
    return chain


def test_the_token_lua_istio_generated_counts_a_streamed_response(models):
    chain = _chain(models, "llm/qwen-chat")
    (lua,) = [f for f in http_filters(chain) if f["name"] == checks.TOKENS_LUA]
    source = lua["typed_config"]["default_source_code"]["inline_string"]
    (route, *_) = [r for vh in inline_routes(chain) for r in vh["routes"]]
    metadata = route["metadata"]["filter_metadata"]
    f = Filter(source, checks.TOKENS_LUA, metadata)
    stream = f.stream()
    stream.request({":path": "/v1/chat/completions", ":method": "POST", "x-modelplat-sa": "svc-a"},
                   [b'{"model":"qwen","stream":true}'])
    body = (b'data: {"choices":[]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,'
            b'"total_tokens":7}}\n\ndata: [DONE]\n\n')
    stream.response({":status": "200", "content-type": "text/event-stream"}, [body[:20], body[20:]])
    assert int(stream.metadata("modelplat.tokens")["used"]) == 7


def test_the_identity_lua_istio_generated_strips_claim_headers_before_jwt(models):
    chain = _chain(models, "llm/qwen-chat")
    names = [f["name"] for f in http_filters(chain)]
    assert names.index(checks.IDENTITY_LUA) < names.index(checks.JWT)
    (lua,) = [f for f in http_filters(chain) if f["name"] == checks.IDENTITY_LUA]
    source = lua["typed_config"]["default_source_code"]["inline_string"]
    (route, *_) = [r for vh in inline_routes(chain) for r in vh["routes"]]
    f = Filter(source, checks.IDENTITY_LUA, route["metadata"]["filter_metadata"])
    out = f.stream().request({":path": "/v1/models", "x-modelplat-sa": "forged", "x-modelplat-tenant": "forged",
                              "x-keep": "1"})
    assert out.header("x-modelplat-sa") is None and out.header("x-modelplat-tenant") is None
    assert out.header("x-keep") == "1"


def test_the_gateway_routes_the_split_and_the_mirror_as_the_values_ask(models):
    report = models.report
    gateway = report.proxies["gateway"]
    # An LLMInferenceService is routed by KServe's HTTPRoute on the Gateway API Gateway instead.
    exposed = [p for p in models.plans if p.chart_values["exposeModel"]["enabled"] and p.serving != "llm"]
    assert exposed
    for p in exposed:
        host = p.chart_values["exposeModel"]["host"]
        assert any(host in vh.get("domains", []) for rc in gateway.routes for vh in rc.get("virtual_hosts", [])), host


def test_a_transformer_is_where_the_gateway_routes_and_requests_are_counted(models):
    """The triton + tokenizer shape: Istio routes the exposed host, split with the canary, to the
    transformers' Services, and the request limit filter sits on the transformer's sidecar, not on
    the predictor's behind it."""
    report, key = models.report, "runtimes/bert"
    values = next(p.chart_values for p in models.plans if f"{p.namespace}/{p.name}" == key)
    vhosts = checks._vhosts_for(report.proxies["gateway"], values["exposeModel"]["host"])
    weights = {c["name"]: c["weight"] for vh in vhosts for r in vh["routes"]
               for c in ((r.get("route") or {}).get("weighted_clusters") or {}).get("clusters") or []}
    assert weights == {"outbound|80||bert-transformer.runtimes.svc.cluster.local": 80,
                       "outbound|80||bert-canary-transformer.runtimes.svc.cluster.local": 20}

    def filters(at: str) -> list[str]:
        config = report.proxies[report.pod_of[(key, at)]]
        (chain, *_) = config.inbound_chains(report.ports[(key, at)])
        return [f["name"] for f in http_filters(chain)]

    assert checks.RATELIMIT in filters("primary/transformer") and checks.RATELIMIT in filters("canary/transformer")
    assert checks.RATELIMIT not in filters("primary") and checks.JWT in filters("primary")
    state = report.states[key]
    (deployment,) = state.variants["canary"].transformers
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--model_name=bert" in args and "--predictor_host" in args  # the primary's model; KServe's host


def test_the_istio_checks_fail_on_a_wrong_weight_a_missing_filter_or_a_lost_mirror(models):
    """The Istio checks read Envoy's config, so a config that differs from the values fails them:
    the generated config, edited the way a broken VirtualService or EnvoyFilter would change it."""
    import copy

    report = models.report
    plans = {f"{p.namespace}/{p.name}": p for p in models.plans}
    split = next(k for k, p in plans.items() if p.chart_values["exposeModel"]["enabled"]
                 and p.chart_values["canary"]["enabled"])
    values, state = plans[split].chart_values, report.states[split]
    gateway = copy.deepcopy(report.proxies["gateway"])
    assert checks.gateway_findings(split, values, gateway, state, models.gitops.platform) == []
    host = values["exposeModel"]["host"]
    for vh in checks._vhosts_for(gateway, host):
        for cluster in vh["routes"][-1]["route"]["weighted_clusters"]["clusters"]:
            cluster["weight"] = 50
    assert [f.field for f in checks.gateway_findings(split, values, gateway, state, models.gitops.platform)] == \
        [f"route {vh['routes'][-1].get('name')} weighted_clusters" for vh in checks._vhosts_for(gateway, host)]

    mirrored = next(k for k, p in plans.items() if p.chart_values["mirror"]["enabled"])
    caller = copy.deepcopy(report.proxies[report.pod_of[(mirrored, "primary")]])
    values, state = plans[mirrored].chart_values, report.states[mirrored]
    assert checks.mesh_route_findings(mirrored, values, caller, state) == []
    host = f"{state.name}-predictor.{state.namespace}.svc.cluster.local"
    for vh in checks._vhosts_for(caller, host):
        vh["routes"][-1]["route"].pop("request_mirror_policies", None)
    assert checks.mesh_route_findings(mirrored, values, caller, state)

    limited = next(k for k, p in plans.items() if p.chart_values.get("ratelimitIPPerMinute"))
    config = copy.deepcopy(report.proxies[report.pod_of[(limited, "primary")]])
    port = report.ports[(limited, "primary")]
    for chain in config.inbound_chains(port):
        hcm = next(f["typed_config"] for f in chain["filters"] if f["name"] == "envoy.filters.network.http_connection_manager")
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != checks.RATELIMIT]
    found = checks.istio_findings(limited, plans[limited].chart_values, "primary", "pod", port, config)
    assert found and all("http_filters" in f.field for f in found)



def test_the_safety_check_fails_on_a_filter_left_on_a_path_unscreened_or_a_route_that_goes_elsewhere(models):
    """The prompt-safety check on Istio's real output for a screened model (the example qwen-chat),
    each time with one thing broken the way a wrong EnvoyFilter would break it."""
    import copy

    report = models.report
    plans = {f"{p.namespace}/{p.name}": p for p in models.plans}
    screened = "llm/qwen-chat"
    values = plans[screened].chart_values
    assert values["safety"]["kind"] == "extProc"
    port = report.ports[(screened, "primary")]
    clean = report.proxies[report.pod_of[(screened, "primary")]]
    assert checks.istio_findings(screened, values, "primary", "pod", port, clean) == []

    def broken(change) -> list[str]:
        config = copy.deepcopy(clean)
        for chain in config.inbound_chains(port):
            change(hcm(chain))
        return [f.field + ": " + f.message for f in checks.istio_findings(screened, values, "primary", "pod", port, config)]

    def filter_on(hcm):
        next(f for f in hcm["http_filters"] if f["name"] == checks.SAFETY).pop("disabled")

    def path_unscreened(hcm):
        hcm["route_config"]["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"].pop(checks.SAFETY)

    def elsewhere(hcm):
        hcm["route_config"]["virtual_hosts"][0]["routes"][1]["route"]["timeout"] = "15s"

    def after_default(hcm):
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        routes.insert(0, routes.pop())

    assert any("on for every route" in f for f in broken(filter_on))
    assert any("the safety filter is on for" in f for f in broken(path_unscreened))
    assert any("route modelplat-safety-1 route" in f and "15s" in f for f in broken(elsewhere))
    assert any("catch-all" in f for f in broken(after_default))

# --- 5. Changes through Git --------------------------------------------------------------------------

def _tamper(files: dict[str, bytes], chart: str, template: str, old: bytes, new: bytes, mark: str) -> None:
    """Edits one rendered chart file by hand, and its Chart.yaml version with it: Flux repackages a
    chart only when its version changes (reconcileStrategy: ChartVersion)."""
    key = f"{chart}/templates/{template}"
    assert old in files[key], (key, old)
    files[key] = files[key].replace(old, new, 1)
    chart_yaml = f"{chart}/Chart.yaml"
    version = re.search(rb'^version: "([^"]+)"', files[chart_yaml], re.M).group(1)
    files[chart_yaml] = files[chart_yaml].replace(version, version + b"." + mark.encode(), 1)


IRIS, TYPO, REFUSED, PRUNED = ("ml-demo", "iris"), ("fraud", "xgb-scorer"), ("gen-2", "m06"), ("llm", "qwen-embed")


@pytest.fixture(scope="module")
def one_commit(models) -> SimpleNamespace:
    """One commit with three changes, as a busy monorepo makes them: a values file edited (iris:
    3 replicas), a label typo planted by hand in one chart's selectors (xgb-scorer), and a chart
    the API server refuses (an object name that is no DNS name)."""
    before = {k: r.revision for k, r in models.report.settled.releases.items()}
    engine_models.edit(models.root / "ml-demo" / "iris.yaml", lambda d: d.__setitem__("replicaCount", 3))
    models.rerun()
    files = models.files()
    _tamper(files, "fraud/xgb-scorer/chart", "_helpers.tpl", b"modelplat.io/model: {{", b"modelplat.io/modle: {{",
            "typo")
    _tamper(files, "gen-2/m06/chart", "peerauthentication.yaml", b'name: {{ include "modelplat.name" . | quote }}',
            b'name: "Not_A_DNS_Name"', "refused")
    settled = models.deliver(files, "iris: 3 replicas; a typo in xgb-scorer; a chart the API server refuses")
    return SimpleNamespace(before=before, settled=settled, report=models.verify(settled, files, istio_config=False))


@pytest.fixture(scope="module")
def next_commit(models, one_commit) -> SimpleNamespace:
    """The commit after: both charts rendered by modelplat again, and qwen-embed's values file
    deleted."""
    (models.root / "llm" / "qwen-embed.yaml").unlink()
    models.rerun()
    settled = models.deliver(message="xgb-scorer and m06 rendered again; qwen-embed removed")
    return SimpleNamespace(settled=settled, report=models.verify(settled, istio_config=False))


def test_one_commit_upgrades_exactly_the_releases_whose_chart_changed(models, one_commit):
    before = one_commit.before
    after = {k: r.revision for k, r in one_commit.settled.releases.items()}
    assert {k for k in after if after[k] != before[k]} == {IRIS, TYPO, REFUSED}
    # +1, or +2 when helm-controller saw the new values before the new chart's artifact (two
    # Flux sources change in one commit: the HelmRelease and its chart); the refused chart's
    # failed upgrade and its rollback are a revision each.
    for key, most in ((IRIS, 2), (TYPO, 2), (REFUSED, 3)):
        assert before[key] < after[key] <= before[key] + most, (key, before[key], after[key])
    assert one_commit.settled.releases[IRIS].ready == "True"
    deployment = models.plane.kube.get("Deployment", "ml-demo", "iris-predictor")
    assert deployment["spec"]["replicas"] == 3  # KServe applied the new minReplicas
    # Scaling is not a new pod template: the running pods were kept (no rolling restart).
    assert deployment["metadata"]["generation"] >= 2
    template_hashes = {p["metadata"]["labels"].get("pod-template-hash")
                       for p in models.plane.kube.list("Pod", "ml-demo", label_selector="serving.kserve.io/inferenceservice=iris")}
    assert len(template_hashes) == 1, template_hashes


def test_a_planted_label_typo_fails_the_selector_check(one_commit):
    report = one_commit.report
    broken = {(f.resource.split()[0], f.field) for f in report.by_model("fraud/xgb-scorer")}
    assert ("PeerAuthentication", "selector") in broken and ("AuthorizationPolicy", "selector") in broken
    assert not [f for f in report.findings if f.field == "selector" and f.model != "fraud/xgb-scorer"]


def test_a_chart_that_fails_to_install_is_a_failed_helmrelease_with_the_reason(one_commit, next_commit):
    release = one_commit.settled.releases[REFUSED]
    assert release.ready == "False", release
    # helm-controller keeps the upgrade's failure on a condition (Released, or Ready until its
    # remediation rolls the release back): the API server's refusal, naming the object.
    conditions = release.object["status"]["conditions"]
    refused = [c for c in conditions if c["status"] == "False" and "Not_A_DNS_Name" in c.get("message", "")]
    assert refused, conditions
    assert {f.model for f in one_commit.report.findings if f.engine == "flux"} == {"gen-2/m06"}
    assert all(r.ready == "True" for k, r in one_commit.settled.releases.items() if k != REFUSED)
    # Fixing the chart needs no `flux reconcile helmrelease --reset`, though the retries are
    # exhausted (retries: 0 here): a chart version carries the digest of the chart, so the fix is
    # a new version, and helm-controller resets the failure count of a release whose chart
    # version differs from its last attempt.
    assert next_commit.settled.releases[REFUSED].ready == "True", next_commit.settled.releases[REFUSED]
    # With both charts rendered by modelplat again, the engines find nothing anywhere.
    assert [str(f) for f in next_commit.report.findings] == []


def test_deleting_a_values_file_prunes_its_release_and_everything_it_installed(models, next_commit):
    kube = models.plane.kube
    assert PRUNED not in next_commit.settled.releases
    assert ("llm", "qwen-chat") in next_commit.settled.releases
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = [kind for kind in ("InferenceService", "Deployment", "Service", "EnvoyFilter", "PeerAuthentication")
                if kube.get(kind, "llm", "qwen-embed" if kind not in ("Deployment", "Service")
                            else "qwen-embed-predictor") is not None]
        pods = [p for p in kube.list("Pod", "llm") if p["metadata"]["name"].startswith("qwen-embed-")]
        if not left and not pods and helm_release_manifest(kube, "llm", "qwen-embed") == (0, ""):
            break
        time.sleep(1)
    assert (left, pods) == ([], [])
    assert helm_release_manifest(kube, "llm", "qwen-embed") == (0, "")


# --- 6. For users: lint --engines ---------------------------------------------------------------------

def test_lint_engines_adds_a_column_per_engine_blaming_the_model_resource_and_field(tree):
    """End to end as a user runs it (its own control plane). A runtime name the cluster does not
    have passes every static check; only KServe's controller can say that it serves nothing."""
    import json

    from conftest import modelplat

    need_engines()
    good = "model:\n  format: sklearn\n  storageUri: gs://models/iris\n  protocol: v2\n"
    root = tree({"demo/iris.yaml": good,
                 "demo/typo.yaml": good + "  runtime: kserve-sklearnserve\n"},
                platform=(EXAMPLES / "platform.yaml").read_text())
    proc = modelplat("lint", str(root), "--engines", "--require-tools", "--format", "json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {Path(m["file"]).stem: m["checks"] for m in report["models"]}
    # Every static check of the same run (schema, rules and the real tools) accepts both models.
    static = {k: v["status"] for k, v in rows["typo"].items() if k not in ("flux", "kserve", "istio")}
    assert len(static) >= 8 and set(static.values()) == {"pass"}, static
    assert {k: v["status"] for k, v in rows["iris"].items() if k not in ("flux", "kserve", "istio")} == static
    assert {k: v["status"] for k, v in rows["iris"].items() if k in ("flux", "kserve", "istio")} == \
        {"flux": "pass", "kserve": "pass", "istio": "pass"}
    assert rows["typo"]["kserve"]["status"] == "fail"
    assert "InferenceService typo" in rows["typo"]["kserve"]["detail"]
    assert "Deployments" in rows["typo"]["kserve"]["detail"]
    assert {"kserve-manager", "helm-controller", "sidecar-config"} <= set(report["tools"])


# --- 7. Coming from KServe: an imported InferenceService makes the Deployment the original makes ------

SAMPLES = Path(__file__).resolve().parent / "data" / "kserve-samples"
ORIGINALS, IMPORTED = "kserve-original", "kserve-imported"

# What modelplat adds to every model as platform policy (docs/coming-from-kserve.md, "Differences you
# will see in the Deployment"): paths of the flattened pod template that may differ.
POLICY = (
    "metadata.labels.",                 # app.kubernetes.io/*, modelplat.io/* (selectors, stable labels)
    "metadata.annotations.prometheus.io/",  # scrape annotations, per runtime's metrics port
    "spec.affinity",                    # GPU node group: In for GPU pods, NotIn for the others
    "spec.tolerations",                 # the platform's GPU taint, for GPU pods only
    "spec.volumes",                     # /dev/shm for GPU and LLM models
    "containers.kserve-container.volumeMounts",
    "containers.kserve-container.ports",  # the serving port is always declared (Istio, PodMonitors)
    "metadata.annotations.serving.kserve.io/autoscalerClass",  # none, or external: the chart's HPA
)
# Fields an import reports as not carried over (the sample's "not imported" lines), as pod paths.
UNMAPPED_AS_POD = {
    "spec.predictor.model.volumeMounts": "containers.kserve-container.volumeMounts",
    "spec.predictor.affinity": "spec.affinity", "spec.predictor.tolerations": "spec.tolerations",
    "spec.predictor.imagePullSecrets": "spec.imagePullSecrets", "spec.predictor.securityContext": "spec.securityContext",
    "spec.predictor.terminationGracePeriodSeconds": "spec.terminationGracePeriodSeconds",
    "spec.predictor.volumes": "spec.volumes",
    "spec.predictor.batcher": "metadata.annotations.internal.serving.kserve.io/batcher",
}


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def _pod_template(deployment: dict) -> dict[str, object]:
    """A Deployment's pod template, flattened; containers keyed by name, env by variable name."""
    from modelplat.engines.checks import quantity

    template = deployment["spec"]["template"]
    spec = dict(template["spec"])
    containers = {}
    for c in spec.pop("containers"):
        c = dict(c)
        c["env"] = {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env") or []}
        for section in ("requests", "limits"):  # 1 and "1", 2Gi and 2147483648 are one quantity
            block = (c.get("resources") or {}).get(section)
            if block:
                c["resources"][section] = {k: quantity(v) for k, v in block.items()}
        containers[c.pop("name")] = c
    spec.pop("initContainers", None)  # KServe's storage initializer, compared through storageUri
    flat = _flat({"metadata": {k: template["metadata"].get(k) or {} for k in ("labels", "annotations")},
                  "spec": spec})
    flat.update(_flat(containers, "containers"))
    return flat


def _differences(original: dict, imported: dict) -> set[str]:
    # The namespaces differ by construction (KServe writes them into --predictor_host).
    a = json.loads(json.dumps(_pod_template(original)).replace(ORIGINALS, "NAMESPACE"))
    b = json.loads(json.dumps(_pod_template(imported)).replace(IMPORTED, "NAMESPACE"))
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def _allowed(path: str, unmapped: set[str], original: dict[str, object]) -> bool:
    if any(path.startswith(p) for p in POLICY):
        return True
    if any(path.startswith(UNMAPPED_AS_POD[u]) for u in unmapped if u in UNMAPPED_AS_POD):
        return True
    # Explicit limits: KServe's defaulting caps a container without limits at its configured
    # default (1 CPU, 2Gi); modelplat's limit is the request (docs/values.md).
    return ".resources.limits." in path and path not in original


def _kserve_labels(flat: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in flat.items() if k in ("metadata.labels.app", "metadata.labels.component")
            or k.startswith("metadata.labels.serving.kserve.io/")}


def test_imported_samples_make_the_deployments_their_originals_make(control_plane, tmp_path):
    """Every InferenceService of tests/data/kserve-samples, applied as written and as modelplat
    renders it after `modelplat import`, side by side: KServe's controller turns both into the same
    Deployments, field by field, except the platform's policy and what the import reported."""
    import subprocess

    from modelplat import pipeline as pipe
    from modelplat.kserve_import import import_file
    from modelplat.render import render_tree
    from ruamel.yaml import YAML

    from conftest import need_tool

    yaml = YAML(typ="safe")
    helm = need_tool("helm")
    kube = control_plane.kube
    root = tmp_path / "models"
    (root / IMPORTED).mkdir(parents=True)
    (root / "platform.yaml").write_text((EXAMPLES / "platform.yaml").read_text())
    originals, unmapped = [], {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        documents = [d for d in yaml.load_all(path.read_text()) if d]
        for document in documents:
            document["metadata"]["namespace"] = ORIGINALS
            # The mode modelplat serves every model in; the cluster's default may be Knative's.
            document["metadata"].setdefault("annotations", {})["serving.kserve.io/deploymentMode"] = "RawDeployment"
            originals.append(document)
        for values, lines in import_file(path.read_text(), str(path)):
            values["namespace"] = IMPORTED
            (root / IMPORTED / f"{values['name']}.yaml").write_text(json.dumps(values))
            unmapped[values["name"]] = {line.split(": ", 1)[0] for line in lines}
    run = pipe.run([root])
    assert not run.errors, [d.format() for d in run.errors]
    out = tmp_path / "out"
    for rel, content in render_tree(run.plans, run.platform).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(content)
    ours = []
    for p in run.plans:
        text = subprocess.run([helm, "template", p.name, str(out / IMPORTED / p.name / "chart"), "--namespace",
                               IMPORTED, "-f", "-"], input=json.dumps(p.chart_values), capture_output=True,
                              text=True, check=True).stdout
        ours += [d for d in yaml.load_all(text) if d and d["kind"] == "InferenceService"]
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in (ORIGINALS, IMPORTED)]
    for namespace in (ORIGINALS, IMPORTED):  # the samples' service accounts, which a platform team creates
        objects += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}
                    for sa in {d["spec"]["predictor"].get("serviceAccountName") for d in originals} - {None}]
    control_plane.apply("\n---\n".join(json.dumps(o) for o in objects + originals + ours))

    expected = {(d["metadata"]["name"], f"{d['metadata']['name']}-{component}")
                for d in originals for component in ("predictor", "transformer") if component in d["spec"]}
    assert len(expected) == len(originals) + 1  # one sample has a transformer
    deadline, missing = time.monotonic() + 180, expected
    while missing and time.monotonic() < deadline:
        missing = {(n, d) for n, d in expected
                   if kube.get("Deployment", ORIGINALS, d) is None or kube.get("Deployment", IMPORTED, d) is None}
        time.sleep(1)
    if missing:
        why = {n: [(ns, (kube.get("InferenceService", ns, n) or {}).get("status", {}).get("conditions"))
                   for ns in (ORIGINALS, IMPORTED)] for n, _ in missing}
        pytest.fail(f"KServe made no Deployment for {sorted(missing)}: {json.dumps(why, default=str)[:4000]}")
    report = {}
    for name, deployment in sorted(expected):
        original = kube.get("Deployment", ORIGINALS, deployment)
        imported = kube.get("Deployment", IMPORTED, deployment)
        flat_original = _pod_template(original)
        differing = _differences(original, imported)
        unexpected = sorted(p for p in differing if not _allowed(p, unmapped[name], flat_original))
        if unexpected:
            report[deployment] = {p: (flat_original.get(p), _pod_template(imported).get(p)) for p in unexpected}
        # KServe's own labels (component, app, the InferenceService) are the same on both.
        assert _kserve_labels(flat_original) == _kserve_labels(_pod_template(imported)), deployment
    assert report == {}, json.dumps(report, default=str)[:12000]
    # KServe gives the transformer a Service of its own, where modelplat's routes send clients.
    bert = next(d["metadata"]["name"] for d in originals if "transformer" in d["spec"])
    assert kube.get("Service", IMPORTED, f"{bert}-transformer") is not None

