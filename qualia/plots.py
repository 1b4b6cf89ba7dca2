"""What training draws: its curves, and the modality gap before and after (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# The files training draws into each adapter folder, and what each shows (the service's report lists them).
LOSS_CURVE = "loss_curve.png"
MODALITY_MAP = "modality_gap.png"
DRAWN = {
    LOSS_CURVE: "Training and held-out loss per epoch, and held-out recall@10 both ways",
    MODALITY_MAP: "Held-out pictures and texts before and after the adapter (PCA): the modality gap",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window or a display
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: list[dict[str, Any]], path: Path, title: str, best_epoch: int | None = None) -> None:
    """Training and validation loss per epoch, and validation recall@10 both ways on a second axis."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, loss_axis = plt.subplots(figsize=(7, 4), dpi=100)
    loss_axis.plot(epochs, [r["train_loss"] for r in history], "o-", color="#1f77b4", label="train loss")
    if any(r.get("val_loss") is not None for r in history):
        loss_axis.plot(epochs, [r.get("val_loss") for r in history], "s-", color="#ff7f0e", label="val loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("weighted InfoNCE")
    recall_axis = loss_axis.twinx()
    for key, style, label, color in (("val_t2i_r10", "^--", "val text→image R@10", "#2ca02c"), ("val_i2t_r10", "v--", "val image→text R@10", "#9467bd")):
        if any(key in r for r in history):
            recall_axis.plot(epochs, [r.get(key) for r in history], style, color=color, label=label, alpha=0.8)
    recall_axis.set_ylim(0, 1)
    recall_axis.set_ylabel("recall@10")
    if best_epoch:
        loss_axis.axvline(best_epoch, color="gray", linestyle=":", label=f"kept: epoch {best_epoch}")
    handles = loss_axis.get_legend_handles_labels()[0] + recall_axis.get_legend_handles_labels()[0]
    loss_axis.legend(handles=handles, fontsize=8, loc="center right")
    loss_axis.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _project(texts: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets on the first two principal axes of their union."""
    both = np.concatenate([texts, images]).astype(np.float64)
    mean = both.mean(axis=0)
    _, _, axes = np.linalg.svd(both - mean, full_matrices=False)
    flat = (both - mean) @ axes[:2].T
    return flat[: len(texts)], flat[len(texts):]


def modality_map(panels: list[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """One panel per (name, text embeddings, picture embeddings): a 2-D projection (PCA), the two
    modalities' centroids joined by a line whose length in full dimension is the gap."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), dpi=100, squeeze=False)
    for axis, (name, texts, images) in zip(axes[0], panels):
        t2, i2 = _project(texts, images)
        axis.scatter(i2[:, 0], i2[:, 1], s=12, c="#d62728", alpha=0.6, label="pictures")
        axis.scatter(t2[:, 0], t2[:, 1], s=12, c="#1f77b4", marker="x", alpha=0.6, label="texts")
        ct, ci = t2.mean(axis=0), i2.mean(axis=0)
        axis.plot([ct[0], ci[0]], [ct[1], ci[1]], "k-", linewidth=2)
        gap = float(np.linalg.norm(images.mean(axis=0) - texts.mean(axis=0)))
        axis.set_title(f"{name}: gap {gap:.3f}", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
