"""The platform's `routing: gateway-api`: exposure, canary weights, header-matched canary and
mirroring of InferenceServices as Gateway API HTTPRoutes, checked by helm, kubeconform -strict
against the vendored Gateway API schemas and a real API server's dry-run with the vendored CRDs;
and a mirrored LLM never charges the caller's token quota twice."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelplat.engines import checks, istio

from conftest import EXAMPLES, modelplat, need_tool
from test_real_tools import helmrelease_values, template

GATEWAY_API = "routing: gateway-api\ngatewayApi:\n  gateway: gateway-system/models\n"


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """The InferenceService examples rendered with the platform's routing: gateway-api, plus
    qwen-chat mirrored to a shadow."""
    root = tmp_path_factory.mktemp("gateway-api")
    models = root / "models"
    shutil.copytree(EXAMPLES, models, ignore=shutil.ignore_patterns("llm-native", "llm-70b"))
    (models / "platform.yaml").write_text((models / "platform.yaml").read_text() + GATEWAY_API)
    chat = (models / "llm/qwen-chat.yaml").read_text()
    (models / "llm/qwen-chat.yaml").write_text(chat + "mirror:\n  enabled: true\n  storageUri: hf://Qwen/Qwen2.5-7B-Instruct-AWQ\n"
                                               "  percentage: 12.5\n")
    out = root / "out"
    result = modelplat("render", str(models), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def rendered(out) -> dict[str, list[dict]]:
    """{"<project>/<name>": helm template's documents} of every model in `out`."""
    helm = need_tool("helm")
    docs = {}
    for release in sorted(out.glob("*/*/helmrelease.yaml")):
        model = release.parent
        if not model.parent.name.startswith("_"):
            docs[f"{model.parent.name}/{model.name}"] = template(helm, model / "chart", model.name, model.parent.name,
                                                                 helmrelease_values(model))
    return docs


def routes(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "HTTPRoute"}


def test_no_virtualservice_is_rendered_and_each_route_has_its_parent(rendered):
    assert not [d for docs in rendered.values() for d in docs if d["kind"] == "VirtualService"]
    chat = routes(rendered["llm/qwen-chat"])
    # Exposed on the platform's Gateway (its own host), and mirrored for in-mesh callers too (GAMMA).
    assert set(chat) == {"qwen-chat", "qwen-chat-mesh"}
    assert chat["qwen-chat"]["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                        "name": "models", "namespace": "gateway-system"}]
    assert chat["qwen-chat"]["spec"]["hostnames"] == ["qwen-chat-predictor-llm.ext.models.example.com"]
    assert chat["qwen-chat-mesh"]["spec"]["parentRefs"] == [{"group": "", "kind": "Service",
                                                             "name": "qwen-chat-predictor", "port": 80}]
    assert chat["qwen-chat"]["spec"]["rules"] == chat["qwen-chat-mesh"]["spec"]["rules"]
    # Split or mirrored but not exposed: the mesh route only.
    assert set(routes(rendered["ml-demo/iris"])) == {"iris-mesh"}
    # Neither: no route at all.
    assert routes(rendered["llm/qwen-embed"]) == {}


def test_the_canary_gets_its_weight_and_the_header_matched_requests(rendered):
    rules = routes(rendered["ml-demo/iris"])["iris-mesh"]["spec"]["rules"]
    header, primary = rules
    assert header["matches"] == [{"headers": [{"type": "Exact", "name": "x-model-canary", "value": "true"}]}]
    assert header["backendRefs"] == [{"name": "iris-canary-predictor", "port": 80}]
    assert primary["backendRefs"] == [{"name": "iris-predictor", "port": 80, "weight": 90},
                                      {"name": "iris-canary-predictor", "port": 80, "weight": 10}]


def test_mirroring_sends_the_configured_share_to_the_shadow(rendered):
    (rule,) = routes(rendered["fraud/xgb-scorer"])["xgb-scorer-mesh"]["spec"]["rules"]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "xgb-scorer-shadow-predictor", "port": 80}, "percent": 25}}]
    (chat,) = routes(rendered["llm/qwen-chat"])["qwen-chat"]["spec"]["rules"]
    assert chat["filters"][0]["requestMirror"]["fraction"] == {"numerator": 1250, "denominator": 10000}


def test_a_mirrored_llm_never_charges_the_token_quota_twice(rendered):
    """The shadow's requests are copies of requests the primary's sidecar already counted: the
    token-quota and request-limit filters select live pods only, and the shadow's are mirrored."""
    docs = rendered["llm/qwen-chat"]
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    shadow = by_name[("InferenceService", "qwen-chat-shadow")]["spec"]["predictor"]["labels"]
    primary = by_name[("InferenceService", "qwen-chat")]["spec"]["predictor"]["labels"]
    assert (primary["modelplat.io/traffic"], shadow["modelplat.io/traffic"]) == ("live", "mirrored")
    for name in ("qwen-chat-tokenlimit", "qwen-chat-ratelimit"):
        selector = by_name[("EnvoyFilter", name)]["spec"]["workloadSelector"]["labels"]
        assert selector["modelplat.io/traffic"] == "live"
        assert not all(shadow.get(k) == v for k, v in selector.items()), name
        assert all(primary.get(k) == v for k, v in selector.items()), name
    # The shadow is the mirror's target on the Gateway's route too.
    (rule,) = routes(docs)["qwen-chat"]["spec"]["rules"]
    assert rule["filters"][0]["requestMirror"]["backendRef"]["name"] == "qwen-chat-shadow-predictor"


def test_kubeconform_strict_and_the_api_server_accept_the_routes_and_refuse_a_typo(rendered, kube_apiserver, tmp_path):
    kubeconform = need_tool("kubeconform")
    from modelplat import tools

    docs = [d for docs in rendered.values() for d in docs if d["kind"] == "HTTPRoute"]
    assert len(docs) == 4
    manifests = tmp_path / "routes.yaml"
    manifests.write_text("\n---\n".join(json.dumps(d) for d in docs))
    locations = ["-schema-location", tools.crd_schema_location()]
    ok = subprocess.run([kubeconform, "-strict", "-summary", *locations, str(manifests)], capture_output=True, text=True)
    assert ok.returncode == 0 and "Valid: 4," in ok.stdout, ok.stdout + ok.stderr
    kube_apiserver.kubectl_run("create", "namespace", "ml-demo", check=False)
    kube_apiserver.kubectl_run("create", "namespace", "fraud", check=False)
    kube_apiserver.kubectl_run("create", "namespace", "llm", check=False)
    for doc in docs:
        result = kube_apiserver.kubectl_run("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                                            input=json.dumps(doc), check=False)
        assert result.returncode == 0, (doc["metadata"]["name"], result.stdout, result.stderr)
    broken = dict(docs[0], spec={**docs[0]["spec"], "rules": [{**docs[0]["spec"]["rules"][-1], "weigth": 1}]})
    manifests.write_text(json.dumps(broken))
    bad = subprocess.run([kubeconform, "-strict", *locations, str(manifests)], capture_output=True, text=True)
    assert bad.returncode != 0 and "weigth" in bad.stdout
    refused = kube_apiserver.kubectl_run("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                                         input=json.dumps(broken), check=False)
    assert refused.returncode != 0 and "weigth" in refused.stderr


GATEWAY = ("gateway-system", "models")


def _service(name: str, namespace: str, selector: dict, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}}


def _pod(name: str, namespace: str, labels: dict, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "x"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _as_stored(kube_apiserver, doc: dict) -> dict:
    """The object as the API server stores it: its CRD's defaults applied (a match without a path
    gets PathPrefix /), which Istio's route conversion relies on (it dereferences the path)."""
    result = kube_apiserver.kubectl_run("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc))
    stored = json.loads(result.stdout)
    return {k: v for k, v in stored.items() if k != "status"}


def test_istios_gateway_and_sidecars_route_the_httproutes_as_the_values_ask(out, rendered, kube_apiserver):
    """Istio's own config generation (the engines' sidecar-config) consumes the HTTPRoutes: the
    Gateway's proxy and an in-mesh caller's sidecar get the split, the header-matched canary and the
    mirror share the values ask, judged by the same check as the VirtualService's Envoy routes
    (checks.gateway_findings, checks.mesh_route_findings). KServe's Services are stood in for by
    name (the engines tests show KServe makes <isvc>-predictor on port 80)."""
    need_tool("sidecar-config")
    for ns in ("ml-demo", "fraud", "llm"):
        kube_apiserver.kubectl_run("create", "namespace", ns, check=False)
    routes_ = [_as_stored(kube_apiserver, d) for docs in rendered.values() for d in docs if d["kind"] == "HTTPRoute"]
    namespace, name = GATEWAY
    # As Istio's gateway deployment controller labels the pods it makes for a Gateway.
    gateway_labels = {"gateway.networking.k8s.io/gateway-name": name}
    kube = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "istio"},
         "spec": {"controllerName": "istio.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
         "spec": {"gatewayClassName": "istio", "listeners": [
             {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        # What Istio's gateway deployment controller makes for the Gateway: <name>-<class> and its pod.
        _service(f"{name}-istio", namespace, gateway_labels),
        _pod(f"{name}-istio-0", namespace, gateway_labels, "10.96.0.11"),
        _pod("caller-0", "clients", {"app": "caller"}, "10.1.9.9"),
        *routes_,
    ]
    models = {}
    for key in ("llm/qwen-chat", "ml-demo/iris", "fraud/xgb-scorer"):
        project, model = key.split("/")
        values = helmrelease_values(out / project / model)
        models[key] = values
        for suffix in ("", "-canary", "-shadow"):
            isvc = f"{model}{suffix}"
            kube.append(_service(f"{isvc}-predictor", values["namespace"], {"serving.kserve.io/inferenceservice": isvc}))
    proxies = [istio.Proxy("gateway", namespace, gateway_labels, "10.96.0.11", "router"),
               istio.Proxy("caller", "clients", {"app": "caller"}, "10.1.9.9")]
    generated = istio.generate(istio.Inputs([], kube), proxies)
    platform = SimpleNamespace(gateway="/".join(GATEWAY))
    findings = []
    for key, values in models.items():
        state = SimpleNamespace(namespace=values["namespace"], name=key.split("/")[1])
        findings += checks.gateway_findings(key, values, generated["gateway"], state, platform)
        findings += checks.mesh_route_findings(key, values, generated["caller"], state)
    assert findings == []
    # The checks looked at real routes: the exposed model's host is on the Gateway's proxy.
    host = models["llm/qwen-chat"]["exposeModel"]["host"]
    assert any(host in (vh.get("domains") or []) or f"{host}:80" in (vh.get("domains") or [])
               for rc in generated["gateway"].routes for vh in rc.get("virtual_hosts") or [])


def test_the_istio_route_check_fails_on_a_lost_mirror(out, rendered):
    """The same check on the same generated config, with the values of a model that asks for more
    than the route carries: a finding, so the test above cannot pass by finding nothing."""
    values = dict(helmrelease_values(out / "fraud" / "xgb-scorer"))
    values["mirror"] = {**values["mirror"], "percentage": 50}
    rules = routes(rendered["fraud/xgb-scorer"])["xgb-scorer-mesh"]["spec"]["rules"]
    assert rules[0]["filters"][0]["requestMirror"]["percent"] == 25
    vhosts = [{"routes": [{"name": "r", "route": {"cluster": "outbound|80||xgb-scorer-predictor.fraud.svc.cluster.local",
                                                  "request_mirror_policies": [{
                                                      "cluster": "outbound|80||xgb-scorer-shadow-predictor.fraud.svc.cluster.local",
                                                      "runtime_fraction": {"default_value": {"numerator": 25}}}]}}]}]
    config = istio.ProxyConfig([], [{"name": "xgb-scorer-predictor.fraud.svc.cluster.local:80", "virtual_hosts": vhosts}])
    state = SimpleNamespace(namespace="fraud", name="xgb-scorer")
    assert [f.field for f in checks.mesh_route_findings("fraud/xgb-scorer", values, config, state)] == \
        ["route r request_mirror_policies"]
