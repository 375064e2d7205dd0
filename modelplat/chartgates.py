"""What a generated chart follows at install time, and how it refuses what it cannot follow.

Helm accepts any values a chart's values.schema.json allows, whatever their source: `--set`, a
patched HelmRelease, `valuesFrom`. A chart follows them: every chart holds every template, and
each template decides at Helm time whether it renders and what (a canary turned on, GPU
scheduling and the GPU alert from `resources.requestGPU`, the model spec from `model.format`).
The templates, `_helpers.tpl` among them, are the same bytes in every chart; only `Chart.yaml`,
the values, the README and the tests are the model's own.

What a chart cannot follow are values used outside it (PINNED): the model's identity names its
output folder, HelmRelease and rate-limit domains, and the platform's rate-limit service counts
request limits and token quotas from its own configuration. `_helpers.tpl` holds the guard
`modelplat.generatedFor`, included by the InferenceService, which fails the install with a
message naming the value and the remedy when one of them differs from what the chart was
generated with: `Chart.yaml`'s annotation `modelplat.io/pinned` (PINNED_ANNOTATION) holds each
pinned value's JSON as generated.
"""

from __future__ import annotations

import json
from typing import Any

from .plan import ModelPlan

# Why a chart cannot follow a value (a key of REASONS for each pinned value).
REASONS: dict[str, str] = {
    "identity": "it names the output folder, the HelmRelease, its namespace and the model's rate-limit domains",
    "counters": "the platform's rate-limit service counts from its own configuration (_platform/ratelimit), "
                "which modelplat renders from the values file",
    "providers": "modelplat resolves the safety provider from the platform file (what the sidecar is sent, "
                 "where it calls), and Model Armor screens on the Gateway from _platform/safety",
}

# Chart values (dotted paths) the chart cannot follow, and why.
PINNED: dict[str, str] = {
    "name": "identity", "project": "identity", "namespace": "identity",
    "ratelimitIPPerMinute": "counters", "ratelimitEachSAPerMinute": "counters",
    "tokenLimit.tenantId": "counters", "tokenLimit.shareTenantQuota": "counters",
    "tokenLimit.saLimit": "counters", "tokenLimit.saLimitPerMinute": "counters",
    "tokenLimit.ipLimit": "counters", "tokenLimit.ipLimitPerMinute": "counters",
    # safety.enabled is not pinned: turned off, the chart follows (nothing screens); turned on where
    # modelplat resolved no provider, envoyfilter-safety.yaml fails the install.
    "safety.provider": "providers", "safety.screen": "providers",
}


PINNED_ANNOTATION = "modelplat.io/pinned"


def pinned(p: ModelPlan) -> str:
    """The annotation's value: a JSON object of each pinned value as generated, by its dotted
    path. The guard compares Helm's toJson of both sides, so one printer formats both."""
    return json.dumps({path: _lookup(p.chart_values, path) for path in PINNED}, separators=(",", ":"))


def template_context() -> dict[str, Any]:
    """What `_helpers.tpl.j2` needs to write the guard: the same for every chart."""
    reasons = " ".join(f"{_go_string(path)} {_go_string(REASONS[reason])}" for path, reason in PINNED.items())
    return {"pinned_reasons": reasons, "pinned_count": len(PINNED)}


def _go_string(text: str) -> str:
    """A Go template string literal (JSON's escapes, ASCII only, are a subset of Go's)."""
    return json.dumps(text)


def _lookup(values: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(key)
    return values
