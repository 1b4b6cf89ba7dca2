"""`qualia export`: an adapter that open_clip (and peft) load in a process with no qualia code, giving
qualia's own embeddings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qualia.backbone import load_backbone
from qualia.config import TrainSettings
from qualia.embed import Encoder
from qualia.train import train_profile
from qualia.workspace import Workspace
from samplesite.pictures import draw_picture
from tests.helpers import run_qualia
from tests.test_train_eval import FAST, build_synthetic_corpus

TEXTS = ["a quiet morning", "grainy film of a kitchen", "tidewater boat at dusk"]

# Runs in a bare interpreter: only open_clip, peft, torch, numpy, PIL. argv: mode, path, picture, out.
ELSEWHERE = """
import sys, json
import numpy as np, torch, open_clip
from PIL import Image
mode, path, picture, out = sys.argv[1:5]
texts = json.loads(sys.argv[5])
if mode == "merged":
    open_clip.add_model_config(path.rsplit("/", 1)[0] + "/qualia-tiny.json")
    model, _, preprocess = open_clip.create_model_and_transforms("qualia-tiny", pretrained=path)
else:
    import peft
    open_clip.add_model_config(path + "/qualia-tiny.json")
    model, _, preprocess = open_clip.create_model_and_transforms("qualia-tiny", pretrained=path + "/base.safetensors")
    model = peft.PeftModel.from_pretrained(model, path).merge_and_unload()
model.eval()
tokenizer = open_clip.get_tokenizer("qualia-tiny")
with torch.no_grad():
    t = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1).numpy()
    i = torch.nn.functional.normalize(model.encode_image(preprocess(Image.open(picture).convert("RGB"))[None]), dim=-1).numpy()
assert not any(m == "qualia" or m.startswith("qualia.") for m in sys.modules), "qualia was imported"
np.save(out, np.concatenate([t, i]))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    ws = Workspace(tmp_path_factory.mktemp("export-home"))
    build_synthetic_corpus(ws, "ada", n_pins=80, n_posts=10)
    return ws, train_profile(ws, "ada", TrainSettings(epochs=1, **FAST))


def _elsewhere(mode: str, path: Path, picture: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / f"{mode}.npy"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", ELSEWHERE, mode, str(path), str(picture), str(out), json.dumps(TEXTS)],
                          capture_output=True, text=True, cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


def _qualia_embeddings(adapter: Path, picture: Path) -> np.ndarray:
    from PIL import Image

    meta = json.loads((adapter / "qualia.json").read_text())
    encoder = Encoder.load(load_backbone(meta["backbone"], meta["pretrained"]), adapter)
    with Image.open(picture) as im:
        return np.concatenate([encoder.encode_texts(TEXTS), encoder.encode_images([im.convert("RGB")])])


@pytest.mark.slow
def test_merged_and_peft_exports_load_without_qualia_and_give_its_embeddings(trained, tmp_path: Path) -> None:
    ws, adapter = trained
    env = {"QUALIA_HOME": str(ws.root)}
    picture = tmp_path / "picture.png"
    draw_picture("quiet morning", "cup", 7, size=96).save(picture)
    ours = _qualia_embeddings(adapter, picture)
    base = Encoder.load(load_backbone("qualia-tiny"))
    assert np.abs(base.encode_texts(TEXTS) - ours[: len(TEXTS)]).max() > 1e-3  # the adapter changes something

    merged = tmp_path / "out" / "ada.safetensors"
    done = run_qualia("export", "ada", "--merged", "--out", str(merged), "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["merged"] and report["adapter_version"] == adapter.name
    assert Path(report["model_config"]) == merged.with_name("qualia-tiny.json")
    assert np.abs(_elsewhere("merged", merged, picture, tmp_path) - ours).max() <= 1e-5

    folder = tmp_path / "ada-adapter"
    done = run_qualia("export", "ada", "--out", str(folder), env=env)
    assert done.returncode == 0, done.stderr
    assert {"adapter_config.json", "adapter_model.safetensors", "qualia.json", "README.md", "base.safetensors",
            "qualia-tiny.json"} <= {p.name for p in folder.iterdir()}
    assert "peft.PeftModel.from_pretrained" in (folder / "README.md").read_text()
    assert np.abs(_elsewhere("peft", folder, picture, tmp_path) - ours).max() <= 1e-5


def test_export_refuses_to_overwrite_and_names_what_it_needs(trained, tmp_path: Path) -> None:
    ws, _ = trained
    env = {"QUALIA_HOME": str(ws.root)}
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"someone's file")
    done = run_qualia("export", "ada", "--merged", "--out", str(taken), env=env)
    assert done.returncode == 2 and "already exists" in done.stderr and "Traceback" not in done.stderr
    assert taken.read_bytes() == b"someone's file"
    done = run_qualia("export", "ada", "--merged", "--out", str(tmp_path / "model.pt"), env=env)
    assert done.returncode == 2 and ".safetensors" in done.stderr
    done = run_qualia("export", "nobody", "--out", str(tmp_path / "x"), env=env)
    assert done.returncode != 0 and "nobody" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()
