"""Training and evaluation end to end on a synthetic profile: words for looks that a random
backbone cannot know, learned by the adapter (tiny backbone, real peft, real SQLite corpus)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from PIL import Image

from qualia import workspace
from qualia.config import TINY_PRETRAINED, TrainSettings
from qualia.corpus import Corpus
from qualia.errors import InvalidArgument, NotEnoughData
from qualia.evaluate import evaluate_profile, retrieval_metrics, validation_pairs
from qualia.lora import read_adapter_meta
from qualia.pairs import Pair
from qualia.train import CHECKPOINT_DIR, _Data, contrastive_loss, train_profile
from qualia.workspace import Workspace
from samplesite.pictures import STYLES, SUBJECTS, draw_picture

FILLERS = ["saved for later", "moodboard", "ideas for the flat", "love this", "", "found on a walk"]


def _png(style: str, subject: str, seed: int) -> bytes:
    buffer = io.BytesIO()
    draw_picture(style, subject, seed, size=64).save(buffer, format="PNG")
    return buffer.getvalue()


def build_synthetic_corpus(ws: Workspace, profile: str, n_pins: int = 300, n_posts: int = 40, seed: int = 0) -> None:
    """Pins titled "<style> <subject>" and posts whose cover/body pictures carry the same words."""
    rng = random.Random(seed)
    with Corpus.open(ws, profile) as corpus:
        corpus.upsert_item("pinterest:user:ada", source="pinterest", kind="user", degree=0)
        corpus.upsert_item("substack:user:ada", source="substack", kind="user", degree=0)
        for i in range(n_pins):
            style, subject = rng.choice(STYLES), rng.choice(SUBJECTS)
            degree = 1 if i % 5 else 2
            pin = f"pinterest:pin:{i}"
            corpus.upsert_item(
                pin, source="pinterest", kind="pin", degree=degree,
                title=f"{style} {subject}", text=rng.choice(FILLERS), via=("pinterest:user:ada", "pinned"),
            )
            url = f"http://127.0.0.1/pin/{i}.png"
            corpus.store_image(url, _png(style, subject, 1000 + i))
            corpus.add_image_ref(pin, url, "pin")
        for i in range(n_posts):
            style = rng.choice(STYLES)
            post = f"substack:post:{i}"
            subjects = rng.sample(SUBJECTS, 3)
            corpus.upsert_item(
                post, source="substack", kind="post", degree=1, title=f"{style} {subjects[0]}",
                text="<p>long body</p>", data={"subtitle": f"notes on {style}"}, via=("substack:user:ada", "wrote"),
            )
            for j, subject in enumerate(subjects):
                url = f"http://127.0.0.1/post/{i}/{j}.png"
                corpus.store_image(url, _png(style, subject, 5000 + 10 * i + j))
                if j == 0:
                    corpus.add_image_ref(post, url, "cover")
                else:
                    corpus.add_image_ref(post, url, "body", alt=f"{style} {subject}", caption=None, position=j)
        corpus.commit()


FAST = dict(backbone="qualia-tiny", batch_size=64, lr=2e-3, rank=8, alpha=16, seed=0)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("qualia-home"))
    build_synthetic_corpus(ws, "ada")
    return ws


@pytest.fixture(scope="module")
def trained(home):
    return train_profile(home, "ada", TrainSettings(epochs=5, **FAST))


@pytest.mark.slow
def test_adapter_beats_frozen_base_on_held_out_pairs(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["pairs"] >= 40
    base, adapter = metrics["base"], metrics["adapter"]
    assert adapter["t2i"]["r10"] >= base["t2i"]["r10"] + 0.25, metrics
    assert adapter["i2t"]["r10"] > base["i2t"]["r10"], metrics
    assert adapter["gap"] < base["gap"], metrics  # contrastive training pulls the two modalities together


@pytest.mark.slow
def test_adapter_folder_is_complete_and_reevaluates_the_same(trained, home):
    names = {p.name for p in trained.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "qualia.json", "metrics.json", "split.json",
            "loss_curve.png"} <= names
    meta = read_adapter_meta(trained)
    assert meta["backbone"] == "qualia-tiny" and meta["pretrained"] == TINY_PRETRAINED
    # each fact once: the identity at the top, LoRA under "lora", the rest of the recipe under "train"
    assert meta["lora"]["rank"] == 8 and meta["train"]["epochs"] == 5
    assert not {"backbone", "pretrained", "rank", "alpha", "dropout"} & meta["train"].keys()
    assert meta["data"]["pairs_train"] + meta["data"]["pairs_val"] == meta["data"]["pairs"]
    assert len(meta["history"]) == meta["epochs_run"] <= 5 and meta["history"][-1]["train_loss"] < meta["history"][0]["train_loss"]
    # the kept epoch is the one with the best held-out recall
    best = max(meta["history"], key=lambda r: (r["val_t2i_r10"] + r["val_i2t_r10"], -r["val_loss"]))
    assert meta["best_epoch"] == best["epoch"]
    assert meta["temperature"]["learnable"] is False
    with Image.open(trained / "loss_curve.png") as im:
        assert im.format == "PNG" and im.size[0] >= 600
    with Image.open(trained / "modality_gap.png") as im:
        assert im.format == "PNG"
    assert not (home.adapters_dir("ada") / CHECKPOINT_DIR).exists()

    # a later evaluation (fresh backbone, adapter read from disk) reproduces the training-time numbers
    again = evaluate_profile(home, "ada", trained.name)
    saved = json.loads((trained / "metrics.json").read_text())
    assert again["pairs"] == saved["pairs"]
    for side in ("base", "adapter"):
        for direction in ("t2i", "i2t"):
            for k in ("r1", "r5", "r10"):
                assert again[side][direction][k] == pytest.approx(saved[side][direction][k], abs=0.03)
        assert again[side]["gap"] == pytest.approx(saved[side]["gap"], abs=1e-2)
    held_out = {p.artifact_id for p in validation_pairs(home, "ada", trained)}
    assert held_out == set(json.loads((trained / "split.json").read_text())["val_artifacts"])


def test_interrupted_training_resumes_from_its_checkpoint(ws):
    build_synthetic_corpus(ws, "ada", n_pins=60, n_posts=0)
    settings = TrainSettings(epochs=3, **FAST)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train_profile(ws, "ada", settings, on_epoch_end=stop_after_first)
    assert (ws.adapters_dir("ada") / CHECKPOINT_DIR / "state.pt").is_file()
    before = set(workspace.versions(ws.adapters_dir("ada")))

    ran: list[int] = []
    folder = train_profile(ws, "ada", settings, on_epoch_end=lambda epoch, record: ran.append(epoch))
    assert ran == [2, 3]  # epoch 1 came from the checkpoint
    assert folder.name not in before
    assert [h["epoch"] for h in read_adapter_meta(folder)["history"]] == [1, 2, 3]
    assert not (ws.adapters_dir("ada") / CHECKPOINT_DIR).exists()


def test_checkpoint_from_other_settings_is_not_resumed(ws):
    import torch

    build_synthetic_corpus(ws, "small", n_pins=40, n_posts=0)
    stale = ws.adapters_dir("small") / CHECKPOINT_DIR / "state.pt"
    stale.parent.mkdir(parents=True)
    torch.save({"fingerprint": "other settings", "epoch": 1, "lora": {}, "optimizer": {}, "history": []}, stale)
    ran: list[int] = []
    folder = train_profile(ws, "small", TrainSettings(epochs=1, **FAST), on_epoch_end=lambda e, r: ran.append(e))
    assert ran == [1]
    assert read_adapter_meta(folder)["data"]["pairs"] == 40
    assert not stale.exists()


def test_too_few_pairs_is_a_clear_error(ws):
    build_synthetic_corpus(ws, "tiny", n_pins=5, n_posts=0)
    with pytest.raises(NotEnoughData, match="too few text-image pairs"):
        train_profile(ws, "tiny", TrainSettings(epochs=1, **FAST))


def test_bad_lora_settings_fail_before_any_loading():
    with pytest.raises(InvalidArgument, match="LoRA rank"):
        TrainSettings(rank=0)


class _Identity:
    """A 'model' whose embeddings are its inputs, so the loss can be computed by hand."""

    def encode_image(self, pixels):
        return pixels

    def encode_text(self, tokens):
        return tokens.float()


def test_masked_weighted_loss_matches_a_hand_computed_3x3():
    import math

    import torch

    # pairs 1 and 2 show the same picture: each is not the other's negative (masked), both ways
    data = _Data(
        pixels=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),  # pictures i0, i1 (already unit vectors)
        tokens=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]),  # texts t0, t1, t2
        image_of=torch.tensor([0, 1, 1]),
        text_of=torch.tensor([0, 1, 2]),
        weight=torch.tensor([1.0, 1.0, 0.5]),
    )
    loss = contrastive_loss(_Identity(), data, torch.arange(3), torch.tensor(1.0), torch.device("cpu"))
    e = math.e
    # rows: texts over pictures [i0, i1, i1]; t0: [1, 0, 0]; t1: [0, 1, masked]; t2: [0.6, masked, 0.8]
    text_to_image = [math.log(e + 2) - 1, math.log(1 + e) - 1, math.log(e**0.6 + e**0.8) - 0.8]
    # columns: pictures over texts; i0: [1, 0, 0.6]; i1 (pair 1): [0, 1, masked]; i1 (pair 2): [0, masked, 0.8]
    image_to_text = [math.log(e + 1 + e**0.6) - 1, math.log(1 + e) - 1, math.log(1 + e**0.8) - 0.8]
    per_pair = [(a + b) / 2 for a, b in zip(text_to_image, image_to_text)]
    expected = (per_pair[0] + per_pair[1] + 0.5 * per_pair[2]) / 2.5
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # pair 2 on a picture of its own: nothing is masked, and the answer changes
    unmasked = _Data(**{**data.__dict__, "image_of": torch.tensor([0, 1, 0])})
    assert float(contrastive_loss(_Identity(), unmasked, torch.arange(3), torch.tensor(1.0), torch.device("cpu"))) \
        != pytest.approx(expected, abs=1e-3)


def test_generic_anchor_adds_the_replay_rows_drift_from_the_frozen_backbone():
    import torch

    data = _Data(
        pixels=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        tokens=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        image_of=torch.tensor([0, 1]),
        text_of=torch.tensor([0, 1]),
        weight=torch.tensor([1.0, 1.0]),
        # row 1 is a generic replay pair: the frozen backbone put its picture at (0, 1), its text at (0.6, 0.8)
        anchor_image=torch.tensor([[0.0, 0.0], [0.0, 1.0]]),
        anchor_text=torch.tensor([[0.0, 0.0], [0.6, 0.8]]),
        anchored=torch.tensor([False, True]),
    )
    args = (_Identity(), data, torch.arange(2), torch.tensor(1.0), torch.device("cpu"))
    plain = float(contrastive_loss(*args))
    # picture unmoved (cosine 1), text moved to (0, 1): cosine 0.8, so a drift of (1 - 1) + (1 - 0.8)
    assert float(contrastive_loss(*args, generic_anchor=2.0)) == pytest.approx(plain + 2.0 * 0.2, abs=1e-6)
    # a person's own rows are never anchored
    only_own = _Data(**{**data.__dict__, "anchored": torch.tensor([False, False])})
    assert float(contrastive_loss(_Identity(), only_own, torch.arange(2), torch.tensor(1.0), torch.device("cpu"),
                                  generic_anchor=2.0)) == pytest.approx(plain, abs=1e-6)


def _pairs(shas: list[str]) -> list[Pair]:
    return [Pair(f"t{i}", sha, Path("/x"), f"a{i}", "pinterest", 1, "pin", 1.0) for i, sha in enumerate(shas)]


def test_retrieval_metrics_known_answers():
    import numpy as np

    eye = np.eye(4, dtype=np.float32)
    pairs = _pairs(["a", "b", "c", "d"])
    perfect = retrieval_metrics(eye, eye, pairs)
    assert perfect["t2i"] == {"r1": 1.0, "r5": 1.0, "r10": 1.0} and perfect["i2t"]["r1"] == 1.0
    assert perfect["gap"] == pytest.approx(0.0)
    # texts point at the next picture: nothing right at rank 1, everything within rank 5
    shifted = retrieval_metrics(np.roll(eye, 1, axis=1), eye, pairs)
    assert shifted["t2i"]["r1"] == 0.0 and shifted["t2i"]["r5"] == 1.0
    # all embeddings equal: ties count against the query
    flat = np.ones((4, 4), dtype=np.float32)
    assert retrieval_metrics(flat, flat, pairs)["t2i"]["r1"] == 0.0
    # two texts of one picture: the gallery has 3 pictures, image_emb may follow pairs or unique pictures
    pairs = _pairs(["a", "a", "b", "c"])
    texts = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    per_pair = retrieval_metrics(texts, texts, pairs)
    per_image = retrieval_metrics(texts, texts[[0, 2, 3]], pairs)
    assert per_pair == per_image and per_pair["i2t"]["r1"] == 1.0
    # modality gap: unit texts on one axis, unit pictures on another
    gap = retrieval_metrics(eye[[0, 0, 0, 0]], eye[[1, 1, 1, 1]], _pairs(["a", "b", "c", "d"]))["gap"]
    assert gap == pytest.approx(2**0.5)


def test_bf16_steps_train_near_the_float32_ones(ws):
    """``--precision bf16`` (what ``auto`` picks on cuda) runs the steps under bfloat16 autocast: its
    adapter is not float32's (autocast did act), but embeds the held-out texts nearly as float32's does."""
    import numpy as np

    from qualia.backbone import load_backbone
    from qualia.embed import Encoder
    from qualia.evaluate import validation_pairs

    build_synthetic_corpus(ws, "mixed", n_pins=60, n_posts=0)
    assert TrainSettings(device="cuda").mixed_precision() and not TrainSettings().mixed_precision()
    folders = {p: train_profile(ws, "mixed", TrainSettings(epochs=2, precision=p, **FAST)) for p in ("fp32", "bf16")}
    texts = [p.text for p in validation_pairs(ws, "mixed", folders["fp32"])]
    backbone = load_backbone("qualia-tiny")
    fp32, bf16, base = (Encoder.load(backbone, folders["fp32"]).encode_texts(texts),
                        Encoder.load(backbone, folders["bf16"]).encode_texts(texts), Encoder.load(backbone).encode_texts(texts))  # fmt: skip
    assert np.abs(fp32 - bf16).max() > 1e-4
    assert float((fp32 * bf16).sum(axis=1).min()) > 0.99
    assert np.abs(fp32 - base).max() > 10 * np.abs(fp32 - bf16).max()  # training moved them far more than bf16 did
    history = read_adapter_meta(folders["bf16"])["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert read_adapter_meta(folders["bf16"])["train"]["precision"] == "bf16"
