"""promtool unit tests for the alerts of one rendered PrometheusRule: for each alert, series that
must fire it after its `for`, and series that must not (below the threshold, too short, another
namespace's or another model's).

Test support only. The series are what the platform's Prometheus would scrape (metric names,
units and label names as Istio, vLLM, DCGM and kube-state-metrics report them, with the label
names of the platform's metricLabels), and the thresholds and `for` come from the model's
values, in the owner's units. Only the rule's expression is under test, so a rule that selects
the wrong labels, aggregates the wrong way or converts units wrongly fails here. The labels and
annotations an alert must carry are read from the rendered rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OTHER_NAMESPACE = "someone-else"
OTHER_MODEL = "other-model"
RATE_STEP = 60  # counter increase per minute in the synthetic series: one request a second


class Unsatisfiable(ValueError):
    """A threshold no real series can cross (e.g. more than 100 % of requests failing)."""


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    per_minute: float  # a gauge's value, or a counter's increase each minute
    counter: bool = False

    def promql(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}}"

    def values(self, minutes: int) -> str:
        # promtool's expanding notation: 'a+bxn' is a, a+b, … (n+1 samples, one per interval).
        return f"0+{_num(self.per_minute)}x{minutes}" if self.counter else f"{_num(self.per_minute)}x{minutes}"


def _num(value: float) -> str:
    return f"{value:.10g}"


@dataclass
class Scenario:
    """Series for one alert: `firing` crosses the threshold, `calm` does not."""

    firing: list[Series]
    calm: list[Series]
    activation: int  # minutes until the condition first holds with `firing` (a rate needs 2 samples)
    hold: int  # the alert's `for`, in minutes
    kept_labels: list[str] = field(default_factory=list)  # series labels the alert keeps


@dataclass
class Model:
    """What the series of one model look like: from the chart values (HelmRelease spec.values)."""

    values: dict[str, Any]

    @property
    def name(self) -> str:
        return self.values["name"]

    @property
    def namespace(self) -> str:
        return self.values["namespace"]

    @property
    def alerts(self) -> dict[str, Any]:
        return self.values["observability"]["alerts"]

    @property
    def labels(self) -> dict[str, str]:
        return self.values["platform"]["metricLabels"]

    @property
    def workload(self) -> str:
        """KServe's Deployment of the model's pods: <name>-predictor (RawDeployment), or
        <name>-kserve for the (decode) pods of an LLMInferenceService."""
        return f"{self.name}-{'kserve' if self.values['model'].get('serving') == 'llm' else 'predictor'}"

    def pod(self, n: int) -> str:
        # Pods of a Deployment: <deployment>-<replicaset hash>-<pod>.
        return f"{self.workload}-7c9d5b6f4-{'x2k4q z8m1p'.split()[n]}"

    def istio(self, **extra: str) -> dict[str, str]:
        return {"reporter": "destination", "source_workload": "gateway", "destination_workload": self.workload,
                "destination_workload_namespace": self.namespace, **extra}

    def vllm(self, n: int) -> dict[str, str]:
        return {self.labels["namespace"]: self.namespace, self.labels["pod"]: self.pod(n), "model_name": self.name}

    def dcgm(self, n: int) -> dict[str, str]:
        return {self.labels["dcgmNamespace"]: self.namespace, self.labels["dcgmPod"]: self.pod(0), "gpu": str(n),
                "Hostname": "gpu-node-1"}


def _below_100(threshold: float, what: str) -> float:
    if threshold >= 100:
        raise Unsatisfiable(f"{what} cannot exceed 100 %: an alert above {threshold} never fires")
    return (threshold + 100) / 2


def latency(m: Model) -> Scenario:
    limit_ms = m.alerts["p99LatencySeconds"] * 1000
    bounds = [limit_ms / 2, limit_ms * 2, "+Inf"]

    def histogram(slow_percent: float, **extra: str) -> list[Series]:
        # Cumulative buckets, 1000 requests a minute: all but `slow_percent` below half the limit,
        # those in the bucket above the limit. More than 1 % slow puts the P99 above the limit.
        fast = 1000 * (100 - slow_percent) / 100
        return [Series("istio_request_duration_milliseconds_bucket",
                       m.istio(**extra, le=b if isinstance(b, str) else _num(b)), fast if i == 0 else 1000, counter=True)
                for i, b in enumerate(bounds)]

    # 2 % slow requests fire it (a P95 would not); 0.5 % do not, nor slow requests seen by the
    # caller's sidecar (reporter="source").
    return Scenario(firing=histogram(2), calm=histogram(0.5) + histogram(100, reporter="source"),
                    activation=1, hold=m.alerts["forMinutes"])


def error_rate(m: Model) -> Scenario:
    failing = _below_100(m.alerts["errorRatePercent"], "an error rate")
    quiet = m.alerts["errorRatePercent"]  # exactly at the threshold: not above it

    def requests(percent: float, **extra: str) -> list[Series]:
        per_minute = 100 * RATE_STEP / 100
        return [Series("istio_requests_total", m.istio(**extra, response_code="200"), per_minute * (100 - percent) / 100, True),
                Series("istio_requests_total", m.istio(**extra, response_code="503"), per_minute * percent / 100, True),
                # 4xx are the caller's errors, not the model's.
                Series("istio_requests_total", m.istio(**extra, response_code="429"), 0, True)]

    calm = requests(quiet)
    calm[2].per_minute = RATE_STEP  # many 429s on top: still below the threshold
    return Scenario(firing=requests(failing), calm=calm, activation=1, hold=m.alerts["forMinutes"])


def queue_backlog(m: Model) -> Scenario:
    size = m.alerts["queueSize"]
    # Two replicas, each below the threshold: their sum is what counts.
    return Scenario(firing=[Series("vllm:num_requests_waiting", m.vllm(n), size * 0.6) for n in (0, 1)],
                    calm=[Series("vllm:num_requests_waiting", m.vllm(n), size / 2) for n in (0, 1)],
                    activation=0, hold=m.alerts["forMinutes"])


def kv_cache(m: Model) -> Scenario:
    full = _below_100(m.alerts["kvCacheUtilizationPercent"], "KV-cache use")
    # vLLM reports a fraction 0-1; the threshold is a percentage. One full replica is enough.
    return Scenario(firing=[Series("vllm:gpu_cache_usage_perc", m.vllm(0), full / 100),
                            Series("vllm:gpu_cache_usage_perc", m.vllm(1), 0.0)],
                    # Just below: exactly at it, 100 * 0.9 is 90.00000000000001 in floating point.
                    calm=[Series("vllm:gpu_cache_usage_perc", m.vllm(n), (m.alerts["kvCacheUtilizationPercent"] - 0.5) / 100)
                          for n in (0, 1)],
                    activation=0, hold=m.alerts["forMinutes"])


def gpu_saturated(m: Model) -> Scenario:
    threshold = m.alerts["gpuUtilizationPercent"]
    busy = _below_100(threshold, "GPU utilisation")
    gpus = max(m.values["resources"].get("limitGPU", 1), 1)
    calm = [threshold] * gpus
    if gpus > 1 and busy / gpus <= threshold:
        calm = [busy] + [0] * (gpus - 1)  # one busy GPU of several: the average is what counts
    return Scenario(firing=[Series("DCGM_FI_DEV_GPU_UTIL", m.dcgm(n), busy) for n in range(gpus)],
                    calm=[Series("DCGM_FI_DEV_GPU_UTIL", m.dcgm(n), v) for n, v in enumerate(calm)],
                    activation=0, hold=m.alerts["forMinutes"])


def replicas_at_maximum(m: Model) -> Scenario:
    maximum = m.values["autoscaling"]["maxReplicaCount"]
    labels = {m.labels["namespace"]: m.namespace, "horizontalpodautoscaler": m.name, "job": "kube-state-metrics"}

    def hpa(current: int) -> list[Series]:
        return [Series("kube_horizontalpodautoscaler_status_current_replicas", dict(labels), current),
                Series("kube_horizontalpodautoscaler_spec_max_replicas", dict(labels), maximum)]

    # A fixed 15 minutes, whatever forMinutes says (the rule's own choice).
    return Scenario(firing=hpa(maximum), calm=hpa(maximum - 1), activation=0, hold=15, kept_labels=list(labels))


def safety_provider_failing(m: Model) -> Scenario:
    """The sidecar's ext_proc counters: requests let through unscreened (fail-open) or refused
    (fail-closed) because the provider failed. Envoy's Prometheus output names them with the
    listener's stat prefix in the name, or as a label: the firing series uses one form, the other
    form sits beside it."""
    stat = "failure_mode_allowed" if m.values["safety"]["extProc"]["failureMode"] == "open" else "streams_failed"

    def sidecars(failing: float) -> list[Series]:
        pods = [{m.labels["namespace"]: m.namespace, m.labels["pod"]: m.pod(n)} for n in (0, 1)]
        return [Series(f"envoy_http_inbound_0_0_0_0_8080_ext_proc_modelplat_safety_{stat}", pods[0], failing, True),
                Series(f"envoy_http_ext_proc_modelplat_safety_{stat}",
                       pods[1] | {"http_conn_manager_prefix": "inbound_0.0.0.0_8080"}, 0, True)]

    return Scenario(firing=sidecars(1), calm=sidecars(0), activation=1, hold=1)


KINDS: dict[str, Callable[[Model], Scenario]] = {
    "ModelHighLatencyP99": latency,
    "ModelHighErrorRate": error_rate,
    "ModelQueueBacklog": queue_backlog,
    "ModelKVCacheNearlyFull": kv_cache,
    "ModelGPUSaturated": gpu_saturated,
    "ModelReplicasAtMaximum": replicas_at_maximum,
    "ModelSafetyProviderFailing": safety_provider_failing,
}


def _elsewhere(series: list[Series], old: str, new: str, only: str | None = None) -> list[Series]:
    """The same series for another namespace (only values equal to `old`) or another model
    (every value containing `old`)."""
    moved = []
    for s in series:
        labels = {k: (new if v == old else v) if only == "equal" else v.replace(old, new) for k, v in s.labels.items()}
        assert labels != s.labels, f"{s.promql()} has no label to move"
        moved.append(Series(s.name, labels, s.per_minute, s.counter))
    return moved


def _input(series: list[Series], minutes: int) -> list[dict[str, str]]:
    return [{"series": s.promql(), "values": s.values(minutes)} for s in series]


def promtool_tests(rule: dict[str, Any], values: dict[str, Any], rule_files: list[str]) -> dict[str, Any]:
    """A promtool `test rules` file for one rendered PrometheusRule (`rule`) of the model with
    chart values `values`. Raises KeyError for an alert no generator knows (add one to KINDS)."""
    model = Model(values)
    tests = []
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            name = alert["alert"]
            scenario = KINDS[name](model)
            fires_at = scenario.activation + scenario.hold
            minutes = fires_at + 5
            labels = dict(alert.get("labels", {}))
            expected = [{"exp_labels": labels | {k: scenario.firing[0].labels[k] for k in scenario.kept_labels},
                         "exp_annotations": dict(alert.get("annotations", {}))}]

            def quiet(title: str, series: list[Series]) -> dict[str, Any]:
                return {"name": f"{name} {title}", "interval": "1m", "input_series": _input(series, minutes),
                        "alert_rule_test": [{"eval_time": f"{fires_at}m", "alertname": name, "exp_alerts": []}]}

            tests += [
                {"name": f"{name} fires once the condition has held for {scenario.hold}m", "interval": "1m",
                 "input_series": _input(scenario.firing, minutes),
                 "alert_rule_test": [
                     {"eval_time": f"{fires_at - 1}m", "alertname": name, "exp_alerts": []},  # still pending
                     {"eval_time": f"{fires_at}m", "alertname": name, "exp_alerts": expected},
                 ]},
                quiet("stays quiet at or below its threshold", scenario.calm),
                quiet("ignores another namespace", _elsewhere(scenario.firing, model.namespace, OTHER_NAMESPACE, "equal")),
                quiet("ignores another model", _elsewhere(scenario.firing, model.name, OTHER_MODEL)),
            ]
    return {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}
