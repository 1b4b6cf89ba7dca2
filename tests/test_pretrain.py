"""`qualia pretrain`: seeded, resumable, and its output loads as the stand-in backbone would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from qualia import pretrain as module
from qualia.backbone import load_backbone
from qualia.config import TINY_BACKBONE, PretrainSettings

pytestmark = pytest.mark.slow

TINY_RUN = PretrainSettings(steps=4, batch_size=12, uniformity_texts=8, checkpoint_every=2)


def test_pretraining_is_seeded_resumable_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = module.pretrain(tmp_path / "a" / "w.safetensors", TINY_RUN)
    card = json.loads((tmp_path / "a" / "w.json").read_text())
    assert card["sha256"] == whole["sha256"] and card["settings"]["steps"] == 4
    assert [h["step"] for h in card["history"]] == [2, 4]
    for side in ("pretrained", "random_init"):
        assert set(card["held_out"][side]) == {"t2i", "i2t", "nonce_cosine"}
    loaded = load_backbone(TINY_BACKBONE, str(tmp_path / "a" / "w.safetensors"))
    assert loaded.weights_sha256 == card["weights_sha256"]
    assert not (tmp_path / "a" / "w.safetensors.checkpoint.pt").exists()

    # interrupted after its first checkpoint, then run again: the same weights as the uninterrupted run
    real_batch = module._batch

    def dies_at_step_3(settings, step, backbone, pool):
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(settings, step, backbone, pool)

    monkeypatch.setattr(module, "_batch", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        module.pretrain(tmp_path / "b" / "w.safetensors", TINY_RUN)
    assert (tmp_path / "b" / "w.safetensors.checkpoint.pt").exists()
    monkeypatch.setattr(module, "_batch", real_batch)
    resumed = module.pretrain(tmp_path / "b" / "w.safetensors", TINY_RUN)
    assert [h["step"] for h in resumed["history"]] == [2, 4]
    a, b = load_file(str(tmp_path / "a" / "w.safetensors")), load_file(str(tmp_path / "b" / "w.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 2e-3, worst  # the same steps; float16 storage and summation order, not a different run
