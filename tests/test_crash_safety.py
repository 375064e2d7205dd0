"""A render killed at any moment leaves the old output or the new one, never a mix; renders
running at the same time never corrupt the output."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import CPU_FILE, PLATFORM

MODELS = 40


def make_tree(root: Path, replicas: int) -> Path:
    root.mkdir(parents=True)
    (root / "platform.yaml").write_text(PLATFORM)
    for i in range(MODELS):
        folder = root / f"team-{i % 6}"
        folder.mkdir(exist_ok=True)
        (folder / f"model-{i:03d}.yaml").write_text(CPU_FILE + f"replicaCount: {replicas}\n")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def render(tree: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "modelplat.cli", "render", str(tree), "--out", str(out), "--no-cache"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_sigkill_at_random_moments_leaves_old_or_new(tmp_path):
    env = dict(os.environ)
    old_tree, new_tree = make_tree(tmp_path / "v1", 1), make_tree(tmp_path / "v2", 2)
    reference_old, reference_new = tmp_path / "ref-old", tmp_path / "ref-new"
    assert render(old_tree, reference_old, env).wait() == 0
    start = time.perf_counter()
    assert render(new_tree, reference_new, env).wait() == 0
    duration = time.perf_counter() - start
    old, new = snapshot(reference_old), snapshot(reference_new)
    assert old != new
    rng = random.Random(20261123)
    out = tmp_path / "out"
    outcomes = {"old": 0, "new": 0}
    # Kills spread over the whole run, the swap at its end included (a completed run is never
    # undone: the final render below must find and keep the new tree).
    delays = sorted(rng.uniform(0.05, 1.05) for _ in range(7))
    for attempt, fraction in enumerate(delays):
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(reference_old, out)
        proc = render(new_tree, out, env)
        time.sleep(fraction * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = snapshot(out)
        assert state in (old, new), f"attempt {attempt}: the output is a mix of old and new"
        outcomes["old" if state == old else "new"] += 1
    # The next run cleans up whatever a killed run left beside the output, and finishes the job.
    assert render(new_tree, out, env).wait() == 0
    assert snapshot(out) == new
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")
                and not p.name.endswith(".lock")], "temporary folders were left behind"
    assert outcomes["old"] >= 1, outcomes  # the first kill lands long before the swap


def test_concurrent_renders_never_corrupt(tmp_path):
    env = dict(os.environ)
    old_tree, new_tree = make_tree(tmp_path / "v1", 1), make_tree(tmp_path / "v2", 2)
    references = []
    for tree in (old_tree, new_tree):
        ref = tmp_path / f"ref-{tree.name}"
        assert render(tree, ref, env).wait() == 0
        references.append(snapshot(ref))
    out = tmp_path / "out"
    for _ in range(3):
        procs = [render(old_tree, out, env), render(new_tree, out, env)]
        for proc in procs:
            code = proc.wait()
            stderr = proc.stderr.read().decode()
            assert code == 0 or (code == 2 and "another modelplat run" in stderr), stderr
        assert snapshot(out) in references
