"""A minimal Kubernetes REST client (JSON over HTTPS with a bearer token) for the local control
plane: reading what the engines made, and the simulated kubelet's status writes.

Reads and status patches only; manifests are applied with kubectl, as a user would.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

# Where each kind the checks read lives: (API path prefix, plural).
RESOURCES = {
    "Pod": ("api/v1", "pods"),
    "Service": ("api/v1", "services"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "Event": ("api/v1", "events"),
    "Namespace": ("api/v1", "namespaces"),
    "Node": ("api/v1", "nodes"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "ReplicaSet": ("apis/apps/v1", "replicasets"),
    "EndpointSlice": ("apis/discovery.k8s.io/v1", "endpointslices"),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "Ingress": ("apis/networking.k8s.io/v1", "ingresses"),
    "InferenceService": ("apis/serving.kserve.io/v1beta1", "inferenceservices"),
    "GitRepository": ("apis/source.toolkit.fluxcd.io/v1", "gitrepositories"),
    "HelmChart": ("apis/source.toolkit.fluxcd.io/v1", "helmcharts"),
    "Kustomization": ("apis/kustomize.toolkit.fluxcd.io/v1", "kustomizations"),
    "HelmRelease": ("apis/helm.toolkit.fluxcd.io/v2", "helmreleases"),
    "Secret": ("api/v1", "secrets"),
    "PriorityClass": ("apis/scheduling.k8s.io/v1", "priorityclasses"),
    "PeerAuthentication": ("apis/security.istio.io/v1", "peerauthentications"),
    "AuthorizationPolicy": ("apis/security.istio.io/v1", "authorizationpolicies"),
    "RequestAuthentication": ("apis/security.istio.io/v1", "requestauthentications"),
    "EnvoyFilter": ("apis/networking.istio.io/v1alpha3", "envoyfilters"),
    "VirtualService": ("apis/networking.istio.io/v1", "virtualservices"),
    "Telemetry": ("apis/telemetry.istio.io/v1", "telemetries"),
    "PodMonitor": ("apis/monitoring.coreos.com/v1", "podmonitors"),
    "PrometheusRule": ("apis/monitoring.coreos.com/v1", "prometheusrules"),
    "NetworkAttachmentDefinition": ("apis/k8s.cni.cncf.io/v1", "network-attachment-definitions"),
}


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Kube:
    server: str  # https://127.0.0.1:PORT
    token: str

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the throwaway server's self-signed certificate
        return context

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.server}/{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self._context()) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise KubeError(exc.code, exc.read().decode(errors="replace")) from None

    @staticmethod
    def path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
        prefix, plural = RESOURCES[kind]
        where = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        return f"{where}/{name}" if name else where

    def list(self, kind: str, namespace: str | None = None, *, label_selector: str = "",
             field_selector: str = "") -> list[dict]:
        query = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        path = self.path(kind, namespace)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        items = self.request("GET", path).get("items", [])
        api_version = RESOURCES[kind][0].removeprefix("api/").removeprefix("apis/")
        for item in items:  # list items carry neither kind nor apiVersion
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self.request("GET", self.path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def patch_status(self, kind: str, namespace: str, name: str, patch: dict) -> dict:
        return self.request("PATCH", self.path(kind, namespace, name) + "/status", patch,
                            content_type="application/merge-patch+json")

    def patch(self, kind: str, namespace: str | None, name: str, patch: dict) -> dict:
        return self.request("PATCH", self.path(kind, namespace, name), patch,
                            content_type="application/merge-patch+json")


def condition(obj: dict | None, kind: str = "Ready") -> dict:
    """The status condition of that type ({} when absent)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}
