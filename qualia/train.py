"""Train a profile's LoRA adapter on its corpus's text-image pairs.

Loss: symmetric InfoNCE (text->image and image->text cross-entropy over the batch), each pair
weighted by ``Pair.weight``. Off-diagonal entries showing the same picture or the same words as the
diagonal are masked out: they are not negatives, and with repins they are common.

"Does not fit" marks (``qualia.feedback``) are negative rows: (words, a picture they must not find).
Such a row's own term is unlikelihood (Welleck et al. 2019), -log(1 - p), p the softmax share of its
picture among the batch's pictures for its words: large while the picture ranks high, near 0 once it
ranks low, so it pushes the picture down, not away without bound as a negated InfoNCE term would.
For a fitting row with the same words in the batch, the negative row's picture is an unmasked negative
(a hard negative the person named). Negative rows have no image->text term: that a picture does not
fit some words says nothing about which words it does fit.

Temperature: fixed at the backbone's own ``logit_scale``. A person's corpus is a few hundred to a
few thousand pairs; a learnable temperature on so little data mostly learns to sharpen the softmax
(lower loss without better ranking), and the base's scale is the one its embeddings were trained to.

Speed (2 CPU cores): every picture is read and preprocessed once into a cached tensor (float16 to
halve memory), every text tokenized once; epochs only run the network. No augmentation: with a
cached tensor there is none to apply, and the LoRA's low rank is the regularizer.

Resume: after each epoch the LoRA weights, optimizer state and loss history go atomically to
``adapters/.checkpoint/``; a rerun with the same settings, base weights and data continues from there.
The learning-rate schedule and the batch order are functions of (seed, epoch, step), so a resumed run
takes the same steps an uninterrupted one would. The checkpoint is deleted when the adapter is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from qualia import __version__, feedback, towers, workspace
from qualia.adapter_bank import attention_on_activations
from qualia.backbone import Backbone, load_backbone
from qualia.config import LoraSettings, TrainSettings
from qualia.corpus import Corpus
from qualia.embed import Encoder
from qualia.errors import NotEnoughData
from qualia import plots
from qualia.evaluate import SPLIT_FILE, compare, preprocess_images, retrieval_metrics, unique_images
from qualia.lora import TOKEN_ROWS, adapter_identity, attach_lora, save_adapter
from qualia.pairs import Pair, corpus_pairs, split_pairs
from qualia.progress import bar
from qualia.trunk_cache import TrunkCache

log = logging.getLogger(__name__)

MIN_TRAIN_PAIRS = 8
MIN_VAL_PAIRS = 2
CHECKPOINT_DIR = ".checkpoint"
CHECKPOINT_FILE = "state.pt"
WARMUP_FRACTION = 0.1


@dataclass
class _Data:
    """Training material as tensors, built once."""

    pixels: torch.Tensor  # (n_images, 3, S, S) float16, preprocessed unique pictures
    tokens: torch.Tensor  # (n_pairs, context_length) long
    image_of: torch.Tensor  # (n_pairs,) long: row of the pair's picture in ``pixels``
    text_of: torch.Tensor  # (n_pairs,) long: id of the pair's words (equal words, equal id)
    weight: torch.Tensor  # (n_pairs,) float
    # generic replay rows only: the frozen backbone's unit embeddings of their (picture, text), (n_pairs, dim),
    # zero on a person's own rows; ``anchored`` (n_pairs,) bool says which rows have one
    anchor_image: torch.Tensor | None = None
    anchor_text: torch.Tensor | None = None
    anchored: torch.Tensor | None = None
    # with ``lora_blocks``: the frozen trunks' outputs, computed once (float16): (n_images, sequence, width)
    # following ``pixels``, and (n_pairs, longest text, width) following ``tokens``; None: run the whole tower
    image_acts: torch.Tensor | None = None
    text_acts: torch.Tensor | None = None
    image_start: int = 0  # the block each tower's head starts at
    text_start: int = 0
    negative: torch.Tensor | None = None  # (n_pairs,) bool: "does not fit" rows; None: none

    def image_features(self, model: torch.nn.Module, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(len(rows), embed_dim) of the pictures at ``rows`` of ``pixels``, not normalized."""
        if self.image_acts is not None:
            return towers.image_head(model, self.image_acts[rows].to(device, torch.float32), self.image_start)
        return model.encode_image(self.pixels[rows].to(device, torch.float32))

    def text_features(self, model: torch.nn.Module, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(len(rows), embed_dim) of the texts of pairs ``rows``, not normalized. The rows run in groups of
        similar length, each cut to its longest text: a batch drawn at random pays for its texts' tokens,
        not for its longest text times its size (exact: no text's feature depends on another's)."""
        groups = max(1, min(TEXT_GROUPS, len(rows) // TEXT_GROUP_ROWS))
        if groups == 1:
            return self._text_features(model, rows, device)
        order = torch.argsort(towers.text_lengths(self.tokens[rows]), stable=True)
        features = torch.cat([self._text_features(model, rows[group], device) for group in order.tensor_split(groups)])
        return features[torch.argsort(order).to(features.device)]

    def _text_features(self, model: torch.nn.Module, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        tokens = self.tokens[rows].to(device)
        if self.text_acts is not None:
            return towers.text_head(model, self.text_acts[rows].to(device, torch.float32), tokens, self.text_start)
        return towers.encode_text(model, tokens)


# a batch's texts run in up to TEXT_GROUPS groups of at least TEXT_GROUP_ROWS texts: groups too small make
# matrix products that cost more per token (chosen, not tuned: a batch of 80 texts makes 4 groups of 20)
TEXT_GROUPS = 4
TEXT_GROUP_ROWS = 16


def _build_data(pairs: list[Pair], backbone: Backbone, row_of_image: dict[str, int], pixels: torch.Tensor) -> _Data:
    text_ids: dict[str, int] = {}
    return _Data(
        pixels=pixels,
        tokens=backbone.tokenizer([p.text for p in pairs]),
        image_of=torch.tensor([row_of_image[p.image_sha256] for p in pairs], dtype=torch.long),
        text_of=torch.tensor([text_ids.setdefault(p.text, len(text_ids)) for p in pairs], dtype=torch.long),
        weight=torch.tensor([p.weight for p in pairs], dtype=torch.float32),
        negative=torch.tensor([p.negative for p in pairs], dtype=torch.bool),
    )


REPLAY_POOL = 512  # generic pairs made once per run (at most), sampled into batches
REPLAY_WEIGHT = 0.5  # a generic pair counts half a person's own pair
REPLAY_SEED = 10**8  # below procedural.HELD_OUT_SEED: the held-out generic set is never trained on


def replay_pool(settings: TrainSettings, n_train: int) -> int:
    """How many generic pairs a run makes: no more than it draws (a short run on a big backbone pays
    for each one's frozen blocks, on its first run), up to ``REPLAY_POOL``."""
    steps = len(_batches(n_train, settings.batch_size, settings.seed, 0)) * settings.epochs
    return min(REPLAY_POOL, settings.generic_replay * steps)


def _with_generic_replay(data: _Data, backbone: Backbone, size: int) -> _Data:
    """``data`` with ``size`` generic procedural pairs appended (rows ``len(data.tokens)`` onwards):
    mixed into each batch, they keep the adapter from unlearning what the backbone knew."""
    import random

    from qualia import procedural

    pictures, captions = [], []
    for i in range(size):
        picture, words = procedural.pair(random.Random(REPLAY_SEED + i))
        pictures.append(backbone.preprocess(picture).to(data.pixels.dtype))
        captions.append(words)
    text_base = int(data.text_of.max()) + 1 if len(data.text_of) else 0
    distinct = {c: k for k, c in enumerate(dict.fromkeys(captions))}
    n = len(data.tokens)
    return _Data(
        pixels=torch.cat([data.pixels, torch.stack(pictures)]),
        tokens=torch.cat([data.tokens, backbone.tokenizer(captions)]),
        image_of=torch.cat([data.image_of, len(data.pixels) + torch.arange(size)]),
        text_of=torch.cat([data.text_of, text_base + torch.tensor([distinct[c] for c in captions])]),
        weight=torch.cat([data.weight, torch.full((size,), REPLAY_WEIGHT)]),
        anchored=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(size, dtype=torch.bool)]),
        negative=None if data.negative is None else torch.cat([data.negative, torch.zeros(size, dtype=torch.bool)]),
    )


def _with_anchors(data: _Data, backbone: Backbone) -> _Data:
    """``data`` with the frozen backbone's unit embeddings of its anchored (generic) rows, through the
    same trunks and heads training uses, before any LoRA is attached."""
    rows = data.anchored.nonzero()[:, 0]
    model, dim, device = backbone.model, backbone.embed_dim, backbone.device
    anchor_image, anchor_text = torch.zeros(len(data.tokens), dim), torch.zeros(len(data.tokens), dim)
    with torch.no_grad():
        anchor_image[rows] = F.normalize(_in_chunks(rows, lambda r: data.image_features(model, data.image_of[r], device)), dim=-1).cpu()
        anchor_text[rows] = F.normalize(_in_chunks(rows, lambda r: data.text_features(model, r, device)), dim=-1).cpu()
    return replace(data, anchor_image=anchor_image, anchor_text=anchor_text)


def contrastive_loss(
    model: torch.nn.Module,
    data: _Data,
    batch: torch.Tensor,
    logit_scale: torch.Tensor,
    device: torch.device,
    text_negatives: float = 0.0,
    generic_anchor: float = 0.0,
) -> torch.Tensor:
    """Weighted symmetric InfoNCE of the pairs at indices ``batch``.

    ``text_negatives`` > 0 adds, at that weight, a text->(pictures and texts) term: each text must rank
    its own picture above the batch's other pictures *and* other texts, which is what a search over
    both modalities asks of it (plain InfoNCE never compares a text with texts).

    ``generic_anchor`` > 0 adds, at that weight, the mean cosine distance of the batch's generic replay
    rows from where the frozen backbone put them (``_Data.anchor_*``)."""
    images = data.image_features(model, data.image_of[batch], device)
    texts = data.text_features(model, batch, device)
    return _loss_of(images, texts, data, batch, logit_scale, device, text_negatives, generic_anchor)


def _loss_of(images: torch.Tensor, texts: torch.Tensor, data: _Data, batch: torch.Tensor, logit_scale: torch.Tensor,
             device: torch.device, text_negatives: float = 0.0, generic_anchor: float = 0.0) -> torch.Tensor:  # fmt: skip
    """``contrastive_loss`` of features already computed: ``images`` and ``texts`` (len(batch), dim), the
    pairs' pictures and texts, not normalized."""
    image_of, text_of = data.image_of[batch], data.text_of[batch]
    images, texts = F.normalize(images, dim=-1), F.normalize(texts, dim=-1)
    logits = logit_scale * texts @ images.T  # (b, b): row = text, column = picture
    same_image, same_text = image_of[:, None] == image_of[None, :], text_of[:, None] == text_of[None, :]
    same = (same_image | same_text) & ~torch.eye(len(batch), dtype=torch.bool)
    negative = data.negative[batch] if data.negative is not None else torch.zeros(len(batch), dtype=torch.bool)
    image_to_text = logits.masked_fill(same.to(device), float("-inf")).T
    if negative.any():
        # words and a picture they do not fit: a fitting row of those words meets that picture as a negative,
        # and the misfit row ranks it against those words' other pictures; text->image only, since a misfit row
        # has no image->text term and a fitting row's picture must not meet its own words twice
        same = same & ~(same_text & ~same_image & (negative[:, None] | negative[None, :]))  # autograd keeps the old one
    logits = logits.masked_fill(same.to(device), float("-inf"))
    target = torch.arange(len(batch), device=device)
    per_pair = (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(image_to_text, target, reduction="none")) / 2
    if text_negatives > 0:
        among_texts = (logit_scale * texts @ texts.T).masked_fill(  # (b, b); a text is not its own negative
            (text_of[:, None] == text_of[None, :]).to(device), float("-inf")
        )
        mixed = F.cross_entropy(torch.cat([logits, among_texts], dim=1), target, reduction="none")
        per_pair = per_pair + text_negatives * mixed
    if negative.any():
        per_pair = torch.where(negative.to(device), _unlikelihood(logits, negative.to(device)), per_pair)
    weight = data.weight[batch].to(device)
    loss = (per_pair * weight).sum() / weight.sum()
    if generic_anchor > 0 and data.anchored is not None and data.anchor_image is not None:
        rows = data.anchored[batch].to(device)
        if rows.any():
            kept_image = (images[rows] * data.anchor_image[batch][rows].to(device)).sum(-1)
            kept_text = (texts[rows] * data.anchor_text[batch][rows].to(device)).sum(-1)
            loss = loss + generic_anchor * (2 - kept_image - kept_text).mean()
    return loss


def _unlikelihood(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(b,): -log(1 - p) at each row in ``rows`` (bool), p its diagonal's softmax share; 0 elsewhere and
    where nothing else is left to rank the picture against (every other column masked)."""
    index = rows.nonzero()[:, 0]
    others = logits[index].index_put((torch.arange(len(index), device=logits.device), index),
                                     torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device))
    ranked = torch.isfinite(others).any(dim=1)
    index, others = index[ranked], others[ranked]
    # log-sum-exp over every column minus over the others: -log(1 - p), exact even when p is near 1
    term = torch.logsumexp(logits[index], dim=1) - torch.logsumexp(others, dim=1)
    return torch.zeros(len(logits), dtype=term.dtype, device=logits.device).index_put((index,), term)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:  # a lone pair has no negatives
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


def _lr_at(step: int, total: int, peak: float) -> float:
    warmup = max(1, int(total * WARMUP_FRACTION))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _fingerprint(settings: TrainSettings, backbone: Backbone, train: list[Pair], val: list[Pair]) -> str:
    """What must be equal for a checkpoint to be continued (everything but the device)."""
    recipe = {k: v for k, v in asdict(settings).items() if k != "device"}
    digest = hashlib.sha256(json.dumps([recipe, backbone.weights_sha256], sort_keys=True).encode())
    for side in (train, val):
        for p in side:
            misfit = "\0does not fit" if p.negative else ""  # absent on fitting rows: their checkpoints still resume
            digest.update(f"{p.artifact_id}\0{p.image_sha256}\0{p.weight}\0{p.text}{misfit}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()


def _lora_state(run: _Run) -> dict[str, torch.Tensor]:
    """The adapter's own weights (LoRA and token embeddings), frozen ones included."""
    named = dict(run.model.named_parameters())
    return {n: named[n].detach().cpu().clone() for n in run.trained}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``state`` as one torch file at ``path``, written atomically (a kill leaves the old one or none)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    workspace.atomic_write_bytes(path, buffer.getvalue())


def _read_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is a convenience: a damaged one is dropped, not fatal
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s is from other settings or data; starting afresh", path)
        return None
    return state


@contextlib.contextmanager
def _cpu_threads(device: str) -> Iterator[None]:
    """Use every core this process may run on (torch's default can be fewer inside containers)."""
    saved = torch.get_num_threads()
    if device == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _report(epoch: int, epochs: int, record: dict[str, Any], steps: tqdm) -> None:
    val = record.get("val_loss")
    line = f"train loss {record['train_loss']:.4f}" + (f"  val loss {val:.4f}" if val is not None else "")
    if "val_t2i_r10" in record:
        line += f"  val R@10 t2i {record['val_t2i_r10']:.3f} i2t {record['val_i2t_r10']:.3f}"
    log.info("epoch %d/%d  %s", epoch, epochs, line)
    steps.set_postfix_str(f"epoch {epoch}: {line}", refresh=True)


def _validation(run: _Run, material: _Material, backbone: Backbone, batch_size: int) -> dict[str, Any]:
    """Held-out loss and recall@10 both ways of the model as it is now (what early stopping watches), from
    one pass over the held-out pictures and texts."""
    data, model, device = material.val_data, run.model, backbone.device
    picture_rows = torch.tensor([material.row_of_image[s] for s in unique_images(material.val)])
    model.eval()  # the next epoch sets train() again
    with torch.no_grad():  # through the cached trunks when there are any
        images = _in_chunks(picture_rows, lambda rows: data.image_features(model, rows, device))
        texts = _in_chunks(torch.arange(len(data.tokens)), lambda rows: data.text_features(model, rows, device))
        val_loss = None
        if len(data.tokens) >= 2:
            image_at = torch.full((len(material.pixels),), -1, dtype=torch.long)
            image_at[picture_rows] = torch.arange(len(picture_rows))
            total, weight = 0.0, 0.0
            for batch in _batches(len(data.tokens), batch_size, seed=0, epoch=0):
                w = float(data.weight[batch].sum())
                loss = _loss_of(images[image_at[data.image_of[batch]].to(images.device)], texts[batch.to(texts.device)],
                                data, batch, run.scale, device)  # fmt: skip
                total, weight = total + float(loss) * w, weight + w
            val_loss = total / weight
    texts, images = (F.normalize(x.float(), dim=-1).cpu().numpy() for x in (texts, images))
    metrics = retrieval_metrics(texts, images, material.val)
    return {"val_loss": val_loss, "val_t2i_r10": metrics["t2i"]["r10"], "val_i2t_r10": metrics["i2t"]["r10"]}


def _score(record: dict[str, Any]) -> tuple[float, float]:
    """Which epoch is best: higher mean held-out recall@10, then lower validation loss."""
    val_loss = record.get("val_loss")
    return ((record["val_t2i_r10"] + record["val_i2t_r10"]) / 2, -(val_loss if val_loss is not None else 0.0))


@dataclass
class _Material:
    """A profile's pairs, split, with their pictures preprocessed once and shared by both sides."""

    pairs: list[Pair]
    train: list[Pair]
    val: list[Pair]
    pixels: torch.Tensor  # (n_images, 3, S, S) float16
    row_of_image: dict[str, int]
    images_unreadable: int
    train_data: _Data
    val_data: _Data
    feedback: dict[str, int] = field(default_factory=dict)  # ``feedback.training_rows``'s counts

    def val_pixels(self) -> torch.Tensor:
        return self.pixels[[self.row_of_image[s] for s in unique_images(self.val)]]

    def counts(self) -> dict[str, int]:
        return {
            "pairs": len(self.pairs),
            "pairs_train": len(self.train),
            "pairs_val": len(self.val),
            "artifacts": len({p.artifact_id for p in self.pairs}),
            "artifacts_train": len({p.artifact_id for p in self.train}),
            "artifacts_val": len({p.artifact_id for p in self.val}),
            "images": len(self.pixels),
            "images_unreadable": self.images_unreadable,
            # what people's marks added: fitting pairs and negatives trained on (after unreadable pictures)
            "feedback_marks": self.feedback.get("marks", 0),
            "feedback_pairs": sum(p.source == feedback.SOURCE and not p.negative for p in self.train),
            "feedback_negatives": sum(p.negative for p in self.train),
            "feedback_held_out": self.feedback.get("held_out", 0),
            "feedback_unused": self.feedback.get("unused", 0),
        }


@dataclass
class _Run:
    """The trainable state of one training run, and where its checkpoint goes."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scale: torch.Tensor  # the backbone's fixed logit scale
    checkpoint: Path
    fingerprint: str
    lora: LoraSettings
    trained: list[str]  # names of the adapter's parameters (token embeddings stay one after they freeze)
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    best_epoch: int = 0
    best_lora: dict[str, torch.Tensor] | None = None  # the LoRA weights of ``best_epoch``

    def restore_best(self) -> None:
        if self.best_lora is None:
            return
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self.best_lora.items():
                named[name].copy_(value)


def split_for_training(
    ws: workspace.Workspace, profile: str, settings: TrainSettings
) -> tuple[list[Pair], list[Pair], list[Pair], dict[str, int]]:
    """(all pairs, train, validation, feedback counts) of the profile's corpus, people's marks among the
    training rows (``qualia.feedback``); NotEnoughData when too few to train on."""
    with Corpus.open(ws, profile, readonly=True) as corpus:
        pairs = corpus_pairs(corpus)
        train, val = split_pairs(pairs, settings.val_fraction, settings.seed)
        marked, counts = feedback.training_rows(corpus, pairs, val)
    _check_enough(train, val, len(pairs), f"profile {profile!r}")
    return pairs + marked, train + marked, val, counts


def _check_enough(train: list[Pair], val: list[Pair], n_pairs: int, where: str) -> None:
    if len(train) < MIN_TRAIN_PAIRS or len(val) < MIN_VAL_PAIRS:
        raise NotEnoughData(
            f"{where}: too few text-image pairs to train on: {n_pairs} pairs make "
            f"{len(train)} for training and {len(val)} for validation (need at least {MIN_TRAIN_PAIRS} and "
            f"{MIN_VAL_PAIRS}); crawl more (e.g. --depth 2) first"
        )


TRUNK_BATCH = 64


def _in_chunks(rows: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``features`` of ``rows``, TRUNK_BATCH at a time, concatenated."""
    return torch.cat([features(chunk) for chunk in rows.split(TRUNK_BATCH)])


def _with_trunks(data: _Data, backbone: Backbone, starts: tuple[int, int], trunk_cache: Path,
                 image_acts: torch.Tensor | None = None, progress: bool = False) -> _Data:  # fmt: skip
    """``data`` with its frozen trunks: the pictures' from the on-disk ``TrunkCache`` (or ``image_acts``
    given, when another ``_Data`` shares its pictures), the texts' computed here; each step then runs
    only the heads. float16, like the cached pixels."""
    image_start, text_start = starts
    model, device = backbone.model, backbone.device
    if image_acts is None and image_start:
        image_acts = TrunkCache(trunk_cache, backbone, image_start, progress).trunks(data.pixels)
    text_acts = _text_trunks(data.tokens, model, text_start, device, progress) if text_start else None
    return replace(data, image_acts=image_acts if image_start else None, text_acts=text_acts,
                   image_start=image_start, text_start=text_start)  # fmt: skip


def _text_trunks(tokens: torch.Tensor, model: torch.nn.Module, stop: int, device: torch.device,
                 progress: bool = False) -> torch.Tensor:  # fmt: skip
    """The text tower's first ``stop`` blocks over every row of ``tokens``: (n, longest text, width) float16.
    ``model`` may be the training model: its trained token embeddings, if any, are used."""
    clip = towers.clip_of(model)
    acts = torch.zeros(len(tokens), towers.text_length(tokens), clip.transformer.width, dtype=torch.float16)
    by_length = torch.argsort(towers.text_lengths(tokens), stable=True)  # each chunk cut to its own longest
    chunks = bar(by_length.split(TRUNK_BATCH), enabled=progress, leave=False,
                 desc="computing the frozen blocks of the texts")  # fmt: skip
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for rows in chunks:
            chunk = towers.text_trunk(model, tokens[rows].to(device), stop)
            acts[rows, : chunk.shape[1]] = chunk.half().cpu()  # past a text's end nothing reads it
    model.train(was_training)
    return acts


def _freeze_tokens(run: _Run, material: _Material, text_start: int, device: torch.device, progress: bool) -> None:
    """The token embeddings stop training; the text tower below ``text_start`` is frozen from now on, so
    its output (through the trained embeddings) is computed once and each step runs only the top blocks."""
    for name, parameter in run.model.named_parameters():
        if TOKEN_ROWS in name:
            parameter.requires_grad_(False)
    for side in ("train_data", "val_data"):
        data = getattr(material, side)
        acts = _text_trunks(data.tokens, run.model, text_start, device, progress and side == "train_data")
        setattr(material, side, replace(data, text_acts=acts, text_start=text_start))
    log.info("token embeddings frozen; the text tower's first %d blocks are computed once from here on", text_start)


def _prepare(
    pairs: list[Pair], train: list[Pair], val: list[Pair], backbone: Backbone, settings: TrainSettings,
    trunk_cache: Path, progress: bool = False,
) -> _Material:
    pixels, readable, unreadable = preprocess_images(train + val, backbone, torch.float16, progress)
    if unreadable:
        kept = set(readable)
        train, val = [p for p in train if p in kept], [p for p in val if p in kept]
        _check_enough(train, val, len(pairs), f"after skipping {len(unreadable)} unreadable pictures")
    row_of_image = {sha: i for i, sha in enumerate(unique_images(train + val))}
    train_data = _build_data(train, backbone, row_of_image, pixels)
    val_data = _build_data(val, backbone, row_of_image, pixels)
    if settings.generic_replay:
        train_data = _with_generic_replay(train_data, backbone, replay_pool(settings, len(train)))
    starts = settings.tower_starts(towers.depths(backbone.model))
    if any(starts):
        train_data = _with_trunks(train_data, backbone, starts, trunk_cache, progress=progress)
        shared = train_data.image_acts[: len(pixels)] if train_data.image_acts is not None else None
        val_data = _with_trunks(val_data, backbone, starts, trunk_cache, image_acts=shared)  # replay pictures come after its own
    if settings.generic_replay:
        train_data = _with_anchors(train_data, backbone)
    material = _Material(
        pairs, train, val, pixels, row_of_image, len(unreadable),
        train_data=train_data,
        val_data=val_data,
    )
    log.info("%d training pairs, %d validation pairs, %d pictures cached", len(train), len(val), len(pixels))
    return material


def _person_tokens(material: _Material, backbone: Backbone) -> list[int]:
    """The word pieces of the training texts (not padding, start or end): what ``train_tokens`` trains."""
    vocab = backbone.model.token_embedding.num_embeddings
    ids = torch.unique(material.train_data.tokens[: len(material.train)]).tolist()
    return [i for i in ids if 0 < i < vocab - 2]


def _param_groups(model: torch.nn.Module, trained: list[str]) -> list[dict[str, Any]]:
    """The optimizer's groups: LoRA weights, and the token embedding rows (own schedule: ``_lr_of``)."""
    named = dict(model.named_parameters())
    groups = [{"params": [named[n] for n in trained if (TOKEN_ROWS in n) == token], "tokens": token}
              for token in (False, True)]
    return [g for g in groups if g["params"]]


def _lr_of(tokens: bool, step: int, total: int, token_total: int, settings: TrainSettings) -> float:
    """Learning rate of a group at global ``step`` of ``total``. Token rows run ``token_lr_scale`` times
    higher over their own ``token_total`` steps, then hold their last (near zero) rate: frozen by then."""
    if not tokens:
        return _lr_at(step, total, settings.lr)
    return _lr_at(min(step, token_total - 1), token_total, settings.lr * settings.token_lr_scale)


def _start_run(
    backbone: Backbone, settings: TrainSettings, material: _Material, checkpoint: Path, profile: str
) -> _Run:
    """A fresh LoRA model and optimizer, or the state of a checkpoint of this very recipe and data."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # the LoRA A matrices' init
        tokens = _person_tokens(material, backbone) if settings.train_tokens else None
        lora = settings.lora(tokens, towers.depths(backbone.model))
        model = attach_lora(backbone, lora)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    run = _Run(
        model=model,
        optimizer=torch.optim.AdamW(_param_groups(model, trained), lr=settings.lr, weight_decay=settings.weight_decay),
        scale=backbone.model.logit_scale.detach().exp().clamp(max=100.0),
        checkpoint=checkpoint,
        fingerprint=_fingerprint(settings, backbone, material.train, material.val),
        lora=lora,
        trained=trained,
    )
    state = _read_checkpoint(checkpoint, run.fingerprint)
    if state is not None:
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state["lora"].items():
                named[name].copy_(value)
        run.optimizer.load_state_dict(state["optimizer"])
        run.start_epoch, run.history = state["epoch"], state["history"]
        run.best_epoch, run.best_lora = state.get("best_epoch", 0), state.get("best_lora")
        log.info("resuming %s's training after epoch %d", profile, run.start_epoch)
    return run


def _train_epochs(
    run: _Run,
    material: _Material,
    settings: TrainSettings,
    backbone: Backbone,
    progress: bool,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
) -> None:
    """Epochs ``run.start_epoch`` .. ``settings.epochs``, each ending in a checkpoint; stops when
    held-out recall has not improved for ``settings.patience`` epochs. ``run.best_*`` is the best epoch."""
    steps_per_epoch = len(_batches(len(material.train), settings.batch_size, settings.seed, 0))
    steps = bar(enabled=progress, desc="training", unit="step", total=steps_per_epoch * settings.epochs,
                initial=steps_per_epoch * run.start_epoch)  # fmt: skip
    try:
        _epochs(run, material, settings, backbone, steps_per_epoch, steps, on_epoch_end, progress)
    finally:
        steps.close()


def _epochs(
    run: _Run,
    material: _Material,
    settings: TrainSettings,
    backbone: Backbone,
    steps_per_epoch: int,
    steps: tqdm,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    progress: bool = False,
) -> None:
    device = backbone.device
    n_train = len(material.train)
    total_steps = steps_per_epoch * settings.epochs
    freeze = settings.tokens_freeze_at(towers.depths(backbone.model))
    token_steps = steps_per_epoch * freeze[0] if freeze else total_steps
    for epoch in range(run.start_epoch, settings.epochs):
        if settings.patience and run.best_epoch and epoch - run.best_epoch >= settings.patience:
            log.info("no better held-out recall since epoch %d: stopping after epoch %d", run.best_epoch, epoch)
            break
        started = time.monotonic()
        if freeze and epoch >= freeze[0] and material.train_data.text_start != freeze[1]:
            _freeze_tokens(run, material, freeze[1], device, progress)
        run.model.train()
        losses = []
        for i, batch in enumerate(_batches(n_train, settings.batch_size, settings.seed, epoch)):
            if settings.generic_replay:
                generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch * 1009 + i)
                pool = len(material.train_data.tokens) - n_train
                batch = torch.cat([batch, n_train + torch.randperm(pool, generator=generator)[: settings.generic_replay]])
            for group in run.optimizer.param_groups:
                group["lr"] = _lr_of(group["tokens"], epoch * steps_per_epoch + i, total_steps, token_steps, settings)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.mixed_precision()):
                loss = contrastive_loss(run.model, material.train_data, batch, run.scale, device,
                                        settings.text_negatives, settings.generic_anchor)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            losses.append(float(loss.detach()))
            steps.update(1)
        record = {
            "epoch": epoch + 1,
            "train_loss": sum(losses) / len(losses),
            **_validation(run, material, backbone, settings.batch_size),
        }
        record["seconds"] = round(time.monotonic() - started, 2)  # steps and validation: what one more epoch costs
        run.history.append(record)
        best = next((r for r in run.history if r["epoch"] == run.best_epoch), None)
        if best is None or _score(record) > _score(best):
            run.best_epoch, run.best_lora = epoch + 1, _lora_state(run)
        save_checkpoint(
            run.checkpoint,
            {
                "fingerprint": run.fingerprint,
                "epoch": epoch + 1,
                "lora": _lora_state(run),
                "optimizer": run.optimizer.state_dict(),
                "history": run.history,
                "best_epoch": run.best_epoch,
                "best_lora": run.best_lora,
            },
        )
        _report(epoch + 1, settings.epochs, record, steps)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)


def _save_version(
    ws: workspace.Workspace,
    profile: str,
    settings: TrainSettings,
    backbone: Backbone,
    run: _Run,
    material: _Material,
    metrics: dict[str, Any],
    seconds: float,
    embeddings: dict[str, tuple] | None = None,
) -> Path:
    """Write the adapter, its evaluation, split and loss curve as one new version folder, atomically."""
    version = workspace.new_version()
    folder = ws.adapters_dir(profile) / version
    meta = {
        **adapter_identity(backbone, run.lora),
        "version": version,
        "profile": profile,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "qualia_version": __version__,
        "train": settings.recipe(),
        "temperature": {"learnable": False, "logit_scale": float(run.scale)},
        "data": material.counts(),
        "history": run.history,
        "best_epoch": run.best_epoch,
        "epochs_run": len(run.history),
        "train_seconds": round(seconds, 1),
    }
    with workspace.atomic_dir(folder) as tmp:
        save_adapter(run.model, tmp, meta)
        workspace.atomic_write_json(tmp / "metrics.json", metrics)
        workspace.atomic_write_json(
            tmp / SPLIT_FILE,
            {
                "seed": settings.seed,
                "val_fraction": settings.val_fraction,
                "val_artifacts": sorted({p.artifact_id for p in material.val}),
            },
        )
        title = f"{profile} · {backbone.name} · LoRA r={settings.rank}"
        plots.training_curves(run.history, tmp / plots.LOSS_CURVE, title, run.best_epoch)
        if embeddings:
            panels = [(name, *embeddings[name]) for name in ("base", "adapter")]
            plots.modality_map(panels, tmp / plots.MODALITY_MAP, f"{title}: held-out pictures and texts (PCA)")
    return folder


def train_profile(
    ws: workspace.Workspace,
    profile: str,
    settings: TrainSettings,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> Path:
    """Train a new adapter version for ``profile``; returns its folder.

    ``on_epoch_end(epoch, record)`` is called after each epoch's checkpoint is safely written
    (an exception from it stops training, leaving a checkpoint to resume from).
    """
    pairs, train, val, marks = split_for_training(ws, profile, settings)
    started = time.monotonic()
    checkpoint = ws.adapters_dir(profile) / CHECKPOINT_DIR / CHECKPOINT_FILE
    with _cpu_threads(settings.device):
        backbone = load_backbone(settings.backbone, settings.pretrained, settings.device)
        material = _prepare(pairs, train, val, backbone, settings, ws.trunk_cache_dir, progress)
        material.feedback = marks
        run = _start_run(backbone, settings, material, checkpoint, profile)
        with attention_on_activations(run.model):
            _train_epochs(run, material, settings, backbone, progress, on_epoch_end)
        run.restore_best()
        embeddings: dict[str, tuple] = {}
        image_start = settings.tower_starts(towers.depths(backbone.model))[0]
        trunks = TrunkCache(ws.trunk_cache_dir, backbone, image_start, progress) if image_start else None
        base = Encoder(backbone.model, backbone, name="evaluating the base", progress=progress, trunks=trunks)
        adapted = Encoder(run.model, backbone, name="evaluating the adapter", progress=progress, trunks=trunks)
        metrics = compare(base, adapted, material.val, material.val_pixels(), embeddings)
        counts = material.counts()
        metrics["feedback"] = {key: counts[f"feedback_{key}"] for key in ("marks", "pairs", "negatives", "held_out", "unused")}
    seconds = time.monotonic() - started
    folder = _save_version(ws, profile, settings, backbone, run, material, metrics, seconds, embeddings)
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    log.info(
        "adapter %s saved: val t2i r10 %.3f (base %.3f)",
        folder,
        metrics["adapter"]["t2i"]["r10"],
        metrics["base"]["t2i"]["r10"],
    )
    return folder
