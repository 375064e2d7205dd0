"""`modelplat init`: a commented starter values file that validates as written.

Hand-written YAML text (comments are the point), checked against the schema by the tests.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .values import DNS_LABEL


class StarterError(Exception):
    pass


def _schema_ref(folder: Path) -> str:
    for parent in (folder, *folder.parents):
        candidate = parent / "schemas" / "model-values.schema.json"
        if candidate.is_file():
            return Path(os.path.relpath(candidate, folder)).as_posix()
    return "https://modelplat.dev/schemas/model-values.schema.json"


def starter_text(project: str, name: str, *, gpu: bool, llm: bool, schema_ref: str) -> str:
    head = f"""# yaml-language-server: $schema={schema_ref}
# Model service {project}/{name}. Every key is documented in the schema above (your editor
# completes and checks them); `modelplat explain <key>` describes any key. Check: modelplat lint <folder>
description: {name} model service
"""
    if llm:
        return head + """model:
  # An LLM served by vLLM's OpenAI-compatible server as a custom container.
  format: custom
  protocol: openai
  image: vllm/vllm-openai:v0.8.5
  storageUri: hf://Qwen/Qwen2.5-7B-Instruct  # downloaded to /mnt/models before start
  args: ["--model", "/mnt/models", "--served-model-name", "qwen", "--port", "8080"]
resources:
  requestCPU: "4"
  limitCPU: "8"
  requestMemory: 32Gi
  limitMemory: 32Gi
  requestGPU: 1  # schedules onto the GPU node group, with /dev/shm mounted
  limitGPU: 1
gpu:
  product: NVIDIA-L4  # remove to accept any GPU product
probes:
  startup:  # large models load for minutes: hold liveness off until ready
    path: /health
    periodSeconds: 10
    failureThreshold: 60
  readiness:
    path: /health
metrics:
  enabled: true
  port: 8080  # vLLM serves /metrics on its API port
replicaCount: 1
# Prompts and responses screened by one of the platform's safety providers (its platform file's
# safety.providers); uncomment to use (docs/features/prompt-safety.md).
# safety:
#   enabled: true
#   provider: llm-guard
# LLM token quotas, counted from every response (JSON or streamed) across replicas; uncomment
# to use (docs/features/token-quotas.md). A per-service-account quota needs a verified JWT.
# auth:
#   jwt:
#     enabled: true
# tokenLimit:
#   enabled: true
#   tenantId: my-team
#   saLimit: 100000   # tokens a day per calling service account
#   ipLimit: 10000    # tokens a day per client IP
"""
    if gpu:
        return head + """model:
  format: pytorch  # KServe's TorchServe runtime
  storageUri: s3://models/{name}/v1
resources:
  requestCPU: "2"
  limitCPU: "4"
  requestMemory: 8Gi
  limitMemory: 16Gi
  requestGPU: 1  # schedules onto the GPU node group, with /dev/shm mounted
  limitGPU: 1
replicaCount: 1
""".replace("{name}", name)
    return head + """model:
  format: sklearn  # sklearn, xgboost, lightgbm, tensorflow, pytorch, onnx, triton, huggingface, custom
  storageUri: s3://models/{name}/v1
resources:  # unset CPU/memory values take the platform defaults
  requestCPU: 500m
  requestMemory: 1Gi
  limitMemory: 2Gi
replicaCount: 1
""".replace("{name}", name)


def write_starter(target: str, models_dir: Path, *, gpu: bool, llm: bool, schema_ref: str | None, force: bool) -> Path:
    parts = target.strip("/").split("/")
    if len(parts) != 2 or not all(re.fullmatch(DNS_LABEL, p) and len(p) <= 63 for p in parts):
        raise StarterError(f"expected <project>/<name> made of DNS labels (lowercase letters, digits, '-'), got {target!r}")
    project, name = parts
    path = models_dir / project / f"{name}.yaml"
    if path.exists() and not force:
        raise StarterError(f"{path} already exists (pass --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    ref = schema_ref or _schema_ref(path.parent.resolve())
    path.write_text(starter_text(project, name, gpu=gpu, llm=llm, schema_ref=ref))
    return path
