"""Delivers a rendered tree the way production does: committed to Git, cloned by Flux's
source-controller, applied by kustomize-controller, installed by helm-controller; then waits
until every engine has settled on that commit.

It reads the engines' own status (revisions, Ready conditions, release history); it never applies
a model's objects itself. The only objects it applies are the rendered `_platform/flux` ones, once,
as a platform team bootstraps Flux.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PlatformSettings
from .controlplane import FLUX_NAMESPACE, ControlPlane
from .kube import condition

SETTLE_SECONDS = 420
# Flux settings of the engines run: the loopback Git server, no credentials, bounded Helm waits
# (a release that cannot become Ready fails in minutes, not after the production timeout) and no
# remediation retries (a failure is reported, not retried three times).
ENGINE_TIMEOUT = "3m"


def engine_platform(platform: PlatformSettings, repo_url: str) -> PlatformSettings:
    """The platform settings as the local control plane needs them. Models' charts and values do
    not depend on any of these, so every chart is byte for byte the one the user commits.
    prometheus-adapter is left out: its chart comes from an external Helm repository, which a
    loopback-only run cannot reach."""
    flux = platform.flux
    git = flux.gitRepository.model_copy(update={"url": repo_url, "secretRef": None})
    return platform.model_copy(update={
        "flux": flux.model_copy(update={"gitRepository": git, "timeout": ENGINE_TIMEOUT, "retries": 0}),
        "prometheusAdapter": platform.prometheusAdapter.model_copy(update={"enabled": False}),
    })


@dataclass
class Release:
    """What helm-controller says of one HelmRelease."""

    namespace: str
    name: str
    ready: str  # "True", "False", "Unknown"
    reason: str
    message: str
    revision: int  # the Helm release revision installed last (0: none)
    chart_version: str
    object: dict = field(repr=False, default_factory=dict)


@dataclass
class Settled:
    revision: str  # the commit Flux applied
    releases: dict[tuple[str, str], Release]
    kustomizations: dict[str, dict]
    seconds: float
    # What was still awaited, and from when (seconds after the commit was published): where the
    # time of a delivery went.
    trace: list[tuple[float, str]] = field(default_factory=list)


class GitOps:
    def __init__(self, plane: ControlPlane, platform: PlatformSettings):
        self.plane = plane
        self.platform = platform
        self.bootstrapped = False

    @property
    def output(self) -> Path:
        """Where the rendered tree lives in the repository (the platform's flux.path)."""
        return self.plane.git.tree / self.platform.flux.path.removeprefix("./")

    def publish(self, files: dict[str, bytes], message: str) -> str:
        """Replaces the output folder in Git with exactly these files; commits and pushes."""
        if self.output.exists():
            shutil.rmtree(self.output)
        for rel, content in files.items():
            path = self.output / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return self.plane.git.commit(message)

    def reconcile(self, commit: str, expected_releases: set[tuple[str, str]],
                  seconds: float = SETTLE_SECONDS, chart_versions: dict[tuple[str, str], str] | None = None) -> Settled:
        """Bootstraps Flux from the rendered `_platform/flux` on the first call, asks the
        source to fetch now (instead of waiting for its interval), and waits until the
        commit is applied and every expected HelmRelease has settled on it: Ready, or failed
        with helm-controller's reason. Releases no longer expected must be gone (pruned)."""
        started = time.monotonic()
        kube = self.plane.kube
        if not self.bootstrapped:
            self.plane.api.kubectl_run("apply", "-k", str(self.output / "_platform" / "flux"))
            self.bootstrapped = True
        git = self.platform.flux.gitRepository
        stamp = str(time.time_ns())
        kube.patch("GitRepository", git.namespace, git.name,
                   {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}})
        want = f"{git.branch}@sha1:{commit}"
        deadline = started + seconds
        last = ""
        trace: list[tuple[float, str]] = []
        while True:
            state, last = self._state(want, expected_releases, chart_versions or {})
            if not trace or trace[-1][1] != last:
                trace.append((round(time.monotonic() - started, 1), last))
            if state is not None:
                state.seconds = time.monotonic() - started
                state.trace = trace
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"Flux did not settle on {want} within {seconds:.0f}s: {last}\n"
                                   f"{self.plane.log_tail('helm-controller', 15)}")
            time.sleep(1)

    def _state(self, want: str, expected: set[tuple[str, str]],
               chart_versions: dict[tuple[str, str], str]) -> tuple[Settled | None, str]:
        kube = self.plane.kube
        git = self.platform.flux.gitRepository
        source = kube.get("GitRepository", git.namespace, git.name) or {}
        have = ((source.get("status") or {}).get("artifact") or {}).get("revision")
        if have != want:
            return None, f"GitRepository at {have} ({condition(source).get('message', '')})"
        kustomizations = {k["metadata"]["name"]: k for k in kube.list("Kustomization", FLUX_NAMESPACE)}
        # The platform services' Kustomization first (healthy, `wait`), then the models' (dependsOn).
        for name in (self.platform.flux.platformKustomizationName, self.platform.flux.kustomizationName):
            applied = kustomizations.get(name) or {}
            status = applied.get("status") or {}
            if status.get("lastAppliedRevision") != want or condition(applied).get("status") != "True":
                return None, f"Kustomization {name}: {condition(applied).get('message', 'not applied yet')}"
        releases = {}
        for hr in kube.list("HelmRelease"):
            meta = hr["metadata"]
            releases[(meta["namespace"], meta["name"])] = release(hr)
        if set(releases) != expected:
            return None, f"HelmReleases {sorted(releases)} != expected {sorted(expected)}"
        for key, r in releases.items():
            hr = r.object
            if (hr.get("status") or {}).get("observedGeneration") != hr["metadata"].get("generation"):
                return None, f"HelmRelease {key} not observed yet"
            if r.ready == "Unknown" or r.reason == "Progressing" or not condition(hr):
                return None, f"HelmRelease {key}: {r.reason} {r.message}"
            # A chart-only change leaves the HelmRelease's generation alone: wait until
            # helm-controller has attempted the chart version that was published.
            version = chart_versions.get(key)
            attempted = ((hr.get("status") or {}).get("lastAttemptedRevision") or "").split("@")[0]
            if version and attempted != version:
                return None, f"HelmRelease {key} has not attempted chart {version} yet"
        return Settled(want, releases, kustomizations, 0.0), ""


def release(hr: dict) -> Release:
    ready = condition(hr)
    history = (hr.get("status") or {}).get("history") or [{}]
    latest = history[0]
    return Release(hr["metadata"]["namespace"], hr["metadata"]["name"], ready.get("status", "Unknown"),
                   ready.get("reason", ""), ready.get("message", ""), int(latest.get("version") or 0),
                   latest.get("chartVersion", ""), hr)
