"""The render cache returns exactly what a fresh render would, and only when nothing changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelplat import cache, pipeline

from conftest import CPU_FILE, JWT_LLM_FILE, PLATFORM
from test_llm_serving import IDP, NATIVE

GPU = "model:\n  format: custom\n  image: vllm/vllm-openai:v0.8.5\nresources:\n  requestGPU: 1\n"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_second_render_is_served_from_cache_and_identical(tree, fresh_cache):
    root = tree({"demo/iris.yaml": CPU_FILE, "llm/qwen.yaml": GPU})
    first = pipeline.render_all([root])
    assert first.cached == 0 and not first.errors
    second = pipeline.render_all([root])
    assert second.cached == 2
    assert second.files == first.files == pipeline.render_all([root], use_cache=False).files


def test_hits_hand_back_the_shared_files_so_the_output_links_them(tree, fresh_cache, tmp_path):
    from modelplat import output
    from modelplat.render import shared_files

    quota = JWT_LLM_FILE + "tokenLimit:\n  enabled: true\n  tenantId: team-a\n  saLimit: 100\n"
    root = tree({"llm/a.yaml": quota, "llm/b.yaml": quota, "demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    hit = pipeline.render_all([root])
    assert hit.cached == 3
    shared = 0
    for rel, a in hit.files.items():
        if not rel.startswith("llm/a/"):
            continue
        b, c = hit.files[rel.replace("llm/a/", "llm/b/", 1)], hit.files[rel.replace("llm/a/", "demo/iris/", 1)]
        if any(a == blob for blob in shared_files()):  # stored once, handed back as one object
            assert a is b is c, rel
            shared += 1
    # the values schema, .helmignore, both Lua filters and every chart template
    assert shared == len(shared_files()) >= 4 + 18
    out = tmp_path / "out"
    output.write(out, hit.files)
    for rel in ("chart/files/token_quota.lua", "chart/templates/inferenceservice.yaml"):
        assert (out / "llm/a" / rel).stat().st_ino == (out / "demo/iris" / rel).stat().st_ino
    assert hit.files == pipeline.render_all([root], use_cache=False).files


def test_only_changed_models_are_rendered_again(tree, fresh_cache):
    root = tree({"demo/iris.yaml": CPU_FILE, "llm/qwen.yaml": GPU})
    pipeline.render_all([root])
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 4\n")
    result = pipeline.render_all([root])
    assert result.cached == 1
    assert b"replicaCount: 4" in result.files["demo/iris/chart/values.yaml"]
    assert result.files == pipeline.render_all([root], use_cache=False).files


def test_platform_change_invalidates_everything(tree, fresh_cache):
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    (root / "platform.yaml").write_text("clusterName: other\n")
    result = pipeline.render_all([root])
    assert result.cached == 0
    assert b"other-gpu" in result.files["demo/iris/chart/values.yaml"]


def test_moving_a_file_to_another_project_is_a_miss(tree, fresh_cache):
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    (root / "demo/iris.yaml").rename((root / "other").mkdir() or root / "other/iris.yaml")
    result = pipeline.render_all([root])
    assert result.cached == 0 and "other/iris/helmrelease.yaml" in result.files


def test_code_fingerprint_covers_templates(tree, fresh_cache, tmp_path, monkeypatch):
    import shutil

    from modelplat import resources

    before = cache.code_fingerprint()
    copy = tmp_path / "templates"
    shutil.copytree(resources.templates_dir(), copy)
    (copy / "chart/templates/_helpers.tpl.j2").write_text("{{/* changed */}}\n")
    monkeypatch.setattr(resources, "templates_dir", lambda: copy)
    cache.code_fingerprint.cache_clear()
    try:
        assert cache.code_fingerprint() != before
    finally:
        cache.code_fingerprint.cache_clear()


def test_corrupt_entries_are_ignored(tree, fresh_cache):
    root = tree({"demo/iris.yaml": CPU_FILE})
    expected = pipeline.render_all([root]).files
    import sqlite3

    db = sqlite3.connect(fresh_cache / "render.sqlite3")
    rows = db.execute("SELECT key, data FROM entries ORDER BY key").fetchall()
    assert rows
    with db:
        for index, (key, raw) in enumerate(rows):
            # a truncated entry, a header that lies about its size, and plain junk
            bad = [raw[:-1], (10**6).to_bytes(8, "little") + raw[8:], b"{not an entry"][index % 3]
            db.execute("UPDATE entries SET data = ? WHERE key = ?", (bad, key))
    db.close()
    result = pipeline.render_all([root])
    assert result.files == expected


def test_a_damaged_cache_is_started_again(tree, fresh_cache):
    root = tree({"demo/iris.yaml": CPU_FILE})
    fresh_cache.mkdir(parents=True)
    (fresh_cache / "render.sqlite3").write_bytes(b"not a database at all" * 100)
    first = pipeline.render_all([root])
    assert not first.errors and first.cached == 0
    second = pipeline.render_all([root])
    assert second.cached == 1 and second.files == first.files


def test_a_cache_that_is_a_file_only_costs_speed(tree, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(blocker))
    root = tree({"demo/iris.yaml": CPU_FILE})
    first = pipeline.render_all([root])
    assert not first.errors and first.cached == 0
    assert pipeline.render_all([root]).files == first.files


def test_errors_are_never_cached_and_duplicates_still_reported(tree, fresh_cache):
    root = tree({"demo/a.yaml": "name: same\n" + CPU_FILE})
    pipeline.render_all([root])
    (root / "demo/b.yaml").write_text("name: same\n" + CPU_FILE)
    result = pipeline.render_all([root])
    assert [d.code for d in result.errors] == ["duplicate-model"] and result.errors[0].line == 1
    (root / "demo/b.yaml").write_text("model: [broken\n")
    assert [d.code for d in pipeline.render_all([root]).errors] == ["yaml-syntax"]


# An LLM canary behind Istio's Gateway: a render with a warning (llm-canary-picker).
WARNED = NATIVE + "primaryLoad: 90\ncanary:\n  enabled: true\n  storageUri: hf://Qwen/Qwen3-8B\n"


def test_a_render_with_warnings_is_reused_and_its_warnings_told_again(tree, fresh_cache):
    """A model's own warnings are part of its cached render: a no-op re-render of many such models
    must not render them all again (it did: one warning anywhere kept the whole run out of the
    cache), and must still say what an uncached render says, under today's file name."""
    root = tree({"demo/iris.yaml": CPU_FILE, "llm/chat.yaml": WARNED}, platform=PLATFORM + IDP)
    first = pipeline.render_all([root])
    assert first.cached == 0 and [d.code for d in first.diagnostics] == ["llm-canary-picker"]
    second = pipeline.render_all([root])
    assert second.cached == 2 and second.files == first.files
    assert second.diagnostics == first.diagnostics == pipeline.render_all([root], use_cache=False).diagnostics
    (root / "other").mkdir()
    (root / "llm/chat.yaml").rename(root / "other/chat.yaml")  # another project: a miss, then a hit
    pipeline.render_all([root])
    moved = pipeline.render_all([root])
    assert moved.cached == 2 and [d.file.endswith("other/chat.yaml") for d in moved.diagnostics] == [True]


def test_fingerprint_includes_the_libraries_that_shape_output():
    names = cache._dependency_versions()
    assert any(n.startswith("pydantic-") for n in names) and any(n.startswith("jinja2-") for n in names)
    assert any(n.startswith("ruamel_yaml-") for n in names)


def test_a_fresh_process_takes_the_chart_templates_from_the_cache(tree, fresh_cache):
    """The chart templates are the same for every model of one modelplat: a process that renders
    an edited model takes them from the cache an earlier run filled, without importing jinja,
    and writes the bytes a render without the cache writes."""
    import subprocess
    import sys

    root = tree({"demo/iris.yaml": CPU_FILE, "llm/qwen.yaml": GPU})
    script = ("import sys, json, hashlib; from pathlib import Path; from modelplat import pipeline\n"
              "result = pipeline.render_all([Path(sys.argv[1])], use_cache=sys.argv[2] == 'cached')\n"
              "assert not result.errors, result.diagnostics\n"
              "print(json.dumps({'jinja': 'jinja2' in sys.modules, 'cached': result.cached, 'files': "
              "{rel: hashlib.sha256(data).hexdigest() for rel, data in result.files.items()}}))\n")

    def render(mode: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", script, str(root), mode], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = render("cached")
    assert first["jinja"] and first["cached"] == 0  # an empty cache: the templates are rendered
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 3\n")  # a miss
    edited = render("cached")
    assert edited["cached"] == 1 and not edited["jinja"]
    uncached = render("uncached")
    assert uncached["jinja"] and edited["files"] == uncached["files"]


def test_validated_platform_settings_are_taken_from_the_cache_for_the_same_bytes(tree, fresh_cache, monkeypatch):
    """A model just edited pays for validating its own values only: the platform settings an
    earlier run validated from the same bytes (and this code) come from the cache, equal to a
    fresh validation; a changed byte, another code or a damaged entry validates again."""
    import pickle
    import sqlite3

    from modelplat import validate as validating
    from modelplat.config import PlatformSettings
    from modelplat.lint import lint
    from modelplat.values import ModelValues

    root = tree({"demo/iris.yaml": CPU_FILE})
    platform = root / "platform.yaml"
    pipeline.render_all([root])  # validates the platform and keeps it
    fresh = pipeline.load_platform(platform)  # no cache: always validated
    calls = []
    real = validating.validate
    monkeypatch.setattr(validating, "validate", lambda *a: calls.append(a[1]) or real(*a))

    kept = pipeline.load_platform(platform, cache.RenderCache(platform.read_bytes()))
    assert calls == [] and isinstance(kept, PlatformSettings) and kept == fresh
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 3\n")  # an edited model: a miss
    result = pipeline.render_all([root])
    assert result.cached == 0 and calls == [ModelValues]
    assert result.files == pipeline.render_all([root], use_cache=False).files

    # lint without tools takes it too, and --no-cache does not
    calls.clear()
    lint([root], use_tools=False)
    assert PlatformSettings not in calls
    lint([root], use_tools=False, use_cache=False)
    assert PlatformSettings in calls

    # a cache made for other bytes neither answers nor keeps: the file changed after it was read
    calls.clear()
    stale = cache.RenderCache(platform.read_bytes() + b"\n# edited\n")
    assert stale.platform_settings(platform.read_bytes()) is None
    assert pipeline.load_platform(platform, stale) == fresh and calls == [PlatformSettings]
    assert stale.platform_settings(platform.read_bytes() + b"\n# edited\n") is None

    # a changed byte is validated (and its mistakes reported), another code fingerprint too
    platform.write_text(PLATFORM.replace("ml-test", "other"))
    calls.clear()
    other = pipeline.load_platform(platform, cache.RenderCache(platform.read_bytes()))
    assert calls == [PlatformSettings] and other.clusterName == "other"
    platform.write_text(PLATFORM.replace("ml-test", "Not_A_Label"))
    with pytest.raises(pipeline.InvalidInput):
        pipeline.load_platform(platform, cache.RenderCache(platform.read_bytes()))
    platform.write_text(PLATFORM)
    with monkeypatch.context() as patch:
        patch.setattr(cache, "code_fingerprint", lambda: "another modelplat")
        calls.clear()
        pipeline.load_platform(platform, cache.RenderCache(platform.read_bytes()))
        assert calls == [PlatformSettings]

    # a foreign or damaged entry only costs speed
    store = cache.RenderCache(platform.read_bytes())
    store.put(store._settings_key(platform.read_bytes()), None, {"settings.pickle": pickle.dumps({"not": "settings"})})
    calls.clear()
    assert pipeline.load_platform(platform, cache.RenderCache(platform.read_bytes())) == fresh
    assert calls == [PlatformSettings]
    db = sqlite3.connect(fresh_cache / "render.sqlite3")
    with db:
        db.execute("UPDATE entries SET data = ?", (b"{not an entry",))
    db.close()
    calls.clear()
    assert pipeline.load_platform(platform, cache.RenderCache(platform.read_bytes())) == fresh
    assert calls == [PlatformSettings]


def test_lint_takes_unchanged_models_from_the_render_cache(tree, fresh_cache, monkeypatch):
    """lint's tools read the charts render makes: a model the render cache holds (from a render
    or an earlier lint) is neither checked nor rendered again, and lint says what it says
    without the cache."""
    from modelplat import lint, render, tools

    # What the tools would say is test_verdicts'. (tools.version keeps what it found: patched too.)
    monkeypatch.setattr(tools, "find", lambda tool: None)
    monkeypatch.setattr(tools, "version", lambda tool: "missing")
    root = tree({"demo/iris.yaml": CPU_FILE, "llm/qwen.yaml": GPU,
                 "demo/wine.yaml": CPU_FILE.replace("iris", "wine") + "metrics:\n  enabled: true\n"})
    pipeline.render_all([root])
    checked, rendered = [], []
    check, render_model = pipeline._check_model, render.render_model
    monkeypatch.setattr(pipeline, "_check_model", lambda m, platform: checked.append(m.shown) or check(m, platform))
    monkeypatch.setattr(render, "render_model", lambda p, platform: rendered.append(p.file) or render_model(p, platform))

    def report(**options) -> dict:
        found = lint.lint([root], **options).as_dict()
        assert found["models"] and all(m["checks"]["schema+rules"]["status"] == "pass" for m in found["models"])
        return found

    first = report()
    assert checked == rendered == []
    (root / "demo/iris.yaml").write_text(CPU_FILE + "replicaCount: 3\n")
    edited = report()
    assert [file.rsplit("/", 1)[-1] for file in rendered] == ["iris.yaml"] and len(checked) == 1
    checked.clear()
    rendered.clear()
    uncached = report(use_cache=False)
    assert len(checked) == len(rendered) == 3  # every model, as before this change
    assert edited == uncached
    assert [m["file"] for m in first["models"]] == [m["file"] for m in edited["models"]]
    # lint stored the edited model: a render after it takes every model from the cache
    assert pipeline.render_all([root]).cached == 3


def test_lint_of_a_tree_with_an_error_checks_every_model(tree, fresh_cache, monkeypatch):
    """A model with an error is told with its position, and the others are still linted."""
    from modelplat import lint, tools

    monkeypatch.setattr(tools, "find", lambda tool: None)
    monkeypatch.setattr(tools, "version", lambda tool: "missing")
    root = tree({"demo/iris.yaml": CPU_FILE, "llm/qwen.yaml": GPU})
    pipeline.render_all([root])
    (root / "llm/qwen.yaml").write_text(GPU + "replicaCount: -1\n")
    found = lint.lint([root])
    assert found.as_dict() == lint.lint([root], use_cache=False).as_dict()
    by_name = {m.file.rsplit("/", 1)[-1]: m for m in found.models}
    assert by_name["qwen.yaml"].checks["schema+rules"].status == "fail"
    assert by_name["iris.yaml"].checks["schema+rules"].status == "pass"
    assert by_name["iris.yaml"].checks["ratelimit config"].status == "pass"
    assert any(d.file.endswith("qwen.yaml") and d.line for d in found.diagnostics)


_PREBUILT_RUN = """
import json, sys
from pydantic._internal import _model_construction
built = []
original = _model_construction.complete_model_class
def complete(cls, *args, **kwargs):
    built.append(cls.__name__)
    return original(cls, *args, **kwargs)
_model_construction.complete_model_class = complete
from modelplat import pipeline
from modelplat.prebuilt import skip_plugin_loader
skip_plugin_loader()  # as the command does, with PYDANTIC_DISABLE_PLUGINS=__all__
result = pipeline.run([__import__('pathlib').Path(sys.argv[1])], use_cache=True)
rendered = pipeline.render_all([__import__('pathlib').Path(sys.argv[2])])
print(json.dumps({"built": built,
                  "diagnostics": [[d.file, d.line, d.column, d.code, d.message] for d in result.diagnostics],
                  "files": {rel: data.decode() for rel, data in rendered.files.items()}}))
"""


@pytest.mark.parametrize("plugins", ["__all__", "some-plugin"])
def test_validators_are_made_from_the_core_schemas_an_earlier_run_built(tmp_path, fresh_cache, plugins):
    """pydantic builds a model class's validator on first use, mostly in Python (~8% of a cold
    render of an edited model). The first run keeps the core schemas it built in the render
    cache; a later process makes its validators from them without pydantic building any class
    again, and finds the same errors, at the same places, and renders the same bytes. With
    pydantic plugins on (they expect to see each validator made) nothing is stored or taken.
    A damaged stored schema is built again as usual."""
    import sqlite3
    import subprocess
    import sys

    def mirrored(percent: int) -> str:
        return CPU_FILE + f"mirror:\n  enabled: true\n  storageUri: s3://m/iris-v2\n  percentage: {percent}\n"

    def tree(name: str, files: dict[str, str]) -> Path:
        for rel, text in {"platform.yaml": PLATFORM, **files}.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
        return tmp_path / name

    bad = tree("bad", {"demo/bad.yaml": mirrored(101) + "replicaCount: two\nresources:\n  requestMemory: 12XB\n"})
    good = tree("good", {"demo/iris.yaml": mirrored(50), "llm/qwen.yaml": GPU})

    def run() -> dict:
        proc = subprocess.run([sys.executable, "-c", _PREBUILT_RUN, str(bad), str(good)], capture_output=True,
                              text=True, env={**os.environ, "PYDANTIC_DISABLE_PLUGINS": plugins})
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = run()
    assert "ModelValues" in first["built"]
    said = " ".join(d[4] for d in first["diagnostics"])
    for key in ("replicaCount", "mirror.percentage: must be at most 100", "requestMemory: expected a Kubernetes quantity"):
        assert key in said, first["diagnostics"]
    (good / "demo/iris.yaml").write_text(mirrored(60))  # a miss
    (bad / "demo/bad.yaml").write_text((bad / "demo/bad.yaml").read_text() + "# edited\n")
    second = run()
    if plugins != "__all__":
        assert "ModelValues" in second["built"]  # nothing was taken from the cache
        return
    assert second["built"] == [], second["built"]
    assert second["diagnostics"] == first["diagnostics"]
    assert second["files"] != first["files"]  # the edit shows ...
    (good / "demo/iris.yaml").write_text(mirrored(50))
    (bad / "demo/bad.yaml").write_text((bad / "demo/bad.yaml").read_text() + "# again\n")
    third = run()  # ... and undone, the render is the first one's, byte for byte
    assert third["built"] == [] and third["files"] == first["files"]

    db = sqlite3.connect(fresh_cache / "render.sqlite3")
    rows = db.execute("SELECT key, data FROM entries").fetchall()
    stored = [key for key, data in rows if b"modelplat.values.ModelValues" in data]
    assert len(stored) == 1
    for key, data in rows:  # damage every stored schema: pydantic builds them again
        if key == stored[0]:
            db.execute("UPDATE entries SET data = ? WHERE key = ?",
                       (data.replace(b"modelplat.values", b"modelplat.valuez"), key))
    db.commit()
    db.close()
    (bad / "demo/bad.yaml").write_text((bad / "demo/bad.yaml").read_text() + "# damaged\n")
    (good / "demo/iris.yaml").write_text(mirrored(60))
    fourth = run()
    assert "ModelValues" in fourth["built"]
    assert fourth["diagnostics"] == first["diagnostics"] and fourth["files"] == second["files"]


def test_a_render_served_from_the_cache_imports_neither_pydantic_nor_jinja(tree, fresh_cache):
    """The cheap path stays cheap: when every model comes from the cache, the run checks what
    models share (networks, quotas, Model Armor chains) on their cached records, and imports none
    of the pydantic models behind validation (~440 M instructions, 0.2 s here), nor jinja."""
    import subprocess
    import sys

    root = tree({"demo/iris.yaml": CPU_FILE, "llm/qwen.yaml": GPU})
    script = ("import sys, json; from pathlib import Path\n"
              "from modelplat.cli import main\n"
              "sys.argv = ['modelplat', 'render', sys.argv[1], '--out', sys.argv[2]]\n"
              "import atexit\n"
              "atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('pydantic', 'pydantic_core', 'jinja2') and m != 'pydantic.plugin._loader'))))\n"
              "main()\n")

    def render() -> tuple[str, list]:
        proc = subprocess.run([sys.executable, "-c", script, str(root), str(root.parent / "out")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr, json.loads(proc.stdout.strip().splitlines()[-1])

    summary, imported = render()  # the first run renders: pydantic and jinja at work
    assert "pydantic" in imported and "jinja2" in imported
    summary, imported = render()
    assert "0 added, 0 changed, 0 removed" in summary, summary
    assert imported == []
