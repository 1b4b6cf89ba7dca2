"""qualia.adapter_bank: an adapter kept unmerged over the shared backbone encodes as the merged model does,
leaves the backbone as it was, costs its own bytes, and a file that does not say what it changes is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from qualia.adapter_bank import read_low_rank
from qualia.backbone import state_dict_sha256
from qualia.config import TrainSettings
from qualia.embed import Encoder
from qualia.errors import AdapterMismatch, CorruptArtifact
from qualia.lora import META_FILE, adapter_identity, attach_lora, save_adapter
from qualia.towers import depths

TEXTS = ["a quiet morning in the kitchen", "tidewater tidewater fog", "honey light on a cup", "x"]


def _saved_adapter(tiny, folder: Path, lora_blocks: int, tokens: bool) -> Path:
    ids = sorted({int(t) for t in tiny.tokenizer(TEXTS[:2]).flatten() if 0 < t < 49406}) if tokens else None
    settings = TrainSettings(backbone="qualia-tiny", lora_blocks=lora_blocks).lora(ids, depths(tiny.model))
    model = attach_lora(tiny, settings)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter something to say
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    save_adapter(model, folder, adapter_identity(tiny, settings))
    return folder


def _pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.mark.parametrize("lora_blocks,tokens", [(2, True), (0, False)])
def test_unmerged_adapter_encodes_as_the_merged_model(tiny, tmp_path: Path, lora_blocks: int, tokens: bool) -> None:
    folder = _saved_adapter(tiny, tmp_path / "adapter", lora_blocks, tokens)
    before = state_dict_sha256(tiny.model)
    merged = Encoder.load(tiny, folder)
    low_rank = read_low_rank(folder, tiny)
    shared = Encoder(tiny.model, tiny, low_rank=low_rank)
    pictures = _pictures(5)
    for got, want in ((shared.encode_texts(TEXTS), merged.encode_texts(TEXTS)),
                      (shared.encode_images(pictures), merged.encode_images(pictures))):  # fmt: skip
        assert np.abs(got - want).max() < 1e-5
    base = Encoder(tiny.model, tiny)
    assert np.abs(base.encode_texts(TEXTS) - merged.encode_texts(TEXTS)).max() > 1e-2  # the adapter says something
    assert np.abs(base.encode_images(pictures) - merged.encode_images(pictures)).max() > 1e-2
    assert state_dict_sha256(tiny.model) == before  # the shared backbone is the base again
    assert not [name for name, m in tiny.model.named_modules() if "forward" in vars(m)]  # its own forwards too
    backbone_bytes = sum(p.numel() * p.element_size() for p in tiny.model.parameters())
    assert 0 < low_rank.nbytes < backbone_bytes / 10
    assert (low_rank.token_ids is not None) == tokens


def test_a_file_that_does_not_say_what_it_changes_is_refused(tiny, tmp_path: Path) -> None:
    folder = _saved_adapter(tiny, tmp_path / "adapter", 2, False)
    weights_file = folder / "adapter_model.safetensors"
    tensors = load_file(str(weights_file))
    save_file({**tensors, "base_model.model.visual.nowhere.lora_A.weight": torch.zeros(8, 4)}, str(weights_file))
    with pytest.raises(CorruptArtifact, match="nowhere"):
        read_low_rank(folder, tiny)
    half = {k: v for k, v in tensors.items() if not k.endswith("c_fc.lora_B.weight")}
    save_file(half, str(weights_file))
    with pytest.raises(CorruptArtifact, match="half its LoRA"):
        read_low_rank(folder, tiny)


def test_an_adapter_of_other_weights_is_refused(tiny, tmp_path: Path) -> None:
    folder = _saved_adapter(tiny, tmp_path / "adapter", 2, False)
    other = type(tiny)(**{**tiny.__dict__, "weights_sha256": "0" * 64})
    with pytest.raises(AdapterMismatch):
        read_low_rank(folder, other)


def test_the_cache_keeps_adapters_within_its_budget_least_recently_used_first(tiny, tmp_path: Path) -> None:
    from qualia.adapter_bank import LowRankCache

    folders = [_saved_adapter(tiny, tmp_path / f"a{i}", 2, False) for i in range(3)]
    size = read_low_rank(folders[0], tiny).nbytes
    cache = LowRankCache(budget_bytes=2 * size)
    first = cache.get(folders[0], tiny)
    assert cache.get(folders[0], tiny) is first  # read once
    cache.get(folders[1], tiny)
    cache.get(folders[0], tiny)  # now the most recently used
    cache.get(folders[2], tiny)  # over budget: folders[1] leaves
    assert len(cache) == 2 and cache.nbytes <= 2 * size
    assert cache.get(folders[0], tiny) is first
    assert cache.get(folders[1], tiny) is not None and len(cache) == 2
    assert LowRankCache(budget_bytes=0).get(folders[0], tiny).nbytes == size  # the newest always stays


def test_training_attention_on_activations_has_peft_s_features_and_gradients(tiny) -> None:
    """Training runs peft's attention LoRA as W x + s·B(A x) instead of merging around each forward: the
    same features, and the same gradients reaching every LoRA weight and token row (peft adds out_proj's
    update twice but trains it through one: that is kept, so adapters train as before)."""
    from qualia.adapter_bank import attention_on_activations
    from qualia.towers import encode_text

    tokens = tiny.tokenizer(["a quiet morning", "grain " * 7, "harbor fog at dusk"])
    ids = sorted(set(tokens.flatten().tolist()) - {0})
    model = attach_lora(tiny, TrainSettings(backbone="qualia-tiny", lora_blocks=2).lora(ids, depths(tiny.model)))
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter something to say
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    pixels = torch.stack([tiny.preprocess(picture) for picture in _pictures(3)])

    def features_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        features = torch.cat([encode_text(model, tokens), model.encode_image(pixels)])
        (features * torch.linspace(-1, 1, features.shape[1])).sum().backward()
        return features.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    merged, merged_grads = features_and_grads()
    with attention_on_activations(model) as layers:
        on_activations, grads = features_and_grads()
    assert layers == 4  # the top 2 blocks of each tower
    assert torch.allclose(on_activations, merged, atol=1e-5)
    assert grads.keys() == merged_grads.keys() and any("attn" in n for n in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, merged_grads[name], rtol=1e-4, atol=1e-5), name
    assert torch.equal(features_and_grads()[0], merged)  # peft's own forward is back


def test_held_never_reads_and_sees_what_get_would_read_again(tiny, tmp_path: Path) -> None:
    """What the service's event loop asks (no thread hop): the adapter if in memory as on disk, else None."""
    from qualia.adapter_bank import LowRankCache
    from qualia.search import ProfileSearcher

    folders = [_saved_adapter(tiny, tmp_path / f"a{i}", 2, False) for i in range(2)]
    cache = LowRankCache(budget_bytes=0)  # holds one adapter: the newest
    searcher = ProfileSearcher("p", None, low_rank_of=lambda read: (  # type: ignore[arg-type]
        tiny, cache.get(folders[0], tiny) if read else cache.held(folders[0], tiny)))
    assert cache.held(folders[0], tiny) is None and searcher.held_encoder() is None and len(cache) == 0
    first = searcher.encoder.low_rank  # reads it
    assert cache.held(folders[0], tiny) is first and searcher.held_encoder().low_rank is first
    cache.get(folders[1], tiny)  # the budget lets folders[0] go
    assert searcher.held_encoder() is None and cache.held(folders[0], tiny) is None
    again = searcher.encoder.low_rank
    assert again is not first and searcher.held_encoder().low_rank is again
    meta = folders[0] / META_FILE  # rewritten in place: held no longer, read and checked again by get
    meta.write_text(meta.read_text() + " ")
    assert searcher.held_encoder() is None and searcher.encoder.low_rank is not again
    fixed = ProfileSearcher("p", None, encoder=Encoder(tiny.model, tiny))  # type: ignore[arg-type]
    assert fixed.held_encoder() is fixed.encoder
