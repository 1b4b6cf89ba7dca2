"""Pre-train the ``qualia-tiny`` stand-in: the whole model, contrastively, on procedural picture-caption pairs.

A one-time job whose output ships inside the package (``qualia/weights/``). Deterministic for a
seed: sample ``i`` of step ``s`` is drawn from ``random.Random(seed * 10**7 + s * batch + i)``, the
learning rate is a function of the step, and a checkpoint every ``checkpoint_every`` steps lets a
killed run continue where it was (same steps, same result).

Loss: symmetric InfoNCE with a learnable temperature, duplicate captions in a batch masked out as
negatives, plus a uniformity term (Wang & Isola 2020) on texts made of random word pieces, which keeps
inputs the captions never use spread over the sphere instead of collapsing to one point (see
``procedural``'s note on invented words).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from qualia import procedural, workspace
from qualia.backbone import Backbone, load_backbone, state_dict_sha256
from qualia.config import TINY_BACKBONE, PretrainSettings
from qualia.embed import Encoder
from qualia.generic import generic_pixels, generic_retrieval, nonce_collapse
from qualia.progress import bar
from qualia.train import save_checkpoint

log = logging.getLogger(__name__)

WARMUP_STEPS = 100


def _batch(settings: PretrainSettings, step: int, backbone: Backbone, pool: list) -> tuple[torch.Tensor, list[str]]:
    pixels, captions = [], []
    for i in range(settings.batch_size):
        rng = random.Random(settings.seed * 10**7 + step * settings.batch_size + i)
        picture, words = procedural.pair(rng, pool, settings.nonce_rate)
        pixels.append(backbone.preprocess(picture))
        captions.append(words)
    return torch.stack(pixels), captions


def _random_piece_texts(backbone: Backbone, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, context) token ids: start, 1-4 random word pieces, end."""
    context = backbone.model.positional_embedding.shape[0]
    vocab = backbone.model.token_embedding.num_embeddings
    start, end = vocab - 2, vocab - 1  # open_clip's <start_of_text>, <end_of_text>
    tokens = torch.zeros((n, context), dtype=torch.long)
    lengths = torch.randint(1, 5, (n,), generator=generator)
    for row, length in enumerate(lengths.tolist()):
        pieces = torch.randint(256, vocab - 2, (length,), generator=generator)
        tokens[row, : length + 2] = torch.cat([torch.tensor([start]), pieces, torch.tensor([end])])
    return tokens


def _uniformity(emb: torch.Tensor) -> torch.Tensor:
    """log E exp(-2 |x - y|^2) over distinct pairs of unit vectors (lower = more spread)."""
    sq = torch.cdist(emb, emb).pow(2)
    off = ~torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    return torch.logsumexp(-2 * sq[off], dim=0) - math.log(int(off.sum()))


def _lr(step: int, settings: PretrainSettings) -> float:
    if step < WARMUP_STEPS:
        return settings.lr * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, settings.steps - WARMUP_STEPS)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * progress))


def evaluate_standin(backbone: Backbone, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Generic retrieval on the held-out procedural set and the collapse gate."""
    encoder = Encoder(model or backbone.model, backbone)
    pixels, captions = generic_pixels(encoder)
    return {**generic_retrieval(encoder, pixels, captions), "nonce_cosine": nonce_collapse(encoder)}


def _step_loss(model, pixels, captions, backbone, settings, generator) -> tuple[torch.Tensor, float]:
    device = backbone.device
    images = F.normalize(model.encode_image(pixels.to(device)), dim=-1)
    texts = F.normalize(model.encode_text(backbone.tokenizer(captions).to(device)), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * texts @ images.T
    ids: dict[str, int] = {}
    caption_id = torch.tensor([ids.setdefault(c, len(ids)) for c in captions])
    same = (caption_id[:, None] == caption_id[None, :]) & ~torch.eye(len(captions), dtype=torch.bool)
    logits = logits.masked_fill(same.to(device), float("-inf"))
    target = torch.arange(len(captions), device=device)
    contrastive = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    loss = contrastive
    if settings.uniformity_weight > 0:
        random_texts = _random_piece_texts(backbone, settings.uniformity_texts, generator).to(device)
        loss = loss + settings.uniformity_weight * _uniformity(F.normalize(model.encode_text(random_texts), dim=-1))
    return loss, float(contrastive.detach())


def pretrain(out: Path, settings: PretrainSettings, progress: bool = False) -> dict[str, Any]:
    """Pre-train from the random init ``random-seed<seed>`` and write ``out`` (float16 safetensors)
    with ``out.json`` beside it (sha256, settings, held-out figures). Returns that report."""
    out = Path(out)
    checkpoint = out.with_name(out.name + ".checkpoint.pt")
    torch.manual_seed(settings.seed)
    backbone = load_backbone(TINY_BACKBONE, f"random-seed{settings.seed}", settings.device)
    random_init = evaluate_standin(backbone)
    log.info("random init: %s", json.dumps(random_init))
    model = backbone.model
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    recipe = asdict(settings) | {"device": None, "checkpoint_every": None}
    start, history, seconds = 0, [], 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["recipe"] == recipe:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, history, seconds = state["step"], state["history"], state["seconds"]
            log.info("resuming pre-training at step %d", start)
    pool = procedural.nonce_words()
    generator = torch.Generator().manual_seed(settings.seed)
    began = time.monotonic() - seconds
    steps = bar(enabled=progress, desc="pre-training", unit="step", total=settings.steps, initial=start)
    losses: list[float] = []
    for step in range(start, settings.steps):
        generator.manual_seed(settings.seed * 10**7 + step)  # the random texts of a step, resumable
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, settings)
        pixels, captions = _batch(settings, step, backbone, pool)
        loss, contrastive = _step_loss(model, pixels, captions, backbone, settings, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(contrastive)
        steps.update(1)
        steps.set_postfix(loss=f"{contrastive:.3f}")
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
            history.append({"step": step + 1, "loss": sum(losses) / len(losses), "seconds": round(time.monotonic() - began, 1)})
            losses = []
            log.info("step %d/%d loss %.4f", step + 1, settings.steps, history[-1]["loss"])
            state = {"recipe": recipe, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "step": step + 1, "history": history, "seconds": time.monotonic() - began}  # fmt: skip
            save_checkpoint(checkpoint, state)
    steps.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    weights = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(weights, str(tmp), metadata={"backbone": TINY_BACKBONE, "seed": str(settings.seed)})
    tmp.replace(out)
    stored = load_backbone(TINY_BACKBONE, str(out), settings.device)  # figures of the weights as shipped (float16)
    report = {
        "backbone": TINY_BACKBONE,
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "weights_sha256": state_dict_sha256(stored.model),
        "bytes": out.stat().st_size,
        "settings": asdict(settings),
        "seconds": round(time.monotonic() - began, 1),
        "history": history,
        "held_out": {"pretrained": evaluate_standin(stored), "random_init": random_init},
    }
    workspace.atomic_write_json(out.with_name(out.stem + ".json"), report)
    checkpoint.unlink(missing_ok=True)
    return report
