"""``kill -9`` at any moment of training, then a rerun: the same adapter as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file

from qualia import workspace
from qualia.workspace import Workspace
from tests.helpers import ROOT
from tests.test_train_eval import build_synthetic_corpus

pytestmark = pytest.mark.slow
TRAIN = ["train", "kill", "--backbone", "qualia-tiny", "--epochs", "6"]


def train(home: Path, kill_when: Callable[[], bool] | None = None) -> int:
    """Run ``qualia train``; with ``kill_when``, SIGKILL it the moment that turns true (polled every 10 ms)."""
    env = {**os.environ, "QUALIA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qualia.cli", *TRAIN], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_when is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        return 0
    deadline = time.monotonic() + 300
    while proc.poll() is None and not kill_when() and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def weights(ws: Workspace) -> dict:
    folder = ws.latest_adapter("kill")
    return load_file(str(folder / "adapter_model.safetensors"))


def _shards(ws: Workspace) -> list[Path]:
    return [p for p in ws.trunk_cache_dir.rglob("*.safetensors")]


def _checkpoint_epoch(ws: Workspace) -> int:
    path = ws.adapters_dir("kill") / ".checkpoint" / "state.pt"
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:  # none yet, or being replaced this instant
        return 0


def test_training_killed_at_several_moments_ends_with_the_uninterrupted_adapter(tmp_path: Path) -> None:
    reference, killed = Workspace(tmp_path / "reference"), Workspace(tmp_path / "killed")
    for ws in (reference, killed):
        build_synthetic_corpus(ws, "kill", n_pins=300, n_posts=0)
    train(reference.root)

    moments = {  # each run resumes what the one killed before it left
        "caching the frozen blocks, one shard written": lambda: len(_shards(killed)) >= 1,
        "caching, more shards written": lambda: len(_shards(killed)) >= 4,
        "after the first epoch's checkpoint (token rows still training)": lambda: _checkpoint_epoch(killed) >= 1,
        "after the third epoch's checkpoint (token rows frozen after two)": lambda: _checkpoint_epoch(killed) >= 3,
    }
    for moment, when in moments.items():
        assert train(killed.root, kill_when=when) == -signal.SIGKILL, f"it ended before it was killed {moment}"
        assert not workspace.versions(killed.adapters_dir("kill")), moment  # no adapter, whole or half
        print(f"killed {moment}: {len(_shards(killed))} shards, checkpoint epoch {_checkpoint_epoch(killed)}")
    train(killed.root)  # resumes from the last checkpoint, the cache keeps its complete shards

    assert len(workspace.versions(killed.adapters_dir("kill"))) == 1
    assert not (killed.adapters_dir("kill") / ".checkpoint").exists()
    assert [p.name for p in killed.adapters_dir("kill").iterdir() if p.name.startswith(".")] == []
    assert not [p for p in killed.trunk_cache_dir.rglob(".*")]  # no half-written shard left behind
    expected, got = weights(reference), weights(killed)
    assert expected.keys() == got.keys()
    worst = max(float(abs(expected[k] - got[k]).max()) for k in expected)
    assert worst < 1e-4, worst


def test_crawl_killed_at_several_moments_ends_equal_to_an_uninterrupted_one(tmp_path: Path) -> None:
    from samplesite import SampleSite
    from tests.test_crawler import counts, run_crawl

    with SampleSite() as site:
        site.latency = 0.1
        env = {**os.environ, "QUALIA_HOME": str(tmp_path), **site.env()}
        args = [sys.executable, "-m", "crawler", "killed", "--substack", site.substack_handle, "--pinterest",
                site.pinterest_username, "--depth", "1", "--delay", "0"]
        kills = 0
        for moment in (2.0, 2.5, 3.0):  # each run resumes the one killed before it
            proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(moment)
            os.kill(proc.pid, signal.SIGKILL)
            if proc.wait(timeout=60) != -signal.SIGKILL:
                break  # it finished first
            kills += 1
        site.latency = 0.0
        assert kills >= 2
        run_crawl(site, tmp_path, "killed", depth=1)
        assert counts(tmp_path, "killed") == site.expected_counts(1)


BUILD_INDEX = """
import sys
from pathlib import Path
from qualia.backbone import load_backbone
from qualia.embed import Encoder
from qualia.index import build_index
from qualia.workspace import Workspace
build_index(Workspace(Path(sys.argv[1])), "kill", Encoder.load(load_backbone("qualia-tiny")), None)
"""


def test_index_build_killed_at_several_moments_ends_equal_to_an_uninterrupted_one(tmp_path: Path) -> None:
    import faiss
    import numpy as np

    from qualia.index import ProfileIndex

    reference, killed = Workspace(tmp_path / "reference"), Workspace(tmp_path / "killed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for ws in (reference, killed):
        build_synthetic_corpus(ws, "kill", n_pins=300, n_posts=0)
    subprocess.run([sys.executable, "-c", BUILD_INDEX, str(reference.root)], env=env, cwd=ROOT, check=True)
    kills = 0
    for moment in (3.0, 4.0, 5.0):
        proc = subprocess.Popen([sys.executable, "-c", BUILD_INDEX, str(killed.root)], env=env, cwd=ROOT)
        time.sleep(moment)
        os.kill(proc.pid, signal.SIGKILL)
        kills += proc.wait(timeout=60) == -signal.SIGKILL
        assert all(ProfileIndex.load(killed.index_dir("kill") / v) for v in workspace.versions(killed.index_dir("kill")))
    assert kills >= 1
    subprocess.run([sys.executable, "-c", BUILD_INDEX, str(killed.root)], env=env, cwd=ROOT, check=True)
    assert [p.name for p in killed.index_dir("kill").iterdir() if p.name.startswith(".")] == []
    expected = ProfileIndex.load(reference.latest_index("kill"))
    got = ProfileIndex.load(killed.latest_index("kill"))
    assert [r["id"] for r in got.rows] == [r["id"] for r in expected.rows]
    for modality in ("image", "text"):  # one FAISS file each
        vectors = [faiss.rev_swig_ptr(ix.get_xb(), ix.ntotal * ix.d).reshape(ix.ntotal, ix.d) for ix in
                   (faiss.downcast_index(expected.indexes[modality]), faiss.downcast_index(got.indexes[modality]))]
        assert len(vectors[0]) and vectors[0].shape == vectors[1].shape
        assert np.abs(vectors[0] - vectors[1]).max() < 1e-5
