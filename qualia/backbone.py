"""The frozen CLIP backbone, and the one place that decides where its weights come from.

``pretrained`` is one of
  * an open_clip hub tag (``laion2b_s34b_b79k``), fetched through open_clip's cache;
  * a local weights file (``.pt``/``.bin``/``.safetensors`` state dict), loaded strictly;
  * a tag of weights shipped inside the package (``qualia/weights/<name>-<tag>.json`` beside its
    ``.safetensors``): ``qualia-tiny``'s ``standin-v1``, the offline stand-in for a real CLIP that
    ``qualia pretrain`` makes, checked against its sha256 before use;
  * ``random-seed<N>``: deterministic random init from seed N: the same seed gives the same weights
    in every process, so an adapter trained in one process fits the backbone loaded in another.

Every backbone carries ``weights_sha256``, a checksum of its state dict, which adapters record so
that they are never applied to other base weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import open_clip
import torch
from safetensors.torch import load_file

from qualia.config import DEFAULT_BACKBONE, DEFAULT_PRETRAINED, TINY_BACKBONE, TINY_PRETRAINED
from qualia.errors import BackboneUnavailable, InvalidArgument

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
SHIPPED_WEIGHTS_DIR = Path(__file__).parent / "weights"
_RANDOM_TAG = re.compile(r"^random-seed(\d+)$")


@dataclass
class Backbone:
    name: str
    pretrained: str | None
    model: torch.nn.Module  # open_clip CLIP, eval(), every parameter frozen
    preprocess: Callable  # PIL.Image -> (3, image_size, image_size) float tensor, eval transform
    tokenizer: Callable  # list[str] -> (n, context_length) LongTensor
    weights_sha256: str
    embed_dim: int
    image_size: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        """What an artifact built on this backbone records about it."""
        return {"backbone": self.name, "pretrained": self.pretrained, "weights_sha256": self.weights_sha256}


def register_model_configs() -> None:
    """Make qualia's own open_clip configs (``qualia-tiny``) known to open_clip; idempotent."""
    if TINY_BACKBONE not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def state_dict_sha256(model: torch.nn.Module) -> str:
    """Checksum of names, dtypes, shapes and values of a state dict, independent of process and device."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _unavailable(name: str, pretrained: str | None, reason: str) -> BackboneUnavailable:
    which = f"{name} with weights {pretrained!r}" if pretrained else name
    return BackboneUnavailable(
        f"cannot load {which}: {reason}. "
        f"Use `--pretrained /path/to/weights` (a local weights file for {name}) "
        f"or `--backbone {TINY_BACKBONE}` (ships with the project, works offline)."
    )


def shipped_weights(name: str, tag: str) -> Path | None:
    """The package's own weights file for ``name``/``tag``, checked against its recorded sha256; None
    if the package ships none by that tag."""
    card = SHIPPED_WEIGHTS_DIR / f"{name}-{tag}.json"
    if not card.is_file():
        return None
    try:
        record = json.loads(card.read_text())
        path, expected = SHIPPED_WEIGHTS_DIR / record["file"], record["sha256"]
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _unavailable(name, tag, f"the weights shipped with qualia cannot be read ({e}); reinstall qualia") from e
    if actual != expected:
        raise _unavailable(
            name, tag, f"{path.name} fails its checksum (sha256 {actual[:12]}…, expected {expected[:12]}…); reinstall qualia"
        )
    return path


def _seeded_model(name: str, seed: int) -> tuple[torch.nn.Module, Callable]:
    # fork_rng: the fixed seed must not disturb the caller's random stream
    with torch.random.fork_rng(devices=[]), _quiet_random_init():
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    return model, preprocess


def _default_tag(name: str) -> str | None:
    if name == TINY_BACKBONE:
        return TINY_PRETRAINED
    if name == DEFAULT_BACKBONE:
        return DEFAULT_PRETRAINED
    tags = open_clip.list_pretrained_tags_by_model(name)
    return tags[0] if tags else None


def _hub_offline() -> bool:
    # read at call time: huggingface_hub reads it only once, at import
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cached(tag_cfg: dict) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hub = tag_cfg.get("hf_hub") or ""
    repo, _, filename = hub.rpartition("/")  # "org/model/" or "org/model/file.pt"
    if not repo:
        return False
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _hub_reachable(timeout_s: float = 5.0) -> bool:
    from huggingface_hub import constants

    parts = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline_mode(offline: bool) -> Iterator[None]:
    """Run open_clip's download with huggingface_hub's offline switch set as decided here.

    Without this, an unreachable hub costs about a minute of retries before open_clip gives up.
    """
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline or saved
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """Drop open_clip's "initialized randomly" warning: for ``random-seed<N>`` that is the point."""

    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def load_backbone(name: str = DEFAULT_BACKBONE, pretrained: str | None = None, device: str = "cpu") -> Backbone:
    """Load ``name`` with ``pretrained`` weights (hub tag, local file or ``random-seed<N>``), frozen, in eval mode."""
    register_model_configs()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgument(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    if name not in open_clip.list_models():
        raise BackboneUnavailable(
            f"unknown backbone {name[:60]!r}: not an open_clip model name (e.g. {DEFAULT_BACKBONE}), "
            f"nor {TINY_BACKBONE!r} (ships with the project, works offline)"
        )
    pretrained = pretrained or _default_tag(name)
    if pretrained is None:
        raise _unavailable(name, pretrained, "the model has no known pretrained tag; name one")

    random_seed = _RANDOM_TAG.match(pretrained)
    if random_seed:
        model, preprocess = _seeded_model(name, int(random_seed.group(1)))
    elif shipped := shipped_weights(name, pretrained):
        model, preprocess = _seeded_model(name, 0)
        state = {k: v.float() for k, v in load_file(str(shipped)).items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise _unavailable(name, pretrained, f"{shipped.name} does not fit the model ({str(e)[:200]})") from e
    elif tag_cfg := open_clip.get_pretrained_cfg(name, pretrained):
        cached = _hub_cached(tag_cfg)
        # a tag's weights never change: once cached, no network at all
        offline = cached or _hub_offline() or not _hub_reachable()
        if offline and not cached:
            why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the hub cannot be reached"
            raise _unavailable(name, pretrained, f"{why} and the weights are not in the local cache")
        try:
            with _hub_offline_mode(offline):
                model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except Exception as e:
            raise _unavailable(name, pretrained, str(e)) from e
    elif os.path.isfile(os.path.expanduser(pretrained)):
        pretrained = str(Path(pretrained).expanduser().resolve())
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except Exception as e:
            raise BackboneUnavailable(f"weights file {pretrained} does not fit {name}: {e}") from e
    else:
        known = open_clip.list_pretrained_tags_by_model(name)
        raise _unavailable(
            name, pretrained, f"{pretrained!r} is neither a known tag (known: {known or 'none'}) nor an existing file"
        )

    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    config = open_clip.get_model_config(name) or {}
    image_size = model.visual.image_size
    backbone = Backbone(
        name=name,
        pretrained=pretrained,
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(name),
        weights_sha256=state_dict_sha256(model),
        embed_dim=int(config.get("embed_dim") or model.text_projection.shape[1]),
        image_size=int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size),
    )
    log.info("backbone %s/%s loaded (weights %s)", name, pretrained, backbone.weights_sha256[:12])
    return backbone
