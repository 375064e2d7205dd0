"""Planning and rendering (pure): which files a model gets, what its values and Flux objects say."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from modelplat import pipeline
from modelplat.render import render_tree

from conftest import PLATFORM, modelplat, need_tool

_yaml = YAML(typ="safe")

GPU_LLM = """\
model:
  format: custom
  protocol: openai
  image: vllm/vllm-openai:v0.8.5
  storageUri: hf://Qwen/Qwen2.5-7B-Instruct
resources:
  requestGPU: 1
"""
CPU = "model:\n  format: sklearn\n  storageUri: s3://m/iris\n"


def rendered(tree, files: dict[str, str]):
    run = pipeline.run([tree(files)])
    assert not run.errors, [d.format() for d in run.errors]
    return run, render_tree(run.plans, run.platform)


def helm_objects(files: dict[str, bytes], model_dir: str, tmp_path, *args: str) -> list[dict]:
    """What `helm template` makes of one rendered chart (with extra helm arguments)."""
    from modelplat import output, tools

    helm = need_tool("helm")
    out = tmp_path / "helm-out"
    output.write(out, files, force=True)
    result = tools.run([helm, "template", model_dir.rsplit("/", 1)[-1], str(out / model_dir / "chart"), *args])
    assert result.ok, result.output
    return [d for d in YAML(typ="safe").load_all(result.output) if d]


def test_gpu_and_llm_get_shared_memory_cpu_does_not(tree):
    run, _ = rendered(tree, {"llm/qwen.yaml": GPU_LLM, "demo/iris.yaml": CPU})
    plans = {p.name: p for p in run.plans}
    assert plans["qwen"].gpu and plans["qwen"].shared_memory
    assert not plans["iris"].gpu and not plans["iris"].shared_memory
    assert plans["qwen"].chart_values["sharedMemory"] == {"enabled": True, "sizeLimit": "2Gi"}


def test_chart_values_resolve_defaults_and_carry_platform_facts(tree):
    run, files = rendered(tree, {"demo/iris.yaml": CPU})
    values = _yaml.load(files["demo/iris/chart/values.yaml"])
    assert values["name"] == "iris" and values["namespace"] == "demo"
    assert values["resources"] == {"requestCPU": "500m", "requestMemory": "1Gi", "limitMemory": "2Gi",
                                   "requestGPU": 0, "limitGPU": 0}
    assert values["platform"]["gpuNodeGroup"] == "ml-test-gpu"
    assert values["platform"]["gpuNodeGroupLabel"] == "eks.amazonaws.com/nodegroup"


def test_helmrelease_values_are_exactly_the_chart_values(tree):
    _, files = rendered(tree, {"demo/iris.yaml": CPU})
    release = _yaml.load(files["demo/iris/helmrelease.yaml"])
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2" and release["kind"] == "HelmRelease"
    assert release["spec"]["values"] == _yaml.load(files["demo/iris/chart/values.yaml"])
    chart = release["spec"]["chart"]["spec"]
    assert chart["chart"] == "./charts-out/demo/iris/chart"
    assert chart["reconcileStrategy"] == "ChartVersion"
    assert chart["sourceRef"] == {"kind": "GitRepository", "name": "modelplat", "namespace": "flux-system"}
    assert release["spec"]["install"]["remediation"]["retries"] == 3
    assert release["spec"]["upgrade"]["remediation"]["remediateLastFailure"] is True


def test_the_rate_limit_service_is_rendered_only_for_models_that_use_it(tree):
    _, files = rendered(tree, {"demo/iris.yaml": CPU, "demo/wine.yaml": CPU})
    assert not [f for f in files if f.startswith("_platform/ratelimit/")]
    assert _yaml.load(files["_platform/kustomization.yaml"])["resources"] == ["prometheus-adapter"]
    _, files = rendered(tree, {"demo/iris.yaml": CPU, "demo/wine.yaml": CPU + "ratelimitIPPerMinute: 10\n"})
    assert _yaml.load(files["_platform/kustomization.yaml"])["resources"] == ["prometheus-adapter", "ratelimit"]
    config = _yaml.load(files["_platform/ratelimit/configmap.yaml"])
    assert list(config["data"]) == ["demo.wine.yaml"]


def test_kustomizations_list_exactly_the_files_beside_them(tree):
    limited = CPU + "ratelimitIPPerMinute: 10\n"
    _, files = rendered(tree, {"llm/qwen.yaml": GPU_LLM, "demo/iris.yaml": limited, "demo/wine.yaml": CPU})
    top = _yaml.load(files["kustomization.yaml"])
    assert top["resources"] == ["_platform/flux", "demo", "llm"]  # the models' Flux Kustomization
    assert _yaml.load(files["_platform/kustomization.yaml"])["resources"] == ["prometheus-adapter", "ratelimit"]
    demo = _yaml.load(files["demo/kustomization.yaml"])
    assert demo["resources"] == ["namespace-demo.yaml", "iris/helmrelease.yaml", "wine/helmrelease.yaml"]
    for folder in ("", "demo/", "llm/", "_platform/", "_platform/flux/", "_platform/prometheus-adapter/",
                   "_platform/ratelimit/"):
        listed = _yaml.load(files[f"{folder}kustomization.yaml"])["resources"]
        for entry in listed:
            assert f"{folder}{entry}" in files or any(f.startswith(f"{folder}{entry}/") for f in files), entry


def test_flux_source_and_sync(tree):
    _, files = rendered(tree, {"demo/iris.yaml": CPU})
    source = _yaml.load(files["_platform/flux/gitrepository.yaml"])
    assert source["kind"] == "GitRepository" and source["spec"]["ref"] == {"branch": "main"}
    sync = _yaml.load(files["_platform/flux/sync.yaml"])
    assert sync["kind"] == "Kustomization" and sync["spec"]["path"] == "./charts-out" and sync["spec"]["prune"] is True
    platform = _yaml.load(files["_platform/flux/platform.yaml"])
    assert platform["spec"]["path"] == "./charts-out/_platform" and platform["spec"]["wait"] is True
    assert sync["spec"]["dependsOn"] == [{"name": platform["metadata"]["name"]}] and "wait" not in sync["spec"]
    assert _yaml.load(files["_platform/flux/kustomization.yaml"])["resources"] == [
        "gitrepository.yaml", "platform.yaml", "sync.yaml"]


def test_every_chart_holds_every_template_and_renders_only_what_is_on(tree, tmp_path):
    from modelplat.render import CHART_TEMPLATES

    _, files = rendered(tree, {"demo/iris.yaml": CPU})
    chart = sorted(f.removeprefix("demo/iris/chart/") for f in files if f.startswith("demo/iris/chart/"))
    assert chart == sorted([".helmignore", "Chart.yaml", "README.md", "templates/_helpers.tpl",
                            "files/strip_identity.lua", "files/token_quota.lua", "tests/chart_test.yaml",
                            "tests/schema_test.yaml", "values.schema.json", "values.yaml"] + [f"templates/{t}" for t in CHART_TEMPLATES])
    assert len(CHART_TEMPLATES) == 22
    kinds = sorted(o["kind"] for o in helm_objects(files, "demo/iris", tmp_path))
    assert kinds == ["AuthorizationPolicy", "InferenceService", "PeerAuthentication"]
    meta = _yaml.load(files["demo/iris/chart/Chart.yaml"])
    from modelplat import __version__

    assert meta["version"].startswith(__version__ + "+") and meta["apiVersion"] == "v2"
    schema = json.loads(files["demo/iris/chart/values.schema.json"])
    assert schema["additionalProperties"] is False and "platform" in schema["properties"]


def test_custom_container_vs_runtime_template(tree, tmp_path):
    _, files = rendered(tree, {"llm/qwen.yaml": GPU_LLM, "demo/iris.yaml": CPU})
    qwen = [o for o in helm_objects(files, "llm/qwen", tmp_path) if o["kind"] == "InferenceService"][0]
    iris = [o for o in helm_objects(files, "demo/iris", tmp_path) if o["kind"] == "InferenceService"][0]
    assert qwen["spec"]["predictor"]["containers"][0]["name"] == "kserve-container"
    assert "model" not in qwen["spec"]["predictor"]
    assert iris["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
    assert "containers" not in iris["spec"]["predictor"]
    for rel, content in files.items():
        if "/templates/" in rel:
            assert b"<<" not in content and b"<%" not in content, "no jinja left in the Go template"


def test_free_text_is_data_never_code(tree):
    hostile = 'description: "{{ .Release.Name }} [[ x ]] <% y %> << z >> ${HOME}"\n' + CPU
    _, files = rendered(tree, {"demo/iris.yaml": hostile})
    values = _yaml.load(files["demo/iris/chart/values.yaml"])
    assert values["description"] == "{{ .Release.Name }} [[ x ]] <% y %> << z >> ${HOME}"
    for name, content in files.items():
        if name.endswith(".tpl") or name.endswith("inferenceservice.yaml"):
            assert b"Release.Name }} [[" not in content


def test_rendering_is_byte_stable(tree):
    root = tree({"llm/qwen.yaml": GPU_LLM, "demo/iris.yaml": CPU})
    first = render_tree(pipeline.run([root]).plans, pipeline.run([root]).platform)
    second = render_tree(pipeline.run([root]).plans, pipeline.run([root]).platform)
    assert first == second


def _cases(text: bytes) -> list[dict]:
    """Every case of a suite file, across its suites (YAML documents)."""
    return [case for suite in _yaml.load_all(text) for case in suite["tests"]]


def test_each_suite_renders_its_own_template_only(tree):
    """helm-unittest renders, for every case, each template its suite lists: a suite per
    template renders one template a case, not every template the chart turns on."""
    _, files = rendered(tree, {"demo/iris.yaml": CPU})
    suites = list(_yaml.load_all(files["demo/iris/chart/tests/chart_test.yaml"]))
    assert len(suites) >= 3  # InferenceService, PeerAuthentication, AuthorizationPolicy
    for suite in suites:
        assert {case["template"] for case in suite["tests"]} == set(suite["templates"]) and len(suite["templates"]) == 1
    assert len({tuple(suite["templates"]) for suite in suites}) == len(suites)


def test_suites_assert_both_gpu_branches(tree):
    _, files = rendered(tree, {"demo/iris.yaml": CPU})
    cases = _cases(files["demo/iris/chart/tests/chart_test.yaml"])
    names = [t["it"] for t in cases]
    assert any("as configured, keeps off GPU nodes" in name.split("; ") for name in names if name.startswith("InferenceService: "))
    with_gpu = next(t for t in cases if t["it"].startswith("InferenceService: with a GPU"))
    assert with_gpu["set"]["resources.requestGPU"] == 1
    operators = [a["equal"]["value"] for a in with_gpu["asserts"] if "equal" in a and a["equal"]["path"].endswith("operator")]
    assert operators == ["In"]


def test_cases_that_set_the_same_values_are_one_render(tree):
    """helm-unittest renders the template once a case: the cases of one template that set the same
    values are one case, with every assertion and every behaviour's name of the cases it joins."""
    from modelplat import suites

    run, files = rendered(tree, {"llm/qwen.yaml": GPU_LLM + "replicaCount: 2\nautoscaling:\n  enabled: true\n  maxReplicaCount: 4\n  targetQueueDepth: 5\n"})
    (p,) = run.plans
    written = list(_yaml.load_all(files["llm/qwen/chart/tests/chart_test.yaml"]))
    schema = _cases(files.get("llm/qwen/chart/tests/schema_test.yaml", b""))
    cases = [case for suite in written for case in suite["tests"]]
    originals = [(template, case) for template in p.templates for case in suites.SUITES[template][1](p)["tests"]]
    assert len(cases) + len(schema) < len(originals)
    names = [name for case in cases + schema for name in case["it"].split(": ", 1)[1].split("; ")]
    assert sorted(names) == sorted(case["it"] for _, case in originals)
    assert sum(len(case["asserts"]) for case in cases + schema) == sum(len(case["asserts"]) for _, case in originals)
    values = _yaml.load(files["llm/qwen/chart/values.yaml"])
    for suite in written:  # no two cases render the template with the same values
        renders = [json.dumps(_with_set(values, case.get("set") or {}), sort_keys=True) for case in suite["tests"]
                   if not any("failedTemplate" in a for a in case["asserts"])]
        assert len(renders) == len(set(renders)), suite["suite"]
    # a case setting what the model already has (shared memory, on for a GPU) joined its own case
    (isvc,) = [suite for suite in written if suite["suite"].endswith(" InferenceService")]
    (own,) = [case for case in isvc["tests"] if "renders one RawDeployment" in case["it"]]
    assert "mounts a memory-backed /dev/shm" in own["it"] and "set" not in own


def test_a_setting_changes_the_values_unless_it_is_the_same_json_value():
    from modelplat.suites import _changes

    values = {"resources": {"requestGPU": 1, "tags": ["a"]}, "enabled": True, "ratio": 1.0}
    nothing = _changes({}, values)
    assert _changes({"resources.requestGPU": 1, "resources.tags": ["a"], "enabled": True, "ratio": 1.0}, values) == nothing
    # 1, 1.0 and true are three JSON values (Python's == says one); a null always changes
    changes = [_changes({"resources.requestGPU": True}, values), _changes({"resources.requestGPU": 1.0}, values),
               _changes({"resources.requestGPU": 2}, values), _changes({"ratio": 1}, values),
               _changes({"ratio": True}, values), _changes({"resources.tags": ["a", "b"]}, values),
               _changes({"resources.tags": ["b", "a"]}, values), _changes({"missing.key": None}, values),
               _changes({"enabled": None}, values), _changes({"enabled": False}, values)]
    assert nothing not in changes and len(set(changes)) == len(changes)
    # the same changes are one key, in whatever order they are set; what holds already is left out
    assert _changes({"ratio": 1, "enabled": None}, values) == _changes({"enabled": None, "ratio": 1, "resources.requestGPU": 1},
                                                                       values)
    assert _changes({"resources.tags": ["a", "b"]}, values) == _changes({"resources.tags": ["a", "b"]}, values)


def test_chart_version_changes_with_the_chart_and_only_then(tree):
    """Flux re-releases a chart from Git when its version changes (ChartVersion strategy)."""
    root = tree({"demo/iris.yaml": CPU, "demo/wine.yaml": CPU})
    version = lambda files, model: _yaml.load(files[f"demo/{model}/chart/Chart.yaml"])["version"]
    first = render_tree(pipeline.run([root]).plans, pipeline.run([root]).platform)
    (root / "demo/iris.yaml").write_text(CPU + "replicaCount: 5\n")
    second = render_tree(pipeline.run([root]).plans, pipeline.run([root]).platform)
    assert version(first, "iris") != version(second, "iris")
    assert version(first, "wine") == version(second, "wine")


def test_scrape_mode_chooses_annotations_or_podmonitor(tree, tmp_path):
    for mode, podmonitor in (("annotations", False), ("podMonitor", True), ("both", True)):
        root = tree({"demo/iris.yaml": CPU + "metrics:\n  port: 8080\n"}, platform=f"clusterName: ml\nscrape: {mode}\n")
        run = pipeline.run([root])
        files = render_tree(run.plans, run.platform)
        objects = helm_objects(files, "demo/iris", tmp_path)
        assert any(o["kind"] == "PodMonitor" for o in objects) is podmonitor, mode
        isvc = next(o for o in objects if o["kind"] == "InferenceService")
        pod_annotations = isvc["spec"]["predictor"].get("annotations", {})
        assert ("prometheus.io/scrape" in pod_annotations) is (mode != "podMonitor"), mode
        assert _yaml.load(files["demo/iris/chart/values.yaml"])["platform"]["scrape"] == mode


def test_features_add_their_objects_and_suites(tree, tmp_path):
    text = GPU_LLM + ("replicaCount: 2\nautoscaling:\n  enabled: true\n  maxReplicaCount: 4\n  targetQueueDepth: 5\n"
                      "observability:\n  accessLog: true\n  alerts:\n    enabled: true\n"
                      "rdma:\n  enabled: true\n  resources: {rdma/roce_gdr: 1}\n  networks:\n"
                      "    - {name: kv, type: macvlan, master: eth1}\n")
    kinds = {"hpa": "HorizontalPodAutoscaler", "poddisruptionbudget": "PodDisruptionBudget", "telemetry": "Telemetry",
             "prometheusrule": "PrometheusRule", "networkattachmentdefinition": "NetworkAttachmentDefinition"}
    _, files = rendered(tree, {"llm/qwen.yaml": text})
    made = {o["kind"] for o in helm_objects(files, "llm/qwen", tmp_path)}
    cases = _cases(files["llm/qwen/chart/tests/chart_test.yaml"])
    for template, kind in kinds.items():
        assert kind in made, kind
        assert any(t["template"] == f"templates/{template}.yaml" for t in cases), template
    _, plain = rendered(tree, {"demo/iris.yaml": CPU})
    assert not {o["kind"] for o in helm_objects(plain, "demo/iris", tmp_path)} & set(kinds.values())
    cases = _cases(plain["demo/iris/chart/tests/chart_test.yaml"])
    assert not [t for t in cases if t["template"].removeprefix("templates/").removesuffix(".yaml") in kinds]


def test_cpu_and_memory_limits_are_always_explicit(tree):
    # KServe gives a container without a limit its own (1 CPU, 2Gi) and refuses a larger request:
    # the engines saw qwen-embed (2 CPUs requested, no limit) get no Deployment.
    from modelplat import tools

    helm = need_tool("helm")
    root = tree({"demo/m.yaml": "model:\n  format: sklearn\n  storageUri: s3://m/x\nresources:\n  requestCPU: '2'\n"},
                platform=PLATFORM.replace("clusterName: ml-test", "clusterName: ml-test\ndefaults:\n  resources:\n"
                                          "    limitMemory: null\n"))
    out = root.parent / "out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    chart = next(out.rglob("chart"))
    rendered = tools.run([helm, "template", "m", str(chart)]).output
    isvc = [d for d in YAML(typ="safe").load_all(rendered) if d and d["kind"] == "InferenceService"][0]
    resources = isvc["spec"]["predictor"]["model"]["resources"]
    assert resources["limits"]["cpu"] == "2" and resources["limits"]["memory"] == resources["requests"]["memory"]


@pytest.mark.parametrize("model,port", [
    ("model:\n  format: sklearn\n  storageUri: s3://m/x\n", 8080),
    ("model:\n  format: pytorch\n  storageUri: s3://m/x\n", 8082),
    ("model:\n  format: onnx\n  storageUri: s3://m/x\n", 8002),
    ("model:\n  format: tensorflow\n  storageUri: s3://m/x\n", 8080),
    ("model:\n  format: tensorflow\n  protocol: v2\n  storageUri: s3://m/x\n", 8002),
    ("model:\n  format: custom\n  image: x/y:1\n  port: 9000\n", 9000),
    ("model:\n  format: sklearn\n  storageUri: s3://m/x\nmetrics:\n  port: 9100\n", 9100),
])
def test_metrics_are_scraped_where_the_model_server_serves_them(tree, model, port):
    """KServe v0.20's runtimes announce their metrics port (prometheus.kserve.io/port): 8080 for
    the Python servers, MLServer and TF Serving, 8082 for TorchServe, 8002 for Triton."""
    run, files = rendered(tree, {"demo/m.yaml": model})
    (p,) = run.plans
    assert p.chart_values["metrics"]["port"] == port
    isvc = files["demo/m/chart/templates/inferenceservice.yaml"].decode()
    assert "prometheus.io/port" in isvc and ".Values.metrics.port" in isvc


def test_the_gateway_pods_namespace_defaults_to_the_gateways_and_can_differ(tree):
    """The exposed model's metrics rule keeps out requests forwarded by the gateway's pods, which
    may run in another namespace than the Gateway resource (defect: it used the resource's)."""
    run = pipeline.run([tree({"demo/m.yaml": CPU})])
    assert run.plans[0].chart_values["platform"]["gatewayNamespace"] == "istio-system"
    run = pipeline.run([tree({"demo/m.yaml": CPU}, platform=PLATFORM + "gatewayNamespace: istio-ingress\n")])
    assert run.plans[0].chart_values["platform"]["gatewayNamespace"] == "istio-ingress"
    policy = render_tree(run.plans, run.platform)["demo/m/chart/templates/authorizationpolicy.yaml"].decode()
    assert "notNamespaces:\n              - {{ .Values.platform.gatewayNamespace | quote }}" in policy


def test_ext_authz_can_be_scoped_to_hosts(tree):
    base = CPU + ("auth:\n  customAuthz:\n    enabled: true\n    provider: ext-authz\n")
    run = pipeline.run([tree({"demo/m.yaml": base + "    hosts: [m.ext.example.com, '*.example.org']\n"})])
    assert not run.errors and run.plans[0].chart_values["auth"]["customAuthz"]["hosts"] == [
        "m.ext.example.com", "*.example.org"]
    refused = pipeline.run([tree({"demo/m.yaml": base + "    hosts: ['http://x/']\n"})]).errors
    assert [d.key for d in refused] == ["auth.customAuthz.hosts.0"]


def _with_set(values: dict, overlay: dict) -> dict:
    """The values a helm-unittest case renders with: each `set` path (dots between keys) merged
    into a copy of the chart's values, a map into a map key by key, as Helm coalesces them."""
    import copy

    def merge(into: dict, key: str, value) -> None:
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            for inner, item in value.items():
                merge(into[key], inner, item)
        else:
            into[key] = copy.deepcopy(value)

    out = copy.deepcopy(values)
    for path, value in overlay.items():
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        merge(node, last, value)
    return out


def test_every_generated_case_s_values_are_what_the_chart_schema_says():
    """`modelplat lint` runs the chart's suite with --skip-schema-validation (Helm compiling the
    schema for every case was ~45% of its time): so each case's values, the chart's own with its
    `set`, must be ones the chart's values.schema.json accepts, and each case of the schema suite
    values it refuses."""
    import jsonschema

    from modelplat import suites
    from conftest import EXAMPLES, REPO

    schema = json.loads((REPO / "schemas/chart-values.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = pipeline.render_all([EXAMPLES]).files
    charts = sorted(rel.removesuffix("/values.yaml") for rel in files if rel.endswith("/chart/values.yaml"))
    refused = 0
    for chart in charts:
        values = _yaml.load(files[f"{chart}/values.yaml"])
        assert not list(validator.iter_errors(values)), chart
        for name, expected_valid in ((suites.CHART_SUITE, True), (suites.SCHEMA_SUITE, False)):
            suite = files.get(f"{chart}/tests/{name}")
            for case in _cases(suite) if suite else ():
                errors = list(validator.iter_errors(_with_set(values, case.get("set", {}))))
                assert (not errors) is expected_valid, (chart, case["it"], [e.message for e in errors][:3])
                refused += not expected_valid
    assert refused >= 1, "the schema suite holds a case the schema refuses"
