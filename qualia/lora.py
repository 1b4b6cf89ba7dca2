"""LoRA adapters over the frozen backbone, and their folders on disk.

An adapter folder is what peft writes (``adapter_config.json`` + ``adapter_model.safetensors``)
plus ``qualia.json``: what peft does not know, each fact once: which backbone and which exact base
weights (``backbone``, ``pretrained``, ``weights_sha256``) the adapter was trained on, its LoRA
settings (``lora``), and what the trainer adds (the training recipe, data counts, history).

Targets: open_clip's attention is ``nn.MultiheadAttention``, which peft adapts as a whole (module
``attn``; it merges the LoRA delta into ``in_proj_weight``/``out_proj`` around each forward). Adapting
``out_proj`` alone would not train, because MultiheadAttention never calls ``out_proj.forward``.
The MLP's ``c_fc``/``c_proj`` are plain ``Linear`` layers. Peft matches a list entry against the end
of a module name, so the defaults hit every residual block of both towers.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import peft
import torch
from safetensors import safe_open

from qualia import workspace
from qualia.backbone import Backbone
from qualia.config import LoraSettings
from qualia.errors import AdapterMismatch, CorruptArtifact, InvalidArgument

log = logging.getLogger(__name__)

META_FILE = "qualia.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _missing_peft_files(folder: Path) -> list[str]:
    return [f for f in PEFT_FILES if not (folder / f).is_file()]


TOKEN_ROWS = "trainable_tokens_"  # in the names of peft's trained token embedding rows


def attach_lora(backbone: Backbone, settings: LoraSettings) -> peft.PeftModel:
    """A trainable copy of the backbone with LoRA injected; only LoRA parameters (and trainable token
    embeddings, when the settings name tokens) require grad.

    The backbone itself stays untouched (peft injects in place, so it works on a deep copy).
    """
    model = peft.get_peft_model(copy.deepcopy(backbone.model), settings.peft_config())
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or TOKEN_ROWS in name)
    return model


def adapter_identity(backbone: Backbone, settings: LoraSettings) -> dict[str, Any]:
    """What ``qualia.json`` must record for an adapter to be loadable: its base weights and its LoRA."""
    return {**backbone.describe(), "lora": asdict(settings)}


def save_adapter(model: peft.PeftModel, folder: Path, meta: dict[str, Any]) -> None:
    """Write the peft files and ``meta`` as ``qualia.json`` into ``folder``; ``meta`` starts from
    ``adapter_identity``.

    Not atomic by itself: the trainer writes into a ``workspace.atomic_dir`` and renames it whole.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's generic model card; qualia.json says more
    missing = _missing_peft_files(folder)
    if missing:
        raise CorruptArtifact(f"peft did not write {missing} into {folder}")
    if not {"backbone", "weights_sha256", "lora"} <= meta.keys():
        raise InvalidArgument("adapter metadata must start from adapter_identity (backbone, base weights, LoRA)")
    workspace.atomic_write_json(folder / META_FILE, meta)


def read_adapter_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise CorruptArtifact(f"{folder} is not a qualia adapter: no {META_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptArtifact(f"{path} is not readable JSON: {e}") from e
    if not isinstance(meta, dict) or not meta.get("backbone") or not meta.get("weights_sha256"):
        raise CorruptArtifact(f"{path} does not name the adapter's backbone and base weights")
    return meta


def check_adapter_folder(folder: Path) -> dict[str, Any]:
    """The metadata of a complete adapter folder; CorruptArtifact when a piece is missing or unreadable."""
    meta = read_adapter_meta(folder)
    missing = _missing_peft_files(folder)
    if missing:
        raise CorruptArtifact(f"adapter {Path(folder).name} is incomplete: missing {', '.join(missing)}")
    return meta


def usable_adapter(ws: workspace.Workspace, profile: str, version: str | None = None) -> tuple[Path, dict[str, Any]]:
    """(folder, metadata) of adapter ``version``, or of the newest complete one when None: an older adapter
    stands in for a damaged newest (logged)."""
    if version is not None:
        folder = ws.adapter(profile, version)
        return folder, check_adapter_folder(folder)
    ws.require(profile, "adapter")
    return workspace.newest_usable(ws.adapters_dir(profile), check_adapter_folder, f"adapter of {profile!r}")


def check_compatible(backbone: Backbone, meta: dict[str, Any], folder: Path) -> None:
    if meta.get("weights_sha256") != backbone.weights_sha256:
        raise AdapterMismatch(
            f"adapter {folder} was trained on {meta.get('backbone')}/{meta.get('pretrained')} "
            f"(base weights {str(meta.get('weights_sha256'))[:16]}...), but the loaded backbone is "
            f"{backbone.name}/{backbone.pretrained} (base weights {backbone.weights_sha256[:16]}...); "
            f"load the backbone the adapter was trained on"
        )


_IMAGE_BLOCK = re.compile(r"visual\.transformer\.resblocks\.(\d+)\.")


def adapted_image_blocks(folder: Path) -> set[int]:
    """The image tower's blocks the adapter in ``folder`` changes (from its weights' names)."""
    with safe_open(str(Path(folder) / PEFT_FILES[1]), framework="pt") as f:
        return {int(m.group(1)) for name in f.keys() if (m := _IMAGE_BLOCK.search(name))}


def load_adapter(backbone: Backbone, folder: Path) -> torch.nn.Module:
    """Base + LoRA merged into a plain open_clip model, eval mode, frozen.

    Works on a copy: ``backbone.model`` stays the frozen base, so one process can hold one backbone
    and several profiles' adapters.
    """
    folder = Path(folder)
    meta = check_adapter_folder(folder)
    check_compatible(backbone, meta, folder)
    model = peft.PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(folder))
    merged = model.merge_and_unload().eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    return merged
