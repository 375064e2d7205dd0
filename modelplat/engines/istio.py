"""Istio's config generation for the model pods and the gateway, through toolchain/sidecar-config
(Istio's own discovery server, in-process), and readers for what it generated.

It is handed Istio objects and the Services, Pods and EndpointSlices a cluster holds; it returns
the Envoy listeners and routes each proxy would receive. Judging them is the caller's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import tools, yamlout

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io")
HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
# The platform gateway's proxy, as Istio's default ingress gateway deployment labels it.
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
GATEWAY_IP = "10.96.0.10"


class IstioError(RuntimeError):
    pass


@dataclass(frozen=True)
class Proxy:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    type: str = "sidecar"  # or "router" (a gateway)

    def as_dict(self) -> dict:
        return {"name": self.name, "namespace": self.namespace, "labels": self.labels, "ip": self.ip,
                "type": self.type}


@dataclass
class ProxyConfig:
    listeners: list[dict]
    routes: list[dict]

    def listener(self, name: str) -> dict | None:
        return next((l for l in self.listeners if l.get("name") == name), None)

    def inbound_chains(self, port: int) -> list[dict]:
        """The virtualInbound filter chains for a pod port that carry HTTP (an HCM)."""
        inbound = self.listener("virtualInbound") or {}
        return [chain for chain in inbound.get("filter_chains", [])
                if (chain.get("filter_chain_match") or {}).get("destination_port") == port
                and hcm(chain) is not None]

    def route(self, name: str) -> dict | None:
        return next((r for r in self.routes if r.get("name") == name), None)


def hcm(chain: dict) -> dict | None:
    """The HTTP connection manager config of a filter chain (None for a TCP chain)."""
    for f in chain.get("filters", []):
        if f.get("name") == HCM:
            return f.get("typed_config") or {}
    return None


def http_filters(chain: dict) -> list[dict]:
    return (hcm(chain) or {}).get("http_filters", [])


def http_filter_names(chain: dict) -> list[str]:
    return [f.get("name", "") for f in http_filters(chain)]


def inline_routes(chain: dict) -> list[dict]:
    """Virtual hosts served inline by an inbound chain (sidecars inline their inbound routes)."""
    return ((hcm(chain) or {}).get("route_config") or {}).get("virtual_hosts", [])


@dataclass
class Inputs:
    """What Istio's control plane would watch: its config objects and the cluster's workloads."""

    config: list[dict] = field(default_factory=list)
    kubernetes: list[dict] = field(default_factory=list)
    mesh: dict = field(default_factory=dict)


def generate(inputs: Inputs, proxies: list[Proxy], *, timeout: int = 300) -> dict[str, ProxyConfig]:
    """Runs Istio's config generation once for every proxy; {proxy name: ProxyConfig}."""
    binary = tools.find("sidecar-config")
    if not binary:
        raise IstioError("sidecar-config is not installed (modelplat tools install sidecar-config)")
    payload = {
        "config": "---\n".join(yamlout.dump(o) for o in inputs.config),
        "kubernetes": "---\n".join(yamlout.dump(o) for o in inputs.kubernetes),
        "mesh": yamlout.dump(inputs.mesh) if inputs.mesh else "",
        "proxies": [p.as_dict() for p in proxies],
    }
    with tempfile.TemporaryDirectory(prefix="modelplat-istio-") as tmp:
        out = Path(tmp) / "out.json"
        # Envoy, not the control plane, fetches JWKS: Istio's default would fetch every issuer's
        # keys over the network while generating config.
        env = dict(os.environ, PILOT_JWT_ENABLE_REMOTE_JWKS="envoy")
        proc = subprocess.run([binary, str(out)], input=json.dumps(payload), capture_output=True, text=True,
                              timeout=timeout, env=env)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-30:])
            raise IstioError(f"Istio's config generation failed ({proc.returncode}):\n{tail}")
        answer = json.loads(out.read_text())
    return {name: ProxyConfig(cfg.get("listeners") or [], cfg.get("routes") or [])
            for name, cfg in (answer.get("proxies") or {}).items()}


EXT_AUTHZ_PORT = 9000


def mesh_config(custom_providers: list[str]) -> tuple[dict, list[dict]]:
    """A mesh config that names every CUSTOM authorizer the policies use, and the Services it
    points at. Istio replaces a CUSTOM policy whose provider the mesh does not define, or whose
    service is not in its registry, with deny-all; the platform team defines them. Here each is
    an ext-authz gRPC service named after the provider in istio-system."""
    names = sorted(set(custom_providers))
    mesh = {"extensionProviders": [
        {"name": name, "envoyExtAuthzGrpc": {"service": f"{name}.istio-system.svc.cluster.local", "port": EXT_AUTHZ_PORT}}
        for name in names]}
    services = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "istio-system"},
                 "spec": {"ports": [{"name": "grpc", "port": EXT_AUTHZ_PORT, "protocol": "TCP"}],
                          "selector": {"app": name}}} for name in names]
    return mesh, services


def gateway_objects(gateway: str, hosts: list[str]) -> tuple[list[dict], list[dict]]:
    """The platform's Gateway (namespace/name from the platform file) and its proxy's Service and
    Pod, which modelplat does not render: the platform team installs them. Plain HTTP on port
    80 for every host the models expose (TLS termination does not change the routes)."""
    namespace, name = gateway.split("/", 1)
    config = [{
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"istio": GATEWAY_LABELS["istio"]},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": sorted(set(hosts)) or ["*"]}]},
    }]
    kube = [{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "istio-ingressgateway-0", "namespace": namespace, "labels": dict(GATEWAY_LABELS)},
        "spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2"}]},
        "status": {"phase": "Running", "podIP": GATEWAY_IP, "podIPs": [{"ip": GATEWAY_IP}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }]
    return config, kube
