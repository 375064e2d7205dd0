"""Prompt and response safety (docs/features/prompt-safety.md): the platform's providers, the
model's `safety`, the rules that refuse what cannot work, and what the chart renders for each kind
of provider, checked by istioctl (an extProc provider's EnvoyFilter) and kubeconform (GKE's
GCPTrafficExtension, against the hand-written schema in vendor/crd-schemas/networking.gke.io).

Istio's generated sidecar config for the filter is checked by the engines (test_engines.py), and
the filter's protocol contract by the ext_proc harness (test_extproc_contract.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from ruamel.yaml import YAML

from modelplat import pipeline, tools
from modelplat.errors import InvalidInput
from modelplat.resolve import proto_duration, safety_events

from conftest import JWT_LLM_FILE, LLM_FILE, PLATFORM, lint_refusing, modelplat, need_tool
from test_llm_serving import NATIVE  # an exposed LLMInferenceService with JWT

LLM = LLM_FILE
GUARD = """\
safety:
  providers:
    guard:
      extProc:
        service: guard.safety.svc.cluster.local
        port: 9000
        bodyMode: streamed
    prompts-only:
      extProc:
        service: screen.safety.svc.cluster.local
        port: 8443
        timeout: 1m30s
        events: [requestBody]
        failureMode: open
    armor:
      gkeModelArmor:
        project: ml-prod-123
        region: us-central1
        template: llm-default
"""
GKE = GUARD + """\
jwt:
  issuer: https://idp.example.com
  jwksUri: https://idp.example.com/jwks.json
gatewayApi:
  gateway: gke-gateway/inference
  gatewayClass: gke-l7-regional-external-managed
"""


def run(tree, text: str, platform: str = GUARD):
    root = tree({"chat/model.yaml": text}, platform=PLATFORM + platform)
    return pipeline.run([root])


def codes(tree, text: str, platform: str = GUARD) -> dict[str, object]:
    return {d.code: d for d in run(tree, text, platform).diagnostics}


def safety(provider: str, extra: str = "") -> str:
    return f"safety:\n  enabled: true\n  provider: {provider}\n{extra}"


# --- the rules ------------------------------------------------------------------------------------

def test_an_llm_naming_a_defined_provider_passes(tree):
    result = run(tree, LLM + safety("guard"))
    assert not result.errors, result.diagnostics
    assert not [d for d in result.diagnostics if d.code.startswith("safety")]


def test_refused_on_a_model_that_serves_no_llm_traffic(tree):
    found = codes(tree, "model:\n  format: sklearn\n  storageUri: s3://m/x\n" + safety("guard"))
    assert "safety-needs-llm" in found
    assert found["safety-needs-llm"].key == "safety.enabled"


def test_a_provider_is_required_and_must_be_the_platforms(tree):
    missing = codes(tree, LLM + "safety:\n  enabled: true\n")["safety-needs-provider"]
    assert "armor, guard, prompts-only" in missing.hint
    unknown = codes(tree, LLM + safety("gaurd"))["safety-unknown-provider"]
    assert unknown.key == "safety.provider" and unknown.line == 8
    assert "'gaurd'" in unknown.message and "did you mean 'guard'" in unknown.hint
    assert "defined: none" in codes(tree, LLM + safety("guard"), platform="")["safety-unknown-provider"].message


def test_what_is_screened_must_be_what_the_provider_is_sent(tree):
    found = codes(tree, LLM + safety("prompts-only"))  # screen: both, and it sees request bodies only
    assert "safety-provider-events" in found and "no responses" in found["safety-provider-events"].message
    assert "safety-provider-events" not in codes(tree, LLM + safety("prompts-only", "  screen: prompts\n"))


def test_a_screened_models_proxy_config_is_modelplats(tree):
    found = codes(tree, LLM + "podAnnotations:\n  proxy.istio.io/config: '{}'\n" + safety("guard"))
    assert found["owned-key"].key == "podAnnotations.proxy.istio.io/config"
    assert "owned-key" not in codes(tree, LLM + "podAnnotations:\n  proxy.istio.io/config: '{}'\n")


def test_settings_of_a_disabled_safety_are_refused(tree):
    found = codes(tree, LLM + "safety:\n  provider: guard\n  screen: prompts\n")
    assert found["feature-disabled"].key in ("safety.provider", "safety.screen")
    assert "has no effect while safety.enabled is false" in found["feature-disabled"].message


def test_an_empty_path_list_is_refused(tree):
    assert "safety-no-paths" in codes(tree, LLM + safety("guard", "  paths: []\n"))


def test_a_sidecar_provider_needs_sidecars(tree):
    assert "safety-needs-sidecar" in codes(tree, LLM + safety("guard"), GUARD + "istioInjection: false\n")


def test_buffered_response_screening_warns_that_streams_wait(tree):
    buffered = GUARD.replace("        bodyMode: streamed\n", "")
    found = codes(tree, LLM + safety("guard"), buffered)
    assert found["safety-buffers-streams"].severity == "warning"
    assert "safety-buffers-streams" not in codes(tree, LLM + safety("guard", "  screen: prompts\n"), buffered)


def test_model_armor_needs_gkes_gateway_and_traffic_through_it(tree):
    assert "safety-needs-gke-gateway" in codes(tree, NATIVE + safety("armor"))
    inferenceservice = codes(tree, LLM + safety("armor"), GKE)
    assert "safety-needs-gateway-route" in inferenceservice
    exposed = LLM + "exposeModel:\n  enabled: true\n" + safety("armor")
    assert "safety-needs-gateway-route" not in codes(tree, exposed, GKE + "routing: gateway-api\n")
    native = codes(tree, NATIVE + safety("armor"), GKE)
    assert not [c for c, d in native.items() if d.severity == "error"], native
    assert native["model-armor-streams"].severity == "warning"
    assert "model-armor-streams" not in codes(tree, NATIVE + safety("armor", "  screen: prompts\n"), GKE)


def test_a_provider_is_exactly_one_kind(tree):
    both = GUARD + "    both:\n      extProc: {service: a.b.svc, port: 1}\n      gkeModelArmor: {project: ml-prod-123, region: us-central1, template: t}\n"
    with pytest.raises(InvalidInput) as refused:
        run(tree, LLM, both)
    assert "exactly one of extProc and gkeModelArmor" in str(refused.value.diagnostics)


# --- what the chart receives ----------------------------------------------------------------------

def test_events_follow_what_is_screened_and_what_the_provider_is_offered():
    offered = ("requestHeaders", "requestBody", "responseHeaders", "responseBody")
    assert safety_events("prompts", offered) == ["requestHeaders", "requestBody"]
    assert safety_events("responses", offered) == ["responseHeaders", "responseBody"]
    assert safety_events("both", ("requestBody", "responseBody")) == ["requestBody", "responseBody"]


@pytest.mark.parametrize("text, expected", [("500ms", "0.5s"), ("0.25s", "0.25s"), ("1m30s", "90s"), ("2h", "7200s"),
                                            ("1s", "1s"), ("10ms", "0.01s")])
def test_durations_become_protobuf_json(text, expected):
    assert proto_duration(text) == expected


def test_an_ext_proc_provider_resolves_to_what_the_sidecar_calls(tree):
    (p,) = run(tree, LLM + safety("prompts-only", "  screen: prompts\n  paths: [/v1/chat/completions]\n")).plans
    s = p.chart_values["safety"]
    assert s["kind"] == "extProc" and s["paths"] == ["/v1/chat/completions"]
    x = s["extProc"]
    assert x["cluster"] == "outbound|8443||screen.safety.svc.cluster.local"
    assert x["timeout"] == "90s" and x["failureMode"] == "open" and x["port"] == 8080
    assert x["processingMode"] == {"request_header_mode": "SKIP", "request_body_mode": "BUFFERED",
                                   "request_trailer_mode": "SKIP", "response_header_mode": "SKIP",
                                   "response_body_mode": "NONE", "response_trailer_mode": "SKIP"}
    assert "prompt safety" in p.features and "envoyfilter-safety.yaml" in p.templates
    (p,) = run(tree, LLM + safety("guard")).plans
    mode = p.chart_values["safety"]["extProc"]["processingMode"]
    assert mode["request_body_mode"] == mode["response_body_mode"] == "STREAMED"
    assert mode["request_header_mode"] == mode["response_header_mode"] == "SEND"
    assert p.chart_values["safety"]["paths"][0] == "/v1/chat/completions"  # the platform's list


def test_the_platform_rate_limit_timeout_reaches_envoy_in_its_json_form(tree):
    (p,) = run(tree, LLM, GUARD + "rateLimit:\n  timeout: 250ms\n").plans
    assert p.chart_values["platform"]["rateLimit"]["timeout"] == "0.25s"


# --- the rendered chart ---------------------------------------------------------------------------

def rendered(tree, text: str, platform: str, tmp_path) -> list[dict]:
    """helm template of the model's chart with its HelmRelease values, as Flux installs it."""
    root = tree({"chat/model.yaml": text}, platform=PLATFORM + platform)
    out = tmp_path / "out"
    result = modelplat("render", str(root), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    release = YAML(typ="safe").load((out / "chat/model/helmrelease.yaml").read_text())
    values = tmp_path / "values.json"
    values.write_text(json.dumps(release["spec"]["values"]))
    template = subprocess.run([need_tool("helm"), "template", "model", str(out / "chat/model/chart"), "-n", "chat",
                               "-f", str(values)], capture_output=True, text=True)
    assert template.returncode == 0, template.stderr
    return [d for d in YAML(typ="safe").load_all(template.stdout) if d]


def test_the_envoyfilter_screens_the_paths_with_every_route_setting_and_passes_istioctl(tree, tmp_path):
    docs = rendered(tree, JWT_LLM_FILE + "tokenLimit:\n  enabled: true\n  tenantId: search\n  saLimit: 100\n"
                    + safety("guard", "  paths: [/v1/chat/completions, /v1/completions]\n"), GUARD, tmp_path)
    (f,) = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == "model-safety"]
    filt, *routes = f["spec"]["configPatches"]
    assert filt["patch"]["value"]["disabled"] is True
    assert [r["patch"]["value"]["match"] for r in routes] == [{"path": "/v1/chat/completions"}, {"path": "/v1/completions"}]
    for r in routes:
        value = r["patch"]["value"]
        assert set(value["metadata"]["filter_metadata"]) == {"modelplat.identity.lua", "modelplat.tokens.lua"}
        assert set(value["typed_per_filter_config"]) == {"modelplat.safety", "modelplat.tokens.sa"}
        assert value["typed_per_filter_config"]["modelplat.safety"]["disabled"] is False
    # The same settings Istio's own routes get merged in by the token and identity EnvoyFilters.
    (tokens,) = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == "model-tokenlimit"]
    merged = tokens["spec"]["configPatches"][-1]["patch"]["value"]
    assert routes[0]["patch"]["value"]["typed_per_filter_config"]["modelplat.tokens.sa"] == \
        merged["typed_per_filter_config"]["modelplat.tokens.sa"]
    # The pods publish the filter's stats, and the alert reads them.
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
    config = json.loads(isvc["spec"]["predictor"]["annotations"]["proxy.istio.io/config"])
    assert config == {"proxyStatsMatcher": {"inclusionRegexps": [".*ext_proc.modelplat_safety.*"]}}

    istioctl = need_tool("istioctl")
    manifests = tmp_path / "istio.yaml"
    istio = [d for d in docs if d["apiVersion"].split("/")[0].endswith("istio.io")]
    manifests.write_text("\n---\n".join(json.dumps(d) for d in istio))
    checked = subprocess.run([istioctl, "validate", "-f", str(manifests)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # istioctl reads inside the filter's and the routes' configs. It reports what Envoy would refuse
    # as a warning beside the notice every EnvoyFilter gets; `modelplat lint` fails on any other
    # warning (test_real_tools.py). Here: nothing but the notice, then a field ext_proc lacks.
    findings = [line for line in (checked.stdout + checked.stderr).splitlines() if line.strip().startswith("*")]
    assert findings and all("EnvoyFilter exposes internal implementation details" in f for f in findings), findings
    for target, field in ((filt["patch"]["value"]["typed_config"], "processing_modes"),
                          (routes[1]["patch"]["value"]["typed_per_filter_config"]["modelplat.safety"]["config"], "override")):
        target[field] = {}
        manifests.write_text(json.dumps(f))
        checked = subprocess.run([istioctl, "validate", "-f", str(manifests)], capture_output=True, text=True)
        assert f'unknown field "{field}"' in checked.stdout + checked.stderr, checked.stdout
        del target[field]


def kubeconform(docs: list[dict], tmp_path) -> subprocess.CompletedProcess:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text("\n---\n".join(json.dumps(d) for d in docs))
    return subprocess.run([need_tool("kubeconform"), "-strict", "-summary", "-schema-location",
                           tools.crd_schema_location(), "-schema-location", tools.core_schema_location("1.33"),
                           str(manifests)], capture_output=True, text=True)


def model_armor_extension(tree, files: dict[str, str], platform: str, tmp_path) -> dict:
    """The platform's GCPTrafficExtension as `modelplat render` writes it."""
    root = tree(files, platform=PLATFORM + platform)
    out = tmp_path / "out"
    result = modelplat("render", str(root), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    kustomization = YAML(typ="safe").load((out / "_platform/kustomization.yaml").read_text())
    assert "safety" in kustomization["resources"]
    return YAML(typ="safe").load((out / "_platform/safety/gcptrafficextension.yaml").read_text())


def test_model_armor_renders_the_gateways_traffic_extension_and_kubeconform_accepts_it(tree, tmp_path):
    docs = rendered(tree, NATIVE + safety("armor"), GKE, tmp_path / "chart")
    # Nothing in the model's own chart: the Gateway's extension is the platform's.
    assert not [d for d in docs if d["kind"] == "GCPTrafficExtension" or d["metadata"]["name"].endswith("-safety")]
    ext = model_armor_extension(tree, {"chat/model.yaml": NATIVE + safety("armor")}, GKE, tmp_path)
    assert ext["metadata"] == {"name": "modelplat-safety", "namespace": "gke-gateway", "labels": {
        "app.kubernetes.io/managed-by": "modelplat", "app.kubernetes.io/part-of": "modelplat-safety"}}
    assert ext["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference"}]
    (chain,) = ext["spec"]["extensionChains"]
    assert chain["name"] == "armor-both"
    cel = chain["matchCondition"]["celExpressions"][0]["celMatcher"]
    # Every address KServe's default route gives the model, for each screened path.
    for address in ("/chat/model", "/publishers/chat/models/model"):
        for path in ("/v1/chat/completions", "/v1/embeddings", "/openai/v1/completions"):
            assert f'request.path.startsWith("{address}{path}")' in cel
    assert cel.endswith('|| ("x-gateway-model-name" in request.headers && request.headers["x-gateway-model-name"] == '
                        '"publishers/chat/models/model" && (request.path.startsWith("/v1/chat/completions") || '
                        'request.path.startsWith("/v1/completions") || request.path.startsWith("/v1/embeddings") || '
                        'request.path.startsWith("/openai/v1/chat/completions") || '
                        'request.path.startsWith("/openai/v1/completions") || '
                        'request.path.startsWith("/openai/v1/embeddings"))))'), cel
    (armor,) = chain["extensions"]
    assert armor["googleAPIServiceName"] == "modelarmor.us-central1.rep.googleapis.com"
    assert armor["metadata"] == {"extensionPolicy": "projects/ml-prod-123/locations/us-central1/templates/llm-default",
                                 "sanitizeUserPrompt": "true", "sanitizeUserResponse": "true"}
    assert armor["supportedEvents"] == ["RequestHeaders", "RequestBody", "ResponseHeaders", "ResponseBody"]
    assert armor["failOpen"] is False and armor["timeout"] == "1s"
    checked = kubeconform(docs + [ext], tmp_path)
    assert checked.returncode == 0 and f"Valid: {len(docs) + 1}," in checked.stdout, checked.stdout + checked.stderr
    # The schema is strict: a misspelt field, or an extension with neither a Service nor a Google API, fails.
    armor["failopen"] = armor.pop("failOpen")
    assert "failopen" in kubeconform([ext], tmp_path).stdout
    armor["failOpen"] = armor.pop("failopen")
    del armor["googleAPIServiceName"]
    assert kubeconform([ext], tmp_path).returncode != 0


def test_one_chain_for_each_provider_and_screen_shared_by_the_models_screened_that_way(tree, tmp_path):
    prompts = safety("armor", "  screen: prompts\n  paths: [/v1/chat/completions]\n")
    files = {"chat/a.yaml": NATIVE + prompts, "chat/b.yaml": NATIVE + prompts,
             "other/c.yaml": NATIVE + safety("armor", "  paths: [/v1/completions]\n"),
             "other/d.yaml": NATIVE}
    ext = model_armor_extension(tree, files, GKE, tmp_path)
    chains = {c["name"]: c for c in ext["spec"]["extensionChains"]}
    assert list(chains) == ["armor-both", "armor-prompts"]
    shared = chains["armor-prompts"]["matchCondition"]["celExpressions"][0]["celMatcher"]
    assert shared.startswith('(request.path.startsWith("/chat/a/v1/chat/completions") || ')
    assert ') || (request.path.startsWith("/chat/b/v1/chat/completions") || ' in shared
    assert "/other/" not in shared
    assert chains["armor-prompts"]["extensions"][0]["supportedEvents"] == ["RequestHeaders", "RequestBody"]
    assert chains["armor-prompts"]["extensions"][0]["metadata"]["sanitizeUserResponse"] == "false"
    both = chains["armor-both"]["matchCondition"]["celExpressions"][0]["celMatcher"]
    assert "/other/c/v1/completions" in both and "/other/d/" not in both


def test_more_chains_than_gke_allows_are_refused(tree):
    providers = "".join(f"    armor{i}:\n      gkeModelArmor: {{project: ml-prod-123, region: us-central1, template: t{i}}}\n"
                        for i in range(3))
    files = {f"chat/m{i}{screen[0]}.yaml": NATIVE + safety(f"armor{i}", f"  screen: {screen}\n")
             for i in range(3) for screen in ("prompts", "both")}
    root = tree(files, platform=PLATFORM + GKE.replace("    armor:\n", providers + "    armor:\n"))
    result = pipeline.run([root])
    refused = [d for d in result.diagnostics if d.code == "model-armor-chains"]
    assert len(refused) == 1 and "need 6 extension chains" in refused[0].message, result.diagnostics
    assert refused[0].file.endswith("m2p.yaml") and refused[0].key == "safety"


def test_model_armor_matches_a_canarys_own_address_and_the_served_name(tree):
    canaried = NATIVE.replace("  serving: llm\n", "  serving: llm\n  servedModelName: qwen\n") + \
        "canary:\n  enabled: true\n  storageUri: hf://Qwen/Qwen2.5-7B-Instruct-v2\nprimaryLoad: 90\n" + \
        safety("armor", "  screen: prompts\n  paths: [/v1/chat/completions, \"/v1/it's\"]\n")
    (p,) = run(tree, canaried, GKE).plans
    cel = p.chart_values["safety"]["gkeModelArmor"]["match"]
    assert cel.split(" || (")[0] == " || ".join(
        f'request.path.startsWith("{prefix}{path}")'
        for prefix in ("/chat/model", "/chat/model-canary", "/publishers/chat/models/qwen")
        for path in ("/v1/chat/completions", "/v1/it's"))
    assert '== "publishers/chat/models/qwen"' in cel


def test_model_armor_on_an_exposed_inferenceservice_matches_its_host(tree, tmp_path):
    exposed = LLM + "exposeModel:\n  enabled: true\nauth:\n  jwt:\n    enabled: true\n" + safety("armor", "  screen: prompts\n  paths: [/v1/chat/completions]\n")
    ext = model_armor_extension(tree, {"chat/model.yaml": exposed},
                                GKE + "routing: gateway-api\ndomain: models.example.com\n", tmp_path)
    (chain,) = ext["spec"]["extensionChains"]
    assert chain["matchCondition"]["celExpressions"][0]["celMatcher"] == (
        '(request.host == "model-predictor-chat.int.models.example.com" && '
        '(request.path.startsWith("/v1/chat/completions")))')
    assert chain["extensions"][0]["supportedEvents"] == ["RequestHeaders", "RequestBody"]
    assert chain["extensions"][0]["metadata"]["sanitizeUserResponse"] == "false"
    checked = kubeconform([ext], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_lint_checks_the_platforms_extension_with_every_tool(tree, tmp_path):
    """`modelplat lint` of a GKE platform's screened model passes every tool, the platform's
    GCPTrafficExtension (a wiring file) among what kubeconform reads: with a schema that refuses
    it, the wiring row fails and names it."""
    for tool in ("helm", "kubeconform", "helm-unittest", "istioctl", "kustomize", "promtool"):
        need_tool(tool)
    root = tree({"chat/model.yaml": NATIVE + safety("armor")}, platform=PLATFORM + GKE)
    result = modelplat("lint", str(root), "--format", "json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    lint_refusing(root, tmp_path, "networking.gke.io", "gcptrafficextension_v1.json", "gcptrafficextension.yaml")
