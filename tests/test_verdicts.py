"""Lint reuses a tool's verdict on a chart only while nothing the tool read changed
(modelplat/verdicts.py): the cost of a lint follows the change, and a cached run says exactly
what a `--no-cache` run says."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from conftest import CPU_FILE, modelplat

WINE = "model:\n  format: sklearn\n  storageUri: s3://m/wine\nobservability:\n  alerts:\n    enabled: true\n"


@pytest.fixture
def counted(tmp_path: Path, lint_tools):
    """helm, helm-unittest and kubeconform behind shims that log each run (first on PATH, as a user's own
    install would be), and a private cache; returns (env, calls())."""
    shims, log = tmp_path / "shims", tmp_path / "calls.log"
    shims.mkdir()
    for tool in ("helm", "helm-unittest", "kubeconform", "istioctl", "promtool", "kustomize"):
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexec "{lint_tools[tool]}" "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "MODELPLAT_CACHE_DIR": str(tmp_path / "cache")}

    def calls() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return [line for line in lines if "version" not in line and line != "kubeconform -v"]  # version queries

    return env, calls, shims


@pytest.fixture
def counted_here(counted, monkeypatch, request):
    """`counted`, for lint run in this process: its environment set here, and the tools looked
    up afresh (the shims first on PATH)."""
    from modelplat import tools

    for name, value in counted[0].items():
        monkeypatch.setenv(name, value)
    for cached in (tools.find, tools.version):
        cached.cache_clear()
        request.addfinalizer(cached.cache_clear)
    return counted


def _lint(root: Path, env: dict, *extra: str) -> dict:
    proc = modelplat("lint", str(root), "--require-tools", "--format", "json", *extra, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    report.pop("tools")  # the shims' versions are read afresh each run either way
    return report


def _charts(calls: list[str]) -> set[str]:
    """Which charts the tools ran on (the chart folder's model name)."""
    found = set()
    for line in calls:
        for word in line.split():
            if word.endswith("/chart"):
                found.add(word.rsplit("/", 2)[-2])
    return found


def test_an_unchanged_chart_reuses_its_verdicts_and_a_changed_one_runs_again(tree, counted):
    env, calls, _ = counted
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE})
    first = _lint(root, env)
    ran = calls()
    assert _charts(ran) == {"iris", "wine"}
    (kubeconform,) = [line for line in ran if line.startswith("kubeconform ")]
    assert "demo/iris/manifests.yaml" in kubeconform and "demo/wine/manifests.yaml" in kubeconform
    assert len(calls()) == 0
    again = _lint(root, env)
    assert calls() == [] and again == first  # every verdict reused, the same report
    # An edit that changes wine's Deployment, its AuthorizationPolicy and its alert rules.
    (root / "demo/wine.yaml").write_text(WINE + "    p99LatencySeconds: 3\nreplicaCount: 2\nauth:\n"
                                         "  allowedNamespaces: [ops]\n")
    changed = _lint(root, env)
    ran = calls()
    helm_runs = [line for line in ran if line.startswith("helm")]
    # helm lint, helm template, and helm-unittest twice: the chart's suite without the values
    # schema, the schema's suite with it
    assert _charts(helm_runs) == {"wine"} and len(helm_runs) == 4
    unittest_runs = sorted(line for line in helm_runs if line.startswith("helm-unittest "))
    assert "--skip-schema-validation -f tests/chart_test.yaml" in unittest_runs[0]
    assert "--skip-schema" not in unittest_runs[1] and "-f tests/schema_test.yaml" in unittest_runs[1]
    (kubeconform,) = [line for line in ran if line.startswith("kubeconform ")]
    assert "demo/wine/manifests.yaml" in kubeconform and "demo/iris/" not in kubeconform  # its files only
    # kustomize builds the changed project's folder only (the platform's folders are reused).
    builds = [line for line in ran if line.startswith("kustomize ")]
    assert builds and all(line.endswith("/demo") for line in builds), builds
    # istioctl and promtool judge each file on their own: they read the changed chart's files only.
    for tool in ("istioctl", "promtool"):
        (line,) = [line for line in ran if line.startswith(tool + " ")]
        assert "demo/wine/" in line and "demo/iris/" not in line, line
    uncached = _lint(root, env, "--no-cache")
    assert _charts(calls()) == {"iris", "wine"}
    assert uncached == changed


def test_only_what_a_tool_reads_again_is_written(tree, counted_here, monkeypatch):
    """With one model edited, lint writes its chart and the files the tools read of it; an
    unchanged model's files (its Flux objects, its manifests, istioctl's and promtool's inputs)
    stay in memory, and the report is a --no-cache run's."""
    from modelplat import lint

    env, calls, _ = counted_here
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE, "other/alpha.yaml": WINE})
    written: list[str] = []
    real = lint._write

    def write(path: Path, data: bytes) -> None:
        parts = Path(path).parts
        at = next(i for i, part in enumerate(parts) if part.startswith("modelplat-lint-"))
        written.append("/".join(parts[at + 1:]))
        real(path, data)

    monkeypatch.setattr(lint, "_write", write)
    lint.lint([root], require_tools=True)  # nothing cached: every file is read, so written
    assert {"demo/iris/manifests.yaml", "other/alpha/.lint/istio.yaml", "other/alpha/.lint/prometheusrule-0.yaml",
            "other/alpha/helmrelease.yaml"} <= set(written)
    written.clear()
    calls()
    (root / "demo/wine.yaml").write_text(WINE + "replicaCount: 2\n")
    report = lint.lint([root], require_tools=True)
    ran = calls()
    assert _charts(ran) == {"wine"}, (ran, report.as_dict())
    assert {"demo/wine/manifests.yaml", "demo/wine/.lint/istio.yaml", "demo/wine/helmrelease.yaml"} <= set(written)
    assert "demo/wine/.lint/prometheusrule-0.yaml" not in written  # its rules are the same: promtool's findings reused
    # kustomize builds the edited project: its rendered files, not what lint made of the others
    assert not [rel for rel in written if rel.startswith("other/") or rel.startswith("demo/iris/")
                and not rel.endswith(("helmrelease.yaml", "kustomization.yaml"))], written
    assert report.ok and report.as_dict() == lint.lint([root], require_tools=True, use_cache=False).as_dict()


def test_a_rebuilt_tool_is_a_new_key(tree, counted):
    env, calls, shims = counted
    root = tree({"demo/iris.yaml": CPU_FILE})
    _lint(root, env)
    calls()
    shim = shims / "helm"
    shim.write_text(shim.read_text() + "# rebuilt\n")  # same version, another binary
    _lint(root, env)
    assert {line.split()[1] for line in calls()} == {"lint", "template"}  # helm's runs only


def test_a_failing_verdict_is_reused_with_its_message_in_this_runs_folder(tree, counted):
    """The verdict stores the tool's output with lint's temporary folder as a placeholder, so a
    reused failure names this run's files."""
    env, calls, shims = counted
    shim = shims / "helm-unittest"
    shim.write_text(shim.read_text().replace("exec ", 'echo "broken: $4/templates/x.yaml"; exit 1\n# '))
    root = tree({"demo/iris.yaml": CPU_FILE})
    first = _lint(root, env)
    assert calls()
    second = _lint(root, env)
    assert calls() == []

    def detail(report):
        (model,) = report["models"]
        return model["checks"]["helm unittest"]

    folders = [re.search(r"(\S*modelplat-lint-[^/]+)/", detail(r)["detail"]).group(1) for r in (first, second)]
    assert detail(first)["status"] == detail(second)["status"] == "fail"
    assert folders[0] != folders[1]
    assert detail(second)["detail"] == detail(first)["detail"].replace(folders[0], folders[1])


def test_an_istioctl_finding_is_kept_with_its_file_and_reused_while_it_is_the_same(tree, counted):
    """istioctl's findings are stored per input file: a cached run fails the same model with the
    same words, without running istioctl, until that model's Istio resources change."""
    env, calls, shims = counted
    shim = shims / "istioctl"
    shim.write_text(shim.read_text().replace(
        "exec ", 'case "$*" in *demo/iris/*) printf "Error: 1 error occurred:\\n\\t* AuthorizationPolicy/demo/iris: '
                 'invalid: planted\\n"; exit 1;; esac\nexec '))
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE})

    def istio(report) -> dict[str, tuple[str, str]]:
        return {Path(m["file"]).stem: (m["checks"]["istioctl validate"]["status"],
                                      m["checks"]["istioctl validate"]["detail"]) for m in report["models"]}

    first = _lint(root, env)
    assert [line for line in calls() if line.startswith("istioctl ")]
    assert istio(first)["iris"][0] == "fail" and "planted" in istio(first)["iris"][1]
    assert istio(first)["wine"] == ("pass", "")
    again = _lint(root, env)
    assert not [line for line in calls() if line.startswith("istioctl ")]
    assert istio(again) == istio(first)
    assert istio(_lint(root, env, "--no-cache")) == istio(first)


def test_kustomize_folders_built_apart_still_refuse_an_object_built_twice(tmp_path, lint_tools):
    """A root that lists folders is built folder by folder (each build reused while its files are
    the same); the union must still hold each object once, as one kustomize build would say."""
    from modelplat import lint, verdicts
    from modelplat.lint import Check, ModelResult

    def kustomization(*resources: str) -> bytes:
        return ("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
                + "".join(f"  - {r}\n" for r in resources)).encode()

    namespace = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shared\n"
    files = {"kustomization.yaml": kustomization("a", "b"), "a/kustomization.yaml": kustomization("ns.yaml"),
             "a/ns.yaml": namespace, "b/kustomization.yaml": kustomization("ns.yaml"), "b/ns.yaml": namespace}
    root = tmp_path / "out"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    results = []
    for _ in range(2):  # the second run from the cache
        wiring = ModelResult(lint.WIRING)
        cache = verdicts.Verdicts(root, tmp_path / "cache")
        lint._kustomize(root, files, [], wiring, cache, lint._Disk())  # the files are on disk already
        cache.flush()
        cache.close()
        results.append(wiring.checks.get("kustomize build", Check("pass")))
    assert results[0] == results[1] and results[0].status == "fail"
    assert "Namespace shared is also built by a" in results[0].detail, results[0].detail


def test_a_failing_schema_suite_fails_the_chart_s_unittest_check(tree, counted, lint_tools):
    """The chart's suite runs without the values schema and the schema's suite with it: either one
    failing is the chart's `helm unittest` failure, with that run's output."""
    env, calls, shims = counted
    shim = shims / "helm-unittest"
    shim.write_text('#!/bin/sh\ncase "$*" in *schema_test.yaml*) echo "schema suite: 1 failed"; exit 1;; esac\n'
                    f'exec "{lint_tools["helm-unittest"]}" "$@"\n')
    root = tree({"demo/iris.yaml": CPU_FILE})
    report = _lint(root, env)
    (model,) = report["models"]
    assert model["checks"]["helm unittest"] == {"status": "fail", "detail": "schema suite: 1 failed"}
    assert model["checks"]["helm lint"]["status"] == "pass" and not report["ok"]


def test_charts_share_a_process_and_each_keeps_its_own_verdict(tree, counted, lint_tools):
    """helm lint and helm-unittest take several charts a process. A process that fails is run
    again chart by chart: the failing chart fails with its own run's message, its neighbours pass,
    and a cached run and a --no-cache run say the same."""
    env, calls, shims = counted
    shim = shims / "helm-unittest"
    shim.write_text('#!/bin/sh\n'
                    f'echo "helm-unittest $*" >> "{shims.parent / "calls.log"}"\n'
                    'case "$*" in *chart_test.yaml*demo/h/chart*) echo "h is broken ($# arguments)"; exit 1;; esac\n'
                    f'exec "{lint_tools["helm-unittest"]}" "$@"\n')
    names = "abcdefghi"
    root = tree({f"demo/{name}.yaml": CPU_FILE.replace("/iris", f"/{name}") for name in names})
    # One worker, 27 charts to judge in batches (helm lint, and two suites each): at least four
    # processes, so seven charts a process: [a..g] [h i] for each.
    first = _lint(root, env, "--jobs", "1")
    ran = calls()
    lints = [line for line in ran if line.startswith("helm lint ")]
    assert sorted(len(_charts([line])) for line in lints) == [2, 7] and _charts(lints) == set(names), lints
    assert "-f " not in " ".join(lints)  # the chart's own values.yaml is the HelmRelease's values
    assert len([line for line in ran if line.startswith("helm template ")]) == 9
    suites_run = [line for line in ran if line.startswith("helm-unittest ") and "chart_test.yaml" in line]
    # [a..g] passes; [h i] fails and runs again as [h] and [i].
    assert sorted(len(_charts([line])) for line in suites_run) == [1, 1, 2, 7], suites_run
    by_name = {model["name"]: model["checks"]["helm unittest"] for model in first["models"] if model["name"]}
    # h's own run's words (five arguments: the flags and one chart), not the batch's
    assert by_name["h"] == {"status": "fail", "detail": "h is broken (5 arguments)"}
    assert all(by_name[name] == {"status": "pass", "detail": ""} for name in names if name != "h"), by_name
    assert _lint(root, env, "--jobs", "1") == first and calls() == []
    assert _lint(root, env, "--no-cache") == first
    assert _charts(calls()) == set(names)


def test_past_its_memory_budget_lint_reads_files_back_from_a_temporary_file_and_says_the_same(
        tree, counted_here, monkeypatch):
    """lint's memory follows one model, not the repository: past HELD_MAX, the rendered files and
    the tools' inputs go to a temporary file. With nothing kept in memory, an edit still runs the
    tools on the edited chart alone, and the report is an in-memory --no-cache run's."""
    from modelplat import lint

    env, calls, _ = counted_here
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE, "other/alpha.yaml": WINE})
    lint.lint([root], require_tools=True)
    calls()
    spilled: list[int] = []
    keep = lint._Spill.keep

    def counting(self, data: bytes):
        kept = keep(self, data)
        if kept.__class__ is int:  # where it went in the file
            spilled.append(len(data))
        return kept

    monkeypatch.setattr(lint._Spill, "keep", counting)
    monkeypatch.setattr(lint, "HELD_MAX", 0)
    (root / "demo/wine.yaml").write_text(WINE + "replicaCount: 2\n")
    edited = lint.lint([root], require_tools=True)
    assert _charts(calls()) == {"wine"}
    assert len(spilled) > 30 and sum(spilled) > 50_000  # every model's own files, and the manifests
    spilled.clear()
    monkeypatch.setattr(lint, "HELD_MAX", 1 << 30)
    assert edited.ok and edited.as_dict() == lint.lint([root], require_tools=True, use_cache=False).as_dict()
    assert not spilled


def test_held_files_past_the_budget_are_read_back_byte_for_byte(tmp_path):
    from modelplat import lint
    from modelplat.output import share

    common = b"every chart's template\n" * 100
    share(common)
    held = lint.Held(100)
    held.add({"p/a/chart/values.yaml": b"1" * 60, "p/a/chart/README.md": b"2" * 60, "p/a/chart/t.yaml": common})
    assert held.spill.kept == 60  # the README went to the file; the shared template is not counted
    held.add({"p/a/chart/values.yaml": b"3" * 10})  # a path given twice: the last wins
    assert held.spill.kept == 10
    assert dict(held) == {"p/a/chart/values.yaml": b"3" * 10, "p/a/chart/README.md": b"2" * 60,
                          "p/a/chart/t.yaml": common}
    assert held["p/a/chart/t.yaml"] is common and "p/a/chart/README.md" in held and len(held) == 3
    held.discard()
    assert len(held) == 0 and held.spill.kept == 0

    disk = lint._Disk(budget=5)
    target = tmp_path / "p/a/manifests.yaml"
    disk.put(target, b"kind: A\n")  # past the budget: in the temporary file
    disk.put(tmp_path / "small", b"abc")
    assert disk.read(str(target)) == b"kind: A\n" and not target.exists()
    disk.write([target])
    assert target.read_bytes() == b"kind: A\n" and disk.read(str(target)) == b"kind: A\n"
    disk.close()


def test_held_keeps_the_files_models_share_once_and_finds_a_charts_files_without_a_scan():
    """10,000 models hold 340,000 files, most of them a chart's templates (the same bytes in every
    chart): a folder's shared files are one dict for every folder that shares them, and a chart's
    files are listed from its folder alone (no scan of every path for each chart)."""
    import pytest

    from modelplat import lint
    from modelplat.output import share

    common = b"every chart's template\n" * 10
    share(common)
    held = lint.Held(1 << 20)
    for name in ("a", "b"):
        held.add({f"p/{name}/chart/templates/t.yaml": common, f"p/{name}/chart/values.yaml": name.encode(),
                  f"p/{name}/helmrelease.yaml": b"kind: HelmRelease\n", "p/kustomization.yaml": name.encode(),
                  "kustomization.yaml": b"resources: [p]\n"})
    assert held._folders["p/a/"][1] is held._folders["p/b/"][1]
    assert len(held) == len(list(held)) == 8 and held["p/kustomization.yaml"] == b"b"  # the last wins
    assert held["p/b/chart/templates/t.yaml"] is common and held["p/a/chart/values.yaml"] == b"a"
    assert "p/a/chart/values.yaml" in held and "p/a/chart" not in held and "p/c/x.yaml" not in held
    assert sorted(held.below("p/")) == sorted(rel for rel in held if rel.startswith("p/"))
    assert len(held.below("p/")) == 7

    class NoScan(dict):
        def items(self):
            pytest.fail("every folder was scanned")

        def __iter__(self):
            pytest.fail("every folder was scanned")

    held._folders = NoScan(held._folders)
    assert sorted(held.below("p/a/chart/")) == ["p/a/chart/templates/t.yaml", "p/a/chart/values.yaml"]
    assert held.below("p/c/chart/") == []
    held._folders = dict(held._folders)
    # A shared file replaced by a folder's own bytes, and an own file by a shared one.
    held.add({"p/a/chart/templates/t.yaml": b"own", "p/b/chart/values.yaml": common})
    assert held["p/a/chart/templates/t.yaml"] == b"own" and held["p/b/chart/templates/t.yaml"] is common
    assert held["p/b/chart/values.yaml"] is common and len(held) == 8
    assert dict(held) == {rel: held[rel] for rel in held.below("p/") + ["kustomization.yaml"]}


def test_verdicts_are_stored_as_they_pile_up_not_only_at_the_end(tmp_path, monkeypatch):
    """A first lint of thousands of charts would keep every helm template output until the end."""
    from modelplat import verdicts

    monkeypatch.setattr(verdicts, "PENDING_MAX", 100)
    first = verdicts.Verdicts(tmp_path / "lint", tmp_path / "cache")
    first.put("small", True, "")
    assert verdicts.Verdicts(tmp_path / "lint", tmp_path / "cache").get("small") is None  # kept for now
    first.put("large", False, "x" * 200)
    other = verdicts.Verdicts(tmp_path / "lint", tmp_path / "cache")
    assert other.get("small") == (True, "") and other.get("large") == (False, "x" * 200)
    first.close()
    other.close()


_OUTPUT = """---
# Source: demo/templates/envoyfilter.yaml
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: lua
  namespace: ns
spec:
  configPatches: []
---
# Source: demo/templates/prometheusrule.yaml
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: alerts
  namespace: ns
spec:
  groups:
  - name: g
    rules: []
"""


def test_what_lint_makes_for_istioctl_and_promtool_is_kept_by_the_disk_not_twice(tmp_path):
    """An LLM chart's Istio documents (EnvoyFilters with their Lua) are 40-85 KB: the texts go to
    the disk (which keeps them within its budget); what tells a finding's owner keeps no copy."""
    from modelplat import lint

    made, istio, rules = lint._scratch(tmp_path / "demo/iris", _OUTPUT)
    assert list(made) == lint._scratch_paths(tmp_path / "demo/iris", True, 1) == [
        str(tmp_path / "demo/iris/manifests.yaml"), str(tmp_path / "demo/iris/.lint/istio.yaml"),
        str(tmp_path / "demo/iris/.lint/prometheusrule-0.yaml")]
    assert made[str(tmp_path / "demo/iris/manifests.yaml")] == (_OUTPUT + "\n").encode()
    assert made[str(tmp_path / "demo/iris/.lint/istio.yaml")].startswith(b"# Source: demo/templates/envoyfilter.yaml")
    assert b"PrometheusRule" not in made[str(tmp_path / "demo/iris/.lint/istio.yaml")]
    assert made[str(tmp_path / "demo/iris/.lint/prometheusrule-0.yaml")] == b"groups:\n  - name: g\n    rules: []\n"
    assert istio == [["EnvoyFilter", "ns", "lua", "templates/envoyfilter.yaml"]]
    assert rules == [["templates/prometheusrule.yaml", "alerts"]]
    disk = lint._Disk(budget=0)
    listed = disk.spill.keep(b'[["EnvoyFilter","ns","lua","templates/envoyfilter.yaml"]]')
    assert listed.__class__ is int  # past the budget, in the temporary file too
    assert lint._istio_docs(disk, listed) == [lint.IstioDoc("EnvoyFilter", "ns", "lua", "templates/envoyfilter.yaml")]
    disk.close()


def test_a_promised_file_read_by_two_threads_at_once_is_made_once_and_read_by_both(tmp_path):
    import threading
    import time

    from modelplat import lint

    disk = lint._Disk(budget=1 << 20)
    target = str(tmp_path / "demo/iris/manifests.yaml")
    started, release, lock, made = threading.Event(), threading.Event(), threading.Lock(), []

    def load() -> None:  # as lint's: once, whoever calls it
        with lock:
            if made:
                return
            started.set()
            release.wait(10)
            disk.put(target, b"kind: A\n", identity=b"run 1")
            made.append(1)
    disk.promise(target, b"run 1", load)
    read: list[bytes] = []
    first = threading.Thread(target=lambda: read.append(disk.read(target)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: read.append(disk.read(target)))
    second.start()
    time.sleep(0.05)  # the second reader is waiting on the file the first is making
    release.set()
    first.join(10)
    second.join(10)
    assert read == [b"kind: A\n", b"kind: A\n"] and made == [1]
    disk.close()


def test_an_unchanged_charts_manifests_are_not_read_back_until_a_tool_must_read_them(tree, counted_here, monkeypatch):
    """What lint made of a chart's helm template output is named by that run (its key and lint's
    code): an unchanged chart's manifests are not read back from the cache at all (at 10,000
    models they were 1.5 GB, most of an edit's lint). A tool rebuilt must judge them again: they
    are made from the helm template verdicts (helm does not run); with those verdicts gone, helm
    template runs again. Every report is the --no-cache run's."""
    import sqlite3

    from modelplat import lint, tools

    env, calls, shims = counted_here
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE, "other/alpha.yaml": WINE})
    made: list[str] = []
    scratch = lint._scratch

    def counting(model_dir, output):
        made.append(Path(model_dir).name)
        return scratch(model_dir, output)

    monkeypatch.setattr(lint, "_scratch", counting)
    first = lint.lint([root], require_tools=True).as_dict()
    assert sorted(made) == ["alpha", "iris", "wine"]
    calls()
    made.clear()
    assert lint.lint([root], require_tools=True).as_dict() == first and made == [] and calls() == []

    def rebuild(tool: str) -> None:  # a new build of the tool: a new identity, no verdict of it reused
        shim = shims / tool
        shim.write_text(shim.read_text() + "# rebuilt\n")
        tools.version.cache_clear()

    rebuild("kubeconform")
    assert lint.lint([root], require_tools=True).as_dict() == first
    ran = calls()
    (kubeconform,) = [line for line in ran if line.startswith("kubeconform ")]
    assert all(f"{chart}/manifests.yaml" in kubeconform for chart in ("demo/iris", "demo/wine", "other/alpha"))
    assert not [line for line in ran if line.startswith("helm")] and sorted(made) == ["alpha", "iris", "wine"]
    made.clear()
    with sqlite3.connect(Path(env["MODELPLAT_CACHE_DIR"]) / "lint.sqlite3") as db:  # helm template's verdicts gone
        db.execute("DELETE FROM verdicts WHERE CAST(data AS TEXT) LIKE '[true, \"---%'")
    rebuild("istioctl")
    assert lint.lint([root], require_tools=True).as_dict() == first
    ran = calls()
    assert sorted(line.split()[2] for line in ran if line.startswith("helm template ")) == ["alpha", "iris", "wine"]
    assert [line for line in ran if line.startswith("istioctl ")] and sorted(made) == ["alpha", "iris", "wine"]
    assert lint.lint([root], require_tools=True, use_cache=False).as_dict() == first


def test_a_model_in_error_is_told_and_the_others_are_linted_without_planning_all_in_memory(tree, counted_here,
                                                                                        monkeypatch):
    """With one model in error, lint used to check every model again and keep every plan and
    every file in memory for the tools (953 MB at 10,000 models). The others are now rendered
    into lint's bounded store without it; the report is the --no-cache run's, which checks
    every model in memory."""
    from modelplat import lint, pipeline, render

    env, calls, _ = counted_here
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE, "other/alpha.yaml": WINE,
                 "other/broken.yaml": "model:\n  format: sklearn\n  storageUri: 7\n"})
    uncached = lint.lint([root], require_tools=True, use_cache=False).as_dict()
    calls()
    assert not uncached["ok"]
    rows = {Path(m["file"]).name: m for m in uncached["models"]}
    assert rows["broken.yaml"]["checks"]["schema+rules"]["status"] == "fail"
    assert all(rows[name]["ok"] for name in ("iris.yaml", "wine.yaml", "alpha.yaml"))

    def refuse(*args, **kwargs):
        pytest.fail("every model planned in memory")

    monkeypatch.setattr(pipeline, "run", refuse)
    monkeypatch.setattr(render, "render_tree", refuse)
    assert lint.lint([root], require_tools=True).as_dict() == uncached
    assert _charts(calls()) == set()  # the verdicts of the --no-cache run
    (root / "demo/wine.yaml").write_text(WINE + "replicaCount: 2\n")
    edited = lint.lint([root], require_tools=True).as_dict()
    assert _charts(calls()) == {"wine"} and [m for m in edited["models"] if not m["ok"]] == [rows["broken.yaml"]]


def test_the_rate_limit_config_is_parsed_again_only_when_it_changed(tree, tmp_path, monkeypatch):
    """Its findings are kept under the ConfigMap's bytes and lint's code (10,000 models: ~4 s a
    run); an edit that changes a limit parses it again, --no-cache always does."""
    from modelplat import lint, outputchecks

    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache"))
    parsed: list[int] = []
    real = outputchecks.ratelimit_findings

    def counting(files):
        parsed.append(1)
        return real(files)

    monkeypatch.setattr(outputchecks, "ratelimit_findings", counting)
    root = tree({"demo/iris.yaml": CPU_FILE + "ratelimitIPPerMinute: 30\n", "demo/wine.yaml": WINE})
    first = lint.lint([root], use_tools=False).as_dict()
    assert len(parsed) == 1 and first["ok"]
    assert lint.lint([root], use_tools=False).as_dict() == first and len(parsed) == 1
    assert lint.lint([root], use_tools=False, use_cache=False).as_dict() == first and len(parsed) == 2
    (root / "demo/iris.yaml").write_text(CPU_FILE + "ratelimitIPPerMinute: 31\n")
    assert lint.lint([root], use_tools=False).as_dict() == first and len(parsed) == 3


def test_a_promised_file_is_made_once_when_a_tool_reads_it_and_named_without_its_bytes(tmp_path):
    from modelplat import lint

    disk = lint._Disk(budget=0)
    target = str(tmp_path / "demo/iris/manifests.yaml")
    loads: list[int] = []

    def load() -> None:
        loads.append(1)
        disk.put(target, b"kind: A\n", identity=b"run 1")
    disk.promise(target, b"run 1", load)
    assert disk.identity(target) == b"run 1" and not loads
    assert disk.read(target) == b"kind: A\n" and disk.read(target) == b"kind: A\n" and len(loads) == 1
    disk.promise(target, b"run 1", load)
    disk.write([target])
    assert Path(target).read_bytes() == b"kind: A\n" and len(loads) == 2
    assert disk.identity(str(tmp_path / "other")) is None
    disk.close()


def test_the_per_chart_go_tools_collect_garbage_less_often_unless_the_user_tuned_it(tree, tmp_path, lint_tools,
                                                                                   monkeypatch):
    """helm lint, helm template and helm-unittest run with GOGC=800 and a 512 MiB soft limit (30-40%
    less CPU each, tools.GO_BATCH_GC); the tools run once over every chart keep Go's defaults; and
    a user's own GOGC or GOMEMLIMIT is left as it is, for every tool."""
    shims, log = tmp_path / "shims", tmp_path / "env.log"
    shims.mkdir()
    for tool in ("helm", "helm-unittest", "kubeconform", "istioctl", "promtool", "kustomize"):
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\ncase "$*" in *version*|-v) ;; *) '
                        f'echo "{tool} ${{1:-}} gogc=${{GOGC:-}} limit=${{GOMEMLIMIT:-}}" >> "{log}";; esac\n'
                        f'exec "{lint_tools[tool]}" "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE})
    base = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    for env in (base, {**base, "GOGC": "150"}):
        env = {**env, "MODELPLAT_CACHE_DIR": str(tmp_path / f"cache-{len(env)}")}
        proc = modelplat("lint", str(root), "--require-tools", "--format", "json", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs = log.read_text().splitlines()
        log.unlink()
        # every run, not the last of each tool: (tool, helm's subcommand), [gogc=…, limit=…]
        seen = [((line.split()[0], line.split()[1] if line.startswith("helm ") else ""), line.split()[-2:])
                for line in runs]
        per_chart = [(key, value) for key, value in seen if key[0] in ("helm", "helm-unittest")]
        whole = [(key, value) for key, value in seen if key[0] not in ("helm", "helm-unittest")]
        assert {("helm", "lint"), ("helm", "template"), ("helm-unittest", "")} <= {key for key, _ in per_chart}, runs
        assert {"kubeconform", "istioctl", "promtool", "kustomize"} <= {tool for (tool, _), _ in whole}, runs
        if "GOGC" in env:
            assert all(value == ["gogc=150", "limit="] for _, value in seen), runs
        else:
            assert all(value == ["gogc=800", "limit=512MiB"] for _, value in per_chart), runs
            assert all(value == ["gogc=", "limit="] for _, value in whole), runs
