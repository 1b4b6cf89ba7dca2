"""Where backbone weights come from: the tiny model's fixed-seed weights, local files, and a clear,
fast refusal when the hub cannot be had."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import open_clip
import pytest
import torch
from PIL import Image

from qualia.backbone import load_backbone, register_model_configs, state_dict_sha256
from qualia.config import TINY_BACKBONE, TINY_PRETRAINED
from qualia.errors import BackboneUnavailable


def test_tiny_backbone_loads_frozen_with_its_tools(tiny):
    assert tiny.name == TINY_BACKBONE and tiny.pretrained == TINY_PRETRAINED
    assert tiny.embed_dim == 128 and tiny.image_size == 64
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())
    pixels = tiny.preprocess(Image.new("RGB", (200, 120), (200, 30, 30)))
    assert pixels.shape == (3, 64, 64)
    tokens = tiny.tokenizer(["tidewater boat", "a much longer sentence " * 20])
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    with torch.no_grad():
        assert tiny.model.encode_image(pixels[None]).shape == (1, 128)
        assert tiny.model.encode_text(tokens).shape == (2, 128)


@pytest.mark.slow
def test_tiny_weights_are_identical_in_another_process(tiny):
    code = "from qualia.backbone import load_backbone; print(load_backbone('qualia-tiny').weights_sha256)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert other.stdout.strip().splitlines()[-1] == tiny.weights_sha256
    assert tiny.weights_sha256 == state_dict_sha256(tiny.model)


def test_fixed_seed_init_leaves_the_callers_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_backbone(TINY_BACKBONE, "random-seed1")
    assert torch.equal(torch.rand(3), expected)


def test_local_weights_file_loads_and_other_seeds_differ(tiny, tmp_path):
    other = load_backbone(TINY_BACKBONE, "random-seed1")
    assert other.weights_sha256 != tiny.weights_sha256
    path = tmp_path / "tiny-seed1.pt"
    torch.save(other.model.state_dict(), path)
    from_file = load_backbone(TINY_BACKBONE, str(path))
    assert from_file.weights_sha256 == other.weights_sha256
    assert from_file.pretrained == str(path.resolve())


def test_unusable_weights_file_is_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneUnavailable, match="does not fit"):
        load_backbone(TINY_BACKBONE, str(junk))


def _assert_suggests_both(error: BackboneUnavailable) -> None:
    message = str(error)
    assert "--pretrained /path/to/weights" in message and "--backbone qualia-tiny" in message


def test_unknown_model_name_is_refused_with_suggestions():
    with pytest.raises(BackboneUnavailable) as caught:
        load_backbone("ViT-Imaginary-99")
    message = str(caught.value)
    assert "'ViT-Imaginary-99'" in message and "not an open_clip model name" in message
    assert "qualia-tiny" in message and "None" not in message


def test_unknown_tag_is_refused_with_suggestions():
    with pytest.raises(BackboneUnavailable) as caught:
        load_backbone("ViT-B-32", "no-such-tag")
    assert "no-such-tag" in str(caught.value)
    _assert_suggests_both(caught.value)


def test_hub_tag_fails_fast_when_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached, whatever this machine holds
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(BackboneUnavailable) as caught:
        load_backbone("ViT-B-32")
    assert time.monotonic() - started < 5
    assert "ViT-B-32 with weights 'laion2b_s34b_b79k'" in str(caught.value)
    _assert_suggests_both(caught.value)


def test_model_configs_register_once():
    register_model_configs()
    register_model_configs()
    assert open_clip.list_models().count(TINY_BACKBONE) == 1
    assert open_clip.get_model_config(TINY_BACKBONE)["vision_cfg"]["image_size"] == 64


def test_the_stand_in_ships_in_the_package_and_is_the_default(tiny):
    from qualia.backbone import SHIPPED_WEIGHTS_DIR, shipped_weights

    path = shipped_weights(TINY_BACKBONE, TINY_PRETRAINED)
    assert path is not None and path.parent == SHIPPED_WEIGHTS_DIR and path.stat().st_size <= 20 * 2**20
    card = json.loads((SHIPPED_WEIGHTS_DIR / f"{TINY_BACKBONE}-{TINY_PRETRAINED}.json").read_text())
    assert card["weights_sha256"] == tiny.weights_sha256  # what was measured is what loads
    assert load_backbone(TINY_BACKBONE, "random-seed0").weights_sha256 != tiny.weights_sha256


def test_shipped_weights_that_fail_their_checksum_are_refused(tmp_path, monkeypatch):
    from qualia import backbone as module

    copy = tmp_path / "weights"
    shutil.copytree(module.SHIPPED_WEIGHTS_DIR, copy)
    target = copy / f"{TINY_BACKBONE}-{TINY_PRETRAINED}.safetensors"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setattr(module, "SHIPPED_WEIGHTS_DIR", copy)
    with pytest.raises(BackboneUnavailable, match="fails its checksum") as caught:
        load_backbone(TINY_BACKBONE)
    assert "reinstall" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_stand_in_knows_generic_words_and_keeps_unseen_words_apart(tiny):
    from qualia.pretrain import evaluate_standin

    random_init = evaluate_standin(load_backbone(TINY_BACKBONE, "random-seed0"))
    standin = evaluate_standin(tiny)
    for direction in ("t2i", "i2t"):
        assert standin[direction]["r10"] >= 0.3 and standin[direction]["r10"] >= 5 * random_init[direction]["r10"]
    # the collapse gate: invented words it never saw stay at least as far apart as at random init
    assert standin["nonce_cosine"] <= random_init["nonce_cosine"] + 0.05
