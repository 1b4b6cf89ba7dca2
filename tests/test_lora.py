"""LoRA over the tiny backbone: what trains, what is saved, and what refuses to load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from qualia.backbone import load_backbone, state_dict_sha256
from qualia.config import TINY_BACKBONE, TINY_PRETRAINED, LoraSettings
from qualia.embed import Encoder, open_image
from qualia.errors import AdapterMismatch, CorruptArtifact, InvalidArgument, InvalidImage
from qualia.lora import adapter_identity, attach_lora, load_adapter, read_adapter_meta, save_adapter


def _nudged(model: torch.nn.Module) -> torch.nn.Module:
    """LoRA starts as a no-op (B = 0); give it something to carry."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


def _pictures() -> list[Image.Image]:
    return [Image.new("RGB", (64, 64), c) for c in [(250, 10, 10), (10, 250, 10), (10, 10, 250), (240, 240, 240)]]


def test_every_setting_explains_itself():
    for f in dataclasses.fields(LoraSettings):
        assert f.metadata.get("help"), f.name
    with pytest.raises(InvalidArgument):
        LoraSettings(rank=0)


def test_only_lora_parameters_train_and_the_backbone_is_untouched(tiny):
    before = state_dict_sha256(tiny.model)
    model = attach_lora(tiny, LoraSettings())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # attention and MLP of both towers are adapted
    assert any("visual.transformer" in n and ".attn." in n for n in trainable)
    assert any(n.startswith("base_model.model.transformer") and "c_fc" in n for n in trainable)
    assert all(not p.requires_grad for p in tiny.model.parameters())
    assert state_dict_sha256(tiny.model) == before


def test_save_then_load_gives_the_same_embeddings(tiny, tmp_path):
    before = state_dict_sha256(tiny.model)
    settings = LoraSettings(rank=4, alpha=8)
    model = _nudged(attach_lora(tiny, settings))
    texts = ["tidewater boat", "static chair", "greenhouse"]
    live = Encoder(model, tiny)
    live_text, live_image = live.encode_texts(texts), live.encode_images(_pictures())

    save_adapter(model, tmp_path / "a", {**adapter_identity(tiny, settings), "note": "test"})
    meta = read_adapter_meta(tmp_path / "a")
    assert meta["weights_sha256"] == tiny.weights_sha256 and meta["backbone"] == TINY_BACKBONE
    assert meta["lora"]["rank"] == 4 and meta["note"] == "test"
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["r"] == 4

    loaded = Encoder.load(tiny, tmp_path / "a")
    np.testing.assert_allclose(loaded.encode_texts(texts), live_text, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_images(_pictures()), live_image, atol=1e-5)
    base = Encoder.load(tiny)
    assert np.abs(base.encode_texts(texts) - live_text).max() > 1e-2  # the adapter changes something
    assert state_dict_sha256(tiny.model) == before  # loading worked on a copy
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_adapter_on_other_base_weights_is_refused(tiny, tmp_path):
    settings = LoraSettings()
    save_adapter(_nudged(attach_lora(tiny, settings)), tmp_path / "a", adapter_identity(tiny, settings))
    other = load_backbone(TINY_BACKBONE, "random-seed1")
    with pytest.raises(AdapterMismatch) as caught:
        load_adapter(other, tmp_path / "a")
    message = str(caught.value)
    assert tiny.weights_sha256[:16] in message and other.weights_sha256[:16] in message
    assert TINY_PRETRAINED in message and "random-seed1" in message


def test_folder_without_metadata_is_not_an_adapter(tiny, tmp_path):
    with pytest.raises(CorruptArtifact, match="not a qualia adapter"):
        load_adapter(tiny, tmp_path)


def test_encoder_output_is_normalized_float32_and_batch_independent(tiny, tmp_path):
    pictures = _pictures()
    paths = []
    for i, im in enumerate(pictures):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    whole, small = Encoder.load(tiny), Encoder(tiny.model, tiny, batch_size=3)
    assert whole.dim == 128
    emb = whole.encode_images([open_image(p) for p in paths])  # read back from disk as indexing does
    assert emb.shape == (4, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(small.encode_images([open_image(p) for p in paths]), emb, atol=1e-5)
    np.testing.assert_allclose(small.encode_images(pictures), emb, atol=1e-5)
    texts = [f"text {i}" for i in range(7)]
    np.testing.assert_allclose(small.encode_texts(texts), whole.encode_texts(texts), atol=1e-5)
    assert whole.encode_texts([]).shape == (0, 128)


def test_unreadable_image_is_a_clear_error(tiny, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no picture here")
    with pytest.raises(InvalidImage, match="cannot read image"):
        open_image(bad)


def test_metadata_without_an_identity_is_refused(tiny, tmp_path):
    model = attach_lora(tiny, LoraSettings())
    with pytest.raises(InvalidArgument, match="adapter_identity"):
        save_adapter(model, tmp_path / "a", {"note": "no backbone named"})


def test_a_damaged_newest_adapter_gives_way_to_the_newest_complete_one(tiny, tmp_path):
    from qualia.errors import CorruptArtifact
    from qualia.lora import usable_adapter
    from qualia.workspace import Workspace

    ws = Workspace(tmp_path)
    settings = LoraSettings(rank=2)
    model = attach_lora(tiny, settings)
    older, newer, empty = (ws.adapters_dir("mara") / v for v in
                           ("20260101T000000000000Z", "20260102T000000000000Z", "20260103T000000000000Z"))
    for folder in (older, newer):
        save_adapter(model, folder, adapter_identity(tiny, settings))
    ws.corpus_path("mara").touch()
    (newer / "adapter_model.safetensors").unlink()
    empty.mkdir()
    folder, meta = usable_adapter(ws, "mara")
    assert folder == older and meta["lora"]["rank"] == 2
    with pytest.raises(CorruptArtifact, match="incomplete"):
        usable_adapter(ws, "mara", newer.name)  # asked for by name: no stand-in
    (older / "qualia.json").write_text("{cut")
    with pytest.raises(CorruptArtifact, match="every adapter"):
        usable_adapter(ws, "mara")
