"""A minimal Kubernetes REST client (JSON over HTTPS with a bearer token) for the local control
plane: reading what the engines made, and the simulated kubelet's status writes.

Reads and status patches only; manifests are applied with kubectl, as a user would.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
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
    "LLMInferenceService": ("apis/serving.kserve.io/v1alpha2", "llminferenceservices"),
    "InferencePool": ("apis/inference.networking.k8s.io/v1", "inferencepools"),
    # The pool's pre-v1 group, which KServe v0.20's HTTPRoute names until a Gateway resolves v1.
    "InferencePool.x-k8s.io": ("apis/inference.networking.x-k8s.io/v1alpha2", "inferencepools"),
    "InferenceObjective": ("apis/llm-d.ai/v1alpha2", "inferenceobjectives"),
    "HTTPRoute": ("apis/gateway.networking.k8s.io/v1", "httproutes"),
    "Gateway": ("apis/gateway.networking.k8s.io/v1", "gateways"),
    "LeaderWorkerSet": ("apis/leaderworkerset.x-k8s.io/v1", "leaderworkersets"),
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


_CONTEXT: ssl.SSLContext | None = None
# One keep-alive connection per thread and server: a verify reads hundreds of objects, and a new
# TLS handshake (and CA store load) per request made that half a minute.
_connections = threading.local()


def _context() -> ssl.SSLContext:
    global _CONTEXT
    if _CONTEXT is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the throwaway server's self-signed certificate
        _CONTEXT = context
    return _CONTEXT


@dataclass(frozen=True)
class Kube:
    server: str  # https://127.0.0.1:PORT
    token: str

    def _connection(self, fresh: bool = False) -> http.client.HTTPSConnection:
        pool = getattr(_connections, "pool", None)
        if pool is None:
            pool = _connections.pool = {}
        if fresh and self.server in pool:
            pool.pop(self.server).close()
        if self.server not in pool:
            url = urllib.parse.urlsplit(self.server)
            pool[self.server] = http.client.HTTPSConnection(url.hostname, url.port, timeout=30, context=_context())
        return pool[self.server]

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", "Content-Type": content_type}
        for attempt in range(2):
            # A kept-alive connection the server has since closed fails at once: retried once on a
            # new one (reads, and merge patches, which are idempotent).
            connection = self._connection(fresh=attempt > 0)
            try:
                connection.request(method, f"/{path}", body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
        if response.status >= 400:
            raise KubeError(response.status, payload.decode(errors="replace"))
        return json.loads(payload or b"{}")

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

    def list_versioned(self, kind: str, namespace: str | None = None) -> tuple[list[dict], str]:
        """The objects and the list's resourceVersion, to watch from."""
        listed = self.request("GET", self.path(kind, namespace))
        return listed.get("items", []), listed["metadata"]["resourceVersion"]

    def watch(self, kind: str, resource_version: str, seconds: int = 5):
        """Yields the watch events ({"type", "object"}) after resource_version for up to
        `seconds` (the server then ends the stream), on a connection of its own. An ERROR
        event (410: the version is too old) ends it too: list again, then watch."""
        url = urllib.parse.urlsplit(self.server)
        connection = http.client.HTTPSConnection(url.hostname, url.port, timeout=seconds + 30, context=_context())
        query = urllib.parse.urlencode({"watch": "1", "resourceVersion": resource_version,
                                        "timeoutSeconds": str(seconds), "allowWatchBookmarks": "false"})
        try:
            connection.request("GET", f"/{self.path(kind)}?{query}",
                               headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
            response = connection.getresponse()
            if response.status >= 400:
                raise KubeError(response.status, response.read().decode(errors="replace"))
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            connection.close()

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
