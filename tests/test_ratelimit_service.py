"""Rendered rate limits, enforced by the real envoyproxy/ratelimit service with Redis.

The service runs with the rendered config files (laid out as the ConfigMap is mounted) and the
rendered Deployment's settings. Each simulated request is turned into descriptors from the
rendered EnvoyFilter's actions (ratelimit_service.envoy_descriptors), never restated here, and
the limits come from the models' values. Under CI=true a missing ratelimit or redis-server fails.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import EXAMPLES, modelplat, need_tool
from ratelimit_service import (
    RateLimitService,
    Request,
    ServiceError,
    UnsupportedAction,
    applied_rate_limits,
    deployment_settings,
    envoy_descriptors,
    ratelimit_filter,
    start_of_fresh_window,
    vhost_rate_limits,
)
from test_real_tools import helmrelease_values, template

_yaml = YAML(typ="safe")

# A second model under the same name in another namespace, with small limits: the domain must
# keep the two apart.
SECOND_MODEL = """\
model:
  format: sklearn
  storageUri: s3://models/chat/v1
auth:
  jwt:
    enabled: true
ratelimitIPPerMinute: 3
ratelimitEachSAPerMinute: 5
"""
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass
class LimitedModel:
    """A rendered model with request limits: its values and its EnvoyFilter."""

    key: str  # project/name
    values: dict[str, Any]
    envoyfilter: dict[str, Any]

    @property
    def domain(self) -> str:
        return ratelimit_filter(self.envoyfilter)["domain"]

    @property
    def sa_header(self) -> str:
        return self.values["platform"]["jwtClaims"]["serviceAccountHeader"]

    def descriptors(self, client: str, service_account: str | None = None) -> list[dict[str, Any]]:
        headers = {self.sa_header: service_account} if service_account is not None else {}
        return envoy_descriptors(vhost_rate_limits(self.envoyfilter), Request(client, headers))


@dataclass
class RenderedPlatform:
    configs: dict[str, str]  # the ratelimit ConfigMap's data
    configmap: dict[str, Any]
    deployment: dict[str, Any]
    models: dict[str, LimitedModel]
    unlimited_domains: list[str]  # domains of rendered models without limits


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> RenderedPlatform:
    """The examples plus SECOND_MODEL, rendered by the CLI; every chart through `helm template`."""
    helm = need_tool("helm")
    root = tmp_path_factory.mktemp("ratelimit-models")
    shutil.copytree(EXAMPLES, root / "models")
    (root / "models/chat").mkdir()
    (root / "models/chat/qwen-chat.yaml").write_text(SECOND_MODEL)
    out = root / "out"
    result = modelplat("render", str(root / "models"), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    service = out / "_platform/ratelimit"
    configmap = _yaml.load((service / "configmap.yaml").read_text())
    models, unlimited = {}, []
    for release in sorted(out.glob("*/*/helmrelease.yaml")):
        model_dir = release.parent
        if model_dir.parent.name.startswith("_"):
            continue
        project, name = model_dir.parent.name, model_dir.name
        values = helmrelease_values(model_dir)
        docs = template(helm, model_dir / "chart", name, values["namespace"], values)
        filters = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"].endswith("-ratelimit")]
        if filters:
            models[f"{project}/{name}"] = LimitedModel(f"{project}/{name}", values, filters[0])
        else:
            unlimited.append(values["platform"]["rateLimit"]["domain"])
    return RenderedPlatform(dict(configmap["data"]), configmap,
                            _yaml.load((service / "ratelimit.yaml").read_text()), models, unlimited)


@pytest.fixture(scope="module")
def service(rendered, tmp_path_factory):
    """The real service with every rendered model's config and the rendered settings."""
    need_tool("redis-server")
    binary = need_tool("ratelimit")
    with RateLimitService.start(rendered.configs, tmp_path_factory.mktemp("ratelimit-service"),
                                settings=deployment_settings(rendered.deployment), binary=binary) as running:
        yield running


@pytest.fixture
def fresh(service):
    """No counts left over from another test."""
    service.flush()
    return service


def limited(rendered: RenderedPlatform, values_key: str) -> list[LimitedModel]:
    found = [m for m in rendered.models.values() if m.values.get(values_key) is not None]
    assert found, f"no rendered model sets {values_key}"
    return found


def status_for(answer: dict[str, Any], descriptors: list[dict[str, Any]], value: str) -> dict[str, Any]:
    """The service's status for the descriptor that carries `value` (the client address or the
    service account of the simulated request), whatever key the actions gave it."""
    (index,) = [i for i, d in enumerate(descriptors) if any(e["value"] == value for e in d["entries"])]
    assert len(answer["statuses"]) == len(descriptors)
    return answer["statuses"][index]


def clients(count: int, base: str = "10.20.0.0"):
    start = int(ipaddress.ip_address(base)) + 1
    return [str(ipaddress.ip_address(start + i)) for i in range(count)]


def burst_window(config_unit: str = "minute", seconds: float = 3) -> None:
    start_of_fresh_window(UNIT_SECONDS[config_unit], seconds)


# --- the service loads what is rendered, and the harness can fail ---------------------------------


def test_the_service_loads_every_rendered_limit(rendered, service):
    loaded = service.loaded_limits()
    expected = {}

    def walk(prefix: str, descriptors: list[dict[str, Any]]) -> None:
        for descriptor in descriptors:
            name = f"{prefix}.{descriptor['key']}" + (f"_{descriptor['value']}" if "value" in descriptor else "")
            if "rate_limit" in descriptor:
                limit = descriptor["rate_limit"]
                expected[name] = f"unit={limit['unit'].upper()} requests_per_unit={limit['requests_per_unit']}"
            walk(name, descriptor.get("descriptors", []))

    for text in rendered.configs.values():
        config = _yaml.load(text)
        walk(config["domain"], config["descriptors"])
    assert loaded == expected
    request_domains = {_yaml.load(t)["domain"] for t in rendered.configs.values()} - {
        d for d in (_yaml.load(t)["domain"] for t in rendered.configs.values()) if d.startswith("modelplat.tokens.")}
    assert {m.domain for m in rendered.models.values()} == request_domains
    # qwen-chat twice (examples/llm and this test's chat/), its LLM-native twin (examples/llm-native)
    # and the LLM-native llama-70b.
    assert set(rendered.models) == {"llm/qwen-chat", "chat/qwen-chat", "llm-native/qwen-chat", "llm-70b/llama-70b"}
    assert any(key.startswith("modelplat.tokens.team-search.scope_tenant.") for key in loaded)


def test_the_deployment_mounts_the_configmap_where_the_service_reads(rendered):
    settings = deployment_settings(rendered.deployment)
    pod = rendered.deployment["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == rendered.configmap["metadata"]["name"]
    folder = "/".join([settings["RUNTIME_ROOT"].rstrip("/"), settings["RUNTIME_SUBDIRECTORY"],
                       settings.get("RUNTIME_APPDIRECTORY", "config")])
    assert mount["mountPath"] == folder


def _broken(rendered: RenderedPlatform, how: str) -> tuple[dict[str, str], dict[str, str]]:
    configs, settings = dict(rendered.configs), deployment_settings(rendered.deployment)
    name, text = next(iter(sorted(configs.items())))
    if how == "duplicate key":
        config = _yaml.load(text)
        config["descriptors"].append(config["descriptors"][0])
        configs[name] = _dump(config)
    elif how == "bad unit":
        configs[name] = text.replace("unit: minute", "unit: fortnight")
        assert configs[name] != text
    elif how == "duplicate domain":
        configs["copy-" + name] = text
    elif how == "dot files read":
        # The kubelet's hidden folder inside the mount holds a second copy of every file.
        settings.pop("RUNTIME_IGNOREDOTFILES")
    return configs, settings


def _dump(doc: Any) -> str:
    import io

    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(doc, stream)
    return stream.getvalue()


@pytest.mark.parametrize("how, message", [
    ("duplicate key", "duplicate descriptor composite key"),
    ("bad unit", "invalid rate limit unit"),
    ("duplicate domain", "duplicate domain"),
    ("dot files read", "duplicate domain"),
])
def test_the_service_refuses_a_broken_config(rendered, tmp_path, how, message):
    need_tool("redis-server")
    configs, settings = _broken(rendered, how)
    with pytest.raises(ServiceError, match=message):
        RateLimitService.start(configs, tmp_path, settings=settings, binary=need_tool("ratelimit"))


# --- what Envoy sends ----------------------------------------------------------------------------


def test_envoy_descriptors_follow_the_action_semantics():
    header = {"request_headers": {"header_name": "x-sa", "descriptor_key": "service_account"}}
    optional = {"request_headers": {"header_name": "x-tier", "descriptor_key": "tier", "skip_if_absent": True}}
    limits = [{"actions": [{"remote_address": {}}]}, {"actions": [header]},
              {"actions": [{"generic_key": {"descriptor_value": "llm"}}, optional]}]
    with_sa = envoy_descriptors(limits, Request("10.0.0.1", {"X-SA": "team-a"}))
    assert with_sa == [{"entries": [{"key": "remote_address", "value": "10.0.0.1"}]},
                       {"entries": [{"key": "service_account", "value": "team-a"}]},
                       {"entries": [{"key": "generic_key", "value": "llm"}]}]
    # An absent header without skip_if_absent drops that rate limit's descriptor, nothing else.
    assert [d["entries"][0]["key"] for d in envoy_descriptors(limits, Request("10.0.0.1"))] == \
        ["remote_address", "generic_key"]
    assert envoy_descriptors(limits, Request("10.0.0.1", {"x-tier": "gold"}))[1]["entries"] == \
        [{"key": "generic_key", "value": "llm"}, {"key": "tier", "value": "gold"}]
    quota = [{"actions": [header], "hits_addend": {"number": 0}},
             {"actions": [header], "apply_on_stream_done": True,
              "hits_addend": {"format": "%DYNAMIC_METADATA(modelplat:tokens)%"}}]
    request = Request("10.0.0.1", {"x-sa": "a"}, {"modelplat": {"tokens": 812}})
    assert envoy_descriptors(quota, request) == [{"entries": [{"key": "service_account", "value": "a"}], "hits_addend": 0}]
    assert envoy_descriptors(quota, request, on_stream_done=True)[0]["hits_addend"] == 812
    assert envoy_descriptors([{"stage": 1, "actions": [{"remote_address": {}}]}], request) == []
    with pytest.raises(UnsupportedAction):
        envoy_descriptors([{"actions": [{"destination_cluster": {}}]}], request)


def test_per_route_limits_hide_the_virtual_hosts():
    ip = [{"actions": [{"remote_address": {}}]}]
    quota = [{"actions": [{"generic_key": {"descriptor_value": "tokens"}}], "hits_addend": {"number": 0}}]
    assert applied_rate_limits(ip) == ip
    # A per-route RateLimitPerRoute with rate_limits: the virtual host's limits no longer apply.
    assert applied_rate_limits(ip, per_route={"rate_limits": quota}) == quota
    assert applied_rate_limits(ip, route=quota) == quota
    assert applied_rate_limits(ip, route=quota, per_route={"vh_rate_limits": "INCLUDE"}) == quota + ip
    assert applied_rate_limits(ip, per_route={"vh_rate_limits": "IGNORE"}) == []


def test_rendered_actions_send_one_descriptor_per_limit(rendered):
    for model in rendered.models.values():
        values = model.values
        sent = model.descriptors("10.9.0.1", "team-a")
        expected = [v for v in (values.get("ratelimitIPPerMinute"), values.get("ratelimitEachSAPerMinute")) if v]
        assert len(sent) == len(expected), model.key
        without_sa = model.descriptors("10.9.0.1")
        assert len(without_sa) == len(sent) - (values.get("ratelimitEachSAPerMinute") is not None), model.key


# --- behaviour ----------------------------------------------------------------------------------


def test_per_ip_limit_refuses_the_request_after_n(rendered, fresh):
    for model in limited(rendered, "ratelimitIPPerMinute"):
        limit = model.values["ratelimitIPPerMinute"]
        burst_window()
        for i in range(limit):
            descriptors = model.descriptors("10.1.0.1", "team-a")
            answer = fresh.should_rate_limit(model.domain, descriptors)
            assert answer["overallCode"] == "OK", (model.key, i, answer)
            ip = status_for(answer, descriptors, "10.1.0.1")
            assert ip["currentLimit"] == {"requestsPerUnit": limit, "unit": "MINUTE"}
            assert ip["limitRemaining"] == limit - i - 1
        descriptors = model.descriptors("10.1.0.1", "team-a")
        answer = fresh.should_rate_limit(model.domain, descriptors)
        assert answer["overallCode"] == "OVER_LIMIT", model.key
        assert status_for(answer, descriptors, "10.1.0.1")["code"] == "OVER_LIMIT"
        if model.values.get("ratelimitEachSAPerMinute", 0) > limit + 1:
            assert status_for(answer, descriptors, "team-a")["code"] == "OK"


def test_per_service_account_limit_refuses_the_request_after_n(rendered, fresh):
    for model in limited(rendered, "ratelimitEachSAPerMinute"):
        limit = model.values["ratelimitEachSAPerMinute"]
        burst_window()
        *within, over = clients(limit + 1)  # a new address each time: only the account's budget runs out
        for i, client in enumerate(within):
            descriptors = model.descriptors(client, "team-a")
            answer = fresh.should_rate_limit(model.domain, descriptors)
            assert answer["overallCode"] == "OK", (model.key, i, answer)
            assert status_for(answer, descriptors, "team-a")["limitRemaining"] == limit - i - 1
        descriptors = model.descriptors(over, "team-a")
        answer = fresh.should_rate_limit(model.domain, descriptors)
        assert answer["overallCode"] == "OVER_LIMIT"
        sa = status_for(answer, descriptors, "team-a")
        assert sa["code"] == "OVER_LIMIT" and sa["currentLimit"] == {"requestsPerUnit": limit, "unit": "MINUTE"}
        if model.values.get("ratelimitIPPerMinute"):
            assert status_for(answer, descriptors, over)["code"] == "OK"


def test_two_service_accounts_do_not_share_a_budget(rendered, fresh):
    for model in limited(rendered, "ratelimitEachSAPerMinute"):
        limit = model.values["ratelimitEachSAPerMinute"]
        burst_window()
        for client in clients(limit + 1, "10.2.0.0"):
            answer = fresh.should_rate_limit(model.domain, model.descriptors(client, "team-a"))
        assert answer["overallCode"] == "OVER_LIMIT"
        descriptors = model.descriptors("10.3.0.1", "team-b")
        answer = fresh.should_rate_limit(model.domain, descriptors)
        assert answer["overallCode"] == "OK"
        assert status_for(answer, descriptors, "team-b")["limitRemaining"] == limit - 1


def test_two_addresses_do_not_share_a_budget(rendered, fresh):
    for model in limited(rendered, "ratelimitIPPerMinute"):
        limit = model.values["ratelimitIPPerMinute"]
        burst_window()
        for _ in range(limit + 1):  # no service account: counted by address only
            answer = fresh.should_rate_limit(model.domain, model.descriptors("10.4.0.1"))
        assert answer["overallCode"] == "OVER_LIMIT" and len(answer["statuses"]) == 1
        descriptors = model.descriptors("10.4.0.2")
        answer = fresh.should_rate_limit(model.domain, descriptors)
        assert answer["overallCode"] == "OK"
        assert status_for(answer, descriptors, "10.4.0.2")["limitRemaining"] == limit - 1


def test_a_value_never_seen_before_gets_the_limit_of_its_key(rendered, fresh):
    """The config limits each key without naming values: any address or account is counted."""
    for model in rendered.models.values():
        config = next(_yaml.load(t) for t in rendered.configs.values() if _yaml.load(t)["domain"] == model.domain)
        open_keys = {d["key"]: d["rate_limit"] for d in config["descriptors"] if "value" not in d}
        assert open_keys, model.key
        client, account = "2001:db8::7", "svc-never-seen-before"
        descriptors = model.descriptors(client, account)
        answer = fresh.should_rate_limit(model.domain, descriptors)
        for descriptor, status in zip(descriptors, answer["statuses"]):
            (entry,) = descriptor["entries"]
            assert entry["key"] in open_keys, f"{model.key}: {entry['key']} is sent but has no limit"
            limit = open_keys[entry["key"]]
            assert status["currentLimit"] == {"requestsPerUnit": limit["requests_per_unit"],
                                              "unit": limit["unit"].upper()}
            assert status["limitRemaining"] == limit["requests_per_unit"] - 1


def test_one_models_budget_does_not_touch_anothers(rendered, fresh):
    first, second = sorted((rendered.models[k] for k in ("llm/qwen-chat", "chat/qwen-chat")),
                           key=lambda m: m.values["ratelimitIPPerMinute"])
    assert first.domain != second.domain and first.values["name"] == second.values["name"]
    burst_window()
    for _ in range(first.values["ratelimitIPPerMinute"] + 1):
        answer = fresh.should_rate_limit(first.domain, first.descriptors("10.5.0.1", "team-a"))
    assert answer["overallCode"] == "OVER_LIMIT"
    descriptors = second.descriptors("10.5.0.1", "team-a")
    answer = fresh.should_rate_limit(second.domain, descriptors)
    assert answer["overallCode"] == "OK"
    assert status_for(answer, descriptors, "10.5.0.1")["limitRemaining"] == second.values["ratelimitIPPerMinute"] - 1
    # A model without limits has a domain of its own, with nothing configured: never refused.
    for domain in rendered.unlimited_domains:
        answer = fresh.should_rate_limit(domain, first.descriptors("10.5.0.1", "team-a"))
        assert answer["overallCode"] == "OK" and all("currentLimit" not in s for s in answer["statuses"])


def test_refused_requests_still_spend_the_other_budget_as_configured(rendered, fresh):
    """One request carries both descriptors. The service adds a hit to every descriptor of a
    request, also when another one is over its limit, unless STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT
    is set: a caller refused for its address still uses up its account's budget."""
    stop = deployment_settings(rendered.deployment).get("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "false") == "true"
    refused = 2
    model = next(m for m in rendered.models.values() if "ratelimitIPPerMinute" in m.values
                 and m.values["ratelimitIPPerMinute"] + refused < m.values.get("ratelimitEachSAPerMinute", 0))
    ip_limit, sa_limit = model.values["ratelimitIPPerMinute"], model.values["ratelimitEachSAPerMinute"]
    burst_window()
    for _ in range(ip_limit + refused):
        answer = fresh.should_rate_limit(model.domain, model.descriptors("10.6.0.1", "team-a"))
    assert answer["overallCode"] == "OVER_LIMIT"
    descriptors = model.descriptors("10.6.0.2", "team-a")
    remaining = status_for(fresh.should_rate_limit(model.domain, descriptors), descriptors, "team-a")["limitRemaining"]
    spent = ip_limit + (0 if stop else refused) + 1
    assert remaining == sa_limit - spent


def test_the_service_stops_with_its_redis(rendered, tmp_path):
    need_tool("redis-server")
    running = RateLimitService.start(rendered.configs, tmp_path, settings=deployment_settings(rendered.deployment),
                                     binary=need_tool("ratelimit"))
    running.stop()
    for process in (running.process, running.redis.process):
        assert process.poll() is not None
        with pytest.raises(ProcessLookupError):  # nothing left in its process group either
            os.killpg(process.pid, 0)


def test_hits_addend_travels_per_descriptor(tmp_path):
    """The client's hits_addend reaches the service per descriptor, the shape a token quota
    needs: 0 when the request arrives (only checks), the tokens used when it ends (spends)."""
    need_tool("redis-server")
    quota = "domain: harness\ndescriptors:\n  - key: service_account\n    rate_limit:\n      unit: day\n      requests_per_unit: 1000\n"
    with RateLimitService.start({"harness.yaml": quota}, tmp_path, binary=need_tool("ratelimit")) as running:
        account = {"service_account": "team-a"}
        burst_window("day")
        assert running.check("harness", account, hits_addend=0)["statuses"][0]["limitRemaining"] == 1000
        assert running.check("harness", account, hits_addend=999)["statuses"][0]["limitRemaining"] == 1
        assert running.check("harness", account, hits_addend=0)["overallCode"] == "OK"
        assert running.check("harness", account, hits_addend=2)["overallCode"] == "OVER_LIMIT"
        refused = running.check("harness", account, hits_addend=0)
        assert refused["overallCode"] == "OVER_LIMIT"
        assert refused["statuses"][0]["currentLimit"] == {"requestsPerUnit": 1000, "unit": "DAY"}
