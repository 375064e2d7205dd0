"""A throwaway Kubernetes API server (etcd + kube-apiserver on loopback), for the tests'
server-side dry-runs and as the base of the engines' local control plane (controlplane.py).

Always stopped, also when the start fails half-way. By itself no controller runs: objects are
stored, never acted on. It never listens beyond loopback.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..resources import vendor_dir


def crd_manifests() -> Path:
    """The upstream CRDs vendored with modelplat (vendor/crd-manifests, in the wheel too)."""
    path = vendor_dir() / "crd-manifests"
    if not path.is_dir():
        raise StartError("the vendored CRD manifests (vendor/crd-manifests) are not in this installation: "
                         "reinstall modelplat")
    return path

ETCD_READY_SECONDS = 30
APISERVER_READY_SECONDS = 90
KUBECTL_SECONDS = 120
CRDS_ESTABLISHED_SECONDS = 60


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel picks it; the race is harmless here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StartError(RuntimeError):
    pass


@dataclass
class ApiServer:
    etcd: str
    apiserver: str
    kubectl: str
    openssl: str
    workdir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    kubeconfig: Path | None = None
    etcd_url: str = ""
    server: str = ""  # https://127.0.0.1:PORT once started
    token: str = ""  # the admin bearer token (system:masters)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for kubectl: this server only, discovery cache in the temp dir, not ~/.kube."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=str(self.workdir / "kube-cache"))

    def kubectl_run(self, *args: str, input: str | None = None, check: bool = True,
                    timeout: int = KUBECTL_SECONDS) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.kubectl, "--kubeconfig", str(self.kubeconfig), *args], input=input,
                              capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def start(self, *, crds: bool = True, skip: tuple[str, ...] = ()) -> None:
        """Starts etcd and the API server, then installs the vendored CRDs but the files whose name
        starts with one of `skip` (a caller that installs those CRDs from elsewhere: the large LLM
        ones cost seconds each to establish)."""
        started = time.monotonic()
        self._start_etcd()
        self._start_apiserver()
        self.timings["apiserver ready"] = time.monotonic() - started
        if crds:
            folder = crd_manifests()
            files = [p for p in sorted(folder.glob("*.yaml")) if not p.name.startswith(skip)] if skip else [folder]
            self.install_crds(*files)
            self.timings["crds established"] = time.monotonic() - started

    def install_crds(self, *paths: Path | str) -> None:
        """Server-side applies CRD files or folders in one call (a later copy of a CRD wins) and
        waits until every CRD is Established."""
        if paths:
            self.kubectl_run("apply", "--server-side", "--force-conflicts", *(a for p in paths for a in ("-f", str(p))))
        self._wait_established(CRDS_ESTABLISHED_SECONDS)

    @property
    def sa_key(self) -> Path:
        """The service-account signing key (kube-controller-manager signs tokens with it)."""
        return self.workdir / "sa.key"

    @property
    def serving_ca(self) -> Path:
        """The API server's self-signed serving certificate, the cluster's root CA here."""
        return self.workdir / "certs" / "apiserver.crt"

    def stop(self) -> None:
        """Stop every process group started, newest first: TERM, then KILL after 10 s."""
        for proc in reversed(self.processes):
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.processes.clear()

    # --- internals -----------------------------------------------------------------------------

    def _wait_established(self, seconds: float) -> None:
        # `kubectl wait` gives up at once, instead of waiting, on a CRD whose status has no
        # conditions yet (".status.conditions accessor error"): retry until the deadline.
        deadline = time.monotonic() + seconds
        while True:
            left = max(1, int(deadline - time.monotonic()))
            proc = self.kubectl_run("wait", "--for=condition=Established", "crd", "--all", f"--timeout={left}s",
                                    check=False)
            if proc.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise StartError(f"CRDs not established after {seconds:.0f}s:\n{proc.stdout}{proc.stderr}")
            time.sleep(0.5)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Starts a process of the control plane, logging to <workdir>/<name>.log; stop() ends it."""
        log = open(self.workdir / f"{name}.log", "wb")
        try:
            # Own process group, so stop() reaches anything it forks.
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=dict(os.environ, **(env or {})))
        finally:
            log.close()
        self.processes.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, name: str, proc: subprocess.Popen, url: str, seconds: float,
              context: ssl.SSLContext | None = None, headers: dict | None = None) -> None:
        deadline = time.monotonic() + seconds
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                request = urllib.request.Request(url, headers=headers or {})
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    body = response.read().decode()
                    if response.status == 200:
                        return
                    last = body
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise StartError(f"{name} not ready after {seconds:.0f}s ({last}):\n{self.log_tail(name)}")

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        proc = self.spawn("etcd", [
            self.etcd, "--name", "test", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}",
            # A throwaway store: durability buys nothing and fsync dominates on slow disks.
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        self.wait_ready("etcd", proc, f"{self.etcd_url}/health", ETCD_READY_SECONDS)

    def _start_apiserver(self) -> None:
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        for args in ([self.openssl, "genrsa", "-out", str(key), "2048"],
                     [self.openssl, "rsa", "-in", str(key), "-pubout", "-out", str(pub)]):
            subprocess.run(args, check=True, capture_output=True, timeout=60)
        token = secrets.token_hex(16)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f"{token},admin,admin,system:masters\n")
        tokens.chmod(0o600)
        port = free_port()
        proc = self.spawn("kube-apiserver", [
            self.apiserver, f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'certs'}", f"--token-auth-file={tokens}",
            "--authorization-mode=AlwaysAllow",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pub}", f"--service-account-signing-key-file={key}",
            "--service-cluster-ip-range=10.0.0.0/24",
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving certificate
        server = f"https://127.0.0.1:{port}"
        self.server, self.token = server, token
        self.wait_ready("kube-apiserver", proc, f"{server}/readyz", APISERVER_READY_SECONDS, insecure,
                   {"Authorization": f"Bearer {token}"})
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n"
            f"users:\n- name: admin\n  user:\n    token: {token}\n"
            "contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n"
            "current-context: test\n")
        self.kubeconfig.chmod(0o600)
