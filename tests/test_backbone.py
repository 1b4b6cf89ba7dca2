"""Where backbone weights come from: the tiny model's fixed-seed weights, local files, and a clear,
fast refusal when the hub cannot be had."""

from __future__ import annotations

import subprocess
import sys
import time

import open_clip
import pytest
import torch
from PIL import Image

from qualia.backbone import load_backbone, register_model_configs, state_dict_sha256
from qualia.config import TINY_BACKBONE
from qualia.errors import BackboneUnavailable


def test_tiny_backbone_loads_frozen_with_its_tools(tiny):
    assert tiny.name == TINY_BACKBONE and tiny.pretrained == "random-seed0"
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
