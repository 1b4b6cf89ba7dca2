"""Profiles' adapters over one shared backbone, unmerged: what the service encodes queries with.

``load_adapter`` (training, index, export) gives a model of its own: a deep copy of the backbone with
the LoRA merged in, about a backbone's memory per profile. A service holding many profiles keeps one
backbone instead, and each profile's adapter as read from peft's file (``LowRank``): for every weight
the adapter changes, the low-rank pair (A, B) and its scale, and the token-table rows it trained. To
encode with it, each changed weight is formed as W + scale * B @ A for the length of one batch and
swapped in (``swapped``), and the trained rows replace the table's rows where their tokens occur
(``towers.encode_text``'s ``token_rows``). A profile costs its adapter's bytes, not a backbone's; the
extra work per batch is one (out, r) @ (r, in) product per changed weight.

peft writes open_clip's ``nn.MultiheadAttention`` LoRA as ``<block>.attn.lora_{A,B}`` (the packed
q, k, v projection ``in_proj_weight``) and ``<block>.attn.base_layer.out_proj.lora_{A,B}``; a plain
``Linear`` as ``<module>.lora_{A,B}``; trained token rows as ``token_embedding.token_adapter.
trainable_tokens_delta`` (the new rows themselves, in the order of ``trainable_token_indices``).
peft applies the ``out_proj`` pair twice (``out_proj_factor``). ``tests/test_adapter_bank.py`` checks
the result against the merged model.

``swapped`` changes the shared model for the length of a ``with``: only one thread may encode at a
time (the service's encoder worker is that thread).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from qualia.backbone import Backbone
from qualia.errors import CorruptArtifact
from qualia.lora import META_FILE, PEFT_FILES, check_adapter_folder, check_compatible

log = logging.getLogger(__name__)

PREFIX = "base_model.model."
TOKENS_KEY = "token_embedding.token_adapter.trainable_tokens_delta"
_LORA_KEY = re.compile(r"(?P<module>.+?)\.(?:base_layer\.)?(?P<rest>(?:out_proj\.)?)lora_(?P<ab>[AB])\.weight")


@dataclass
class LowRank:
    """One adapter as the changes it makes to a backbone's weights, nothing of the backbone copied."""

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]]  # parameter name -> (A (r, in), B (out, r), scale)
    token_ids: torch.Tensor | None  # (n,) long, sorted
    token_rows: torch.Tensor | None  # (n, width), following token_ids

    @property
    def nbytes(self) -> int:
        tensors = [t for a, b, _ in self.pairs.values() for t in (a, b)]
        tensors += [t for t in (self.token_ids, self.token_rows) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    def weights(self, model: torch.nn.Module, image_tower: bool) -> dict[str, torch.Tensor]:
        """parameter name -> W + scale * B @ A of one tower's changed weights. The last adapter's are
        kept (one slot, process-wide): consecutive batches of one profile form them once, and memory
        holds one tower's worth, not one per profile."""
        with _last_lock:
            if _last.get("of") is not None and _last["of"]() is self and _last["key"] == (model, image_tower):
                return _last["weights"]
        params = dict(model.named_parameters())
        formed = {name: params[name] + scale * (b @ a) for name, (a, b, scale) in self.pairs.items()
                  if name.startswith("visual.") == image_tower}  # fmt: skip
        with _last_lock:
            _last.update({"of": weakref.ref(self), "key": (model, image_tower), "weights": formed})
        return formed


_last: dict = {}  # the last formed weights: {"of": weakref to the LowRank, "key": (model, tower), "weights"}
_last_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def out_proj_factor() -> float:
    """How many times peft applies an attention's ``out_proj`` LoRA. peft 0.21 merges it twice (and its
    unmerged forward merges the same way, so adapters are trained with it); measured on a toy attention
    layer, so a peft that stops doing so is followed, not contradicted."""
    import peft

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(4, 1)

    toy = Toy()
    before = toy.attn.out_proj.weight.detach().clone()
    model = peft.get_peft_model(toy, peft.LoraConfig(r=1, lora_alpha=1, target_modules=["attn"]))
    out = model.base_model.model.attn.base_layer.out_proj
    with torch.no_grad():
        out.lora_A["default"].weight.fill_(1.0)
        out.lora_B["default"].weight.fill_(1.0)
    merged = model.merge_and_unload().attn.out_proj.weight.detach()
    return float((merged - before).mean())  # B @ A is all ones and the scale 1: the factor itself


def _parameter_of(module: str, rest: str) -> str:
    if rest:  # <block>.attn.base_layer.out_proj
        return f"{module}.{rest}weight"
    return f"{module}.in_proj_weight" if module.endswith(".attn") else f"{module}.weight"


def read_low_rank(folder: Path, backbone: Backbone) -> LowRank:
    """The adapter in ``folder`` (peft's files) as a ``LowRank`` over ``backbone``; CorruptArtifact when
    its files do not say what they change, AdapterMismatch when it was trained on other weights."""
    folder = Path(folder)
    meta = check_adapter_folder(folder)
    check_compatible(backbone, meta, folder)
    try:
        config = json.loads((folder / PEFT_FILES[0]).read_text())
        tensors = load_file(str(folder / PEFT_FILES[1]))
    except (OSError, ValueError) as e:
        raise CorruptArtifact(f"adapter {folder.name}: unreadable peft files ({e})") from e
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise CorruptArtifact(f"adapter {folder.name}: DoRA or per-module ranks are not served")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    params = dict(backbone.model.named_parameters())
    halves: dict[str, dict[str, torch.Tensor]] = {}
    token_rows = None
    for key, value in tensors.items():
        name = key.removeprefix(PREFIX)
        if name == TOKENS_KEY:
            token_rows = value.float()
            continue
        match = _LORA_KEY.fullmatch(name)
        if match is None:
            raise CorruptArtifact(f"adapter {folder.name}: unknown weight {key}")
        halves.setdefault(_parameter_of(match["module"], match["rest"]), {})[match["ab"]] = value.float()
    pairs = {}
    for name, ab in halves.items():
        if name not in params or ab.keys() != {"A", "B"}:
            raise CorruptArtifact(f"adapter {folder.name}: {name} is not a weight of {backbone.name}, or half its LoRA is missing")
        if (ab["B"].shape[0], ab["A"].shape[1]) != tuple(params[name].shape):
            raise CorruptArtifact(f"adapter {folder.name}: LoRA of {name} has the wrong shape")
        factor = out_proj_factor() if name.endswith(".attn.out_proj.weight") else 1.0
        pairs[name] = (ab["A"].to(backbone.device), ab["B"].to(backbone.device), scale * factor)
    token_ids = None
    if token_rows is not None:
        ids = torch.tensor((config.get("trainable_token_indices") or {}).get("token_embedding", []), dtype=torch.long)
        if len(ids) != len(token_rows):
            raise CorruptArtifact(f"adapter {folder.name}: {len(token_rows)} trained token rows for {len(ids)} token ids")
        order = torch.argsort(ids)
        token_ids, token_rows = ids[order].to(backbone.device), token_rows[order].to(backbone.device)
    return LowRank(pairs, token_ids, token_rows)


@contextlib.contextmanager
def swapped(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> Iterator[None]:
    """``model`` with ``weights`` (parameter name -> tensor) in place of its own, restored on exit."""
    saved = []
    try:
        for name, value in weights.items():
            owner_name, _, attr = name.rpartition(".")
            owner = model.get_submodule(owner_name)
            saved.append((owner, attr, owner._parameters[attr]))
            owner._parameters[attr] = value  # a plain tensor: nn.Module.__setattr__ would refuse it
        yield
    finally:
        for owner, attr, parameter in reversed(saved):
            owner._parameters[attr] = parameter


class LowRankCache:
    """Adapters read on first use and kept while their bytes fit ``budget_bytes``; the least recently
    used goes first (the newest always stays). Adapter versions are not meant to change on disk; the key
    still holds their files' size and time, so one that was rewritten is read (and checked) again."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._kept: OrderedDict[tuple, LowRank] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: Path, backbone: Backbone) -> LowRank:
        try:
            files = tuple((st.st_size, st.st_mtime_ns) for st in (
                (Path(folder) / name).stat() for name in (*PEFT_FILES, META_FILE)))  # fmt: skip
        except OSError:
            files = ()  # read_low_rank says what is missing
        key = (str(folder), backbone.weights_sha256, files)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        low_rank = read_low_rank(folder, backbone)
        with self._lock:
            self._kept[key] = low_rank
            self._kept.move_to_end(key)
            while len(self._kept) > 1 and self.nbytes > self.budget_bytes:
                evicted, _ = self._kept.popitem(last=False)
                log.info("adapter %s leaves memory (budget %d bytes)", evicted[0], self.budget_bytes)
        return low_rank

    @property
    def nbytes(self) -> int:
        return sum(low_rank.nbytes for low_rank in self._kept.values())

    def __len__(self) -> int:
        return len(self._kept)
