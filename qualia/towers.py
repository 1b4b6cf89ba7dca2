"""Each CLIP tower cut in two at a block: a trunk below it and a head from it on.

Training adapts only the top blocks of a tower (``TrainSettings.lora_blocks``); below them the tower is
frozen, so what it makes of a picture or a text never changes and is computed once (the trunk), and each
step runs only the head: the adapted blocks, the final norm, pooling and projection. ``encode_text``
is the whole text tower on tokens cut after the batch's longest text.

Exact for open_clip's ``CLIP`` (the models qualia trains: a ViT image tower, a causal text tower read at
the end-of-text token); ``tests/test_towers.py`` checks trunk + head against ``encode_image`` and
``encode_text``. The last block of a head runs at the one position the feature is read from (the class
token, the end-of-text token): attention still reads every position, but the other positions' outputs,
which nothing reads, are not computed; that is most of a block (its MLP and projections). ``model`` may
be a peft model around the CLIP: its LoRA layers sit inside the blocks.
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


def text_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """(n,) tokens of each row of a (n, context_length) batch up to its end (padding is id 0)."""
    return (tokens != 0).sum(dim=1)


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


def _plain_block(block: torch.nn.Module) -> bool:
    """open_clip's ``ResidualAttentionBlock`` (self-attention), LoRA wrapped or not."""
    return all(hasattr(block, name) for name in ("ln_1", "attn", "ls_1", "ln_2", "mlp", "ls_2")) and not hasattr(block, "ln_1_kv")


def _last_block_at(transformer: torch.nn.Module, x: torch.Tensor, position: torch.Tensor,
                   ignored: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The last block's output at one position per row: (n, width). ``x`` (n, length, width) is its input,
    ``position`` (n,) long, ``ignored`` (n, length) bool: keys that row's position must not attend to."""
    block = transformer.resblocks[-1]
    rows = torch.arange(x.shape[0], device=x.device)
    normed = block.ln_1(x)
    query = normed[rows, position].unsqueeze(1)  # (n, 1, width)
    keys = normed
    if not transformer.batch_first:
        query, keys = query.transpose(0, 1), keys.transpose(0, 1)
    attended = block.attn(query, keys, keys, need_weights=False, key_padding_mask=ignored)[0]
    if not transformer.batch_first:
        attended = attended.transpose(0, 1)
    h = x[rows, position].unsqueeze(1) + block.ls_1(attended)
    return (h + block.ls_2(block.mlp(block.ln_2(h))))[:, 0]


def image_trunk(model: torch.nn.Module, pixels: torch.Tensor, stop: int) -> torch.Tensor:
    """The image tower's tokens after its first ``stop`` blocks: (n, 1 + patches, width)."""
    visual = clip_of(model).visual
    return _blocks(visual.transformer, visual._embeds(pixels), 0, stop)


def image_head(model: torch.nn.Module, activations: torch.Tensor, start: int) -> torch.Tensor:
    """Blocks ``start`` on, pooling and projection: (n, embed_dim), not normalized."""
    visual = clip_of(model).visual
    transformer = visual.transformer
    last = len(transformer.resblocks) - 1
    if start <= last and visual.attn_pool is None and visual.pool_type == "tok" and _plain_block(transformer.resblocks[-1]):
        x = _blocks(transformer, activations, start, last)
        at = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # the class token, first
        pooled = visual.ln_post(_last_block_at(transformer, x, at))
    else:
        pooled, _ = visual._pool(_blocks(transformer, activations, start, None))
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
    transformer = clip.transformer
    last = len(transformer.resblocks) - 1
    at = tokens[:, :length].argmax(dim=-1)  # the end-of-text token: the highest id
    x = _blocks(transformer, activations[:, :length], start, last, clip.attn_mask[:length, :length])
    if start <= last and _plain_block(transformer.resblocks[-1]):
        # causal: the end-of-text token reads itself and what precedes it
        x = _last_block_at(transformer, x, at, torch.arange(length, device=x.device)[None, :] > at[:, None])
    else:
        x = _blocks(transformer, x, max(start, last), None, clip.attn_mask[:length, :length])
        x = x[torch.arange(x.shape[0], device=x.device), at]
    x = clip.ln_final(x)
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
