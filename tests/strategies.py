"""Hypothesis strategies for model values files: valid ones (by construction) and hostile text."""

from __future__ import annotations

from hypothesis import strategies as st

from modelplat import resolve

# Text users put in free-text fields, including strings that look like template code in every
# language the output passes through (Go templates, jinja with modelplat's delimiters, shell).
HOSTILE = st.sampled_from([
    "{{ .Release.Name }}", "{{- fail \"boom\" }}", "<< plan >>", "<% if x %>", "[[ x ]]", "${HOME}", "$(id)",
    "`id`", "'; DROP TABLE", "a: b", "- x", "#comment", "&anchor", "*alias", "!!python/object", "é ü 😀",
    "\"quoted\"", "back\\slash", "%s%n", "yes", "null", "0x10", "1e3", "   spaced   ",
])
# Control characters (C0, DEL, C1) are refused by the schema; everything else must survive.
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x1FFFF, blacklist_categories=("Cs", "Cc")),
                    max_size=40)
FREE_TEXT = st.one_of(HOSTILE, PRINTABLE)
# Valid DNS labels, including the ones a YAML 1.1 reader takes for booleans or null.
DNS = st.one_of(st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,8})?", fullmatch=True),
                st.sampled_from(["no", "on", "off", "yes", "y", "n", "null", "true", "false", "0x1f", "1e3"]))

STORAGE = st.builds(lambda scheme, path: f"{scheme}://{path}",
                    st.sampled_from(["hf", "s3", "gs", "pvc", "oci", "https"]),
                    st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,30}", fullmatch=True))
CPU = st.sampled_from(["100m", "250m", "500m", "1", "2", "4", 1, 2, 0.5])
MEMORY_GI = st.integers(1, 64)


@st.composite
def resources(draw, gpu: bool):
    request_cpu = draw(CPU)
    request_mem = draw(MEMORY_GI)
    out = {"requestCPU": request_cpu, "requestMemory": f"{request_mem}Gi",
           "limitMemory": f"{request_mem + draw(st.integers(0, 8))}Gi"}
    if draw(st.booleans()):
        out["limitCPU"] = "8"
        if draw(st.booleans()):
            del out["requestCPU"]  # a limit alone: Kubernetes makes it the request too
    if draw(st.booleans()):
        del out["requestMemory"]
    if gpu:
        count = draw(st.integers(1, 8))
        keys = draw(st.sampled_from([("requestGPU",), ("limitGPU",), ("requestGPU", "limitGPU")]))
        out.update({k: count for k in keys})
    return out


@st.composite
def probe(draw):
    kind = draw(st.sampled_from(["http", "http", "tcp", "grpc", "exec"]))
    if kind == "http":
        p = {"path": draw(st.sampled_from(["/health", "/v2/health/ready", "/ready"]))}
    else:
        p = {"type": kind}
    if kind == "exec":
        p["command"] = draw(st.lists(FREE_TEXT, min_size=1, max_size=3))
    if kind == "grpc" and draw(st.booleans()):
        p["service"] = draw(st.sampled_from(["inference", "grpc.health.v1.Health"]))
    for key, lo, hi in (("periodSeconds", 1, 60), ("failureThreshold", 1, 100), ("initialDelaySeconds", 0, 600)):
        if draw(st.booleans()):
            p[key] = draw(st.integers(lo, hi))
    if kind != "exec" and draw(st.booleans()):
        p["port"] = draw(st.integers(1024, 9000))
    return p


@st.composite
def model_values(draw):
    """A values file the schema and the rules accept, exercising every rendered feature."""
    fmt = draw(st.sampled_from(["sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "onnx", "triton",
                                "huggingface", "custom"]))
    gpu = draw(st.booleans())
    model: dict = {"format": fmt}
    if fmt == "custom":
        model["image"] = draw(st.sampled_from(["vllm/vllm-openai:v0.8.5", "registry.example.com/team/srv:1.2.3"]))
        if draw(st.booleans()):
            model["storageUri"] = draw(STORAGE)
        if draw(st.booleans()):
            model["command"] = draw(st.lists(FREE_TEXT, min_size=1, max_size=3))
        if draw(st.booleans()):
            model["port"] = draw(st.integers(1024, 9000))
    else:
        model["storageUri"] = draw(STORAGE)
    if draw(st.booleans()):
        # v1/v2/grpc-v2 set a KServe runtime's protocolVersion: not for custom containers, and
        # only one some runtime serves the format over (openai counts as v1 to KServe).
        served = resolve.RUNTIME_PROTOCOLS.get(fmt, ())
        model["protocol"] = draw(st.sampled_from(
            ["openai"] if fmt == "custom" else [*served, *(["openai"] if "v1" in served else [])]))
    protocol = model.get("protocol") or resolve.default_protocol(fmt) or "v1"
    runtime = resolve.DEFAULT_RUNTIMES.get((fmt, "v1" if protocol == "openai" else protocol))
    name_by = resolve.SERVED_NAME_BY.get(runtime)
    if name_by in ("arg", "env") and draw(st.booleans()):
        model["servedModelName"] = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True))
    # MLServer's runtime has no args of its own: any would replace its command (refused).
    model["args"] = [] if name_by == "env" else draw(st.lists(FREE_TEXT, max_size=4))
    values: dict = {"model": model, "resources": draw(resources(gpu))}
    if draw(st.booleans()):
        values["description"] = draw(FREE_TEXT)
    if draw(st.booleans()):
        values["replicaCount"] = draw(st.integers(1, 20))
    if draw(st.booleans()):
        names = draw(st.lists(st.one_of(st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True),
                                        st.sampled_from(["Y", "N", "ON", "NO", "YES", "OFF", "TRUE", "NULL"])),
                              max_size=4, unique=True))
        values["env"] = [
            {"name": n, "value": draw(FREE_TEXT)} if draw(st.booleans())
            else {"name": n, "secretKeyRef": {"name": draw(DNS), "key": "token"}} for n in names
        ]
    if gpu and draw(st.booleans()):
        values["gpu"] = {"product": draw(st.sampled_from(["NVIDIA-L4", "NVIDIA-A100-SXM4-80GB", "Tesla-T4"]))}
    if gpu and draw(st.booleans()):
        values.setdefault("gpu", {})["accelerator"] = draw(st.sampled_from(["nvidia-l4", "nvidia-tesla-a100"]))
    if draw(st.booleans()):
        values["annotations"] = {"example.com/owner": draw(FREE_TEXT), "note": draw(FREE_TEXT)}
    if draw(st.booleans()):
        values["podAnnotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": draw(FREE_TEXT)}
    if draw(st.booleans()):
        transformer: dict = {"image": "registry.example.com/team/tokenizer:1.4.0",
                             "args": draw(st.lists(FREE_TEXT, max_size=3))}
        if draw(st.booleans()):
            transformer["env"] = [{"name": "TOKENIZER", "value": draw(FREE_TEXT)}]
        if draw(st.booleans()):
            transformer["resources"] = {"limitCPU": draw(CPU), "limitMemory": f"{draw(MEMORY_GI)}Gi"}
        if draw(st.booleans()):
            transformer["probes"] = {"readiness": draw(probe())}
        if draw(st.booleans()):
            transformer["replicaCount"] = draw(st.integers(1, 5))
        values["transformer"] = transformer
    if draw(st.booleans()):
        values["sharedMemory"] = {"enabled": draw(st.booleans()), "sizeLimit": f"{draw(st.integers(1, 16))}Gi"}
    if draw(st.booleans()):
        values["probes"] = {k: draw(probe()) for k in draw(st.sets(st.sampled_from(["readiness", "liveness", "startup"])))}
    if draw(st.booleans()):
        values["metrics"] = {"enabled": True, "port": draw(st.integers(1024, 9999))} if draw(st.booleans()) \
            else {"enabled": False}
    llm = model.get("protocol") == "openai"
    if draw(st.booleans()):
        scaling: dict = {"enabled": True, "maxReplicaCount": values.get("replicaCount", 1) + draw(st.integers(0, 10))}
        choices = ["targetCPUUtilizationPercentage", "targetMemoryUtilizationPercentage", "targetRequestRate",
                   "targetConcurrency"]
        choices += ["targetGPUUtilizationPercentage"] if gpu else []
        choices += ["targetKVCacheUtilizationPercentage", "targetQueueDepth"] if llm else []
        for key in draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True)):
            scaling[key] = draw(st.floats(0.5, 500).map(lambda x: round(x, 2))) \
                if key in ("targetRequestRate", "targetConcurrency") \
                else draw(st.integers(1, 100))
        if scaling.keys() & {"targetGPUUtilizationPercentage"} and len(scaling) == 3:
            scaling["targetCPUUtilizationPercentage"] = 70  # GPU utilisation alone is only a warning
        if draw(st.booleans()):
            scaling["behavior"] = {"scaleDownStabilizationSeconds": draw(st.integers(0, 3600)),
                                   "scaleUpPods": draw(st.integers(1, 10))}
        values["autoscaling"] = scaling
    if draw(st.booleans()):
        alerts: dict = {"enabled": True, "p99LatencySeconds": draw(st.sampled_from([0.5, 2, 10, 30])),
                        "errorRatePercent": draw(st.sampled_from([1, 2.5, 5]))}
        if llm:
            alerts["queueSize"] = draw(st.integers(1, 500))
        if gpu:
            alerts["gpuUtilizationPercent"] = draw(st.integers(50, 99))
        values["observability"] = {"accessLog": draw(st.booleans()), "alerts": alerts}
    if draw(st.booleans()):
        values["podDisruptionBudget"] = {"enabled": draw(st.booleans())}
    if gpu and draw(st.booleans()):
        pool = draw(st.sampled_from(["nvidia.com/rdma_vf", "rdma/roce_gdr"]))
        networks = [{"name": draw(DNS.filter(lambda n: n not in ("no", "on", "off", "yes", "y", "n", "null",
                                                                    "true", "false"))) + "-net",
                     "type": "sriov", "resourceName": pool, "subnet": "192.168.100.0/24"}]
        if draw(st.booleans()):
            networks.append({"name": "shared-ib", "type": "existing", "namespace": "network-system"})
        values["rdma"] = {"enabled": True, "networks": networks, "resources": {pool: draw(st.integers(1, 4))},
                          "ncclHints": draw(st.booleans())}
    if draw(st.booleans()):
        values["logger"] = {"mode": draw(st.sampled_from(["all", "request", "response"])),
                            "url": "http://sink.logging.svc.cluster.local"}
    if draw(st.booleans()):
        sched: dict = {}
        if draw(st.booleans()):
            sched["schedulerName"] = "volcano"
            if draw(st.booleans()):
                sched["queue"] = draw(DNS)
        if draw(st.booleans()):
            sched["priorityClassName"] = draw(DNS)
        if draw(st.booleans()):
            sched["nodeSelector"] = {"topology.kubernetes.io/zone": "eu-west-1a"}
        values["scheduling"] = sched
    if draw(st.booleans()):
        values["labels"] = {"cost-center": draw(DNS), "on": draw(DNS)}
    if draw(st.booleans()):
        values["serviceAccountName"] = draw(DNS)
    jwt = draw(st.booleans())
    if jwt:
        values["auth"] = {"jwt": {"enabled": True, "issuer": "https://idp.example.com",
                                  "jwksUri": "https://idp.example.com/jwks.json"}}
        if draw(st.booleans()):
            values["ratelimitEachSAPerMinute"] = draw(st.integers(1, 10_000))
    if draw(st.booleans()):
        values["ratelimitIPPerMinute"] = draw(st.integers(1, 10_000))
    if llm and draw(st.booleans()):
        tokens: dict = {"enabled": True, "tenantId": draw(DNS), "ipLimit": draw(st.integers(1, 10**9)),
                        "shareTenantQuota": draw(st.booleans())}
        if jwt:
            tokens["saLimit"] = draw(st.integers(1, 10**12))
            if draw(st.booleans()):
                tokens["saLimitPerMinute"] = draw(st.integers(1, 10**6))
        if draw(st.booleans()):
            tokens["paths"] = draw(st.lists(st.sampled_from(["/v1/chat/completions", "/generate", "/v1/x%2Fy"]),
                                            min_size=1, max_size=3, unique=True))
        tokens["missingIdentity"] = draw(st.sampled_from(["refuse", "countByIP"]))
        tokens["failureMode"] = draw(st.sampled_from(["closed", "open"]))
        values["tokenLimit"] = tokens
    return values
