"""A profile's report: what was collected, how its adapter was trained, what it changed, and the plots drawn.

What the service's ``GET /v1/profiles/{profile}/report`` answers and the web page shows. The evaluation is the
adapter's ``metrics.json`` as written at training time, kept at the top level as it always was; the rest sits
beside it under keys the evaluation never uses.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from qualia import plots, workspace
from qualia.corpus import Corpus
from qualia.errors import CorruptArtifact, NotFound
from qualia.lora import read_adapter_meta

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# What of an adapter's qualia.json a reader of the report wants; the rest (LoRA targets, token ids) is for loading.
TRAINING_FIELDS = ("backbone", "pretrained", "created", "epochs_run", "best_epoch", "train_seconds", "data")


def corpus_counts(ws: workspace.Workspace, profile: str) -> dict[str, Any] | None:
    """The corpus's counts (items by source, by degree and by kind; pictures, edges), None without a corpus."""
    path = ws.corpus_path(profile)
    if not path.exists():
        return None
    with Corpus(path, ws.images_dir, readonly=True) as corpus:
        return corpus.counts()


def training_summary(folder: Path) -> dict[str, Any] | None:
    """How the adapter in ``folder`` was trained, or None when its qualia.json cannot tell (logged)."""
    try:
        meta = read_adapter_meta(folder)
    except CorruptArtifact as e:
        log.warning("report without training facts: %s", e)
        return None
    summary = {key: meta[key] for key in TRAINING_FIELDS if key in meta}
    if isinstance(meta.get("lora"), dict):
        summary["lora_rank"] = meta["lora"].get("rank")
    return summary


def plot_path(ws: workspace.Workspace, profile: str, version: str, name: str) -> Path:
    """The file of a plot training drew for adapter ``version``; NotFound for any other name or a missing file."""
    if name not in plots.DRAWN:
        raise NotFound(f"no plot {name[:80]!r} (there are {', '.join(plots.DRAWN)})")
    path = workspace.resolve_version(ws.adapters_dir(profile), version, "adapter") / name
    if not path.is_file():
        raise NotFound(f"adapter {version} of {profile!r} has no {name}")
    return path


def adapter_report(ws: workspace.Workspace, profile: str, version: str) -> dict[str, Any]:
    """The evaluation of adapter ``version`` with ``version``, ``training``, ``corpus`` and ``plots`` beside it.

    NotFound when the adapter or its metrics.json is missing; CorruptArtifact when metrics.json does not read.
    """
    folder = workspace.resolve_version(ws.adapters_dir(profile), version, "adapter")
    path = folder / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise NotFound(f"adapter {version} of {profile!r} has no evaluation ({METRICS_FILE})") from e
    except (OSError, ValueError) as e:
        raise CorruptArtifact(f"adapter {version} of {profile!r} has an unreadable {METRICS_FILE}: {e}") from e
    if not isinstance(metrics, dict):
        raise CorruptArtifact(f"adapter {version} of {profile!r} has a {METRICS_FILE} that is not an object")
    drawn = [{"name": name, "title": title} for name, title in plots.DRAWN.items() if (folder / name).is_file()]
    return {
        **metrics,
        "version": folder.name,
        "training": training_summary(folder),
        "corpus": corpus_counts(ws, profile),
        "plots": drawn,
    }
