"""An adapter taken elsewhere: as a peft folder, or merged into one open_clip checkpoint.

``export_adapter(folder, out)`` writes a folder that open_clip + peft load with no qualia code:
peft's two files, ``qualia.json`` (where the adapter came from) and a README with the lines that load
it. ``export_merged(folder, out)`` writes one ``.safetensors`` checkpoint, the base weights with the
LoRA (and trainable tokens) merged in, that ``open_clip.create_model_and_transforms(NAME,
pretrained=PATH)`` loads.

A backbone open_clip does not know by name (``qualia-tiny``) travels with its model config
(``<name>.json``, registered with ``open_clip.add_model_config``); base weights open_clip cannot
fetch by tag (the shipped stand-in, ``random-seed<N>``, a local file) travel beside a peft export
as ``base.safetensors``. Both are written atomically: a reader never sees half an export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

from qualia import workspace
from qualia.backbone import MODEL_CONFIG_DIR, Backbone, load_backbone
from qualia.errors import InvalidArgument
from qualia.lora import (
    META_FILE,
    PEFT_FILES,
    check_adapter_folder,
    check_compatible,
    load_adapter,
)

BASE_FILE = "base.safetensors"


def _hub_tags(name: str) -> set[str]:
    return {tag for model, tag in open_clip.list_pretrained() if model == name}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous tensors that share no memory
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _model_config(name: str) -> Path | None:
    """qualia's own open_clip config for ``name``, when open_clip itself does not ship one."""
    path = MODEL_CONFIG_DIR / f"{name}.json"
    return path if path.is_file() else None


def _loading_lines(backbone: Backbone, config: str | None, pretrained: str) -> list[str]:
    lines = ["import open_clip"]
    if config:
        lines.append(f'open_clip.add_model_config("{config}")  # {backbone.name} is not one of open_clip\'s own models')
    lines.append(f'model, _, preprocess = open_clip.create_model_and_transforms("{backbone.name}", pretrained={pretrained})')
    lines.append(f'tokenizer = open_clip.get_tokenizer("{backbone.name}")')
    return lines


def _backbone_of(folder: Path) -> tuple[Backbone, dict[str, Any]]:
    meta = check_adapter_folder(folder)
    backbone = load_backbone(meta["backbone"], meta.get("pretrained"))
    check_compatible(backbone, meta, folder)
    return backbone, meta


def _target(out: Path, what: str) -> None:
    if out.exists():
        raise InvalidArgument(f"{out} already exists: choose a new path for the {what}")


def export_adapter(folder: Path, out: Path) -> dict[str, Any]:
    """The adapter in ``folder`` as a peft folder at ``out`` (which must not exist yet)."""
    folder, out = Path(folder), Path(out)
    _target(out, "exported adapter")
    backbone, meta = _backbone_of(folder)
    hub = meta.get("pretrained") in _hub_tags(backbone.name)
    config = _model_config(backbone.name)
    with workspace.atomic_dir(out) as tmp:
        for name in (*PEFT_FILES, META_FILE):
            shutil.copyfile(folder / name, tmp / name)
        if config:
            shutil.copyfile(config, tmp / config.name)
        if not hub:
            save_file(_state(backbone.model), str(tmp / BASE_FILE))
        lines = _loading_lines(backbone, config.name if config else None,
                               f'"{meta["pretrained"]}"' if hub else f'"{BASE_FILE}"')
        lines += ["import peft", 'model = peft.PeftModel.from_pretrained(model, ".").merge_and_unload().eval()']
        (tmp / "README.md").write_text(_readme(meta, backbone, lines, "a peft LoRA adapter"), encoding="utf-8")
    return {"adapter_version": folder.name, "out": str(out), "merged": False, "backbone": backbone.name,
            "pretrained": meta.get("pretrained"), "files": sorted(p.name for p in out.iterdir())}


def export_merged(folder: Path, out: Path) -> dict[str, Any]:
    """Base weights with the adapter in ``folder`` merged in, as one open_clip checkpoint at ``out``
    (``.safetensors``), with the model config beside it when open_clip does not know the model."""
    folder, out = Path(folder), Path(out)
    if out.suffix != ".safetensors":
        raise InvalidArgument(f"a merged export is one .safetensors file; {out.name} does not end in .safetensors")
    _target(out, "merged checkpoint")
    backbone, meta = _backbone_of(folder)
    merged = load_adapter(backbone, folder)
    config = _model_config(backbone.name)
    config_out = out.with_name(f"{backbone.name}.json") if config else None
    if config_out is not None and config_out.exists() and config_out.read_bytes() != config.read_bytes():
        raise InvalidArgument(f"{config_out} already exists with another model config")
    out.parent.mkdir(parents=True, exist_ok=True)
    if config_out is not None:
        workspace.atomic_write_bytes(config_out, config.read_bytes())
    staging = out.with_name(f".{out.name}.partial")  # a reader never sees half a checkpoint at ``out``
    metadata = {"qualia_adapter": json.dumps({k: meta.get(k) for k in ("backbone", "pretrained", "weights_sha256")}),
                "adapter_version": folder.name}
    try:
        save_file(_state(merged), str(staging), metadata=metadata)
        staging.replace(out)
    finally:
        staging.unlink(missing_ok=True)
    return {"adapter_version": folder.name, "out": str(out), "merged": True, "backbone": backbone.name,
            "pretrained": meta.get("pretrained"), "model_config": str(config_out) if config_out else None}


def _readme(meta: dict[str, Any], backbone: Backbone, lines: list[str], what: str) -> str:
    code = "\n".join(lines)
    return f"""# A qualia adapter, exported

This folder is {what} for the open_clip model `{backbone.name}` (base weights `{meta.get("pretrained")}`,
state-dict sha256 `{meta.get("weights_sha256")}`), trained by qualia on one person's texts and pictures.
`qualia.json` records how. Load it with open_clip and peft alone, from this folder:

```python
{code}

import torch
with torch.no_grad():
    texts = model.encode_text(tokenizer(["a quiet morning"]))
```

Embeddings are compared after L2 normalization (cosine similarity), as in CLIP.
"""
