"""Token quotas enforced by the real envoyproxy/ratelimit service with Redis.

What a request sends is derived from the rendered token EnvoyFilters: each quota filter's
domain and per-route rate limits, turned into descriptors by ratelimit_service.envoy_descriptors
with the dynamic metadata the Lua filter publishes (the caller at request time, the tokens used
when the stream is done). Nothing about the descriptors is restated here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import EXAMPLES, JWT_LLM_FILE, modelplat, need_tool
from ratelimit_service import RateLimitService, Request, deployment_settings, envoy_descriptors, start_of_fresh_window
from test_real_tools import helmrelease_values, template

_yaml = YAML(typ="safe")
NS = "modelplat.tokens"
DAY = 86400

# A model of the same tenant with a quota of its own (not shared), and small limits.
SOLO = JWT_LLM_FILE + """\
tokenLimit:
  enabled: true
  tenantId: team-search
  saLimit: 50
  ipLimit: 1000
"""


@dataclass
class QuotaFilter:
    name: str  # modelplat.tokens.sa / .ip
    domain: str
    rate_limits: list[dict[str, Any]]
    fail_closed: bool


@dataclass
class TokenModel:
    key: str
    values: dict[str, Any]
    filters: list[QuotaFilter]

    def request(self, service, sa: str | None, ip: str) -> str:
        """The request-time checks (cost 0): "OK" or the first refusing filter's name."""
        request = Request(ip, {}, {NS: self._caller(sa, ip)})
        for f in self.filters:
            descriptors = envoy_descriptors(f.rate_limits, request)
            if descriptors and service.should_rate_limit(f.domain, descriptors)["overallCode"] == "OVER_LIMIT":
                return f.name
        return "OK"

    def stream_done(self, service, sa: str | None, ip: str, used: int | None) -> None:
        metadata = self._caller(sa, ip) | ({"used": str(used)} if used is not None else {})
        request = Request(ip, {}, {NS: metadata})
        for f in self.filters:
            descriptors = envoy_descriptors(f.rate_limits, request, on_stream_done=True)
            if descriptors:
                service.should_rate_limit(f.domain, descriptors)

    def call(self, service, sa: str | None, ip: str, used: int) -> str:
        """One whole exchange: checked, answered (if allowed), counted."""
        verdict = self.request(service, sa, ip)
        if verdict == "OK":
            self.stream_done(service, sa, ip, used)
        return verdict

    @staticmethod
    def _caller(sa: str | None, ip: str) -> dict[str, str]:
        return ({"sa": sa} if sa else {}) | {"ip": ip}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    helm = need_tool("helm")
    root = tmp_path_factory.mktemp("token-models")
    shutil.copytree(EXAMPLES, root / "models")
    (root / "models/llm/solo.yaml").write_text(SOLO)
    out = root / "out"
    result = modelplat("render", str(root / "models"), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    models = {}
    for release in sorted(out.glob("*/*/helmrelease.yaml")):
        model_dir = release.parent
        if model_dir.parent.name.startswith("_"):
            continue
        values = helmrelease_values(model_dir)
        if not values["tokenLimit"]["enabled"]:
            continue
        docs = template(helm, model_dir / "chart", model_dir.name, values["namespace"], values)
        (envoyfilter,) = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"].endswith("-tokenlimit")]
        patches = envoyfilter["spec"]["configPatches"]
        (route,) = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_ROUTE"]
        filters = []
        for p in patches:
            value = p["patch"]["value"]
            if p["applyTo"] == "HTTP_FILTER" and value["name"].startswith("modelplat.tokens.") and value["name"] != "modelplat.tokens.lua":
                per_route = route["typed_per_filter_config"][value["name"]]
                filters.append(QuotaFilter(value["name"], value["typed_config"]["domain"], per_route["rate_limits"],
                                           value["typed_config"]["failure_mode_deny"]))
        key = f"{model_dir.parent.name}/{model_dir.name}"
        models[key] = TokenModel(key, values, filters)
    configmap = _yaml.load((out / "_platform/ratelimit/configmap.yaml").read_text())
    deployment = _yaml.load((out / "_platform/ratelimit/ratelimit.yaml").read_text())
    # The LLM-native qwen-chat (an LLMInferenceService) gets the same token filters.
    assert {"llm/qwen-chat", "llm/qwen-embed", "llm/solo", "llm-native/qwen-chat"} <= set(models)
    return models, dict(configmap["data"]), deployment


@pytest.fixture(scope="module")
def service(rendered, tmp_path_factory):
    need_tool("redis-server")
    _, configs, deployment = rendered
    with RateLimitService.start(configs, tmp_path_factory.mktemp("token-service"),
                                settings=deployment_settings(deployment), binary=need_tool("ratelimit")) as running:
        yield running


@pytest.fixture
def fresh(service):
    service.flush()
    start_of_fresh_window(DAY, 5)
    start_of_fresh_window(60, 5)
    return service


def test_every_descriptor_the_filters_can_send_has_a_limit(rendered, fresh):
    models, _, _ = rendered
    for model in models.values():
        caller = Request("10.9.0.1", {}, {NS: {"sa": "svc-probe", "ip": "10.9.0.1", "used": "1"}})
        for f in model.filters:
            for done in (False, True):
                descriptors = envoy_descriptors(f.rate_limits, caller, on_stream_done=done)
                assert descriptors, (model.key, f.name, done)
                answer = fresh.should_rate_limit(f.domain, descriptors)
                unmatched = [d for d, s in zip(descriptors, answer["statuses"]) if "currentLimit" not in s]
                assert not unmatched, f"{model.key} {f.name}: no limit for {unmatched}"
                units = {s["currentLimit"]["unit"] for s in answer["statuses"]}
                assert units <= {"DAY", "MINUTE"}


def test_a_caller_who_used_up_the_days_tokens_is_refused_at_request_time(rendered, fresh):
    solo = rendered[0]["llm/solo"]
    assert solo.call(fresh, "svc-a", "10.1.0.1", 30) == "OK"
    assert solo.call(fresh, "svc-a", "10.1.0.1", 20) == "OK"  # 50 of 50: still allowed (not over)
    assert solo.request(fresh, "svc-a", "10.1.0.1") == "OK"
    solo.stream_done(fresh, "svc-a", "10.1.0.1", 1)  # 51: over
    assert solo.request(fresh, "svc-a", "10.1.0.1") == "modelplat.tokens.sa"
    # checking costs 0: a caller exactly at its quota stays allowed however often it is checked
    assert solo.call(fresh, "svc-b", "10.1.0.2", 50) == "OK"
    for _ in range(5):
        assert solo.request(fresh, "svc-b", "10.1.0.2") == "OK"


def test_two_service_accounts_do_not_share_a_budget(rendered, fresh):
    solo = rendered[0]["llm/solo"]
    solo.call(fresh, "svc-a", "10.1.0.1", 60)
    assert solo.request(fresh, "svc-a", "10.1.0.3") == "modelplat.tokens.sa"  # from another address too
    assert solo.request(fresh, "svc-b", "10.1.0.1") == "OK"


def test_responses_without_usage_count_nothing(rendered, fresh):
    solo = rendered[0]["llm/solo"]
    for _ in range(3):
        solo.call(fresh, "svc-a", "10.1.0.1", used=None)  # no "used" metadata: no descriptor at stream end
    solo.call(fresh, "svc-a", "10.1.0.1", 50)
    assert solo.request(fresh, "svc-a", "10.1.0.1") == "OK"


def test_a_tenant_shared_by_two_models_shares_its_quota(rendered, fresh):
    models = rendered[0]
    chat, embed = models["llm/qwen-chat"], models["llm/qwen-embed"]
    ip_limit = chat.values["tokenLimit"]["ipLimit"]
    assert embed.values["tokenLimit"]["ipLimit"] == ip_limit and chat.values["tokenLimit"]["shareTenantQuota"]
    assert chat.call(fresh, "svc-a", "10.2.0.1", ip_limit + 1) == "OK"
    assert embed.request(fresh, "svc-b", "10.2.0.1") == "modelplat.tokens.ip"  # same address, other model
    assert embed.request(fresh, "svc-b", "10.2.0.2") == "OK"


def test_a_quota_of_its_own_is_not_touched_by_the_tenants_shared_one(rendered, fresh):
    models = rendered[0]
    chat, solo = models["llm/qwen-chat"], models["llm/solo"]
    chat.call(fresh, "svc-a", "10.3.0.1", chat.values["tokenLimit"]["saLimit"] + 1)
    assert chat.request(fresh, "svc-a", "10.3.0.9") == "modelplat.tokens.sa"
    assert solo.request(fresh, "svc-a", "10.3.0.1") == "OK"


def test_the_per_minute_quota_refuses_bursts(rendered, fresh):
    chat = rendered[0]["llm/qwen-chat"]
    per_minute = chat.values["tokenLimit"]["saLimitPerMinute"]
    assert per_minute < chat.values["tokenLimit"]["saLimit"]
    chat.call(fresh, "svc-burst", "10.4.0.1", per_minute + 1)
    assert chat.request(fresh, "svc-burst", "10.4.0.2") == "modelplat.tokens.sa"


def test_token_quotas_fail_closed_by_default(rendered):
    assert all(f.fail_closed for m in rendered[0].values() for f in m.filters)
