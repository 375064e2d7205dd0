"""The checks lint runs on the rendered output beyond helm and kubeconform: istioctl validate,
promtool check rules, kustomize build with the listing check, and the rate limit config parse.

Each is shown passing on the bundled examples and failing on a tampered render, with the
problem named (file, resource, field, tool). The tampered runs share one lint per module.
"""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from modelplat import lint as linting
from modelplat import outputchecks, render, tools, yamlout

from conftest import EXAMPLES, REPO, modelplat

_yaml = YAML(typ="safe")


def committed_output() -> dict[str, bytes]:
    root = REPO / "charts-out"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- kustomization listings (pure) ---------------------------------------------------------------


def test_the_committed_output_lists_exactly_its_files():
    assert outputchecks.kustomization_findings(committed_output()) == []


def test_a_stale_entry_and_an_unlisted_file_are_each_found():
    files = committed_output()
    stale = dict(files)
    stale["fraud/kustomization.yaml"] += b"  - old-scorer/helmrelease.yaml\n"
    (finding,) = outputchecks.kustomization_findings(stale)
    assert finding.path == "fraud/old-scorer/helmrelease.yaml"
    assert "fraud/kustomization.yaml" in finding.message and "stale" in finding.message

    unlisted = dict(files)
    unlisted["fraud/xgb-scorer/configmap.yaml"] = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    (finding,) = outputchecks.kustomization_findings(unlisted)
    assert finding.path == "fraud/xgb-scorer/configmap.yaml"
    assert "not listed in fraud/kustomization.yaml" in finding.message


def test_a_project_missing_from_the_root_and_a_folder_without_kustomization():
    files = committed_output()
    text = files["kustomization.yaml"].decode()
    dropped = dict(files, **{"kustomization.yaml": text.replace("  - llm\n", "").encode()})
    assert [f.path for f in outputchecks.kustomization_findings(dropped)] == ["llm"]
    # Chart files are never expected in a listing: helm-controller reads the chart from Git.
    assert not any("/chart/" in f.path for f in outputchecks.kustomization_findings(dropped))
    flat = {k: v for k, v in files.items() if k != "llm/kustomization.yaml"}
    paths = {f.path: f.message for f in outputchecks.kustomization_findings(flat)}
    assert "a folder without a kustomization.yaml" in paths["llm"]
    # and the root now has to list llm's files itself
    assert "llm/qwen-chat/helmrelease.yaml" in paths and "llm/namespace-llm.yaml" in paths


def test_the_platform_services_are_a_root_of_their_own_and_nothing_is_applied_twice():
    """Two Flux Kustomizations build the output: the models' (the root, which lists
    _platform/flux) and the platform's (_platform). Neither may take the other's objects."""
    files = committed_output()
    root = files["kustomization.yaml"].decode()
    assert "  - _platform/flux\n" in root and "  - _platform\n" not in root
    both = dict(files, **{"kustomization.yaml": root.replace("  - _platform/flux\n",
                                                             "  - _platform/flux\n  - _platform\n").encode()})
    (finding,) = outputchecks.kustomization_findings(both)
    assert finding.path == "_platform" and "two owners" in finding.message
    twice = dict(files, **{"kustomization.yaml": root.replace("  - _platform/flux\n",
                                                              "  - _platform/flux\n  - _platform/ratelimit\n").encode()})
    (finding,) = outputchecks.kustomization_findings(twice)
    assert finding.path == "_platform/ratelimit" and "applied twice" in finding.message
    services = files["_platform/kustomization.yaml"].decode()
    dropped = dict(files, **{"_platform/kustomization.yaml": services.replace("  - ratelimit\n", "").encode()})
    (finding,) = outputchecks.kustomization_findings(dropped)
    assert finding.path == "_platform/ratelimit" and "not listed in _platform/kustomization.yaml" in finding.message


# --- the rate limit service's config (pure) ------------------------------------------------------


def with_ratelimit_config(files: dict[str, bytes], configs: dict[str, dict | str]) -> dict[str, bytes]:
    configmap = _yaml.load(files[outputchecks.RATELIMIT_CONFIGMAP])
    configmap["data"] = {k: v if isinstance(v, str) else yamlout.dump(v) for k, v in configs.items()}
    return dict(files, **{outputchecks.RATELIMIT_CONFIGMAP: yamlout.dump(configmap).encode()})


def limit(key: str, unit: str = "minute", count=10, **more) -> dict:
    return {"key": key, "rate_limit": {"unit": unit, "requests_per_unit": count}, **more}


def test_the_committed_rate_limit_config_loads():
    files = committed_output()
    configmap = _yaml.load(files[outputchecks.RATELIMIT_CONFIGMAP])
    assert configmap["data"], "the examples have a rate limited model"
    assert outputchecks.ratelimit_findings(files) == []


@pytest.mark.parametrize("descriptors, expected", [
    ([limit("remote_address"), limit("remote_address")], "duplicate descriptor 'modelplat.a.m.remote_address'"),
    ([limit("service_account", unit="fortnight")], "invalid unit 'fortnight'"),
    ([limit("service_account", count=-1)], "requests_per_unit -1"),
    ([limit("service_account", count="100")], "requests_per_unit '100'"),
    ([limit("service_account", count=2**32)], "requests_per_unit 4294967296"),
    ([{"key": "k", "rate_limit": {"unit": "minute", "requests_per_unit": 1, "unlimited": True}}], "unlimited"),
    ([{"key": "", "rate_limit": {"unit": "minute", "requests_per_unit": 1}}], "empty or missing key"),
    ([limit("k", burst=3)], "unknown key 'burst'"),
    ([limit("k", descriptors=[limit("v", unit="weekly"), limit("v")])], "invalid unit 'weekly'"),
])
def test_the_rate_limit_service_would_refuse(descriptors, expected):
    files = with_ratelimit_config(committed_output(), {"a.m.yaml": {"domain": "modelplat.a.m", "descriptors": descriptors}})
    messages = [f.message for f in outputchecks.ratelimit_findings(files)]
    assert any(expected in m for m in messages), messages
    assert all(m.startswith(f"{outputchecks.RATELIMIT_CONFIGMAP}: data[a.m.yaml]: ") for m in messages)


def test_rate_limit_values_within_a_level_and_units_the_service_accepts_pass():
    descriptors = [limit("header", value="a", unit="Second"), limit("header", value="b", unit="day"),
                   limit("header", unit="hour", descriptors=[limit("header", unit="minute")]),
                   {"key": "open", "rate_limit": {"unlimited": True}}]
    files = with_ratelimit_config(committed_output(), {"a.m.yaml": {"domain": "modelplat.a.m", "descriptors": descriptors}})
    assert outputchecks.ratelimit_findings(files) == []


def test_two_files_with_one_domain_are_both_reported():
    config = {"domain": "modelplat.shared", "descriptors": [limit("remote_address")]}
    files = with_ratelimit_config(committed_output(), {"a.m.yaml": config, "b.n.yaml": config})
    findings = outputchecks.ratelimit_findings(files)
    assert sorted(f.path.partition("#")[2] for f in findings) == ["a.m.yaml", "b.n.yaml"]
    assert all("duplicate domain 'modelplat.shared'" in f.message for f in findings)


def test_a_config_file_that_is_not_yaml_is_reported_on_its_key():
    files = with_ratelimit_config(committed_output(), {"a.m.yaml": "domain: [unclosed\n"})
    (finding,) = outputchecks.ratelimit_findings(files)
    assert finding.path.endswith("#a.m.yaml") and "not valid YAML" in finding.message


# --- tool versions -------------------------------------------------------------------------------


def test_tool_versions_are_read_from_their_output():
    pattern = tools._VERSION_ARGS["promtool"][1]
    assert tools.parse_version("promtool, version 3.16.0 (branch: HEAD, revision: abc)\n", pattern) == "3.16.0"
    # a Go module build prints no version at all
    assert tools.parse_version("promtool, version  (branch: , revision: unknown)\n  go version: go1.26\n",
                               pattern) == "unknown"
    assert tools.parse_version("v5.8.0\n") == "v5.8.0"
    assert tools.parse_version("") == "unknown"


# --- lint with the real tools --------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples_report(examples_lint):
    result = examples_lint
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=2)[:4000]
    return report


def test_lint_of_the_examples_passes_every_new_check(examples_report):
    assert [m["file"] for m in examples_report["models"]] == sorted(
        str(p.relative_to(REPO)) for p in EXAMPLES.glob("*/*.yaml"))
    for model in examples_report["models"]:
        assert list(model["checks"]) == list(linting.CHECKS)
        for check in ("istioctl validate", "promtool", "kustomize build", "ratelimit config"):
            assert model["checks"][check] == {"status": "pass", "detail": ""}, (model["file"], check)
    assert set(examples_report["tools"]) == set(linting.TOOLS)
    assert all(v not in ("missing", "unknown", "") for v in examples_report["tools"].values()), examples_report["tools"]
    assert examples_report["missingTools"] == []


def tamper(files: dict[str, bytes]) -> dict[str, bytes]:
    """The examples' output with one problem of each kind the new checks are there to catch."""
    files = dict(files)

    def edit(path: str, old: str, new: str) -> None:
        text = files[path].decode()
        assert old in text, (path, old)
        files[path] = text.replace(old, new, 1).encode()

    # A route with both mirror and mirrors: Istio refuses it, kubeconform's schema lets it pass.
    edit("fraud/xgb-scorer/chart/templates/virtualservice.yaml", "      mirrorPercentage:",
         "      mirrors:\n        - destination:\n            host: other.fraud.svc.cluster.local\n"
         "      mirrorPercentage:")
    # A misspelt field inside the EnvoyFilter's typed_config (an Envoy proto, opaque to kubeconform).
    edit("llm/qwen-chat/chart/templates/envoyfilter-ratelimit.yaml", "failure_mode_deny:", "failure_mode_denyy:")
    # A broken alert expression.
    edit("llm/qwen-chat/chart/templates/prometheusrule.yaml", "sum by (le) (rate", "sum by (le (rate")
    # A stale entry (a model that is gone) and a file nobody lists.
    edit("ml-demo/kustomization.yaml", "  - iris/helmrelease.yaml\n",
         "  - iris/helmrelease.yaml\n  - retired/helmrelease.yaml\n")
    files["llm-70b/llama-70b/extra.yaml"] = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n"
    # A rate limit config the service would refuse: a duplicate key and a unit it does not know.
    configmap = _yaml.load(files[outputchecks.RATELIMIT_CONFIGMAP])
    key = "llm.qwen-chat.yaml"  # the model's request limits
    config = _yaml.load(configmap["data"][key])
    config["descriptors"].append(dict(config["descriptors"][0]))
    config["descriptors"][1]["rate_limit"] = {"unit": "fortnight", "requests_per_unit": 100}
    configmap["data"][key] = yamlout.dump(config)
    files[outputchecks.RATELIMIT_CONFIGMAP] = yamlout.dump(configmap).encode()
    return files


@pytest.fixture(scope="module")
def tampered_report(lint_tools):
    original = render.render_tree
    render.render_tree = lambda plans, platform: tamper(original(plans, platform))
    try:
        # without the render cache, whose charts would be the untampered ones
        return linting.lint([EXAMPLES], require_tools=True, use_cache=False).as_dict()
    finally:
        render.render_tree = original


def checks_of(report: dict, suffix: str) -> dict:
    (model,) = [m for m in report["models"] if m["file"].endswith(suffix)]
    return model["checks"]


def test_istioctl_names_file_resource_field_and_tool(tampered_report):
    assert tampered_report["ok"] is False
    xgb = checks_of(tampered_report, "fraud/xgb-scorer.yaml")
    assert xgb["kubeconform"]["status"] == "pass", "kubeconform does not catch these: istioctl is why it runs"
    assert xgb["istioctl validate"]["status"] == "fail"
    detail = xgb["istioctl validate"]["detail"]
    assert "fraud/xgb-scorer/chart/templates/virtualservice.yaml: VirtualService/xgb-scorer: istioctl:" in detail
    assert "both mirror and mirrors" in detail

    qwen = checks_of(tampered_report, "llm/qwen-chat.yaml")
    assert qwen["kubeconform"]["status"] == "pass"
    detail = qwen["istioctl validate"]["detail"]
    assert qwen["istioctl validate"]["status"] == "fail"
    assert "llm/qwen-chat/chart/templates/envoyfilter-ratelimit.yaml: EnvoyFilter/qwen-chat-ratelimit: istioctl:" in detail
    assert "failure_mode_denyy" in detail
    # the warning every EnvoyFilter gets is not a finding
    assert linting._ENVOYFILTER_NOTICE not in json.dumps(tampered_report)
    # untouched charts pass, though their Istio resources went through the same istioctl run
    assert checks_of(tampered_report, "ml-demo/iris.yaml")["istioctl validate"]["status"] == "pass"


def test_promtool_fails_the_chart_with_the_broken_alert(tampered_report):
    qwen = checks_of(tampered_report, "llm/qwen-chat.yaml")["promtool"]
    assert qwen["status"] == "fail"
    assert qwen["detail"].startswith("llm/qwen-chat/chart/templates/prometheusrule.yaml: PrometheusRule/qwen-chat: promtool:")
    assert "ModelHighLatencyP99" in qwen["detail"] and "parse error" in qwen["detail"]
    assert checks_of(tampered_report, "llama-70b.yaml")["promtool"]["status"] == "pass"


def test_kustomize_reports_the_stale_entry_and_the_unlisted_file(tampered_report):
    wiring = checks_of(tampered_report, linting.WIRING)
    assert wiring["kustomize build"]["status"] == "fail"
    assert "ml-demo/kustomization.yaml: lists 'retired/helmrelease.yaml', which does not exist" in \
        wiring["kustomize build"]["detail"]
    assert "kustomize build:" in wiring["kustomize build"]["detail"]  # kustomize's own refusal, too
    decode = checks_of(tampered_report, "llama-70b.yaml")["kustomize build"]
    assert decode["status"] == "fail"
    assert decode["detail"] == ("llm-70b/llama-70b/extra.yaml: not listed in llm-70b/kustomization.yaml, "
                                "so Flux never applies it")
    assert checks_of(tampered_report, "ml-demo/iris.yaml")["kustomize build"]["status"] == "pass"


def test_the_rate_limit_config_is_refused_on_the_models_row(tampered_report):
    qwen = checks_of(tampered_report, "llm/qwen-chat.yaml")["ratelimit config"]
    assert qwen["status"] == "fail"
    assert "duplicate descriptor 'modelplat.llm.qwen-chat.remote_address'" in qwen["detail"]
    assert "invalid unit 'fortnight'" in qwen["detail"]
    assert checks_of(tampered_report, "fraud/xgb-scorer.yaml")["ratelimit config"]["status"] == "pass"


def test_a_missing_new_tool_is_skipped_or_an_error(tree, tmp_path, lint_tools):
    """Only istioctl, kustomize and promtool missing: their rows are skipped with a warning, and
    --require-tools makes that exit 2. The other tools still run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("helm", "kubeconform", "helm-unittest"):
        (bin_dir / tool).symlink_to(lint_tools[tool])
    root = tree({"demo/iris.yaml": "model:\n  format: sklearn\n  storageUri: s3://m/iris\n"})
    env = {"PATH": "/usr/bin:/bin", "MODELPLAT_TOOLS_DIR": str(bin_dir)}
    relaxed = modelplat("lint", str(root), "--format", "json", env=env)
    report = json.loads(relaxed.stdout)
    assert relaxed.returncode == 0, relaxed.stdout
    assert sorted(report["missingTools"]) == ["istioctl", "kustomize", "promtool"]
    checks = report["models"][0]["checks"]
    for row, tool in (("istioctl validate", "istioctl"), ("promtool", "promtool"), ("kustomize build", "kustomize")):
        assert checks[row] == {"status": "skipped", "detail": f"{tool} not found"}
    assert checks["kubeconform"]["status"] == "pass" and checks["ratelimit config"]["status"] == "pass"
    strict = modelplat("lint", str(root), env=dict(env, MODELPLAT_REQUIRE_TOOLS="1"))
    assert strict.returncode == 2
    assert "not found: istioctl, kustomize, promtool" in strict.stdout
    assert "tools: helm v3" in strict.stdout and "istioctl missing" in strict.stdout


def test_split_manifests_parses_only_the_groups_asked_for_and_finds_the_same_documents():
    """lint's derived files need the Istio and Prometheus documents of a chart's helm template
    output; a document whose apiVersion line names another group is not parsed, and what is
    found is what filtering every parsed document would find."""
    from modelplat.manifests import split_manifests

    output = "\n".join([
        "---", "# Source: demo/templates/isvc.yaml", "apiVersion: serving.kserve.io/v1beta1",
        "kind: InferenceService", "metadata:", "  name: iris", "spec: {predictor: {}}",
        "---", "# Source: demo/templates/vs.yaml", 'apiVersion: "networking.istio.io/v1"  # quoted',
        "kind: VirtualService", "metadata:", "  name: iris", "  namespace: demo",
        "---", "# Source: demo/templates/rules.yaml", "kind: PrometheusRule", "metadata: {name: alerts}",
        "apiVersion: monitoring.coreos.com/v1",
        "---", "# Source: demo/templates/odd.yaml", "{apiVersion: security.istio.io/v1, kind: PeerAuthentication,",
        "  metadata: {name: flow}}",
        "---", "# Source: demo/templates/bad.yaml", "apiVersion: v1", "kind: [unclosed",
    ])

    def wanted(group: str) -> bool:
        return group.endswith(".istio.io") or group == "monitoring.coreos.com"

    everything = split_manifests(output)
    assert [d.kind for d in everything] == ["InferenceService", "VirtualService", "PrometheusRule",
                                            "PeerAuthentication"]
    found = split_manifests(output, wanted)
    assert found == [d for d in everything if wanted(d.group)]
    assert [(d.kind, d.namespace, d.source) for d in found] == [
        ("VirtualService", "demo", "templates/vs.yaml"), ("PrometheusRule", "", "templates/rules.yaml"),
        ("PeerAuthentication", "", "templates/odd.yaml")]
