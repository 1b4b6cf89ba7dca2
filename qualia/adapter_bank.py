"""Profiles' adapters over one shared backbone, unmerged: what the service encodes queries with.

``load_adapter`` (training, index, export) gives a model of its own: a deep copy of the backbone with
the LoRA merged in, about a backbone's memory per profile. A service holding many profiles keeps one
backbone instead, and each profile's adapter as read from peft's file (``LowRank``): for every weight
the adapter changes, the low-rank pair (A, B) and its scale, and the token-table rows it trained. To
encode with it (``LowRank.applied``), each module whose weight the adapter changes computes
W x + scale * B (A x) on the batch's activations for the length of one batch, no weight formed or
copied; open_clip's ``nn.MultiheadAttention`` gets a forward of its own to do so for the packed q, k, v
projection and ``out_proj``. The trained rows replace the table's rows where their tokens occur
(``towers.encode_text``'s ``token_rows``). A profile costs its adapter's bytes, not a backbone's (forming
W + scale * B @ A per batch instead held a tower's changed weights, 32 MB on ViT-B-32, beyond them).

peft writes open_clip's ``nn.MultiheadAttention`` LoRA as ``<block>.attn.lora_{A,B}`` (the packed
q, k, v projection ``in_proj_weight``) and ``<block>.attn.base_layer.out_proj.lora_{A,B}``; a plain
``Linear`` as ``<module>.lora_{A,B}``; trained token rows as ``token_embedding.token_adapter.
trainable_tokens_delta`` (the new rows themselves, in the order of ``trainable_token_indices``).
peft applies the ``out_proj`` pair twice (``out_proj_factor``). ``tests/test_adapter_bank.py`` checks
the result against the merged model.

``applied`` changes the shared model for the length of a ``with``: only one thread may encode at a
time (the service's encoder worker is that thread).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
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

    def applied(self, model: torch.nn.Module, image_tower: bool) -> contextlib.AbstractContextManager[None]:
        """``model`` (the shared backbone) encoding as backbone + this adapter, for one tower, for the
        length of a ``with``."""
        return _applied(model, {name: pair for name, pair in self.pairs.items()
                                if name.startswith("visual.") == image_tower})  # fmt: skip


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


Pair = tuple[torch.Tensor, torch.Tensor, float]  # A (r, in), B (out, r), scale


def _low_rank_linear(module: torch.nn.Linear, pair: Pair) -> Callable[[torch.Tensor], torch.Tensor]:
    a, b, scale = pair

    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, module.weight, module.bias) + scale * F.linear(F.linear(x, a), b)

    return forward


def _low_rank_attention(module: torch.nn.MultiheadAttention, packed: Pair | None, out: Pair | None,
                        out_repeats: float = 0.0) -> Callable:  # fmt: skip
    """``nn.MultiheadAttention.forward`` with LoRA on the packed q, k, v projection and on ``out_proj``,
    applied to activations: self-attention as open_clip's blocks call it, or some positions' queries
    over one key-and-value tensor (``towers``' last block, with a padding mask). ``out_repeats``: times
    ``out_proj``'s update is added again, its A and B outside the gradient (as peft's training forward
    does: it merges the update into the weight twice, the second time in place)."""
    heads, width = module.num_heads, module.embed_dim

    def project(x: torch.Tensor, part: slice) -> torch.Tensor:
        y = F.linear(x, module.in_proj_weight[part], module.in_proj_bias[part] if module.in_proj_bias is not None else None)
        if packed is not None:
            y = y + packed[2] * F.linear(F.linear(x, packed[0]), packed[1][part])
        return y

    def forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = True, attn_mask: torch.Tensor | None = None, **unused: object) -> tuple[torch.Tensor, None]:  # fmt: skip
        if value is not key:
            raise NotImplementedError("LoRA on activations serves attention with one key-and-value tensor only")
        q_in, kv_in = (t if module.batch_first else t.transpose(0, 1) for t in (query, key))  # (n, length, width)
        n, length, kv_length = q_in.shape[0], q_in.shape[1], kv_in.shape[1]
        if query is key:
            q, k, v = project(q_in, slice(None)).view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        else:
            q = project(q_in, slice(0, width)).view(n, length, heads, width // heads).transpose(1, 2)
            k, v = project(kv_in, slice(width, None)).view(n, kv_length, 2, heads, width // heads).permute(2, 0, 3, 1, 4)
        # each (n, heads, length, d); masks: MultiheadAttention's True masks out, SDPA's True lets through
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask, float("-inf"))
        if key_padding_mask is not None:
            padding = torch.zeros(n, 1, 1, kv_length, dtype=q.dtype, device=q.device)
            padding = padding.masked_fill(key_padding_mask.view(n, 1, 1, kv_length), float("-inf"))
            attn_mask = padding if attn_mask is None else attn_mask + padding
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(n, length, width)
        projected = F.linear(y, module.out_proj.weight, module.out_proj.bias)
        if out is not None:
            projected = projected + out[2] * F.linear(F.linear(y, out[0]), out[1])
            if out_repeats:  # in the value and in the gradient reaching y, not in A's and B's
                projected = projected + out_repeats * out[2] * F.linear(F.linear(y, out[0].detach()), out[1].detach())
        return (projected if module.batch_first else projected.transpose(0, 1)), None

    return forward


@contextlib.contextmanager
def _applied(model: torch.nn.Module, pairs: dict[str, Pair]) -> Iterator[None]:
    """``model`` with each module whose weights ``pairs`` change running W x + scale * B (A x) instead of
    W x: no weight is formed or copied, so the shared backbone's memory stays one backbone's."""
    attention: dict[str, dict[str, Pair]] = {}
    overridden: list[torch.nn.Module] = []
    try:
        for name, pair in pairs.items():
            owner_name, _, attr = name.rpartition(".")
            if attr == "in_proj_weight":
                attention.setdefault(owner_name, {})["packed"] = pair
            elif owner_name.endswith(".attn.out_proj"):
                attention.setdefault(owner_name.removesuffix(".out_proj"), {})["out"] = pair
            else:
                module = model.get_submodule(owner_name)
                module.forward = _low_rank_linear(module, pair)  # an instance attribute shadows the class's
                overridden.append(module)
        for owner_name, found in attention.items():
            module = model.get_submodule(owner_name)
            module.forward = _low_rank_attention(module, found.get("packed"), found.get("out"))
            overridden.append(module)
        yield
    finally:
        for module in overridden:
            del module.forward


class LowRankCache:
    """Adapters read on first use and kept while their bytes fit ``budget_bytes``; the least recently
    used goes first (the newest always stays). Adapter versions are not meant to change on disk; the key
    still holds their files' size and time, so one that was rewritten is read (and checked) again."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._kept: OrderedDict[tuple, LowRank] = OrderedDict()
        self._lock = threading.Lock()
        self._files: dict[str, tuple[str, ...]] = {}  # folder -> its files' paths (a service stats them every query)

    def _key(self, folder: Path, backbone: Backbone) -> tuple:
        where = str(folder)
        paths = self._files.get(where)
        if paths is None:
            paths = self._files[where] = tuple(os.path.join(where, name) for name in (*PEFT_FILES, META_FILE))
        try:
            files = tuple((st.st_size, st.st_mtime_ns) for st in map(os.stat, paths))
        except OSError:
            files = ()  # read_low_rank says what is missing
        return (where, backbone.weights_sha256, files)

    def _use(self, key: tuple) -> LowRank | None:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        return None

    def held(self, folder: Path, backbone: Backbone) -> LowRank | None:
        """The adapter in ``folder`` if it is in memory with its files unchanged (counted as a use), else
        None; never reads it. A few ``stat`` calls: cheap enough for a server's event loop."""
        return self._use(self._key(folder, backbone))

    def get(self, folder: Path, backbone: Backbone) -> LowRank:
        key = self._key(folder, backbone)
        if (kept := self._use(key)) is not None:
            return kept
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


@contextlib.contextmanager
def attention_on_activations(model: torch.nn.Module) -> Iterator[int]:
    """Training: each of peft's attention LoRA layers in ``model`` (a peft model) computes W x + s·B(A x)
    from its live LoRA weights, for the length of a ``with``; yields how many layers it took over.

    peft merges B·A into the attention's weights around every forward, so the backward forms each
    weight's whole gradient ((3·width, width) for q, k, v) before reducing it to A and B: as much work
    as the layer's forward again. On activations the gradient reaches A and B through rank-r products;
    the function and its gradients are the same (``tests/test_adapter_bank.py``)."""
    from peft.tuners.lora.layer import MultiheadAttention as LoraAttention

    overridden: list[torch.nn.Module] = []
    try:
        for layer in model.modules():
            adapters = [a for a in getattr(layer, "active_adapters", ()) if a in getattr(layer, "lora_A", {})]
            if not isinstance(layer, LoraAttention) or layer.merged or layer.disable_adapters or len(adapters) != 1:
                continue
            (name,), base = adapters, layer.get_base_layer()
            out = base.out_proj  # peft's Linear around the attention's own
            packed = (layer.lora_A[name].weight, layer.lora_B[name].weight, layer.scaling[name])
            # peft's forward adds out_proj's update out_proj_factor() times, A's and B's gradient through one
            out_pair = (out.lora_A[name].weight, out.lora_B[name].weight, out.scaling[name])
            layer.forward = _low_rank_attention(base, packed, out_pair, out_proj_factor() - 1)
            overridden.append(layer)
        yield len(overridden)
    finally:
        for layer in overridden:
            del layer.forward
