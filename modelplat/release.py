"""The model's Flux HelmRelease and its chart's Chart.yaml (the shared Flux objects: wiring.py)."""

from __future__ import annotations

from typing import Any

from . import __version__
from .output import digest as file_digest, is_shared
from .config import PlatformSettings
from .plan import ModelPlan


def helm_release(p: ModelPlan, platform: PlatformSettings) -> dict[str, Any]:
    flux = platform.flux
    source = flux.gitRepository
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
        "spec": {
            "interval": flux.interval,
            "releaseName": p.name,
            "timeout": flux.timeout,
            "chart": {
                "spec": {
                    "chart": f"{flux.path.rstrip('/')}/{p.chart_dir}",
                    # The chart version carries a hash of the chart's content (chart_version),
                    # so a chart is re-released when it changes and only then. `Revision`
                    # would upgrade every model on every commit to the repository.
                    "reconcileStrategy": "ChartVersion",
                    "sourceRef": {"kind": "GitRepository", "name": source.name, "namespace": source.namespace},
                    "interval": flux.interval,
                }
            },
            "install": {"remediation": {"retries": flux.retries}},
            "upgrade": {
                "cleanupOnFail": True,
                "remediation": {"retries": flux.retries, "remediateLastFailure": True},
            },
            "values": p.chart_values,
        },
    }


def chart_version(chart_files: dict[str, bytes], annotations: dict[str, str]) -> str:
    """modelplat's version plus, as semver build metadata, a hash of the chart's files and of
    Chart.yaml's annotations (its templates read them)."""
    import hashlib

    digest = hashlib.sha256()
    for rel in sorted(chart_files):
        content = chart_files[rel]
        # A file every chart carries (templates, schema, Lua) counts by its own digest, taken
        # once a process: hashing the same ~130 KB again for each model cost as much as its YAML.
        if is_shared(content):
            content = b"sha256:" + file_digest(content).encode()
        digest.update(rel.encode() + b"\0" + content + b"\0")
    for key in sorted(annotations):
        digest.update(b"annotation " + key.encode() + b"\0" + annotations[key].encode() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


def chart_annotations(p: ModelPlan) -> dict[str, str]:
    """Chart.yaml's annotations: what generated the chart, from which values file, and what its
    guard checks (chartgates); the chart's templates read the last two."""
    from . import chartgates

    return {"modelplat.io/generator": f"modelplat {__version__}", "modelplat.io/source": p.source,
            chartgates.PINNED_ANNOTATION: chartgates.pinned(p)}


def chart_metadata(p: ModelPlan, version: str, annotations: dict[str, str]) -> dict[str, Any]:
    description = p.values.description or f"KServe model service {p.name} ({p.values.model.format})"
    return {
        "apiVersion": "v2",
        "name": p.name,
        "description": description,
        "type": "application",
        # Stamped from the generator, with a hash of the chart's content (see chart_version).
        "version": version,
        "appVersion": __version__,
        "annotations": annotations,
    }
