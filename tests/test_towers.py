"""qualia.towers: each tower cut into a frozen trunk and an adapted head gives open_clip's own embeddings
(texts cut to their batch's longest text too), at the tiny backbone's and ViT-B-32's shape, through LoRA and
trainable tokens; and training that adapts only the top blocks puts LoRA there alone."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from PIL import Image

from qualia.towers import depths, encode_text, image_head, image_trunk, text_head, text_length, text_trunk
from qualia.config import LoraSettings, TrainSettings, top_blocks_pattern
from qualia.errors import InvalidArgument
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


def _nudged(model: torch.nn.Module) -> torch.nn.Module:
    """LoRA's B starts at zero: give every trainable weight something to say."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    return model.eval()


@pytest.mark.parametrize("blocks", [1, 2])
def test_trunk_then_head_is_the_whole_tower_with_lora_on_top(tiny, blocks: int) -> None:
    image_depth, text_depth = depths(tiny.model)
    model = _nudged(attach_lora(tiny, LoraSettings(target_modules=top_blocks_pattern((image_depth, text_depth), blocks))))
    adapted = {n.split(".lora_")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert adapted and all(int(n.split("resblocks.")[1].split(".")[0]) >= image_depth - blocks for n in adapted)
    pixels = torch.stack([tiny.preprocess(Image.new("RGB", (80, 60), c)) for c in ((200, 30, 30), (20, 90, 200))])
    tokens = tiny.tokenizer(TEXTS)
    with torch.no_grad():
        for start in range(image_depth + 1):  # wherever the cut falls, the answer is the same
            whole = model.encode_image(pixels)
            assert torch.allclose(image_head(model, image_trunk(model, pixels, start), start), whole, atol=1e-5)
        for start in range(text_depth + 1):
            whole = model.encode_text(tokens)
            assert torch.allclose(text_head(model, text_trunk(model, tokens, start), tokens, start), whole, atol=1e-5)
        # a cache row holds a text's trunk padded to the corpus's longest: the head cuts to the batch's own
        start = text_depth - blocks
        padded = torch.nn.functional.pad(text_trunk(model, tokens[:2], start), (0, 0, 0, 5))
        assert torch.allclose(text_head(model, padded, tokens[:2], start), whole[:2], atol=1e-5)


def test_training_the_top_blocks_learns_over_cached_trunks(tmp_path) -> None:
    from qualia.lora import read_adapter_meta
    from qualia.train import train_profile
    from qualia.workspace import Workspace
    from tests.test_train_eval import FAST, build_synthetic_corpus

    ws = Workspace(tmp_path)
    build_synthetic_corpus(ws, "ada", n_pins=120, n_posts=12)
    folder = train_profile(ws, "ada", TrainSettings(epochs=3, lora_blocks=2, train_tokens=False, **FAST))
    meta = read_adapter_meta(folder)
    assert meta["train"]["lora_blocks"] == 2
    config = json.loads((folder / "adapter_config.json").read_text())
    assert "resblocks\\.(2|3)" in config["target_modules"]  # qualia-tiny has 4 blocks a tower: the top two
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["adapter"]["t2i"]["r10"] > metrics["base"]["t2i"]["r10"] + 0.1, metrics
    # what training measured over cached trunks is what the saved adapter gives through whole towers
    last = meta["history"][meta["best_epoch"] - 1]
    assert abs(last["val_t2i_r10"] - metrics["adapter"]["t2i"]["r10"]) <= 0.03


def test_token_embeddings_train_first_then_freeze_into_a_text_trunk(tmp_path) -> None:
    """With ``token_epochs=1`` the token rows move in epoch 1 only; from epoch 2 the steps read a text trunk
    computed through them, and what they measure is what the saved adapter gives through whole towers."""
    from qualia.lora import read_adapter_meta
    from qualia.train import train_profile
    from qualia.workspace import Workspace
    from tests.test_train_eval import FAST, build_synthetic_corpus

    ws = Workspace(tmp_path)
    build_synthetic_corpus(ws, "ada", n_pins=120, n_posts=12)
    settings = TrainSettings(epochs=3, patience=0, lora_blocks=2, train_tokens=True, token_epochs=1, **FAST)
    assert settings.tokens_freeze_at((4, 4)) == (1, 2)
    assert TrainSettings(epochs=3, token_epochs=0, **FAST).tokens_freeze_at((4, 4)) is None

    seen: dict[int, torch.Tensor] = {}

    def token_rows(epoch: int, record: dict) -> None:
        state = torch.load(ws.adapters_dir("ada") / ".checkpoint" / "state.pt", weights_only=True)
        rows = [v for k, v in state["lora"].items() if "trainable_tokens_delta" in k]
        assert rows, list(state["lora"])  # the frozen rows stay part of what a checkpoint keeps
        seen[epoch] = torch.cat([r.flatten() for r in rows])

    folder = train_profile(ws, "ada", settings, on_epoch_end=token_rows)
    assert float(seen[1].abs().max()) > 0  # trained in epoch 1
    assert torch.equal(seen[1], seen[2]) and torch.equal(seen[2], seen[3])  # then frozen
    meta = read_adapter_meta(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["adapter"]["t2i"]["r10"] > metrics["base"]["t2i"]["r10"] + 0.1, metrics
    last = meta["history"][meta["best_epoch"] - 1]
    assert abs(last["val_t2i_r10"] - metrics["adapter"]["t2i"]["r10"]) <= 0.03


def test_token_rows_follow_their_own_faster_schedule_over_the_epochs_they_train_in() -> None:
    """Token rows peak at ``token_lr_scale`` x lr and decay to ~0 by the freeze; the LoRA weights keep the
    whole run's schedule, peaking after the rows' warmup."""
    from qualia.train import _lr_of

    settings = TrainSettings(epochs=10, token_epochs=2, token_lr_scale=10.0, lr=1e-3)
    total, token_total = 100, 20
    tokens = [_lr_of(True, step, total, token_total, settings) for step in range(total)]
    lora = [_lr_of(False, step, total, token_total, settings) for step in range(total)]
    assert max(tokens) == pytest.approx(1e-2) and max(lora) == pytest.approx(1e-3)
    assert tokens.index(max(tokens)) < lora.index(max(lora))
    assert tokens[token_total - 1] < 1e-4 and set(tokens[token_total:]) == {tokens[token_total - 1]}
    assert lora[token_total] > 5e-4  # the LoRA weights are far from done when the rows freeze
    with pytest.raises(InvalidArgument):
        TrainSettings(token_lr_scale=0)


def test_a_text_trunk_through_trained_tokens_gives_the_whole_towers_embeddings(tiny) -> None:
    from qualia.train import _text_trunks

    tokens = tiny.tokenizer(TEXTS)
    ids = sorted(set(tokens.flatten().tolist()) - {0})
    model = attach_lora(tiny, TrainSettings(backbone="qualia-tiny", lora_blocks=2).lora(ids, depths(tiny.model)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
        whole = encode_text(model, tokens)
        start = depths(tiny.model)[1] - 2
        cut = text_head(model, _text_trunks(tokens, model, start, torch.device("cpu")).float(), tokens, start)
    assert torch.allclose(cut, whole, atol=5e-3), float((cut - whole).abs().max())


def test_a_batch_of_texts_in_length_groups_gives_each_text_its_own_feature_and_gradient(tiny, monkeypatch) -> None:
    """Training runs a batch's texts in groups of similar length, each cut to its longest: the features, and
    the gradients reaching LoRA and the trained token rows, are those of the batch run as one."""
    from qualia import train

    texts = [("grain " * (i % 9 + 1)) + f"morning {i}" for i in range(40)]
    tokens = tiny.tokenizer(texts)
    ids = sorted(set(tokens.flatten().tolist()) - {0})
    model = attach_lora(tiny, TrainSettings(backbone="qualia-tiny", lora_blocks=2).lora(ids, depths(tiny.model)))
    _nudged(model)
    data = train._Data(pixels=torch.zeros(0), tokens=tokens, image_of=torch.zeros(40, dtype=torch.long),
                       text_of=torch.arange(40), weight=torch.ones(40))  # fmt: skip
    rows = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:36]

    def features_and_grads(groups: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(train, "TEXT_GROUPS", groups)
        model.zero_grad()
        features = data.text_features(model, rows, torch.device("cpu"))
        (features * torch.linspace(-1, 1, features.shape[1])).sum().backward()
        return features.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]  # the text tower's

    one, one_grads = features_and_grads(1)
    grouped, grouped_grads = features_and_grads(4)
    assert len(rows) // train.TEXT_GROUP_ROWS >= 2  # the batch really is split
    assert torch.allclose(grouped, one, atol=1e-5), float((grouped - one).abs().max())
    assert len(grouped_grads) == len(one_grads)
    assert all(torch.allclose(g, o, atol=1e-4) for g, o in zip(grouped_grads, one_grads))
    assert any(float(g.abs().max()) > 0 for g in grouped_grads)
