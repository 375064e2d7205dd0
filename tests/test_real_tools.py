"""The real tools accept what modelplat renders, and refuse it when it is wrong.

helm lint --strict, helm template (with the HelmRelease's values, as Flux does), kubeconform
-strict with the vendored CRD schemas and core schemas, and the generated helm-unittest suites.
Under CI=true a missing tool fails these tests (see conftest.need_tool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelplat import lint, tools

from conftest import CPU_FILE, EXAMPLES, REPO, lint_refusing, modelplat, need_tool

_yaml = YAML(typ="safe")


@pytest.fixture(scope="module")
def helm():
    return need_tool("helm")


@pytest.fixture(scope="module")
def kubeconform():
    return need_tool("kubeconform")


@pytest.fixture(scope="module")
def helm_unittest():
    return need_tool("helm-unittest")


def test_lint_runs_every_real_tool_on_every_example(examples_lint):
    result = examples_lint
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=2)
    assert len(report["models"]) == len([p for p in EXAMPLES.rglob("*.yaml") if p.name != "platform.yaml"])
    for model in report["models"]:
        assert {k: v["status"] for k, v in model["checks"].items()} == {
            "schema+rules": "pass", "helm lint": "pass", "helm template": "pass",
            "kubeconform": "pass", "helm unittest": "pass", "istioctl validate": "pass",
            "promtool": "pass", "kustomize build": "pass", "ratelimit config": "pass"}
    assert report["tools"]["helm"].startswith("v3.")


def template(helm: str, chart: Path, name: str, namespace: str, values: dict | None = None) -> list[dict]:
    """`helm template` with values given on stdin (never written next to the committed chart)."""
    args = [helm, "template", name, str(chart), "--namespace", namespace]
    if values is not None:
        args += ["-f", "-"]
    out = subprocess.run(args, input=json.dumps(values) if values is not None else None,
                         capture_output=True, text=True, check=True).stdout
    return [doc for doc in _yaml.load_all(out) if doc]


def isvc_of(docs: list[dict]) -> dict:
    """The primary InferenceService (a chart may also hold the canary and the shadow)."""
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"
               and d["metadata"]["labels"]["modelplat.io/variant"] == "primary"]
    return isvc


def helmrelease_values(model_dir: Path) -> dict:
    return _yaml.load((model_dir / "helmrelease.yaml").read_text())["spec"]["values"]


def test_gpu_model_is_scheduled_onto_gpu_nodes_with_shm(helm):
    model = REPO / "charts-out/llm/qwen-chat"
    isvc = isvc_of(template(helm, model / "chart", "qwen-chat", "llm", helmrelease_values(model)))
    predictor = isvc["spec"]["predictor"]
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    term = predictor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [{"key": "eks.amazonaws.com/nodegroup", "operator": "In", "values": ["ml-prod-gpu"]}]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert predictor["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    assert {"name": "STORAGE_URI", "value": "hf://Qwen/Qwen2.5-7B-Instruct"} in container["env"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    # qwen-chat scales with its own HPA: KServe keeps its hands off the replicas.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)


def test_cpu_model_is_kept_off_gpu_nodes(helm):
    model = REPO / "charts-out/fraud/xgb-scorer"
    isvc = isvc_of(template(helm, model / "chart", "xgb-scorer", "fraud", helmrelease_values(model)))
    predictor = isvc["spec"]["predictor"]
    assert "tolerations" not in predictor and "volumes" not in predictor
    term = predictor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["operator"] == "NotIn"
    assert predictor["model"]["modelFormat"] == {"name": "xgboost"}
    assert predictor["model"]["storageUri"] == "s3://ml-models-prod/fraud/xgb/2026-11-01"
    assert predictor["serviceAccountName"] == "fraud-models-s3"
    assert predictor["logger"] == {"mode": "all", "url": "http://audit-sink.logging.svc.cluster.local"}
    assert predictor["model"]["env"] == [{"name": "OMP_NUM_THREADS", "value": "2"}]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 3
    assert isvc["metadata"]["labels"]["cost-center"] == "fraud"


def test_helm_refuses_values_the_schema_forbids(helm):
    model = REPO / "charts-out/ml-demo/iris"
    values = helmrelease_values(model)
    values["resources"]["requestGPU"] = "one"
    result = subprocess.run([helm, "template", "iris", str(model / "chart"), "-f", "-", "--namespace", "ml-demo"],
                            input=json.dumps(values), capture_output=True, text=True)
    assert result.returncode != 0 and "requestGPU" in result.stderr
    values = helmrelease_values(model)
    values["surprise"] = True
    result = subprocess.run([helm, "template", "iris", str(model / "chart"), "-f", "-", "--namespace", "ml-demo"],
                            input=json.dumps(values), capture_output=True, text=True)
    assert result.returncode != 0 and "surprise" in result.stderr


def test_helm_lint_as_lint_runs_it_still_refuses_values_the_schema_forbids(helm, tmp_path):
    # lint passes --skip-schema-validation to helm lint: that skips only the templates rule's
    # second check of the values against the schema; the values rule still makes it, once.
    chart = tmp_path / "iris"
    shutil.copytree(REPO / "charts-out/ml-demo/iris/chart", chart)
    args = lint.helm_lint_args(helm, "ml-demo")
    good = subprocess.run(args + [str(chart)], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    values = _yaml.load((chart / "values.yaml").read_text())
    values["resources"]["requestGPU"] = "one"
    (chart / "values.yaml").write_text(json.dumps(values))
    bad = subprocess.run(args + [str(chart)], capture_output=True, text=True)
    assert bad.returncode != 0 and "[ERROR] values.yaml" in bad.stdout
    assert bad.stdout.count("requestGPU") == 1, bad.stdout  # told once, not again by the templates rule
    # With a values file over the chart's (lint's way for values holding a null), the same.
    (chart / "values.yaml").write_text(json.dumps(helmrelease_values(REPO / "charts-out/ml-demo/iris")))
    override = tmp_path / "override.yaml"
    override.write_text(json.dumps({"surprise": True}))
    bad = subprocess.run(lint.helm_lint_args(helm, "ml-demo", override) + [str(chart)], capture_output=True, text=True)
    assert bad.returncode != 0 and "surprise" in bad.stdout, bad.stdout


def test_helm_lint_skips_its_second_schema_check_only_where_the_first_stays():
    flag = "--skip-schema-validation"
    assert flag in lint.helm_lint_args("helm", "ns", version="v3.21.4")
    assert flag in lint.helm_lint_args("helm", "ns", version="v3.16.0+g1234")
    for version in ("v3.15.4", "v4.0.1", "unknown", "missing"):
        assert flag not in lint.helm_lint_args("helm", "ns", version=version), version


def test_kubeconform_catches_a_misspelt_field(kubeconform, helm, tmp_path):
    model = REPO / "charts-out/llm/qwen-chat"
    isvc = isvc_of(template(helm, model / "chart", "qwen-chat", "llm", helmrelease_values(model)))
    isvc["spec"]["predictor"]["tolerationz"] = isvc["spec"]["predictor"].pop("tolerations")
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps(isvc))
    args = [kubeconform, "-strict", "-summary", "-schema-location", tools.crd_schema_location(),
            "-schema-location", tools.core_schema_location("1.33")]
    result = subprocess.run(args + [str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "tolerationz" in result.stdout
    good = subprocess.run(args + [str(REPO / "charts-out/llm/namespace-llm.yaml")], capture_output=True, text=True)
    assert good.returncode == 0 and "Valid: 1" in good.stdout


def test_kubeconform_refuses_unknown_kinds(kubeconform, tmp_path):
    doc = tmp_path / "typo.yaml"
    doc.write_text("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceServic\nmetadata:\n  name: x\n")
    result = subprocess.run([kubeconform, "-strict", "-schema-location", tools.crd_schema_location(), str(doc)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "could not find schema" in result.stdout


def test_generated_suites_fail_when_the_chart_misbehaves(helm_unittest, tmp_path):
    chart = tmp_path / "chart"
    shutil.copytree(REPO / "charts-out/llm/qwen-chat/chart", chart)
    assert subprocess.run([helm_unittest, "-f", "tests/*_test.yaml", str(chart)], capture_output=True).returncode == 0
    template_file = chart / "templates/_helpers.tpl"
    template_file.write_text(template_file.read_text().replace("operator: {{ if gt $gpu 0 }}In{{ else }}NotIn{{ end }}",
                                                              "operator: In"))
    result = subprocess.run([helm_unittest, "-f", "tests/*_test.yaml", str(chart)], capture_output=True, text=True)
    assert result.returncode != 0 and "without a GPU" in result.stdout


def test_lint_reports_a_broken_chart_as_failed(helm, kubeconform, helm_unittest, examples_copy, monkeypatch, tmp_path):
    # Templates that render an invalid InferenceService and LLMInferenceService must fail kubeconform
    # inside `modelplat lint`.
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    isvc = templates / "chart/templates/inferenceservice.yaml.j2"
    isvc.write_text(isvc.read_text().replace("minReplicas:", "minReplicaz:"))
    llm = templates / "chart/templates/llminferenceservice.yaml.j2"
    llm.write_text(llm.read_text().replace("  router:", "  routerr:"))
    code = (
        "import sys; from pathlib import Path; import modelplat.resources as r;"
        f"r.templates_dir = lambda: Path({str(templates)!r});"
        "from modelplat.cli import main; sys.argv=['modelplat','lint',sys.argv[1],'--format','json']; main()"
    )
    result = subprocess.run([__import__("sys").executable, "-c", code, str(examples_copy)], capture_output=True, text=True)
    report = json.loads(result.stdout)
    assert result.returncode == 1
    statuses = {m["file"].rsplit("/", 1)[-1]: m["checks"]["kubeconform"]["status"] for m in report["models"]}
    assert set(statuses.values()) == {"fail"}
    assert any("minReplicaz" in m["checks"]["kubeconform"]["detail"] for m in report["models"])
    assert any("routerr" in m["checks"]["kubeconform"]["detail"] for m in report["models"])


def test_yaml_1_1_lookalikes_stay_strings(helm, lint_tools, tree, tmp_path):
    """Names such as "no", "on", "null" are valid DNS labels; unquoted, a YAML 1.1 reader (Helm,
    Kubernetes) would turn them into booleans or null. Every value must reach the manifest as text."""
    root = tree({"no/on.yaml": (
        "model:\n  format: sklearn\n  storageUri: s3://m/x\n  runtime: 'yes'\n"
        "  args: ['--flag', 'off', '{{ .Release.Name }}', '${HOME}']\n"
        "serviceAccountName: 'null'\nlabels:\n  team: 'yes'\n"
        "env:\n  - name: Y\n    value: 'no'\n  - name: ON\n    secretKeyRef: {name: 'true', key: 'y'}\n"
        "scheduling:\n  priorityClassName: 'off'\n  nodeSelector: {'y': 'n'}\n")})
    out = tmp_path / "out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    model = out / "no/on"
    isvc = isvc_of(template(helm, model / "chart", "on", "no", helmrelease_values(model)))
    assert isvc["metadata"]["name"] == "on" and isvc["metadata"]["namespace"] == "no"
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "null" and predictor["priorityClassName"] == "off"
    assert predictor["model"]["runtime"] == "yes"
    assert predictor["model"]["args"] == ["--flag", "off", "{{ .Release.Name }}", "${HOME}"]
    assert predictor["model"]["env"][0] == {"name": "Y", "value": "no"}
    assert predictor["model"]["env"][1]["valueFrom"]["secretKeyRef"] == {"name": "true", "key": "y"}
    assert predictor["nodeSelector"] == {"y": "n"} and isvc["metadata"]["labels"]["team"] == "yes"
    lint = modelplat("lint", str(root), "--require-tools")
    assert lint.returncode == 0, lint.stdout


def test_a_refused_flux_wiring_file_fails_lint_with_its_own_row(kubeconform, helm, examples_copy, tmp_path):
    report = lint_refusing(examples_copy, tmp_path, "source.toolkit.fluxcd.io", "gitrepository_v1.json",
                           "gitrepository.yaml")
    assert all(m["ok"] for m in report["models"] if m["file"] != "(flux wiring)")


def rendered_examples(helm) -> dict[str, list[dict]]:
    """`helm template` of every committed chart with its HelmRelease's values: model → documents."""
    out = {}
    for release in sorted((REPO / "charts-out").glob("*/*/helmrelease.yaml")):
        model = release.parent
        if model.parent.name.startswith("_"):  # the platform's own releases (_platform/)
            continue
        out[f"{model.parent.name}/{model.name}"] = template(helm, model / "chart", model.name, model.parent.name,
                                                            helmrelease_values(model))
    return out


def test_every_hpa_metric_is_served_by_the_adapter(helm):
    adapter = _yaml.load((REPO / "charts-out/_platform/prometheus-adapter/helmrelease.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["spec"]["values"]["rules"]["custom"]}
    used = set()
    hpas = 0
    for model, docs in rendered_examples(helm).items():
        for doc in docs:
            if doc["kind"] == "HorizontalPodAutoscaler":
                hpas += 1
                # KServe's Deployment of the model's pods (an LLMInferenceService's decode pods).
                llm = any(d["kind"] == "LLMInferenceService" for d in docs)
                canary = "-canary" if doc["metadata"]["name"].endswith("-canary") else ""
                assert doc["spec"]["scaleTargetRef"]["name"] == \
                    f"{model.split('/')[1]}{canary}-{'kserve' if llm else 'predictor'}"
                for metric in doc["spec"]["metrics"]:
                    if metric["type"] == "Pods":
                        used.add(metric["pods"]["metric"]["name"])
                        assert metric["pods"]["target"]["type"] == "AverageValue"
                    else:
                        assert metric["type"] == "Resource"  # served by metrics-server
    assert hpas >= 2 and used, "the examples scale on custom metrics"
    assert used <= served, f"HPAs use metrics no adapter rule serves: {sorted(used - served)}"


def test_promtool_accepts_every_alert_expression(helm, tmp_path):
    promtool = need_tool("promtool")
    groups = [group for docs in rendered_examples(helm).values() for doc in docs
              if doc["kind"] == "PrometheusRule" for group in doc["spec"]["groups"]]
    assert len(groups) >= 2
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert {"ModelHighLatencyP99", "ModelHighErrorRate", "ModelQueueBacklog", "ModelKVCacheNearlyFull",
            "ModelGPUSaturated", "ModelReplicasAtMaximum"} <= alerts
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps({"groups": groups}))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    groups[0]["rules"][0]["expr"] = groups[0]["rules"][0]["expr"].replace("sum by (le)", "sum by (le")
    broken.write_text(json.dumps({"groups": groups}))
    assert subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True).returncode != 0


def test_rdma_pods_get_networks_devices_and_ipc_lock_only(helm):
    docs = rendered_examples(helm)["llm-70b/llama-70b"]
    nad = next(d for d in docs if d["kind"] == "NetworkAttachmentDefinition")
    config = json.loads(nad["spec"]["config"])
    # The example chains the rdma CNI plugin after sriov (rdmaCni: exclusive RDMA netns mode).
    assert config == {"cniVersion": "0.3.1", "name": "kv-transfer", "plugins": [
        {"type": "sriov", "ipam": {"type": "whereabouts", "range": "192.168.100.0/24"}}, {"type": "rdma"}]}
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == "nvidia.com/rdma_vf"
    spec = by_kind(docs, "LLMInferenceService")["spec"]
    # Both roles of the prefill/decode pair attach to the one network (one NAD): the KV cache
    # travels on one RDMA subnet.
    for role, kv_role in ((spec, "kv_consumer"), (spec["prefill"], "kv_producer")):
        assert role["annotations"]["k8s.v1.cni.cncf.io/networks"] == "llm-70b/kv-transfer"
        assert role["annotations"]["scheduling.volcano.sh/queue-name"] == "llm-serving"
        assert role["template"]["schedulerName"] == "volcano"
        (container,) = role["template"]["containers"]
        assert container["name"] == "main"
        assert container["securityContext"] == {"capabilities": {"add": ["IPC_LOCK"]}}
        assert container["resources"]["requests"]["nvidia.com/rdma_vf"] == "1"
        assert container["resources"]["limits"]["nvidia.com/rdma_vf"] == "1"
        env = {e["name"]: e for e in container["env"]}
        assert env["NCCL_IB_DISABLE"]["value"] == "0" and env["KSERVE_INFER_ROCE"]["value"] == "true"
        assert f'"kv_role":"{kv_role}"' in env["VLLM_ADDITIONAL_ARGS"]["value"]
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == {"modelplat.io/model": "llama-70b", "modelplat.io/variant": "primary"}


def by_kind(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


def test_canary_rollout_splits_90_10_and_serves_one_model_name(helm):
    docs = rendered_examples(helm)["ml-demo/iris"]
    vs = by_kind(docs, "VirtualService")
    primary_route = vs["spec"]["http"][-1]["route"]
    assert [r["weight"] for r in primary_route] == [90, 10] and sum(r["weight"] for r in primary_route) == 100
    assert primary_route[1]["destination"]["host"] == "iris-canary-predictor.ml-demo.svc.cluster.local"
    assert vs["spec"]["http"][0]["match"] == [{"headers": {"x-model-canary": {"exact": "true"}}}]
    assert set(vs["spec"]["gateways"]) == {"mesh"} and "*" not in vs["spec"]["hosts"]
    canary = by_kind(docs, "InferenceService", "iris-canary")
    primary = by_kind(docs, "InferenceService", "iris")
    assert canary["spec"]["predictor"]["model"]["storageUri"].endswith("/2.0/model")
    assert primary["spec"]["predictor"]["model"]["storageUri"].endswith("/1.0/model")
    assert canary["spec"]["predictor"]["model"]["modelFormat"] == primary["spec"]["predictor"]["model"]["modelFormat"]
    # KServe would name the canary's model iris-canary: it must answer to the primary's name. iris
    # is sklearn over v2, which KServe serves with MLServer: named by MLSERVER_MODEL_NAME, and no
    # args at all (they would replace `mlserver start`).
    assert "args" not in canary["spec"]["predictor"]["model"]
    assert {"name": "MLSERVER_MODEL_NAME", "value": "iris"} in canary["spec"]["predictor"]["model"]["env"]
    assert "MLSERVER_MODEL_NAME" not in str(primary["spec"]["predictor"]["model"].get("env"))
    # security covers the canary's pods too
    assert by_kind(docs, "PeerAuthentication")["spec"]["selector"]["matchLabels"] == {"modelplat.io/model": "iris"}
    assert canary["spec"]["predictor"]["labels"]["modelplat.io/model"] == "iris"


def test_mirror_copies_25_percent_to_the_shadow_and_answers_from_the_primary(helm):
    docs = rendered_examples(helm)["fraud/xgb-scorer"]
    http = by_kind(docs, "VirtualService")["spec"]["http"]
    assert len(http) == 1
    assert http[0]["route"] == [{"destination": {"host": "xgb-scorer-predictor.fraud.svc.cluster.local",
                                                 "port": {"number": 80}}}]
    assert http[0]["mirror"]["host"] == "xgb-scorer-shadow-predictor.fraud.svc.cluster.local"
    assert http[0]["mirrorPercentage"] == {"value": 25}
    assert "mirrors" not in http[0]
    shadow = by_kind(docs, "InferenceService", "xgb-scorer-shadow")
    assert shadow["spec"]["predictor"]["model"]["storageUri"] == "s3://ml-models-prod/fraud/xgb/2026-11-20"
    assert shadow["spec"]["predictor"]["model"]["args"] == ["--model_name=xgb-scorer"]
    # mirrored copies are not logged a second time
    assert "logger" not in shadow["spec"]["predictor"] and "logger" in isvc_of(docs)["spec"]["predictor"]


def test_exposed_llm_requires_jwt_and_ext_authz(helm):
    docs = rendered_examples(helm)["llm/qwen-chat"]
    vs = by_kind(docs, "VirtualService")
    assert vs["spec"]["hosts"] == ["qwen-chat-predictor-llm.ext.models.example.com"]
    assert vs["spec"]["gateways"] == ["istio-system/model-gateway"]
    ra = by_kind(docs, "RequestAuthentication")["spec"]["jwtRules"][0]
    assert ra["issuer"] == "https://idp.example.com" and ra["audiences"] == ["models"]
    assert {"header": "x-modelplat-sa", "claim": "client_id"} in ra["outputClaimToHeaders"]
    allow = by_kind(docs, "AuthorizationPolicy", "qwen-chat")["spec"]
    assert allow["action"] == "ALLOW"
    sources = [rule["from"][0]["source"] for rule in allow["rules"] if "from" in rule]
    assert {"namespaces": ["llm"]} in sources and {"requestPrincipals": ["*"]} in sources
    custom = by_kind(docs, "AuthorizationPolicy", "qwen-chat-ext-authz")["spec"]
    assert custom["action"] == "CUSTOM" and custom["provider"] == {"name": "models-ext-authz"}
    operation = custom["rules"][0]["to"][0]["operation"]
    assert operation == {"paths": ["/v1/*", "/openai/v1/*"], "notPaths": ["/v1/models", "/health"]}
    # metrics share the serving port here: it stays STRICT, and /metrics is not open through the gateway
    assert "portLevelMtls" not in by_kind(docs, "PeerAuthentication")["spec"]
    metrics_rule = next(rule for rule in allow["rules"] if "to" in rule)
    assert metrics_rule["from"] == [{"source": {"notNamespaces": ["istio-system"]}}]


def test_every_rate_limit_descriptor_has_a_limit_in_the_service_config(helm):
    """The descriptors the rendered EnvoyFilter sends (derived from its actions, not restated) all
    have a limit in the rate limit service's config for the same domain: no limit that silently
    never applies."""
    configmap = _yaml.load((REPO / "charts-out/_platform/ratelimit/configmap.yaml").read_text())
    configs = {name: _yaml.load(text) for name, text in configmap["data"].items()}
    filters = 0
    for model, docs in rendered_examples(helm).items():
        for doc in docs:
            if doc["kind"] != "EnvoyFilter" or not doc["metadata"]["name"].endswith("-ratelimit"):
                continue
            filters += 1
            project, name = model.split("/")
            config = configs[f"{doc['metadata']['namespace']}.{name}.yaml"]
            typed = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
            assert typed["domain"] == config["domain"]
            assert typed["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"] == \
                "outbound|8081||ratelimit.ratelimit.svc.cluster.local"
            keys = {d["key"]: d["rate_limit"] for d in config["descriptors"]}
            for limit in doc["spec"]["configPatches"][1]["patch"]["value"]["rate_limits"]:
                (action,) = limit["actions"]
                (kind, spec), = action.items()
                key = "remote_address" if kind == "remote_address" else spec["descriptor_key"]
                assert key in keys, f"{model}: descriptor {key} has no limit"
                assert keys[key]["unit"] == "minute"
    assert filters >= 1
    qwen = configs["llm.qwen-chat.yaml"]
    assert {d["key"]: d["rate_limit"]["requests_per_unit"] for d in qwen["descriptors"]} == \
        {"remote_address": 10, "service_account": 100}


def test_podmonitor_and_canary_autoscaling_pass_the_real_tools(helm, lint_tools, tree):
    """Kinds the examples do not use (a PodMonitor; the canary's own HPA) still pass every tool."""
    root = tree({"demo/m.yaml": (
        "model:\n  format: sklearn\n  storageUri: s3://m/x\nreplicaCount: 2\nmetrics:\n  port: 8080\n"
        "autoscaling:\n  enabled: true\n  maxReplicaCount: 5\n  targetCPUUtilizationPercentage: 70\n"
        "canary:\n  enabled: true\n  storageUri: s3://m/v2\nprimaryLoad: 80\n")},
        platform="clusterName: ml\nscrape: podMonitor\n")
    result = modelplat("lint", str(root), "--require-tools", "--format", "json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=2)[:3000]
    out = root.parent / "out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    docs = template(helm, out / "demo/m/chart", "m", "demo", helmrelease_values(out / "demo/m"))
    monitor = by_kind(docs, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"] == [{"portNumber": 8080, "path": "/metrics"}]
    assert "prometheus.io/scrape" not in isvc_of(docs)["spec"]["predictor"].get("annotations", {})
    canary_hpa = by_kind(docs, "HorizontalPodAutoscaler", "m-canary")
    assert canary_hpa["spec"]["scaleTargetRef"]["name"] == "m-canary-predictor"
    canary = by_kind(docs, "InferenceService", "m-canary")
    assert canary["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"


def test_a_canary_header_of_the_models_own_passes_its_generated_suites(tree, lint_tools):
    """A generated case set headerMatch {x-model-canary: "true"} and compared the whole map, but
    Helm merges a case's map into the model's own: a model matching on any other header failed
    lint though it was valid. Cases now assert only what they set."""
    model = CPU_FILE + ("primaryLoad: 90\ncanary:\n  enabled: true\n  storageUri: s3://m/v2\n"
                        "  headerMatch:\n    x-team: search\n")
    root = tree({"demo/iris.yaml": model})
    lint = modelplat("lint", str(root), "--require-tools", "--format", "json")
    checks = json.loads(lint.stdout)["models"][0]["checks"]
    assert lint.returncode == 0 and checks["helm unittest"]["status"] == "pass", checks["helm unittest"]
