"""The CLI as users and CI run it: exit codes, messages, JSON output, nothing written on error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from conftest import CPU_FILE, PLATFORM, modelplat, need_tool


def test_render_writes_then_check_passes_then_detects_staleness(tree, tmp_path):
    root = tree({"demo/iris.yaml": CPU_FILE})
    out = tmp_path / "charts-out"
    result = modelplat("render", str(root), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "demo/iris/helmrelease.yaml").is_file()
    assert modelplat("render", str(root), "--out", str(out), "--check").returncode == 0
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 2\n")
    stale = modelplat("render", str(root), "--out", str(out), "--check")
    assert stale.returncode == 1
    assert "out of date" in stale.stderr
    assert "-replicaCount: 1\n+replicaCount: 2" in stale.stdout and "+++ b/demo/iris/chart/values.yaml" in stale.stdout
    as_json = json.loads(modelplat("render", str(root), "--out", str(out), "--check", "--format", "json").stdout)
    assert as_json["ok"] is False and "demo/iris/helmrelease.yaml" in as_json["changed"]
    assert "replicaCount: 1" in (out / "demo/iris/chart/values.yaml").read_text(), "--check wrote nothing"


def test_an_output_folder_inside_the_models_tree_is_not_read_as_models(tree):
    # `modelplat render . --out charts-out` from a repository root: the second run must not take
    # the first run's HelmReleases and values.yaml files for model values files.
    root = tree({"demo/iris.yaml": CPU_FILE})
    for _ in range(2):
        result = modelplat("render", str(root), "--out", str(root / "charts-out"))
        assert result.returncode == 0, result.stderr
        assert "rendered 1 model(s)" in result.stderr
    assert modelplat("lint", str(root), "--no-tools").returncode == 0
    # Only a folder modelplat rendered is skipped: another folder's YAML is still read (and here
    # refused, as it is no model), never silently ignored.
    (root / "other").mkdir()
    (root / "other/kustomization.yaml").write_text("resources: []\n")
    result = modelplat("render", str(root), "--out", str(root / "charts-out"))
    assert result.returncode == 1
    assert "other/kustomization.yaml:1:1: error[missing-key]" in result.stderr


def test_bad_input_exits_1_with_positions_and_writes_nothing(tree, tmp_path):
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/bad.yaml": CPU_FILE + "resources:\n  requestGpu: 1\n"})
    out = tmp_path / "charts-out"
    result = modelplat("render", str(root), "--out", str(out))
    assert result.returncode == 1
    assert "bad.yaml:5:3: error[unknown-key]: unknown key 'requestGpu'" in result.stderr
    assert "requestGPU" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_bad_input_keeps_previous_output(tree, tmp_path):
    root = tree({"demo/iris.yaml": CPU_FILE})
    out = tmp_path / "charts-out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (root / "demo/iris.yaml").write_text("model: [broken\n")
    assert modelplat("render", str(root), "--out", str(out)).returncode == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_force_never_takes_over_a_file_and_an_unwritable_output_is_a_clear_error(tree, tmp_path):
    """--force onto a regular file crashed after writing (exit 3) and left the user's file
    renamed as .out.tmp-<pid>: nothing of the user's may be moved or lost."""
    root = tree({"demo/iris.yaml": CPU_FILE})
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    result = modelplat("render", str(root), "--out", str(target), "--force")
    assert result.returncode == 2, result.stderr
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr
    assert target.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "models") == [".notes.txt.lock", "notes.txt"]
    # A folder that cannot be made (here: its parent is that file) is named, exit 2, not a bug.
    result = modelplat("render", str(root), "--out", str(target / "charts-out"))
    assert result.returncode == 2 and "cannot write" in result.stderr and "internal error" not in result.stderr


def test_a_symlink_loop_among_the_inputs_is_a_positioned_error(tree):
    root = tree({"demo/iris.yaml": CPU_FILE})
    (root / "demo/a.yaml").symlink_to("b.yaml")
    (root / "demo/b.yaml").symlink_to("a.yaml")
    result = modelplat("lint", str(root), "--no-tools")
    assert result.returncode == 1, result.stderr
    assert "a.yaml:1:1: error[broken-symlink]: symlink is part of a symlink loop" in result.stderr
    assert "internal error" not in result.stderr


def test_json_errors_are_machine_readable(tree, tmp_path):
    root = tree({"demo/bad.yaml": "model:\n  format: sklern\n  storageUri: s3://m/x\n"})
    result = modelplat("render", str(root), "--out", str(tmp_path / "o"), "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    (d,) = report["diagnostics"]
    assert (d["line"], d["column"], d["code"], d["key"]) == (2, 3, "invalid-value", "model.format")
    assert d["file"].endswith("bad.yaml") and "sklearn" in d["hint"]


def test_refuses_to_take_over_a_foreign_folder(tree, tmp_path):
    root = tree({"demo/iris.yaml": CPU_FILE})
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = modelplat("render", str(root), "--out", str(out))
    assert result.returncode == 2 and "did not write" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_lint_without_tools_reports_table_and_exit_codes(tree):
    good = tree({"demo/iris.yaml": CPU_FILE})
    result = modelplat("lint", str(good), "--no-tools")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "schema+rules" in result.stdout and "pass" in result.stdout
    (good / "demo/limited.yaml").write_text(CPU_FILE + "tokenLimit:\n  enabled: true\n  tenantId: t\n  saLimit: 10\n")  # not an LLM
    result = modelplat("lint", str(good), "--no-tools", "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert "token-limit-needs-openai" in {d["code"] for d in report["diagnostics"]}
    failing = [m for m in report["models"] if not m["ok"]]
    assert len(failing) == 1 and failing[0]["file"].endswith("limited.yaml")


def test_lint_table_of_many_models_lists_the_failing_ones_and_one_row_for_the_rest(tree, monkeypatch, capsys):
    from modelplat import cli

    root = tree({"demo/a.yaml": CPU_FILE, "demo/b.yaml": CPU_FILE, "demo/c.yaml": CPU_FILE,
                 "demo/limited.yaml": CPU_FILE + "tokenLimit:\n  enabled: true\n  tenantId: t\n  saLimit: 10\n"})
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(cli, "LINT_ROWS", 2)
    monkeypatch.setattr(sys, "argv", ["modelplat", "lint", str(root), "--no-tools"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    table = capsys.readouterr().out
    assert exited.value.code == 1
    assert "limited.yaml" in table and "a.yaml" not in table and "b.yaml" not in table
    row = next(line for line in table.splitlines() if "3 models without a failure" in line)
    assert row.count("pass") == 2 and "FAIL" not in row  # schema+rules and the rate limit parse
    monkeypatch.setattr(cli, "LINT_ROWS", 200)
    with pytest.raises(SystemExit):
        cli.main()
    every = capsys.readouterr().out
    assert all(name in every for name in ("a.yaml", "b.yaml", "c.yaml", "limited.yaml"))


def test_lint_require_tools_fails_when_a_tool_is_missing(tree, tmp_path):
    root = tree({"demo/iris.yaml": CPU_FILE})
    empty = tmp_path / "no-tools"
    empty.mkdir()
    env = {"PATH": "/usr/bin:/bin", "MODELPLAT_TOOLS_DIR": str(empty)}
    result = modelplat("lint", str(root), "--require-tools", env=env)
    assert result.returncode == 2
    assert "not found" in result.stdout and "helm" in result.stdout
    relaxed = modelplat("lint", str(root), env=env)
    assert relaxed.returncode == 0 and "skipped" in relaxed.stdout


def test_missing_platform_file_is_a_clear_error(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "iris.yaml").write_text(CPU_FILE)
    result = modelplat("render", str(tmp_path / "demo"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 1 and "platform" in result.stderr and "Traceback" not in result.stderr


def test_init_writes_a_starter_that_lints_and_renders(tmp_path):
    for flags, name in (([], "iris"), (["--gpu"], "resnet"), (["--llm"], "qwen")):
        result = modelplat("init", f"team-a/{name}", "--dir", str(tmp_path / "models"), *flags)
        assert result.returncode == 0, result.stderr
    (tmp_path / "models" / "platform.yaml").write_text("clusterName: ml-test\n")
    text = (tmp_path / "models/team-a/qwen.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert modelplat("lint", str(tmp_path / "models"), "--no-tools").returncode == 0
    assert modelplat("render", str(tmp_path / "models"), "--out", str(tmp_path / "out")).returncode == 0
    values = YAML(typ="safe").load((tmp_path / "out/team-a/qwen/chart/values.yaml").read_text())
    assert values["model"]["protocol"] == "openai" and values["resources"]["requestGPU"] == 1
    again = modelplat("init", "team-a/qwen", "--dir", str(tmp_path / "models"))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert modelplat("init", "../etc/passwd", "--dir", str(tmp_path / "models")).returncode == 2


def test_the_llm_starters_token_quota_block_works_when_uncommented(tree):
    from modelplat import pipeline
    from modelplat.starter import starter_text

    text = starter_text("team-a", "qwen", gpu=False, llm=True, schema_ref=None)
    head, marker, block = text.partition("# auth:")
    assert marker, "the LLM starter offers token quotas"
    enabled = head + "\n".join(line[2:] for line in (marker + block).splitlines()) + "\n"
    root = tree({"team-a/qwen.yaml": enabled}, platform=PLATFORM + "jwt:\n  issuer: https://idp.example.com\n"
                "  jwksUri: https://idp.example.com/jwks.json\n")
    result = pipeline.run([root])
    assert not result.errors, [d.format() for d in result.errors]
    assert "token limits" in result.plans[0].features


def test_the_llm_starters_safety_block_works_when_uncommented(tree):
    from modelplat import pipeline
    from modelplat.starter import starter_text

    text = starter_text("team-a", "qwen", gpu=False, llm=True, schema_ref=None)
    block = "# safety:\n#   enabled: true\n#   provider: llm-guard\n"
    assert block in text, "the LLM starter offers prompt safety"
    enabled = text.replace(block, "\n".join(line[2:] for line in block.splitlines()) + "\n")
    platform = PLATFORM + "safety:\n  providers:\n    llm-guard:\n      extProc: {service: g.safety.svc, port: 9000}\n"
    result = pipeline.run([tree({"team-a/qwen.yaml": enabled}, platform=platform)])
    assert not result.errors, [d.format() for d in result.errors]
    assert "prompt safety" in result.plans[0].features


def test_schema_check(tmp_path):
    out = tmp_path / "schemas"
    assert modelplat("schema", "--out", str(out)).returncode == 0
    assert modelplat("schema", "--out", str(out), "--check").returncode == 0
    (out / "platform.schema.json").write_text("{}")
    assert modelplat("schema", "--out", str(out), "--check").returncode == 1


def test_version_and_help():
    from modelplat import __version__

    assert modelplat("version").stdout.strip() == __version__
    assert "render" in modelplat("--help").stdout
    as_module = subprocess.run([sys.executable, "-m", "modelplat", "version"], capture_output=True, text=True)
    assert as_module.returncode == 0 and as_module.stdout.strip() == __version__


def test_lint_with_an_unknown_kubernetes_version_is_a_clear_error(tree):
    need_tool("kubeconform")
    root = tree({"demo/iris.yaml": CPU_FILE}, platform="clusterName: ml\nkubernetesVersion: '1.10'\n")
    result = modelplat("lint", str(root))
    assert result.returncode == 2 and "kubernetesVersion" in result.stderr and "internal error" not in result.stderr


def test_explain_describes_keys_and_refuses_unknown_ones():
    result = modelplat("explain", "resources.requestGPU", "--format", "json")
    info = json.loads(result.stdout)
    assert result.returncode == 0 and info["type"] == "integer" and info["default"] == 0
    assert "GPU node group" in info["description"]
    wrong = modelplat("explain", "resources.requestGpu")
    assert wrong.returncode == 1 and "requestGPU" in wrong.stderr


def test_diff_shows_what_flux_would_change(tree, tmp_path):
    root = tree({"demo/iris.yaml": CPU_FILE})
    out = tmp_path / "charts-out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    assert modelplat("diff", str(root), "--out", str(out), "--exit-code").returncode == 0
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 3\n")
    (root / "demo/wine.yaml").write_text(CPU_FILE)
    result = modelplat("diff", str(root), "--out", str(out), "--exit-code", "--format", "json")
    assert result.returncode == 1
    changes = json.loads(result.stdout)["changes"]
    release = next(c for c in changes if c.get("kind") == "HelmRelease" and c["name"] == "iris")
    assert release["change"] == "changed"
    assert {"path": "spec.values.replicaCount", "old": 1, "new": 3}.items() <= \
        next(f for f in release["fields"] if f["path"] == "spec.values.replicaCount").items()
    assert any(c.get("kind") == "HelmRelease" and c["name"] == "wine" and c["change"] == "added" for c in changes)
    assert "replicaCount: 1" in (out / "demo/iris/chart/values.yaml").read_text(), "diff writes nothing"


SEED_RELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: qwen
  namespace: llm
spec:
  interval: 5m
  values:
    modelFormat: huggingface
    storageUri: hf://Qwen/Qwen2.5-7B-Instruct
    replicaCount: 1
    resources:
      requestGPU: 1
      limitGPU: 1
      requestMemory: 16Gi
      limitMemory: 16Gi
    metrics:
      enabled: true
    nodeSelectorOverride: gpu-a100
"""


def test_import_maps_a_seed_helmrelease_and_reports_the_rest(tmp_path):
    source = tmp_path / "qwen-hr.yaml"
    source.write_text(SEED_RELEASE)
    target = tmp_path / "models/llm/qwen.yaml"
    result = modelplat("import", str(source), "-o", str(target))
    assert result.returncode == 1, "an unmapped key needs a person"
    assert "nodeSelectorOverride" in result.stderr
    values = YAML(typ="safe").load(target.read_text())
    assert values["model"]["format"] == "huggingface"
    assert values["model"]["storageUri"] == "hf://Qwen/Qwen2.5-7B-Instruct"
    assert values["resources"]["requestGPU"] == 1 and values["name"] == "qwen"
    (tmp_path / "models/platform.yaml").write_text("clusterName: ml\n")
    assert modelplat("lint", str(tmp_path / "models"), "--no-tools").returncode == 0
    again = modelplat("import", str(source), "-o", str(target))
    assert again.returncode == 2 and "exists" in again.stderr


def test_import_applies_lints_rules_so_lint_never_refuses_an_import_that_passed(tmp_path):
    """import checked the schema only: a values file it accepted (exit 0) could then be refused
    by lint's rules. With the platform file found beside the output, import runs them too."""
    source = tmp_path / "hr.yaml"
    source.write_text("kind: HelmRelease\nmetadata: {name: qwen}\nspec:\n  values:\n"
                      "    image: {repository: vllm/vllm-openai, tag: latest}\n"
                      "    storageUri: hf://Qwen/Qwen2.5-0.5B-Instruct\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/platform.yaml").write_text("clusterName: ml\n")
    target = tmp_path / "models/llm/qwen.yaml"
    result = modelplat("import", str(source), "-o", str(target))
    assert result.returncode == 1, result.stderr
    assert "needs attention: model.image: image 'vllm/vllm-openai:latest' has the latest tag" in result.stderr
    assert modelplat("lint", str(tmp_path / "models"), "--no-tools").returncode == 1
    # Pinned, the same import passes, and so does lint.
    source.write_text(source.read_text().replace("tag: latest", "tag: v0.8.5"))
    result = modelplat("import", str(source), "-o", str(target), "--force")
    assert result.returncode == 0, result.stderr
    assert modelplat("lint", str(tmp_path / "models"), "--no-tools").returncode == 0
    # Without a platform file anywhere, only the schema is checked, and it says so.
    alone = modelplat("import", str(source), "-o", str(tmp_path / "elsewhere/qwen.yaml"), cwd=tmp_path)
    assert alone.returncode == 0 and "note: only the schema was checked" in alone.stderr


def test_progress_bar_only_on_a_terminal(tree, tmp_path):
    import os
    import pty
    import sys

    root = tree({f"team/m{i:02d}.yaml": CPU_FILE for i in range(60)})
    piped = modelplat("render", str(root), "--out", str(tmp_path / "a"), "--no-cache")
    assert piped.returncode == 0 and "\x1b" not in piped.stderr and "validating" not in piped.stderr
    chunks: list[bytes] = []

    def read(fd):
        data = os.read(fd, 65536)
        chunks.append(data)
        return data

    status = pty.spawn([sys.executable, "-m", "modelplat.cli", "render", str(root), "--out", str(tmp_path / "b"),
                        "--no-cache"], read)
    shown = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0
    assert "rendering" in shown and "rendered 60 model(s)" in shown


@pytest.mark.parametrize("when", ["before the swap", "after the swap"])
def test_ctrl_c_says_what_it_left_behind(tree, tmp_path, monkeypatch, capsys, when):
    """Ctrl-C before the swap leaves the old output and exits 130; after it, the new output is
    whole on disk, which is said, with exit 0 (it printed nothing and exited 130 either way)."""
    from modelplat import cli, output
    from modelplat.errors import Interrupted

    root = tree({"demo/iris.yaml": CPU_FILE})
    out = tmp_path / "charts-out"
    assert modelplat("render", str(root), "--out", str(out)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 3\n")
    real_add, real_commit = output.TreeWriter.add, output.TreeWriter.commit

    def stage_then_interrupt(self, files):
        real_add(self, files)
        if self.tmp is not None:  # the new tree is being built
            raise Interrupted()

    def commit_then_interrupt(self):
        real_commit(self)
        raise Interrupted()

    monkeypatch.setattr(output, "completed", None)
    monkeypatch.setattr("modelplat.errors.handle_interrupts", lambda: None)  # pytest keeps its Ctrl-C
    if when == "before the swap":
        monkeypatch.setattr(output.TreeWriter, "add", stage_then_interrupt)
    else:
        monkeypatch.setattr(output.TreeWriter, "commit", commit_then_interrupt)
    monkeypatch.setattr(sys, "argv", ["modelplat", "render", str(root), "--out", str(out), "--no-cache"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    stderr = capsys.readouterr().err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    if when == "before the swap":
        assert exited.value.code == 130 and "no output was changed" in stderr
        assert after == before
    else:
        assert exited.value.code == 0 and "written in full" in stderr
        assert after != before and b"replicaCount: 3" in b"".join(after.values())


def test_a_render_builds_validators_without_scanning_for_pydantic_plugins(tree, tmp_path):
    """modelplat disables pydantic's plugins; with them off, the module pydantic finds plugins in
    is stood in for, so a render never imports importlib.metadata for it (~5% of a cold render).
    The render is the one a process with the real module makes, and anything else pydantic may
    ask of the module comes from the real one."""
    root = tree({"demo/iris.yaml": CPU_FILE})
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('metadata imported:', 'importlib.metadata' in sys.modules))\n"
              "from modelplat.cli import main\n"
              "sys.argv = ['modelplat', 'render', sys.argv[1], '--out', sys.argv[2], '--no-cache']\n"
              "main()\n")
    runs = {}
    for label, env in (("stand-in", {}), ("plugins on", {"PYDANTIC_DISABLE_PLUGINS": "none-of-these"})):
        out = tmp_path / label
        proc = subprocess.run([sys.executable, "-c", script, str(root), str(out)], capture_output=True, text=True,
                              env={**os.environ, **env})
        assert proc.returncode == 0, proc.stderr
        runs[label] = (proc.stdout, {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert "metadata imported: False" in runs["stand-in"][0]
    assert "metadata imported: True" in runs["plugins on"][0]  # the real discovery ran there
    assert runs["stand-in"][1] == runs["plugins on"][1] and runs["stand-in"][1]

    code = ("import sys, os; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
            "from modelplat import prebuilt; prebuilt.skip_plugin_loader()\n"
            "from pydantic.plugin import _loader\n"
            "assert tuple(_loader.get_plugins()) == ()\n"
            "print(_loader.PYDANTIC_ENTRY_POINT_GROUP)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "pydantic", proc.stderr
