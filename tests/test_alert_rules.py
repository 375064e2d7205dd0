"""Every alert a model can get fires when it should and only then: `promtool test rules` with
tests generated from the model's values (tests/alert_rule_tests.py) against its rendered rule.

Run over every example with alerts and over a generated model with every alert on and the
platform's metric labels renamed. Under CI=true a missing promtool or helm fails.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alert_rule_tests import KINDS, Unsatisfiable, promtool_tests
from conftest import REPO, modelplat, need_tool
from test_prompt_safety import GUARD
from test_real_tools import helmrelease_values, rendered_examples, template

ALL_ALERTS_MODEL = """\
model:
  format: custom
  protocol: openai
  image: vllm/vllm-openai:v0.8.5
  storageUri: hf://Qwen/Qwen2.5-7B-Instruct
resources:
  requestGPU: 4
  limitGPU: 4
replicaCount: 2
autoscaling:
  enabled: true
  maxReplicaCount: 5
  targetQueueDepth: 8
observability:
  alerts:
    enabled: true
    p99LatencySeconds: 2.5
    errorRatePercent: 2
    queueSize: 7
    kvCacheUtilizationPercent: 80
    gpuUtilizationPercent: 60
    forMinutes: 3
safety:
  enabled: true
  provider: guard
  screen: prompts
"""
# Label names a Prometheus with its own relabelling might use: the rules must follow them.
RELABELLED_PLATFORM = """\
clusterName: ml-test
metricLabels:
  namespace: kubernetes_namespace
  pod: kubernetes_pod_name
  dcgmNamespace: namespace
  dcgmPod: pod
""" + GUARD.replace("        bodyMode: streamed\n", "        failureMode: open\n")  # a fail-open provider


@pytest.fixture(scope="module")
def promtool():
    return need_tool("promtool")


@pytest.fixture(scope="module")
def helm():
    return need_tool("helm")


def run_promtool_tests(promtool: str, rule: dict[str, Any], values: dict[str, Any], folder: Path,
                       ) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(json.dumps({"groups": rule["spec"]["groups"]}))
    (folder / "tests.yaml").write_text(json.dumps(promtool_tests(rule, values, ["rules.yaml"]), indent=1))
    return subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=folder, capture_output=True, text=True,
                          timeout=120)


def prometheus_rule(docs: list[dict]) -> dict | None:
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    return rules[0] if rules else None


def alert_names(rule: dict) -> list[str]:
    return [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def example_rules(helm) -> dict[str, tuple[dict, dict]]:
    """model → (its rendered PrometheusRule, its chart values), for the examples with alerts."""
    found = {}
    for model, docs in rendered_examples(helm).items():
        rule = prometheus_rule(docs)
        if rule:
            found[model] = (rule, helmrelease_values(REPO / "charts-out" / model))
    return found


@pytest.fixture(scope="module")
def all_alerts_model(helm, tmp_path_factory) -> tuple[dict, dict]:
    root = tmp_path_factory.mktemp("all-alerts")
    (root / "models/chat").mkdir(parents=True)
    (root / "models/platform.yaml").write_text(RELABELLED_PLATFORM)
    (root / "models/chat/assistant.yaml").write_text(ALL_ALERTS_MODEL)
    result = modelplat("render", str(root / "models"), "--out", str(root / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    values = helmrelease_values(root / "out/chat/assistant")
    rule = prometheus_rule(template(helm, root / "out/chat/assistant/chart", "assistant", "chat", values))
    assert rule is not None
    return rule, values


def test_every_example_alert_fires_when_it_should_and_only_then(promtool, example_rules, tmp_path):
    assert len(example_rules) >= 2
    for model, (rule, values) in example_rules.items():
        result = run_promtool_tests(promtool, rule, values, tmp_path / model)
        assert result.returncode == 0, f"{model}:\n{result.stdout}{result.stderr}"
        assert "SUCCESS" in result.stdout


def test_a_model_with_every_alert_on_relabelled_metrics(promtool, all_alerts_model, tmp_path):
    rule, values = all_alerts_model
    assert sorted(alert_names(rule)) == sorted(KINDS), "the generated model gets every kind of alert"
    tests = promtool_tests(rule, values, ["rules.yaml"])
    assert len(tests["tests"]) == 4 * len(KINDS)
    result = run_promtool_tests(promtool, rule, values, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# Each change breaks one alert's behaviour, not its syntax: the generated tests must notice.
BREAKAGES = {
    "latency in seconds, not ms": ("ModelHighLatencyP99", lambda e: e.replace("> 2500", "> 2.5")),
    "p95 instead of p99": ("ModelHighLatencyP99", lambda e: e.replace("0.99", "0.95")),
    "every reporter counted": ("ModelHighLatencyP99", lambda e: e.replace('reporter="destination",', "")),
    "4xx counted as errors": ("ModelHighErrorRate", lambda e: e.replace('response_code=~"5.."', 'response_code=~"[45].."')),
    "queue of one replica": ("ModelQueueBacklog", lambda e: e.replace("sum(", "max(")),
    "default pod label": ("ModelQueueBacklog", lambda e: e.replace("kubernetes_pod_name=~", "pod=~")),
    "kv cache as a fraction": ("ModelKVCacheNearlyFull", lambda e: e.replace("100 * max(", "max(")),
    "busiest GPU, not the average": ("ModelGPUSaturated", lambda e: e.replace("avg(", "max(")),
    "replicas > max": ("ModelReplicasAtMaximum", lambda e: e.replace(" >= ", " > ")),
    "any namespace": ("ModelReplicasAtMaximum", lambda e: e.replace('kubernetes_namespace="chat",', "")),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_generated_tests_fail_when_an_alert_misbehaves(promtool, all_alerts_model, tmp_path, breakage):
    alert, change = BREAKAGES[breakage]
    rule, values = all_alerts_model
    broken = json.loads(json.dumps(rule))
    (target,) = [r for g in broken["spec"]["groups"] for r in g["rules"] if r["alert"] == alert]
    before = target["expr"]
    target["expr"] = change(before)
    assert target["expr"] != before, f"{breakage}: the change no longer applies to {before}"
    result = run_promtool_tests(promtool, broken, values, tmp_path)
    assert result.returncode != 0, f"{breakage}: promtool passed"
    assert alert in result.stdout + result.stderr


def test_a_wrong_for_is_noticed(promtool, all_alerts_model, tmp_path):
    rule, values = all_alerts_model
    broken = json.loads(json.dumps(rule))
    for group in broken["spec"]["groups"]:
        for alert in group["rules"]:
            alert["for"] = "1m" if alert["for"] != "1m" else "2m"
    result = run_promtool_tests(promtool, broken, values, tmp_path)
    assert result.returncode != 0
    assert all(name in result.stdout + result.stderr for name in KINDS)


def test_a_threshold_no_series_can_cross_is_reported(all_alerts_model):
    rule, values = all_alerts_model
    capped = json.loads(json.dumps(values))
    capped["observability"]["alerts"]["errorRatePercent"] = 100
    with pytest.raises(Unsatisfiable, match="error rate"):
        promtool_tests(rule, capped, ["rules.yaml"])


@pytest.mark.parametrize("key, value", [("errorRatePercent", 100), ("kvCacheUtilizationPercent", 100),
                                        ("gpuUtilizationPercent", 100)])
def test_the_schema_refuses_thresholds_no_series_can_cross(key, value):
    from pydantic import ValidationError

    from modelplat.values import Alerts

    with pytest.raises(ValidationError):
        Alerts(enabled=True, **{key: value})
    Alerts(enabled=True, **{key: 99})
