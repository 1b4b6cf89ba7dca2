"""The image tower's frozen trunk on disk: computed once per picture and backbone, read by training,
evaluation and the index.

An adapter trained with ``lora_blocks`` changes only the top blocks of the image tower; below them
(``towers.image_trunk``) what a picture becomes never changes for a given backbone. Those activations
are the bulk of a picture's cost, so they are kept here, float16, and every later pass (each training
epoch, the held-out and generic evaluation, the index, a retrain after the corpus grew) runs only the
head over them.

Keys. A picture's key is the sha256 of its preprocessed pixels (float16, as the cache computes from
them): the content that goes in, so a changed picture, preprocessing or corpus can never meet a stale
entry. The folder names the backbone, the first 16 hex of its weights' checksum and the block the
trunk stops at: other weights or another cut use another folder.

Files. ``<folder>/<sha256 of the file>.safetensors``, each one batch: tensor ``acts`` (k, tokens,
width) float16 and metadata ``keys`` (the k pixel keys, comma-separated). Each is written atomically
and never changed, so a kill leaves complete shards (the next run computes only what is missing),
readers never see half a file, and two processes caching at once at worst write the same shard twice.
A shard whose bytes no longer hash to its name (cut, damaged) is logged, deleted and recomputed.

Texts are not cached: with trainable tokens (the default) the text tower's input changes every
step, and a text costs a few percent of a picture.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from qualia import towers, workspace
from qualia.backbone import Backbone
from qualia.progress import bar

log = logging.getLogger(__name__)

BATCH = 64
SHARD_NAME = re.compile(r"[0-9a-f]{64}\.safetensors")


def pixel_keys(pixels: torch.Tensor) -> list[str]:
    """The cache key of each row of (n, 3, S, S) pixels: sha256 of its float16 bytes."""
    rows = pixels.half().contiguous().numpy()
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in rows]


class TrunkCache:
    """The trunks of one backbone's image tower cut before block ``start``, under ``root``."""

    def __init__(self, root: Path, backbone: Backbone, start: int, progress: bool = False) -> None:
        if start < 1:
            raise ValueError("a trunk needs at least one block (start >= 1)")
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", backbone.name)
        self.folder = Path(root) / f"{safe_name}-{backbone.weights_sha256[:16]}-image{start}"
        self.backbone = backbone
        self.start = start
        self.progress = progress
        self._shard_of: dict[str, Path] | None = None

    def _scan(self) -> dict[str, Path]:
        """key -> shard, from the shards' headers (their data is read, and checked, when used)."""
        if self._shard_of is None:
            self._shard_of = {}
            if self.folder.is_dir():
                workspace.remove_debris(self.folder)  # what a killed writer left half-written
                for shard in sorted(self.folder.iterdir()):
                    if not SHARD_NAME.fullmatch(shard.name):
                        continue
                    try:
                        with safe_open(str(shard), framework="pt") as f:
                            keys = (f.metadata() or {}).get("keys", "")
                    except Exception as e:  # a cut header: the shard is useless, its pictures are recomputed
                        self._drop(shard, f"unreadable header ({e})")
                        continue
                    for key in keys.split(","):
                        self._shard_of.setdefault(key, shard)
        return self._shard_of

    def _drop(self, shard: Path, why: str) -> None:
        log.warning("trunk cache: dropping %s: %s; its pictures will be computed again", shard.name, why)
        shard.unlink(missing_ok=True)
        if self._shard_of is not None:
            self._shard_of = {k: s for k, s in self._shard_of.items() if s != shard}

    def _read(self, shard: Path) -> dict[str, torch.Tensor] | None:
        """key -> (tokens, width) activations of a shard whose bytes match its name; None (dropped) if not."""
        try:
            data = shard.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != shard.name.split(".")[0]:
            self._drop(shard, "its bytes do not match its checksum")
            return None
        try:
            acts = load_safetensors(data)["acts"]
            with safe_open(str(shard), framework="pt") as f:
                keys = f.metadata()["keys"].split(",")
        except Exception as e:
            self._drop(shard, f"unreadable ({e})")
            return None
        return dict(zip(keys, acts))

    def _write(self, keys: Sequence[str], acts: torch.Tensor) -> None:
        data = save_safetensors({"acts": acts.contiguous()}, metadata={
            "keys": ",".join(keys), "backbone": self.backbone.name,
            "weights_sha256": self.backbone.weights_sha256, "start": str(self.start)})  # fmt: skip
        shard = self.folder / f"{hashlib.sha256(data).hexdigest()}.safetensors"
        workspace.atomic_write_bytes(shard, data)
        for key in keys:
            self._scan().setdefault(key, shard)

    def trunks(self, pixels: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """(n, tokens, width) float16 trunk of each row of (n, 3, S, S) ``pixels``: from disk, or
        computed with ``model`` (default: the backbone; any model whose blocks below ``start`` are the
        backbone's) and stored before it is returned."""
        keys = pixel_keys(pixels)
        found: dict[str, torch.Tensor] = {}
        for shard in dict.fromkeys(self._scan()[k] for k in keys if k in self._scan()):
            found.update(self._read(shard) or {})
        missing = [i for i, k in enumerate(dict.fromkeys(keys)) if k not in found]
        if missing:
            distinct = list(dict.fromkeys(keys))
            first_row = {k: keys.index(k) for k in distinct}
            model = self.backbone.model if model is None else model
            device = next(model.parameters()).device
            chunks = [missing[i : i + BATCH] for i in range(0, len(missing), BATCH)]
            with torch.no_grad():
                for chunk in bar(chunks, enabled=self.progress, leave=False, desc="computing the frozen blocks of the pictures"):
                    batch_keys = [distinct[i] for i in chunk]
                    batch = pixels[[first_row[k] for k in batch_keys]].to(device, torch.float16).float()
                    acts = towers.image_trunk(model, batch, self.start).half().cpu()
                    self._write(batch_keys, acts)
                    found.update(zip(batch_keys, acts))
            log.info("trunk cache %s: %d pictures computed, %d read", self.folder.name, len(missing), len(set(keys)) - len(missing))
        return torch.stack([found[k] for k in keys]) if keys else torch.zeros(0)
