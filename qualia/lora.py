"""LoRA adapters over the frozen backbone, and their folders on disk.

An adapter folder is what peft writes (``adapter_config.json`` + ``adapter_model.safetensors``)
plus ``qualia.json``: what peft does not know, i.e. which backbone and which exact base weights
(``weights_sha256``) the adapter was trained on, the LoRA settings and whatever the trainer adds.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import peft
import torch

from qualia import workspace
from qualia.backbone import Backbone

log = logging.getLogger(__name__)

META_FILE = "qualia.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class LoraSettings:
    rank: int = field(default=8, metadata={"help": "rank r of each low-rank update B·A"})
    alpha: int = field(default=16, metadata={"help": "scale of the update is alpha / rank"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA branch's input during training"})
    target_modules: list[str] | str = field(
        default_factory=lambda: ["attn", "c_fc", "c_proj"],
        metadata={
            "help": "modules to adapt: names matched against the end of module paths, or one regex "
            "matched against whole paths; the default adapts attention and MLP of every block in both towers"
        },
    )

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("LoRA needs at least one target module")

    def peft_config(self) -> peft.LoraConfig:
        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return peft.LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets)


class AdapterMismatch(ValueError):
    """The adapter was trained on other base weights than the backbone it is being loaded onto."""


def adapters_dir(profile: str) -> Path:
    return workspace.profile_dir(profile) / "adapters"


def _missing_peft_files(folder: Path) -> list[str]:
    return [f for f in PEFT_FILES if not (folder / f).is_file()]


def attach_lora(backbone: Backbone, settings: LoraSettings) -> peft.PeftModel:
    """A trainable copy of the backbone with LoRA injected; only LoRA parameters require grad.

    The backbone itself stays untouched (peft injects in place, so it works on a deep copy).
    """
    model = peft.get_peft_model(copy.deepcopy(backbone.model), settings.peft_config())
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    model.qualia_meta = {**backbone.describe(), "lora": asdict(settings)}
    return model


def save_adapter(model: peft.PeftModel, folder: Path, meta: dict[str, Any]) -> None:
    """Write the peft files and ``qualia.json`` into ``folder``.

    Not atomic by itself: the trainer writes into a ``workspace.atomic_dir`` and renames it whole.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's generic model card; qualia.json says more
    missing = _missing_peft_files(folder)
    if missing:
        raise RuntimeError(f"peft did not write {missing} into {folder}")
    record = {**getattr(model, "qualia_meta", {}), **meta}
    if "weights_sha256" not in record:
        raise ValueError("adapter metadata must name the base weights (weights_sha256)")
    workspace.atomic_write_json(folder / META_FILE, record)


def read_adapter_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a qualia adapter: no {META_FILE}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def check_compatible(backbone: Backbone, meta: dict[str, Any], folder: Path) -> None:
    if meta.get("weights_sha256") != backbone.weights_sha256:
        raise AdapterMismatch(
            f"adapter {folder} was trained on {meta.get('backbone')}/{meta.get('pretrained')} "
            f"(base weights {str(meta.get('weights_sha256'))[:16]}...), but the loaded backbone is "
            f"{backbone.name}/{backbone.pretrained} (base weights {backbone.weights_sha256[:16]}...); "
            f"load the backbone the adapter was trained on"
        )


def load_adapter(backbone: Backbone, folder: Path) -> torch.nn.Module:
    """Base + LoRA merged into a plain open_clip model, eval mode, frozen.

    Works on a copy: ``backbone.model`` stays the frozen base, so one process can hold one backbone
    and several profiles' adapters.
    """
    folder = Path(folder)
    meta = read_adapter_meta(folder)
    check_compatible(backbone, meta, folder)
    missing = _missing_peft_files(folder)
    if missing:
        raise FileNotFoundError(f"adapter {folder} is incomplete: missing {missing}")
    model = peft.PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(folder))
    merged = model.merge_and_unload().eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    return merged
