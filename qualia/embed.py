"""Embeddings from the backbone (optionally with a profile's adapter): what index and service use.

Vectors are float32 and L2-normalized, so inner product = cosine similarity.
"""

from __future__ import annotations

import contextlib

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qualia import images
from qualia.backbone import Backbone
from qualia.progress import bar
from qualia.adapter_bank import LowRank
from qualia.errors import InvalidImage
from qualia.lora import adapted_image_blocks, load_adapter
from qualia.towers import depths, encode_text, image_head, text_lengths
from qualia.trunk_cache import TrunkCache


class Encoder:
    """``name`` and ``progress``: with ``progress`` on a terminal, each pass of more than one batch
    draws a bar named after the encoder ("base", "adapter") and what it encodes.

    ``trunks``: pictures go through the image tower's frozen trunk from this cache (computed there
    once) and then through ``model``'s head; ``model`` must not differ from the backbone below the
    cache's block.

    ``low_rank``: an adapter kept unmerged over the shared ``backbone.model`` (``qualia.adapter_bank``;
    ``model`` is then the backbone's own): it is applied to the backbone for each batch, so only one
    thread may encode with the backbone at a time."""

    def __init__(self, model: torch.nn.Module, backbone: Backbone, batch_size: int = 64, name: str = "",
                 progress: bool = False, trunks: TrunkCache | None = None,
                 low_rank: LowRank | None = None) -> None:  # fmt: skip
        self.model = model
        self.low_rank = low_rank
        self.backbone = backbone
        self.batch_size = batch_size
        self.dim = backbone.embed_dim
        self.name = name
        self.progress = progress
        self.trunks = trunks

    @classmethod
    def load(cls, backbone: Backbone, adapter_dir: Path | None = None, progress: bool = False,
             trunk_cache: Path | None = None) -> Encoder:  # fmt: skip
        """The frozen base (``adapter_dir`` None) or base + the adapter in that folder. With
        ``trunk_cache`` (a folder), an adapter that leaves the image tower's lower blocks alone reads
        their output from there (``TrunkCache``)."""
        if adapter_dir is None:
            return cls(backbone.model, backbone, name="base", progress=progress)
        model = load_adapter(backbone, Path(adapter_dir))
        trunks = None
        if trunk_cache is not None:
            adapted = adapted_image_blocks(Path(adapter_dir))
            start = min(adapted) if adapted else depths(backbone.model)[0]
            trunks = TrunkCache(trunk_cache, backbone, start, progress) if start >= 1 else None
        return cls(model, backbone, name="adapter", progress=progress, trunks=trunks)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _run(self, encode, batches: list[torch.Tensor], what: str) -> np.ndarray:
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        was_training = self.model.training
        if was_training:  # walking every module costs a sixth of a served query's encoding
            self.model.eval()
        try:
            adapted = self.low_rank.applied(self.model, what == "pictures") if self.low_rank else contextlib.nullcontext()
            with torch.inference_mode(), adapted:
                for batch in bar(batches, enabled=self.progress and len(batches) > 1, desc=f"{self.name} {what}".strip(),
                                 leave=False):  # fmt: skip
                    batch = batch.to(self.device)
                    if batch.is_floating_point():
                        batch = batch.float()  # cached pixels may be float16
                    emb = encode(batch).float()
                    out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        finally:
            if was_training:
                self.model.train()
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """(n, context_length) token ids -> (n, dim), in the given order. Texts go through in batches of
        similar length, each cut to its longest text (``towers.encode_text``): padding costs nothing."""
        order = torch.argsort(text_lengths(tokens), stable=True)
        rows = None
        if self.low_rank is not None and self.low_rank.token_ids is not None:
            rows = (self.low_rank.token_ids, self.low_rank.token_rows)
        vectors = self._run(lambda batch: encode_text(self.model, batch, rows), list(tokens[order].split(self.batch_size)), "texts")
        in_order = np.empty_like(vectors)
        in_order[order.numpy()] = vectors
        return in_order

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """(n, 3, image_size, image_size) preprocessed images -> (n, dim)."""
        if self.trunks is None or not len(pixels):
            return self._run(self.model.encode_image, list(pixels.split(self.batch_size)), "pictures")
        acts = self.trunks.trunks(pixels, self.model)  # (n, tokens, width) float16
        start = self.trunks.start
        return self._run(lambda batch: image_head(self.model, batch, start), list(acts.split(self.batch_size)), "pictures")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_tokens(self.backbone.tokenizer(list(texts)))

    def encode_images(self, pictures: Sequence[Image.Image]) -> np.ndarray:
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(pictures), self.batch_size):
            chunk = pictures[start : start + self.batch_size]
            pixels = torch.stack([self.backbone.preprocess(im.convert("RGB")) for im in chunk])
            out.append(self.encode_pixels(pixels))
        return np.concatenate(out)


def open_image(path: Path) -> Image.Image:
    """The stored picture at ``path`` as RGB, decoded and bounded by the picture policy; InvalidImage
    (or NotFound) naming the file if it cannot be read."""
    try:
        return images.read(path)
    except InvalidImage as e:
        raise InvalidImage(f"cannot read image {path}: {e}") from e
