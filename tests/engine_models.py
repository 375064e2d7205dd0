"""A fixed set of generated models for the engines tests: every feature, and the combinations
where features meet (GPU + RDMA + canary, JWT + token quotas + ext-authz, shadow + canary, ...).

Deterministic (no hypothesis here): the engines run is minutes long, and a failure must be
re-runnable as is. Each model cycles through the option lists below, so 16 models cover every
option at least once, most several times, in different company.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
from pathlib import Path

from ruamel.yaml import YAML

from modelplat import pipeline, render, yamlout
from modelplat.engines import runner
from modelplat.engines.controlplane import ControlPlane, Engines
from modelplat.engines.gitops import GitOps, engine_platform

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FORMATS = [
    {"format": "sklearn", "storageUri": "gs://models/sklearn/{n}", "protocol": "v2"},
    {"format": "xgboost", "storageUri": "s3://models/xgb/{n}"},
    {"format": "custom", "protocol": "openai", "image": "vllm/vllm-openai:v0.8.5",
     "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "args": ["--port", "8080"], "port": 8080},
    {"format": "onnx", "storageUri": "s3://models/onnx/{n}"},
    {"format": "huggingface", "protocol": "openai", "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
    {"format": "lightgbm", "storageUri": "gs://models/lgb/{n}"},
]


def model(i: int) -> dict:
    fmt = dict(FORMATS[i % len(FORMATS)])
    fmt["storageUri"] = fmt["storageUri"].format(n=i)
    llm = fmt.get("protocol") == "openai"
    gpu = llm or i % 4 == 1
    values: dict = {"description": f"engines test model {i}", "model": fmt, "replicaCount": 1 + i % 2}
    resources = {"requestCPU": "500m", "requestMemory": "1Gi", "limitMemory": "2Gi"}
    if i % 3 == 0:
        resources["limitCPU"] = "2"
    if gpu:
        resources.update({"requestGPU": 1, "limitGPU": 1})
        values["gpu"] = {"product": "NVIDIA-L4"} if i % 2 else {}
    values["resources"] = resources
    # KServe's Python servers (and vLLM) serve metrics on their serving port, which a PodMonitor
    # can scrape; Triton (onnx) serves them on 8002, a port its container does not declare, so a
    # PodMonitor could not (podmonitor-port): those scrape nothing here.
    if i % 10 == 7 or fmt["format"] == "onnx":
        values["metrics"] = {"enabled": False}
    # Every format has variants: each runtime's way of naming the model is checked on them
    # (checks.served_name): sklearn here is MLServer (v2), xgboost and lightgbm the Python servers,
    # onnx Triton (names from the model's files).
    variants_ok = True
    if variants_ok and i % 5 == 2:
        values["canary"] = {"enabled": True, "storageUri": fmt["storageUri"] + "-v2"}
        values["primaryLoad"] = 80
    if variants_ok and i % 7 in (3, 5):
        values["mirror"] = {"enabled": True, "percentage": 50, "storageUri": fmt["storageUri"] + "-shadow"}
    if i % 4 in (0, 3):
        values["autoscaling"] = {"enabled": True, "maxReplicaCount": 4, "targetCPUUtilizationPercentage": 70}
        if llm:
            values["autoscaling"].update({"targetQueueDepth": 10, "targetKVCacheUtilizationPercentage": 70})
    if i % 3 == 1:
        values["exposeModel"] = {"enabled": True, "type": "ext" if i % 2 else "int"}
    # Exposure and per-service-account limits need the caller's verified identity.
    if i % 2 == 0 or i % 3 == 1 or i % 3 == 2:
        values["auth"] = {"jwt": {"enabled": True}}
        if i % 4 == 0:
            values["auth"]["customAuthz"] = {"enabled": True, "provider": "models-ext-authz",
                                             "includePaths": ["/v1/*"]}
    if i % 3 == 2:
        values["ratelimitIPPerMinute"] = 10 + i
        values["ratelimitEachSAPerMinute"] = 100 + i
    if llm and i % 2 == 0:
        values["tokenLimit"] = {"enabled": True, "tenantId": f"tenant-{i % 3}", "saLimit": 10000, "ipLimit": 500}
    if llm and i % 4 != 0:  # screened by the platform's guard (examples/platform.yaml), some on one path only
        values["safety"] = {"enabled": True, "provider": "llm-guard",
                            **({"screen": "prompts", "paths": ["/openai/v1/chat/completions"]} if i % 3 == 1 else {})}
    if i % 6 == 5:
        values["logger"] = {"mode": "all", "url": "http://message-sink.logging.svc.cluster.local"}
    if i % 5 == 4:
        values["observability"] = {"accessLog": True, "alerts": {"enabled": True}}
    if i % 8 == 6:
        values["scheduling"] = {"schedulerName": "volcano", "queue": "serving", "priorityClassName": "inference-high"}
    if gpu and i % 6 == 2:
        values["sharedMemory"] = {"enabled": True, "sizeLimit": "4Gi"}
        values["rdma"] = {"enabled": True, "networks": [{"name": f"rdma-{i}", "type": "sriov",
                                                         "resourceName": "nvidia.com/rdma_vf"}],
                          "resources": {"nvidia.com/rdma_vf": 1}}
    if i % 9 == 4:
        values["podDisruptionBudget"] = {"enabled": False}
    return values


# Runtimes the cycle above does not reach, each with a canary and a shadow: TF Serving takes the last
# --model_name; MLServer for xgboost over v2 reads MLSERVER_MODEL_NAME (and refuses args).
RUNTIME_MODELS = {
    "runtimes/tf-serving.yaml": {"model": {"format": "tensorflow", "storageUri": "gs://models/tf/1"},
                                 "canary": {"enabled": True, "storageUri": "gs://models/tf/2"}, "primaryLoad": 90,
                                 "mirror": {"enabled": True, "storageUri": "gs://models/tf/3"}},
    "runtimes/xgb-mlserver.yaml": {"model": {"format": "xgboost", "protocol": "v2", "storageUri": "gs://models/x/1"},
                                   "canary": {"enabled": True, "storageUri": "gs://models/x/2"}, "primaryLoad": 90,
                                   "mirror": {"enabled": True, "storageUri": "gs://models/x/3"}},
    # Triton behind a tokenizer transformer (the shape), split with a canary and exposed:
    # routes, request limits and the canary's model name all meet at the transformer.
    "runtimes/bert.yaml": {
        "model": {"format": "triton", "protocol": "v2", "storageUri": "gs://models/bert/1"},
        "transformer": {"image": "registry.example.com/nlp/bert-tokenizer:1.4.0", "args": ["--predictor_protocol=v2"],
                        "resources": {"requestCPU": "250m", "limitMemory": "1Gi"},
                        "probes": {"readiness": {"path": "/v2/health/ready"}}},
        "canary": {"enabled": True, "storageUri": "gs://models/bert/2"}, "primaryLoad": 80,
        "exposeModel": {"enabled": True}, "auth": {"jwt": {"enabled": True}}, "ratelimitIPPerMinute": 60,
        "metrics": {"enabled": False}},  # Triton's 8002 is undeclared: no PodMonitor could scrape it
    # An LLM served LLM-natively across pods: data and expert parallelism make each replica a
    # LeaderWorkerSet group of data/dataLocal pods (KServe's worker-data-parallel preset).
    "llm-dp/moe.yaml": {
        "model": {"format": "huggingface", "protocol": "openai", "serving": "llm", "storageUri": "hf://acme/moe-16x2b"},
        "resources": {"requestCPU": "4", "requestMemory": "16Gi", "limitMemory": "16Gi", "requestGPU": 2, "limitGPU": 2},
        "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
        "exposeModel": {"enabled": True}, "auth": {"jwt": {"enabled": True}},
        "autoscaling": {"enabled": True, "maxReplicaCount": 3, "targetQueueDepth": 10},
        "llm": {"parallelism": {"data": 4, "dataLocal": 2, "expert": True}}},
    # An LLM served LLM-natively with what KServe's own route cannot carry: a header-matched canary
    # and a mirror (the chart writes the route the members refer to), under a token quota.
    "llm-shadow/chat.yaml": {
        "model": {"format": "huggingface", "protocol": "openai", "serving": "llm", "storageUri": "hf://acme/chat-8b",
                  "servedModelName": "chat-8b"},
        "resources": {"requestCPU": "2", "requestMemory": "16Gi", "limitMemory": "16Gi", "requestGPU": 1, "limitGPU": 1},
        "exposeModel": {"enabled": True}, "auth": {"jwt": {"enabled": True}},
        "tokenLimit": {"enabled": True, "tenantId": "team-chat", "saLimit": 5000},
        "safety": {"enabled": True, "provider": "llm-guard"},
        "primaryLoad": 80,
        "canary": {"enabled": True, "storageUri": "hf://acme/chat-8b-v2", "headerMatch": {"x-model-canary": "true"}},
        "mirror": {"enabled": True, "storageUri": "hf://acme/chat-8b-v3", "percentage": 12.5}},
}


# Generated models delivered with the examples: every option of model() above at least once (its
# largest cycle is 10), each in different company; more only cost the engines' run time.
GENERATED = 16


def write(root: Path, count: int = GENERATED, platform: str | None = None) -> list[Path]:
    """Writes `count` models under root (four projects) plus the examples' platform file."""
    yaml = YAML()
    root.mkdir(parents=True, exist_ok=True)
    examples = Path(__file__).resolve().parent.parent / "examples"
    (root / "platform.yaml").write_text(platform or (examples / "platform.yaml").read_text())
    files = []
    for i in range(count):
        path = root / f"gen-{i % 4}" / f"m{i:02d}.yaml"
        path.parent.mkdir(exist_ok=True)
        with path.open("w") as f:
            yaml.dump(model(i), f)
        files.append(path)
    for rel, values in RUNTIME_MODELS.items():
        path = root / rel
        path.parent.mkdir(exist_ok=True)
        with path.open("w") as f:
            yaml.dump(values, f)
        files.append(path)
    return files


def edit(path: Path, change) -> None:
    """Changes a values file as its owner would (comments and order kept)."""
    yaml = YAML()
    data = yaml.load(path.read_text())
    change(data)
    with path.open("w") as f:
        yaml.dump(data, f)


class Models:
    """The models folder of the engines tests and the control plane it is delivered to."""

    def __init__(self, plane: ControlPlane, root: Path, scratch: Path):
        self.plane, self.root, self.scratch = plane, root, scratch
        self.result = pipeline.run([root], None)
        assert not [d for d in self.result.diagnostics if d.severity == "error"], self.result.diagnostics
        self.gitops = GitOps(plane, engine_platform(self.result.platform, plane.git.repo_url))
        self.report = None

    def rerun(self) -> None:
        self.result = pipeline.run([self.root], None)
        assert not [d for d in self.result.diagnostics if d.severity == "error"]

    @property
    def plans(self):
        return self.result.plans

    def files(self) -> dict[str, bytes]:
        return render.render_tree(self.plans, self.gitops.platform)

    def deliver(self, files: dict[str, bytes] | None = None, message: str = "render"):
        needed = runner.prerequisites(self.plans, self.gitops.platform)
        if needed:
            self.plane.apply("---\n".join(yamlout.dump(o) for o in needed))
        return runner.deliver(self.plane, self.gitops, files or self.files(), self.plans, message)

    def verify(self, settled, files: dict[str, bytes] | None = None, istio_config: bool = True):
        tree = self.scratch / f"tree-{time.monotonic_ns()}"
        for rel, content in (files or self.files()).items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes(content)
        return runner.verify(self.plane, self.gitops, self.plans, settled,
                             runner.chart_objects(self.plans, self.gitops.platform, tree), istio_config=istio_config)


class Warmup:
    """Starts the control plane and delivers the examples plus the generated models in a
    background thread, so the minutes the engines spend waiting overlap the other tests (the
    engines tests run last: conftest.py). join() waits and re-raises what went wrong."""

    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="modelplat-engines-"))
        self.plane: ControlPlane | None = None
        self.models: Models | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="engines-warmup", daemon=True)

    def start(self) -> None:
        # Also stopped at exit: the control plane's processes must never outlive the test run.
        atexit.register(self.stop)
        self._thread.start()

    def _run(self) -> None:
        try:
            engines, missing = Engines.find()
            if missing:
                return  # the fixture reports it (a failure under CI=true)
            self.plane = ControlPlane(engines, self.workdir / "plane")
            self.plane.workdir.mkdir(parents=True)
            self.plane.start()
            root = self.workdir / "models"
            shutil.copytree(EXAMPLES, root)  # write() replaces its platform.yaml
            # PodMonitors too: the examples' platform scrapes by annotation only. A PodMonitor
            # scrapes declared container ports only; every example's model server serves its
            # metrics on its serving port, where modelplat scrapes them unless told otherwise.
            write(root, GENERATED, platform=(EXAMPLES / "platform.yaml").read_text() + "scrape: both\n")
            scratch = self.workdir / "trees"
            scratch.mkdir()
            self.models = Models(self.plane, root, scratch)
            settled = self.models.deliver(message="the examples and 24 generated models")
            self.models.report = self.models.verify(settled)
        except BaseException as exc:  # handed to the tests by join()
            self.error = exc

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the engines' control plane or first delivery failed: {self.error!r}") from self.error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout=600)
        if self.plane is not None:
            self.plane.stop()
            self.plane = None
        shutil.rmtree(self.workdir, ignore_errors=True)
