"""Each CLIP tower cut in two at a block: a trunk below it and a head from it on.

Training adapts only the top blocks of a tower (``TrainSettings.lora_blocks``); below them the tower is
frozen, so what it makes of a picture or a text never changes and is computed once (the trunk), and each
step runs only the head: the adapted blocks, the final norm, pooling and projection. ``encode_text``
is the whole text tower on tokens cut after the batch's longest text.

Exact for open_clip's ``CLIP`` (the models qualia trains: a ViT image tower, a causal text tower read at
the end-of-text token); ``tests/test_towers.py`` checks trunk + head against ``encode_image`` and
``encode_text``. ``model`` may be a peft model around the CLIP: its LoRA layers sit inside the blocks.
Shapes: pixels (n, 3, S, S); tokens (n, context_length) long; activations (n, sequence, width).
"""

from __future__ import annotations

import torch


def clip_of(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def depths(model: torch.nn.Module) -> tuple[int, int]:
    """(blocks in the image tower, blocks in the text tower)."""
    clip = clip_of(model)
    return len(clip.visual.transformer.resblocks), len(clip.transformer.resblocks)


def text_length(tokens: torch.Tensor) -> int:
    """Columns of a (n, context_length) token batch up to its longest text's end (padding is id 0)."""
    used = (tokens != 0).any(dim=0).nonzero()
    return int(used[-1]) + 1 if len(used) else 1


def _splittable_text(clip: torch.nn.Module) -> bool:
    return (getattr(clip, "attn_mask", None) is not None and getattr(clip, "text_pool_type", None) == "argmax"
            and hasattr(clip, "positional_embedding"))  # fmt: skip


def _blocks(transformer: torch.nn.Module, x: torch.Tensor, start: int, stop: int | None,
            attn_mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    if not transformer.batch_first:
        x = x.transpose(0, 1)
    for block in transformer.resblocks[start:stop]:
        x = block(x, attn_mask=attn_mask)
    return x if transformer.batch_first else x.transpose(0, 1)


def image_trunk(model: torch.nn.Module, pixels: torch.Tensor, stop: int) -> torch.Tensor:
    """The image tower's tokens after its first ``stop`` blocks: (n, 1 + patches, width)."""
    visual = clip_of(model).visual
    return _blocks(visual.transformer, visual._embeds(pixels), 0, stop)


def image_head(model: torch.nn.Module, activations: torch.Tensor, start: int) -> torch.Tensor:
    """Blocks ``start`` on, pooling and projection: (n, embed_dim), not normalized."""
    visual = clip_of(model).visual
    pooled, _ = visual._pool(_blocks(visual.transformer, activations, start, None))
    return pooled @ visual.proj if visual.proj is not None else pooled


def text_trunk(model: torch.nn.Module, tokens: torch.Tensor, stop: int,
               token_rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """The text tower's tokens after its first ``stop`` blocks, cut after the longest text: (n, length, width).
    ``token_rows`` (sorted ids (k,), rows (k, width)): these rows in place of the token table's own."""
    clip = clip_of(model)
    length = text_length(tokens)
    cast_dtype = clip.transformer.get_cast_dtype()
    tokens = tokens[:, :length].contiguous()
    x = clip.token_embedding(tokens)
    if token_rows is not None and len(token_rows[0]):
        ids, rows = token_rows
        slot = torch.searchsorted(ids, tokens).clamp(max=len(ids) - 1)
        trained = ids[slot] == tokens
        x = x.clone()
        x[trained] = rows[slot[trained]].to(x.dtype)
    x = x.to(cast_dtype)
    x = x + clip.positional_embedding[:length].to(cast_dtype)
    return _blocks(clip.transformer, x, 0, stop, clip.attn_mask[:length, :length])


def text_head(model: torch.nn.Module, activations: torch.Tensor, tokens: torch.Tensor, start: int) -> torch.Tensor:
    """Blocks ``start`` on, final norm, the end-of-text token's feature, projection: (n, embed_dim).
    ``activations`` may be longer than the batch's longest text (padding rows of a cache): cut here."""
    clip = clip_of(model)
    length = text_length(tokens)
    x = _blocks(clip.transformer, activations[:, :length], start, None, clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens[:, :length].argmax(dim=-1)]
    projection = clip.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def encode_text(model: torch.nn.Module, tokens: torch.Tensor,
                token_rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """``model.encode_text(tokens)`` with the padding after the batch's longest text cut off.

    Exact for a causal tower: no position before a text's end-of-text token attends to the padding
    after it, and the feature is read at that token. Another kind of tower runs as is (and cannot
    take ``token_rows``, see ``text_trunk``)."""
    if not _splittable_text(clip_of(model)):
        if token_rows is not None:
            raise ValueError("trained token rows need a causal text tower read at its end-of-text token")
        return model.encode_text(tokens)
    return text_head(model, text_trunk(model, tokens, 0, token_rows), tokens, 0)
