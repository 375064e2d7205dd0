"""The render cache and lint's verdict cache forget what has not been used for days, keep what
is in use, and do not write for what a warm run reads (modelplat/trim.py)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from modelplat import pipeline, trim, verdicts

from conftest import CPU_FILE

DAY = 86400
T0 = 1_800_000_000
WINE = "model:\n  format: sklearn\n  storageUri: s3://m/wine\n"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPLAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELPLAT_CACHE_TRIM_DAYS", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def clock(monkeypatch):
    """Sets the time the caches see: clock(seconds)."""
    def at(seconds: int) -> None:
        monkeypatch.setattr(trim, "clock", lambda: seconds)
    at(T0)
    return at


def _marks(path, table: str = "entries") -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute(f"SELECT key, at FROM {table}_used"))
    finally:
        db.close()


def test_a_model_rendered_days_ago_and_not_since_is_forgotten_and_one_in_use_is_kept(tree, cache_dir, clock):
    root = tree({"demo/iris.yaml": CPU_FILE, "demo/wine.yaml": WINE})
    wine = root / "demo" / "wine.yaml"
    assert pipeline.render_all([root]).cached == 0
    clock(T0 + 3 * DAY)
    wine.write_text(WINE.replace("wine", "wine2"))
    assert pipeline.render_all([root]).cached == 1  # iris, marked used today
    clock(T0 + 6 * DAY)
    wine.write_text(WINE)
    # The first wine's render was last used six days ago: gone. iris's was used three days ago.
    again = pipeline.render_all([root])
    assert again.cached == 1 and not again.errors
    assert again.files == pipeline.render_all([root], use_cache=False).files
    # Still in use today: kept, and the next run (within the day, no trim) is all hits.
    clock(T0 + 6 * DAY + 3600)
    assert pipeline.render_all([root]).cached == 2


def test_a_warm_run_does_not_write_for_what_it_reads_within_the_hour(tree, cache_dir, clock):
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    first = _marks(cache_dir / "render.sqlite3")
    assert first and set(first.values()) == {T0}
    clock(T0 + 1800)
    assert pipeline.render_all([root]).cached == 1
    assert _marks(cache_dir / "render.sqlite3") == first
    clock(T0 + 7200)
    assert pipeline.render_all([root]).cached == 1
    later = _marks(cache_dir / "render.sqlite3")
    # What this run read (the model's render, the platform settings) is marked again; the chart
    # templates, needed only to render a model that missed, are not.
    assert later.keys() == first.keys() and set(later.values()) == {T0, T0 + 7200}
    assert list(later.values()).count(T0 + 7200) == 2
    blobs = _marks(cache_dir / "render.sqlite3", "blobs")  # the shared templates, read with the entry
    assert blobs and set(blobs.values()) == {T0 + 7200}


def test_a_cache_made_before_uses_were_kept_keeps_its_entries(tree, cache_dir, clock):
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    db = sqlite3.connect(cache_dir / "render.sqlite3")
    db.execute("DROP TABLE entries_used")
    db.execute("DROP TABLE blobs_used")
    db.commit()
    db.close()
    (cache_dir / "render.sqlite3.trimmed").unlink()
    clock(T0 + 30 * DAY)
    assert pipeline.render_all([root]).cached == 1  # marked used on opening, so not trimmed
    assert set(_marks(cache_dir / "render.sqlite3").values()) == {T0 + 30 * DAY}


def test_trims_at_most_once_a_day(tree, cache_dir, clock):
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    stamp = cache_dir / "render.sqlite3.trimmed"
    assert stamp.read_text().strip() == str(T0)
    clock(T0 + 12 * 3600)
    pipeline.render_all([root])
    assert stamp.read_text().strip() == str(T0)
    clock(T0 + DAY + 1)
    pipeline.render_all([root])
    assert stamp.read_text().strip() == str(T0 + DAY + 1)


def test_days_zero_keeps_everything(tree, cache_dir, clock, monkeypatch):
    monkeypatch.setenv("MODELPLAT_CACHE_TRIM_DAYS", "0")
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])
    clock(T0 + 400 * DAY)
    assert pipeline.render_all([root]).cached == 1
    assert not (cache_dir / "render.sqlite3.trimmed").exists()


def test_a_verdict_read_is_kept_and_one_not_read_for_days_is_forgotten(cache_dir, clock):
    cache = verdicts.Verdicts(None, cache_dir)
    cache.put("read", True, "ok")
    cache.put("unread", False, "failed")
    cache.close()
    clock(T0 + 3 * DAY)
    cache = verdicts.Verdicts(None, cache_dir)
    assert cache.get("read") == (True, "ok")
    cache.close()  # the mark of use is stored on closing, with nothing else to store
    clock(T0 + 6 * DAY)
    cache = verdicts.Verdicts(None, cache_dir)
    assert cache.get("read") == (True, "ok")
    assert cache.get("unread") is None
    cache.close()


def test_a_trim_that_frees_most_of_the_file_hands_it_back(tmp_path, clock):
    path = tmp_path / "c.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
    db.executemany("INSERT INTO entries VALUES (?, ?)", ((f"k{i}", bytes(50_000)) for i in range(60)))
    trim.prepare(db, "entries", "key")
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0  # made without it, as older caches were
    trim.touch(db, "entries", ["k0"], T0 + 9 * DAY)
    before = path.stat().st_size
    assert trim.trim(db, path, {"entries": "key"}, T0 + 9 * DAY) == 59
    assert [row[0] for row in db.execute("SELECT key FROM entries")] == ["k0"]
    assert path.stat().st_size < before / 10
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    db.executemany("INSERT INTO entries VALUES (?, ?)", ((f"n{i}", bytes(50_000)) for i in range(20)))
    trim.touch(db, "entries", (f"n{i}" for i in range(20)), T0)
    grown = path.stat().st_size
    assert trim.trim(db, path, {"entries": "key"}, T0 + 20 * DAY) == 21
    assert path.stat().st_size < grown / 10
    db.close()


def test_cache_info_and_prune_from_the_command_line(tree, tmp_path):
    from conftest import modelplat

    env = {"MODELPLAT_CACHE_DIR": str(tmp_path / "cli-cache")}
    root = tree({"demo/iris.yaml": CPU_FILE})
    assert modelplat("render", str(root), "--out", str(tmp_path / "out"), env=env).returncode == 0
    info = json.loads(modelplat("cache", "info", "--format", "json", env=env).stdout)
    [render] = info["databases"]
    assert render["file"].endswith("render.sqlite3") and render["rows"] >= 2 and render["bytes"] > 0
    # Everything was used a moment ago: a prune of what went unused for 5 days keeps it all.
    kept = modelplat("cache", "prune", env=env)
    assert kept.returncode == 0 and "render.sqlite3: 0 rows" in kept.stdout, kept.stdout
    emptied = modelplat("cache", "prune", "--days", "0", env=env)
    assert emptied.returncode == 0 and f"render.sqlite3: {render['rows']} rows" in emptied.stdout, emptied.stdout
    info = json.loads(modelplat("cache", "info", "--format", "json", env=env).stdout)
    assert info["databases"][0]["rows"] == 0 and info["databases"][0]["bytes"] < render["bytes"]
    # And the next render fills it again, as it would a fresh cache.
    assert modelplat("render", str(root), "--out", str(tmp_path / "out"), env=env).returncode == 0
    info = json.loads(modelplat("cache", "info", "--format", "json", env=env).stdout)
    assert info["databases"][0]["rows"] == render["rows"]


def test_prune_of_zero_days_empties_even_what_this_second_used(tree, cache_dir, clock):
    root = tree({"demo/iris.yaml": CPU_FILE})
    pipeline.render_all([root])  # marked at T0, and the prune below runs at T0 too
    [row] = trim.prune(cache_dir, 0)
    assert row["deleted"] >= 2
    assert pipeline.render_all([root]).cached == 0
