"""The custom metrics the HPAs scale on, and the prometheus-adapter rules that serve them.

One source for both sides, so an HPA can never name a metric the cluster does not serve (a test
checks every metric in every rendered HPA against these rules). Pure data; no rendering.
"""

from __future__ import annotations

from typing import Any

REQUESTS_PER_SECOND = "requests_per_second"
GPU_UTILIZATION = "gpu_utilization"
KV_CACHE_UTILIZATION = "kv_cache_utilization"  # percent of vLLM's KV cache in use, 0-100
QUEUE_DEPTH = "queue_depth"  # vLLM requests waiting for a slot
REQUESTS_IN_FLIGHT = "requests_in_flight"  # mean requests being served at once (KServe: concurrency)

# autoscaling.<target key> → the Pods metric it scales on
POD_METRICS = {
    "targetRequestRate": REQUESTS_PER_SECOND,
    "targetGPUUtilizationPercentage": GPU_UTILIZATION,
    "targetKVCacheUtilizationPercentage": KV_CACHE_UTILIZATION,
    "targetQueueDepth": QUEUE_DEPTH,
    "targetConcurrency": REQUESTS_IN_FLIGHT,
}


def adapter_rules(labels: Any) -> list[dict[str, Any]]:
    """prometheus-adapter `rules.custom` entries; `labels` is the platform's MetricLabels."""

    def rule(series: str, namespace: str, pod: str, name: str, query: str) -> dict[str, Any]:
        return {
            "seriesQuery": f'{series}{{{namespace}!="",{pod}!=""}}',
            "resources": {"overrides": {namespace: {"resource": "namespace"}, pod: {"resource": "pod"}}},
            "name": {"matches": f"^{series}$", "as": name},
            "metricsQuery": query,
        }

    ns, pod = labels.namespace, labels.pod
    return [
        # The seed platform's definition: requests per second over 2 minutes, seen by the sidecar
        # of the pod that served them.
        rule("istio_requests_total", ns, pod, REQUESTS_PER_SECOND,
             'sum(rate(<<.Series>>{<<.LabelMatchers>>,reporter="destination"}[2m])) by (<<.GroupBy>>)'),
        # Little's law: the seconds of request time a pod served per second is the mean number of
        # requests in flight on it, read from the same destination-side sidecar metrics.
        rule("istio_request_duration_milliseconds_sum", ns, pod, REQUESTS_IN_FLIGHT,
             'sum(rate(<<.Series>>{<<.LabelMatchers>>,reporter="destination"}[2m])) by (<<.GroupBy>>) / 1000'),
        rule("DCGM_FI_DEV_GPU_UTIL", labels.dcgmNamespace, labels.dcgmPod, GPU_UTILIZATION,
             "avg(avg_over_time(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)"),
        # vLLM reports the fraction 0-1; HPAs and owners think in percent.
        rule("vllm:gpu_cache_usage_perc", ns, pod, KV_CACHE_UTILIZATION,
             "avg(avg_over_time(<<.Series>>{<<.LabelMatchers>>}[1m]) * 100) by (<<.GroupBy>>)"),
        rule("vllm:num_requests_waiting", ns, pod, QUEUE_DEPTH,
             "sum(avg_over_time(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)"),
    ]
