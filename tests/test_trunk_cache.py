"""qualia.trunk_cache: the image tower's frozen trunk on disk gives what the tower computes, is read back
instead of recomputed, is never read for other weights, and a damaged shard is rebuilt, not believed;
an encoder (index, evaluation) through the cache gives the whole tower's embeddings."""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from qualia.backbone import Backbone
from qualia.config import TrainSettings
from qualia.embed import Encoder
from qualia.lora import attach_lora
from qualia.towers import depths, image_trunk
from qualia.trunk_cache import TrunkCache, pixel_keys


def _pixels(tiny: Backbone, n: int, seed: int = 0) -> torch.Tensor:
    size = tiny.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).half()


def _other_weights(tiny: Backbone) -> Backbone:
    model = copy.deepcopy(tiny.model)
    with torch.no_grad():
        for p in model.visual.transformer.resblocks[0].parameters():
            p.add_(0.1)
    return Backbone(**{**tiny.__dict__, "model": model, "weights_sha256": "f" * 64})


def test_trunks_are_the_towers_own_and_read_back_not_recomputed(tiny, tmp_path: Path) -> None:
    pixels = _pixels(tiny, 70)  # more than one shard
    with torch.no_grad():
        expected = image_trunk(tiny.model, pixels.float(), 2)
    first = TrunkCache(tmp_path, tiny, 2).trunks(pixels)
    assert first.dtype == torch.float16 and first.shape == expected.shape
    assert torch.allclose(first.float(), expected, atol=2e-2, rtol=1e-2)
    shards = sorted(TrunkCache(tmp_path, tiny, 2).folder.iterdir())
    assert len(shards) == 2

    # read back: a model whose trunk would give something else proves nothing was recomputed
    other = _other_weights(tiny).model
    again = TrunkCache(tmp_path, tiny, 2).trunks(pixels[[5, 64, 5]], model=other)
    assert torch.equal(again, first[[5, 64, 5]])
    assert sorted(TrunkCache(tmp_path, tiny, 2).folder.iterdir()) == shards


def test_other_weights_or_another_cut_never_read_the_cache(tiny, tmp_path: Path) -> None:
    pixels = _pixels(tiny, 4)
    TrunkCache(tmp_path, tiny, 2).trunks(pixels)
    changed = _other_weights(tiny)
    with torch.no_grad():
        expected = image_trunk(changed.model, pixels.float(), 2)
    got = TrunkCache(tmp_path, changed, 2).trunks(pixels)
    assert torch.allclose(got.float(), expected, atol=2e-2, rtol=1e-2)
    assert not torch.allclose(got, TrunkCache(tmp_path, tiny, 2).trunks(pixels), atol=1e-2)
    assert TrunkCache(tmp_path, tiny, 1).trunks(pixels).shape == got.shape  # block 1: its own folder
    assert len(list(tmp_path.iterdir())) == 3


@pytest.mark.parametrize("damage", ["cut", "flipped", "empty"])
def test_a_damaged_shard_is_dropped_and_recomputed(tiny, tmp_path: Path, caplog, damage: str) -> None:
    pixels = _pixels(tiny, 6)
    good = TrunkCache(tmp_path, tiny, 2).trunks(pixels)
    (shard,) = TrunkCache(tmp_path, tiny, 2).folder.iterdir()
    data = shard.read_bytes()
    if damage == "cut":
        shard.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        shard.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    else:
        shard.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="qualia.trunk_cache"):
        again = TrunkCache(tmp_path, tiny, 2).trunks(pixels)
    assert torch.equal(again, good)
    assert "dropping" in caplog.text and shard.name in caplog.text
    # rebuilt: one shard whose bytes hash to its name (the old name again when the recomputed bytes equal
    # the first ones, which depends on the math library's kernels, not on the cache)
    (rebuilt,) = TrunkCache(tmp_path, tiny, 2).folder.iterdir()
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == rebuilt.name.split(".")[0]


def test_keys_are_the_pixels_content(tiny) -> None:
    pixels = _pixels(tiny, 3)
    keys = pixel_keys(pixels)
    assert len(set(keys)) == 3
    assert pixel_keys(pixels.float()) == keys  # what float32 pixels round to in float16 is what is keyed
    assert pixel_keys(pixels[[2]]) == keys[2:]


def test_an_encoder_through_the_cache_gives_the_whole_towers_embeddings(tiny, tmp_path: Path) -> None:
    settings = TrainSettings(backbone="qualia-tiny", lora_blocks=2)
    model = attach_lora(tiny, settings.lora(None, depths(tiny.model)))
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter something to say
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    start = settings.tower_starts(depths(tiny.model))[0]
    pixels = _pixels(tiny, 20).float()
    whole = Encoder(model, tiny).encode_pixels(pixels)
    cached = Encoder(model, tiny, trunks=TrunkCache(tmp_path, tiny, start)).encode_pixels(pixels)
    assert np.abs(whole - cached).max() < 5e-3  # float16 activations
    assert float((whole * cached).sum(axis=1).min()) > 0.9999
    base = Encoder(tiny.model, tiny).encode_pixels(pixels)
    assert np.abs(whole - base).max() > 1e-2  # the adapter's head did change them
