"""A local control plane that acts on the output: etcd + kube-apiserver, kube-controller-manager,
KServe's controller manager with its webhooks registered, Flux's three controllers, a loopback
Git server, and a simulated kubelet (there are no nodes).

Everything runs as local processes on loopback, started in dependency order and always stopped
(newest first), also when a start fails half-way. It reconciles what it is given and reports
nothing itself: callers read the engines' own objects and status through `kube`.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from .. import tools
from .apiserver import ApiServer, StartError, free_port
from .gitserver import GitServer
from .kube import Kube, KubeError

READY_SECONDS = 90
KSERVE_NAMESPACE = "kserve"
FLUX_NAMESPACE = "flux-system"
FLUX_CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller")
# Namespaces the platform expects before any model: Flux's own, the monitoring stack's, and the
# Istio control plane's (the platform Gateway lives there).
PLATFORM_NAMESPACES = (FLUX_NAMESPACE, "monitoring", "istio-system")
NODE = "engines-node"
# Vendored CRD files the KServe start installs from KServe's build folder instead (apiserver.start).
KSERVE_OWN_CRDS = ("serving.kserve.io_", "inference.networking", "llm-d.ai_", "leaderworkerset.x-k8s.io_",
                   "gateway.networking.k8s.io_")
# Pod IPs the simulated kubelet hands out (never routed: only Istio's config generation reads them).
POD_NETWORK = "10.244"

_yaml = YAML(typ="safe")


@dataclass
class Engines:
    """Paths of the engine binaries and the config shipped with them (see toolchain/install-tools.sh, `modelplat tools install engines`)."""

    etcd: str
    apiserver: str
    kubectl: str
    controller_manager: str
    kserve_manager: str
    kserve_llmisvc: str  # KServe's LLMInferenceService controller (cmd/llmisvc), built beside the manager
    kustomize: str
    openssl: str
    sidecar_config: str  # Istio's config generation (toolchain/sidecar-config)
    flux: dict[str, str] = field(default_factory=dict)

    @property
    def kserve_config(self) -> Path:
        """KServe's own config/ folder of the built version, kept beside its manager binary."""
        return Path(os.path.realpath(self.kserve_manager)).parent / "config"

    def llm_crds(self) -> list[Path]:
        """CRDs the LLMInferenceService controller needs beyond KServe's: LeaderWorkerSet and the
        Gateway API, copied into KServe's build folder from their modules at pinned versions."""
        build = Path(os.path.realpath(self.kserve_manager)).parent
        return sorted(p for p in build.iterdir() if p.is_dir() and p.name.startswith("crds-"))

    def flux_crds(self, controller: str) -> Path:
        return Path(os.path.realpath(self.flux[controller])).parent / "crds"

    @classmethod
    def find(cls) -> tuple["Engines | None", list[str]]:
        """The engines from PATH or the tool cache; (None, missing names) when any is missing."""
        names = {"etcd": "etcd", "apiserver": "kube-apiserver", "kubectl": "kubectl",
                 "controller_manager": "kube-controller-manager", "kserve_manager": "kserve-manager",
                 "kserve_llmisvc": "kserve-llmisvc",
                 "kustomize": "kustomize", "openssl": "openssl", "sidecar_config": "sidecar-config"}
        found = {attr: tools.find(tool) for attr, tool in names.items()}
        flux = {c: tools.find(c) for c in FLUX_CONTROLLERS}
        missing = [names[a] for a, p in found.items() if not p] + [c for c, p in flux.items() if not p]
        if missing:
            return None, missing
        return cls(**found, flux=flux), []  # type: ignore[arg-type]


class ControlPlane:
    """Start with `start()`, stop with `stop()` (or use it as a context manager)."""

    def __init__(self, engines: Engines, workdir: Path, *, flux: bool = True, kserve: bool = True, llm: bool = True):
        """`llm`: also KServe's LLMInferenceService controller (with `kserve`), for LLM-native models."""
        self.engines = engines
        self.workdir = workdir
        self.with_flux, self.with_kserve, self.with_llm = flux, kserve, kserve and llm
        self.api = ApiServer(etcd=engines.etcd, apiserver=engines.apiserver, kubectl=engines.kubectl,
                             openssl=engines.openssl, workdir=workdir / "apiserver")
        self.git = GitServer(workdir / "git")
        self.kube: Kube | None = None
        self.timings: dict[str, float] = {}
        self._kubelet: threading.Thread | None = None
        self._stopping = threading.Event()
        self.kubelet_errors: list[str] = []

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        started = self._last = time.monotonic()
        try:
            self.api.workdir.mkdir(parents=True, exist_ok=True)
            # KServe's own CRDs (and the LLM kinds' it ships or pins) come from its build below,
            # at the version that runs: installing the vendored copies first only cost time.
            self.api.start(skip=KSERVE_OWN_CRDS if self.with_llm else ("serving.kserve.io_",) if self.with_kserve else ())
            self.kube = Kube(self.api.server, self.api.token)
            self._mark("apiserver")
            for name in PLATFORM_NAMESPACES:
                self.api.kubectl_run("create", "namespace", name, check=False)
            self._start_controller_manager()
            self._start_kubelet()
            self._mark("kube-controller-manager")
            # KServe and Flux need nothing of each other: they start side by side.
            flux = Started(self._start_git_and_flux) if self.with_flux else None
            try:
                if self.with_kserve:
                    self._start_kserve()
                    self._mark("kserve")
            finally:
                if flux is not None:
                    flux.join()
            if flux is not None:
                self.timings["flux"] = flux.seconds
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - started

    def _start_git_and_flux(self) -> None:
        self.git.start()
        self._start_flux()

    def stop(self) -> None:
        self._stopping.set()
        if self._kubelet is not None:
            self._kubelet.join(timeout=10)
        self.git.stop()
        self.api.stop()  # every process, newest first (they all live in api.processes)

    def _mark(self, name: str) -> None:
        """Seconds the named step took since the previous mark."""
        now = time.monotonic()
        self.timings[name] = now - self._last
        self._last = now

    # --- helpers ------------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.api.spawn(name, args, env)

    def log_tail(self, name: str, lines: int = 40) -> str:
        return self.api.log_tail(name, lines)

    def wait_http(self, name: str, proc: subprocess.Popen, url: str, seconds: float = READY_SECONDS) -> None:
        self.api.wait_ready(name, proc, url, seconds)

    def apply(self, text: str, *extra: str) -> None:
        self.api.kubectl_run("apply", "--server-side", "--force-conflicts", *extra, "-f", "-", input=text)

    def kustomize_build(self, path: Path) -> str:
        proc = subprocess.run([self.engines.kustomize, "build", str(path)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise StartError(f"kustomize build {path} failed: {proc.stderr.strip()}")
        return proc.stdout

    @property
    def kubeconfig_env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.api.kubeconfig)}

    # --- kube-controller-manager and the simulated kubelet ------------------------------------

    def _start_controller_manager(self) -> None:
        port = free_port()
        proc = self.spawn("kube-controller-manager", [
            self.engines.controller_manager, f"--kubeconfig={self.api.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}", "--leader-elect=false",
            f"--service-account-private-key-file={self.api.sa_key}", f"--root-ca-file={self.api.serving_ca}",
            "--use-service-account-credentials=false",
            # Garbage collection (owner references: a pruned InferenceService takes its Deployment),
            # Deployments/ReplicaSets, EndpointSlices, service accounts, HPAs, PDBs (disruption).
            # The node lifecycle controller is off: the one Node has no kubelet heartbeat, and would be
            # tainted unreachable and its pods evicted after five minutes.
            "--controllers=*,-nodelifecycle", "--concurrent-deployment-syncs=5",
            # An autoscaled model's Deployment starts at one replica (KServe leaves replicas to the
            # HPA); the HPA raises it to minReplicas on its next sync, 15 s by default.
            "--horizontal-pod-autoscaler-sync-period=2s",
        ])
        deadline = time.monotonic() + READY_SECONDS
        # Ready when the "default" ServiceAccount of the default namespace exists: the service
        # account controller has run, so model namespaces get theirs as they are created.
        while self.kube.get("ServiceAccount", "default", "default") is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StartError(f"kube-controller-manager did not start:\n{self.log_tail('kube-controller-manager')}")
            time.sleep(0.25)

    def _start_kubelet(self) -> None:
        # One Node for every pod: EndpointSlices skip pods whose node does not exist.
        self.apply(_dump({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {
            "kubernetes.io/hostname": NODE}}}))
        self.kube.patch_status("Node", None, NODE, {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "the engines' simulated kubelet", "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now()}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})
        self._kubelet = threading.Thread(target=self._kubelet_loop, name="simulated-kubelet", daemon=True)
        self._kubelet.start()

    def _kubelet_loop(self) -> None:
        """There are no nodes: play the kubelet's part for every pod the controllers create, so
        Deployments become Available and KServe, Helm and Flux see what they would see once a
        model's pods run. Each pod gets a stable IP and Running/Ready status; nothing else
        about it is changed (its spec is exactly what the controllers and webhooks made).
        Like a kubelet, it watches pods (a list a third of a second was a tenth of the API
        server's CPU) and lists again when the watch says its version is too old."""
        assigned: dict[str, str] = {}
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    pods, version = self.kube.list_versioned("Pod")
                    for pod in pods:
                        self._kubelet_act(pod, assigned)
                for event in self.kube.watch("Pod", version):
                    if event.get("type") == "ERROR":
                        version = None
                        break
                    pod = event["object"]
                    version = pod["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._kubelet_act(pod, assigned)
                    if self._stopping.is_set():
                        break
            except (KubeError, OSError, ValueError) as exc:
                if not self._stopping.is_set():
                    self.kubelet_errors.append(str(exc))
                version = None
                self._stopping.wait(0.3)

    def _kubelet_act(self, pod: dict, assigned: dict[str, str]) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            # A kubelet confirms a pod's deletion once its containers stopped.
            try:
                self.kube.request("DELETE", self.kube.path("Pod", meta["namespace"], meta["name"]),
                                  {"gracePeriodSeconds": 0})
            except KubeError as exc:
                if exc.status != 404:
                    raise
            return
        if (pod.get("status") or {}).get("phase") != "Pending":
            return
        n = assigned.setdefault(meta["uid"], f"{POD_NETWORK}.{len(assigned) // 250}.{len(assigned) % 250 + 2}")
        if not pod["spec"].get("nodeName"):
            self.kube.request("POST", self.kube.path("Pod", meta["namespace"], meta["name"]) + "/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}})
        self.kube.patch_status("Pod", meta["namespace"], meta["name"], running_status(pod, n))

    # --- KServe ---------------------------------------------------------------------------------

    def _start_kserve(self) -> None:
        config = self.engines.kserve_config
        if not config.is_dir():
            raise StartError(f"KServe's config folder is missing beside its manager: {config}")
        self.api.kubectl_run("create", "namespace", KSERVE_NAMESPACE, check=False)
        crds = self.workdir / "kserve-crds.yaml"
        crds.write_text(self.kustomize_build(config / "crd" / "full"))
        self.api.install_crds(crds)
        configmap = _yaml.load(self.kustomize_build(config / "configmap"))
        configmap["metadata"]["namespace"] = KSERVE_NAMESPACE
        self.apply(_dump(configmap))
        self.apply(self.kustomize_build(config / "runtimes"))
        self.apply(self.kustomize_build(config / "storagecontainers"))

        # Webhook serving certificate for 127.0.0.1, signed by a CA the API server is told.
        certs = self.workdir / "kserve-tmp" / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        ca = self._webhook_certs(certs)
        webhook_port, probe_port, metrics_port = free_port(), free_port(), free_port()
        proc = self.spawn("kserve-manager", [
            self.engines.kserve_manager, f"--metrics-addr=127.0.0.1:{metrics_port}",
            f"--health-probe-addr=127.0.0.1:{probe_port}", f"--webhook-port={webhook_port}",
        ], env={**self.kubeconfig_env, "POD_NAMESPACE": KSERVE_NAMESPACE,
                # controller-runtime reads its serving certificate from $TMPDIR/k8s-webhook-server.
                "TMPDIR": str(self.workdir / "kserve-tmp")})
        self.wait_http("kserve-manager", proc, f"http://127.0.0.1:{probe_port}/readyz")
        self.apply(_dump_all(loopback_webhooks(config / "webhook" / "manifests.yaml", webhook_port, ca)))
        if self.with_llm:
            self._start_llmisvc(config, ca)

    def _start_llmisvc(self, config: Path, ca: bytes) -> None:
        """KServe's LLMInferenceService controller with its webhooks (defaulting, validation, and
        the v1alpha1/v1alpha2 conversion its CRD asks the API server to call), its presets
        (LLMInferenceServiceConfigs in kserve), and the CRDs of what it creates: InferencePools,
        llm-d's kinds, LeaderWorkerSets and the Gateway API. It reads the inferenceservice-config
        ConfigMap the manager's start applied."""
        webhook_port, probe_port, metrics_port = free_port(), free_port(), free_port()
        bundle = base64.b64encode(ca).decode()
        crds = [d for d in _yaml.load_all(self.kustomize_build(config / "crd" / "full" / "llmisvc")) if d]
        for crd in crds:
            conversion = (crd.get("spec") or {}).get("conversion") or {}
            if conversion.get("strategy") == "Webhook":
                conversion["webhook"]["clientConfig"] = {"url": f"https://127.0.0.1:{webhook_port}/convert",
                                                         "caBundle": bundle}
        path = self.workdir / "llmisvc-crds.yaml"
        path.write_text(_dump_all(crds))
        self.api.install_crds(path, config / "llmisvc" / "gateway-inference-extension.yaml",
                              *self.engines.llm_crds())
        self.apply(self.kustomize_build(config / "llmisvcconfig"))
        proc = self.spawn("kserve-llmisvc", [
            self.engines.kserve_llmisvc, f"--kubeconfig={self.api.kubeconfig}",
            f"--metrics-addr=127.0.0.1:{metrics_port}", "--metrics-secure=false",
            f"--health-probe-addr=127.0.0.1:{probe_port}", f"--webhook-port={webhook_port}",
        ], env={"POD_NAMESPACE": KSERVE_NAMESPACE, "TMPDIR": str(self.workdir / "kserve-tmp")})
        self.wait_http("kserve-llmisvc", proc, f"http://127.0.0.1:{probe_port}/readyz")
        self.apply(_dump_all(loopback_webhooks(config / "webhook" / "llmisvc" / "manifests.yaml", webhook_port, ca)))

    def _webhook_certs(self, certs: Path) -> bytes:
        openssl = self.engines.openssl
        run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)  # noqa: E731
        ca_key, ca_crt = certs / "ca.key", certs / "ca.crt"
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", "2", "-subj", "/CN=modelplat-engines-ca")
        csr = certs / "tls.csr"
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(certs / "tls.key"), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")
        ext = certs / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(certs / "tls.crt"), "-days", "2", "-extfile", str(ext))
        return ca_crt.read_bytes()

    # --- Flux -------------------------------------------------------------------------------------

    def _start_flux(self) -> None:
        self.api.install_crds(*(self.engines.flux_crds(c) for c in FLUX_CONTROLLERS))
        storage_port = free_port()
        env = {**self.kubeconfig_env, "RUNTIME_NAMESPACE": FLUX_NAMESPACE}
        started = []
        for controller in FLUX_CONTROLLERS:
            health = free_port()
            args = [self.engines.flux[controller], f"--metrics-addr=127.0.0.1:{free_port()}",
                    f"--health-addr=127.0.0.1:{health}", "--log-level=info",
                    # Releases mostly wait (for KServe and the pods), and every commit makes
                    # source-controller rebuild each model's HelmChart from the new Git artifact.
                    f"--concurrent={4 if controller == 'kustomize-controller' else 10}"]
            if controller == "kustomize-controller":
                # The models' Kustomization waits for the platform's (dependsOn): look again every
                # 2 s instead of Flux's 30 s, as nothing else here polls more slowly.
                args.append("--requeue-dependency=2s")
            if controller == "source-controller":
                storage = self.workdir / "flux-storage"
                storage.mkdir(exist_ok=True)
                args += [f"--storage-path={storage}", f"--storage-addr=127.0.0.1:{storage_port}",
                         f"--storage-adv-addr=127.0.0.1:{storage_port}"]
            started.append((controller, self.spawn(controller, args, env=env), health))
        for controller, proc, health in started:
            self.wait_http(controller, proc, f"http://127.0.0.1:{health}/readyz")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Started:
    """A start step run in a thread of its own; join() waits and re-raises what it raised."""

    def __init__(self, step):
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._step = step
        self._thread = threading.Thread(target=self._run, name=step.__name__, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self._step()
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def wait(self) -> None:
        self._thread.join()

    def join(self) -> None:
        self.wait()
        if self.error is not None:
            raise self.error


def running_status(pod: dict, ip: str) -> dict:
    """The status a kubelet reports for a pod whose containers all started and passed readiness."""
    now = _now()
    spec = pod.get("spec") or {}

    def statuses(containers):
        return [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": True,
                 "restartCount": 0, "state": {"running": {"startedAt": now}}} for c in containers or []]

    return {"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
        "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                       for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": statuses(spec.get("containers")),
        "initContainerStatuses": [dict(s, ready=True, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
                                  for s in statuses(spec.get("initContainers"))],
    }}


def loopback_webhooks(manifests: Path, port: int, ca: bytes) -> list[dict]:
    """KServe's webhook configurations, pointed at the manager on loopback instead of its
    in-cluster Service (the paths, rules, selectors and failure policies stay KServe's own)."""
    bundle = base64.b64encode(ca).decode()
    docs = [d for d in _yaml.load_all(manifests.read_text()) if d]
    for doc in docs:
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
        doc["metadata"].pop("creationTimestamp", None)
    return docs


def _dump(obj: dict) -> str:
    from .. import yamlout

    return yamlout.dump(obj)


def _dump_all(objs: list[dict]) -> str:
    return "---\n".join(_dump(o) for o in objs)
