"""A real kube-apiserver with the upstream CRDs accepts every object modelplat renders.

The server-side dry-run runs what kubeconform cannot: the CRDs' CEL rules, defaulting, structural
pruning (refused, with --validate=strict) and the core kinds' own validation. Also
`modelplat lint --server-dry-run` end to end against that server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelplat import dryrun, lint, pipeline, render, tools, yamlout

from conftest import EXAMPLES, SKLEARN, modelplat, need_tool
from kube_apiserver import free_port

_yaml = YAML(typ="safe")

# Namespaces the output expects to exist without creating them: Flux's own and the monitoring
# stack's (where the prometheus-adapter HelmRelease goes).
PREINSTALLED_NAMESPACES = ("flux-system", "monitoring")
EMITTED_KINDS = {"AuthorizationPolicy", "EnvoyFilter", "GitRepository", "HelmRelease", "HelmRepository",
                 "InferenceService", "LLMInferenceService", "InferenceObjective", "Kustomization", "Namespace", "NetworkAttachmentDefinition", "PeerAuthentication",
                 "PodDisruptionBudget", "HorizontalPodAutoscaler", "PrometheusRule", "RequestAuthentication",
                 "Telemetry", "VirtualService", "ConfigMap", "Deployment", "Service"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The examples rendered as lint renders them: every chart through `helm template` with its
    HelmRelease's values, kept as manifests.yaml beside the chart. → (root, plans)"""
    helm = need_tool("helm")
    result = pipeline.run([EXAMPLES], None)
    assert result.plans and not [d for d in result.diagnostics if d.severity == "error"]
    root = tmp_path_factory.mktemp("rendered")
    for rel, content in render.render_tree(result.plans, result.platform).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    for p in result.plans:
        values = root / p.model_dir / "values-from-helmrelease.yaml"
        values.write_text(yamlout.dump(p.chart_values))
        out = tools.run([helm, "template", p.name, str(root / p.chart_dir), "-f", str(values),
                         "--namespace", p.namespace])
        assert out.ok, out.output
        (root / p.model_dir / "manifests.yaml").write_text(out.output + "\n")
    return root, result.plans


@pytest.fixture(scope="module")
def cluster(kube_apiserver, rendered):
    """The session's API server with every namespace the examples use created for real."""
    root, plans = rendered
    namespaces = [m for m in dryrun.collect(root, plans) if m.kind == "Namespace"]
    kube_apiserver.kubectl_run("apply", "--server-side", "-f", "-", input="---\n".join(m.text for m in namespaces))
    for name in PREINSTALLED_NAMESPACES:
        kube_apiserver.kubectl_run("create", "namespace", name, check=False)
    return kube_apiserver


def _truthy_leaves(node, path=()):
    """Paths of every non-empty value. Empty and false values are left out: core kinds omit
    them from their answer (omitempty), which is not pruning."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _truthy_leaves(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _truthy_leaves(value, path + (index,))
    elif node not in (None, False, 0, ""):
        yield path


def _lookup(node, path):
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _dry_run_json(server, manifests: list[dryrun.Manifest], workdir: Path, namespace: str, *extra: str):
    workdir.mkdir(parents=True)
    for i, m in enumerate(manifests):
        (workdir / f"{i:04d}.yaml").write_text(m.text)
    args = ["apply", "--dry-run=server", "-o", "json", "-f", str(workdir), *extra]
    proc = server.kubectl_run(*args, *(["--namespace", namespace] if namespace else []), check=False)
    return proc


def test_every_rendered_object_passes_a_strict_server_dry_run_unpruned(cluster, rendered, tmp_path):
    root, plans = rendered
    manifests = dryrun.collect(root, plans)
    assert {m.kind for m in manifests} == EMITTED_KINDS
    # Nothing of the output is left out: every object file outside the charts, and every chart.
    sources = {m.source for m in manifests}
    for path in root.rglob("*.yaml"):
        rel = path.relative_to(root).as_posix()
        if "/chart/" not in rel and path.name not in dryrun.NOT_OBJECTS:
            assert rel in sources
    assert {m.owner for m in manifests if "/chart/templates/" in m.source} == {p.model_dir for p in plans}

    groups: dict[str, list[dryrun.Manifest]] = {}
    for m in manifests:
        groups.setdefault(m.namespace, []).append(m)
    started = time.monotonic()
    checked = 0
    for n, (namespace, group) in enumerate(sorted(groups.items())):
        proc = _dry_run_json(cluster, group, tmp_path / str(n), namespace, "--validate=strict")
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        returned = answer["items"] if answer.get("kind") == "List" else [answer]
        assert len(returned) == len(group)
        for sent_manifest, back in zip(group, returned):
            sent = _yaml.load(sent_manifest.text)
            assert (back["kind"], back["metadata"]["name"]) == (sent["kind"], sent["metadata"]["name"])
            dropped = [".".join(map(str, path)) for path in _truthy_leaves(sent) if _lookup(back, path) is None]
            assert not dropped, f"{sent_manifest.label}: the API server dropped {dropped}"
            checked += 1
    print(f"server dry-run of {checked} objects in {len(groups)} kubectl calls: {time.monotonic() - started:.1f}s")
    assert checked == len(manifests)


def _isvc(rendered) -> dryrun.Manifest:
    root, plans = rendered
    (isvc,) = [m for m in dryrun.collect(root, plans) if m.kind == "InferenceService" and m.name == "iris"]
    return isvc


def _with(manifest: dryrun.Manifest, change) -> dryrun.Manifest:
    obj = _yaml.load(manifest.text)
    change(obj)
    return dataclasses.replace(manifest, text=yamlout.dump(obj))


def test_wrong_inferenceservice_fields_are_refused_naming_file_object_and_field(cluster, rendered, tmp_path):
    isvc = _isvc(rendered)
    misspelt = _with(isvc, lambda obj: obj["spec"]["predictor"].__setitem__("minReplica", 2))  # minReplicas
    wrong_type = _with(isvc, lambda obj: obj["spec"]["predictor"].__setitem__("minReplicas", "two"))
    refused = dryrun.refusals(cluster.kubectl, [isvc, misspelt, wrong_type], tmp_path,
                              kubeconfig=str(cluster.kubeconfig), namespace="ml-demo")
    assert sorted(refused) == [1, 2], refused  # the rendered original passes beside them
    prefix = "ml-demo/iris/chart/templates/inferenceservice.yaml: InferenceService ml-demo/iris: "
    assert refused[1].startswith(prefix) and refused[2].startswith(prefix)
    assert 'unknown field "spec.predictor.minReplica"' in refused[1] and "must be of type integer" not in refused[1]
    assert "spec.predictor.minReplicas" in refused[2] and "must be of type integer" in refused[2]
    for message in refused.values():
        assert str(tmp_path) not in message  # kubectl's scratch file is replaced by the template it came from


def test_without_strict_validation_the_misspelt_field_would_be_pruned_silently(cluster, rendered, tmp_path):
    """Why lint passes --validate=strict: the server's default is to drop unknown fields and succeed."""
    bad = _with(_isvc(rendered), lambda obj: obj["spec"]["predictor"].__setitem__("minReplica", 2))
    proc = _dry_run_json(cluster, [bad], tmp_path / "lenient", "ml-demo", "--validate=false")
    assert proc.returncode == 0, proc.stderr
    assert "minReplica" not in json.loads(proc.stdout)["spec"]["predictor"]


def test_a_crd_cel_rule_is_enforced(cluster, rendered, tmp_path):
    """HelmRelease's rule "either chart or chartRef must be set" only exists as CEL in its CRD."""
    root, plans = rendered
    (release,) = [m for m in dryrun.collect(root, plans) if m.kind == "HelmRelease" and m.name == "iris"]
    both = _with(release, lambda obj: obj["spec"].__setitem__("chartRef", {"kind": "OCIRepository", "name": "iris"}))
    refused = dryrun.refusals(cluster.kubectl, [both], tmp_path, kubeconfig=str(cluster.kubeconfig))
    assert "either chart or chartRef must be set" in refused[0]
    assert refused[0].startswith("ml-demo/iris/helmrelease.yaml: HelmRelease ml-demo/iris: ")


# --- modelplat lint --server-dry-run, through the real CLI --------------------------------------


def _lint(server, *args: str, env: dict | None = None):
    result = modelplat("lint", *args, "--server-dry-run", "--kubeconfig", str(server.kubeconfig), "--format", "json",
                       env={"KUBECACHEDIR": str(server.workdir / "kube-cache"), **(env or {})})
    return result, json.loads(result.stdout)


def test_lint_server_dry_run_passes_every_example(cluster):
    need_tool("kubeconform")
    need_tool("helm-unittest")
    started = time.monotonic()
    result, report = _lint(cluster, str(EXAMPLES), "--require-tools")
    print(f"lint --server-dry-run over the examples: {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, json.dumps(report, indent=2)
    assert len(report["models"]) == len(pipeline.run([EXAMPLES], None).plans)  # and no (flux wiring) row
    for model in report["models"]:
        assert model["checks"]["server dry-run"] == {"status": "pass", "detail": ""}, model
    assert report["tools"]["kubectl"].startswith("v1.")
    # The one finding: the LLM canary example's warning about Istio's endpoint picker (documented).
    assert [(d["file"], d["code"], d["severity"]) for d in report["diagnostics"]] == [
        ("examples/llm-native/qwen-chat.yaml", "llm-canary-picker", "warning")]


def test_lint_checks_the_namespace_of_a_new_project_and_skips_what_it_holds(cluster, tree):
    root = tree({"brand-new/iris.yaml": SKLEARN})
    result, report = _lint(cluster, str(root))
    assert result.returncode == 0, json.dumps(report, indent=2)
    (model,) = report["models"]
    check = model["checks"]["server dry-run"]
    assert check["status"] == "skipped"
    assert "namespace brand-new does not exist in the cluster yet" in check["detail"]
    (warning,) = report["diagnostics"]
    assert (warning["code"], warning["severity"], warning["file"]) == ("namespace-not-in-cluster", "warning", model["file"])
    # Only the dry-run object was made: the namespace still does not exist.
    assert cluster.kubectl_run("get", "namespace", "brand-new", check=False).returncode != 0


ADMISSION_POLICY = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: isvc-needs-cost-center
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: ["serving.kserve.io"]
        apiVersions: ["*"]
        operations: ["CREATE", "UPDATE"]
        resources: ["inferenceservices"]
  validations:
    - expression: "has(object.metadata.labels) && 'cost-center' in object.metadata.labels"
      message: every InferenceService needs a cost-center label
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: isvc-needs-cost-center
spec:
  policyName: isvc-needs-cost-center
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        modelplat.io/policy-demo: "true"
"""


def test_lint_fails_a_model_the_clusters_own_admission_policy_refuses(cluster, tree):
    """A check only the user's cluster can make: here a ValidatingAdmissionPolicy (bound to one
    labelled namespace, so it touches no other test) that wants a label modelplat does not set."""
    cluster.kubectl_run("apply", "-f", "-", input=ADMISSION_POLICY)
    cluster.kubectl_run("create", "namespace", "policy-demo", check=False)
    cluster.kubectl_run("label", "--overwrite", "namespace", "policy-demo", "modelplat.io/policy-demo=true")
    root = tree({"policy-demo/iris.yaml": SKLEARN})
    # The text report this time: the table gains the column, and the failure is printed in full.
    # A relative input keeps the file column short enough for the table to fit on one line.
    result = modelplat("lint", root.name, "--server-dry-run", "--kubeconfig", str(cluster.kubeconfig),
                       cwd=root.parent, env={"KUBECACHEDIR": str(cluster.workdir / "kube-cache")})
    assert result.returncode == 1, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if "values file" in line)
    assert [cell.strip() for cell in header.split("┃")][-2] == "server dry-run"  # the last column
    (row,) = [line for line in result.stdout.splitlines() if "policy-demo/iris.yaml " in line]
    cells = [cell.strip() for cell in row.split("│")[2:-1]]
    assert cells[-1] == "FAIL" and set(cells[:-1]) == {"pass"}, cells
    failure = result.stdout[result.stdout.index("policy-demo/iris.yaml: server dry-run failed"):].splitlines()
    assert failure[1].startswith(
        "policy-demo/iris/chart/templates/inferenceservice.yaml: InferenceService policy-demo/iris: ")
    assert "every InferenceService needs a cost-center label" in failure[1]
    assert failure[2].startswith("tools: ")  # only that object: its HelmRelease and the rest passed


def test_lint_without_kubectl_skips_the_dry_run_or_fails_with_require_tools(tree, tmp_path):
    tools_dir = tmp_path / "bin"
    tools_dir.mkdir()
    for tool in lint.TOOLS:  # every tool lint runs, but not kubectl
        os.symlink(need_tool(tool), tools_dir / tool)
    root = tree({"ml/iris.yaml": SKLEARN})
    env = {"PATH": str(tools_dir), "MODELPLAT_TOOLS_DIR": str(tools_dir)}
    result = modelplat("lint", str(root), "--server-dry-run", "--format", "json", env=env)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["missingTools"] == ["kubectl"]
    assert report["models"][0]["checks"]["server dry-run"] == {"status": "skipped", "detail": "kubectl not found"}
    result = modelplat("lint", str(root), "--server-dry-run", "--require-tools", env=env)
    assert result.returncode == 2
    assert "not found: kubectl" in result.stdout


def test_lint_against_an_unreachable_cluster_is_a_usage_error(tree, tmp_path):
    need_tool("kubectl")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{free_port()}\n"
        "users:\n- name: someone\n  user:\n    token: abc\n"
        "contexts:\n- name: gone\n  context:\n    cluster: gone\n    user: someone\ncurrent-context: gone\n")
    root = tree({"ml/iris.yaml": SKLEARN})
    result = modelplat("lint", str(root), "--server-dry-run", "--kubeconfig", str(kubeconfig),
                       env={"KUBECACHEDIR": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot read the cluster's namespaces" in result.stderr
    assert "was refused" in result.stderr
