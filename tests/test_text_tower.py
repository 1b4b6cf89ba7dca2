"""Texts are encoded cut to their batch's longest text: the same embeddings as open_clip's full-context
``encode_text``, for the tiny backbone, ViT-B-32's shape, with a LoRA adapter and trainable tokens."""

from __future__ import annotations

import open_clip
import pytest
import torch

from qualia.backbone import encode_text, text_length
from qualia.config import LoraSettings
from qualia.embed import Encoder
from qualia.lora import attach_lora

TEXTS = ["fog", "a quiet morning in the kitchen, grain on the film", "tidewater " * 6, "honey light on a cup"]


def _same(model: torch.nn.Module, tokens: torch.Tensor) -> None:
    with torch.no_grad():
        full, cut = model.encode_text(tokens), encode_text(model, tokens)
    assert cut.shape == full.shape
    assert torch.allclose(cut, full, atol=1e-5, rtol=1e-4), float((cut - full).abs().max())


def test_cut_texts_give_the_full_context_embeddings(tiny) -> None:
    tokens = tiny.tokenizer(TEXTS)
    assert text_length(tokens) < tokens.shape[1]  # there is padding to cut
    _same(tiny.model, tokens)
    _same(tiny.model, tiny.tokenizer(["one text " * 40]))  # a text that fills the context: nothing cut


def test_cut_texts_are_exact_through_lora_and_trainable_tokens(tiny) -> None:
    tokens = tiny.tokenizer(TEXTS)
    model = attach_lora(tiny, LoraSettings(trainable_tokens=sorted(set(tokens[0].tolist()) - {0})))
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter something to say
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    model.eval()
    _same(model, tokens)
    with torch.no_grad():
        assert not torch.allclose(model.encode_text(tokens), tiny.model.encode_text(tokens), atol=1e-3)


def test_cut_texts_are_exact_at_vit_b_32_shape() -> None:
    model = open_clip.create_model("ViT-B-32").eval()  # random weights: the architecture is what counts
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    assert tokens.shape[1] == 77 and text_length(tokens) < 20
    _same(model, tokens)


def test_encoder_sorts_by_length_and_answers_in_the_given_order(tiny) -> None:
    encoder = Encoder(tiny.model, tiny, batch_size=2)  # several batches of different lengths
    together = encoder.encode_texts(TEXTS)
    with torch.no_grad():
        alone = torch.nn.functional.normalize(tiny.model.encode_text(tiny.tokenizer(TEXTS)), dim=-1).numpy()
    assert together == pytest.approx(alone, abs=1e-5)
    assert encoder.encode_texts([]).shape == (0, tiny.embed_dim)
