"""What training costs against one frozen pass over the corpus (issue 8).

On the sample person's corpus (crawled once into a scratch folder, as ``persona_quality.py`` does), in one
run and one process, one after the other (never two at once on the same cores):

  (a) one frozen embedding pass over the corpus's pictures and texts with open_clip directly
      (``encode_image`` / ``encode_text``, full context, batches of 64);
  (b) ``qualia train`` + ``qualia index`` with the given settings (default: the current defaults), from an
      empty trunk cache (``qualia.trunk_cache``), as a person's first training pays it; and again with the
      cache warm (``b_warm``: a retrain, or another profile sharing pictures or the generic sets);
  (c) the skeleton's recipe: LoRA in every block, back-propagated through both whole towers
      (``lora_blocks=0``), token rows at the LoRA's learning rate every epoch, with the same epochs,
      + ``qualia index``.

Prints one JSON object: seconds of each, (b)/(a) and (c)/(b), and each adapter's held-out recall@10 and
retention. Random weights are fine for timing ViT-B-32:

    .venv/bin/python benchmarks/training_speed.py --workspace /tmp/persona --backbone ViT-B-32 \\
        --pretrained random-seed0 --epochs 2 [--set lora_blocks=2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _report import emit, machine
from _sample import sample_person
from qualia.backbone import load_backbone
from qualia.config import TINY_BACKBONE, TrainSettings
from qualia.corpus import Corpus
from qualia.embed import open_image
from qualia.index import _image_rows, _text_rows, index_profile
from qualia.train import train_profile
from qualia.workspace import Workspace

PROFILE = "persona"


def frozen_pass(ws: Workspace, backbone_name: str, pretrained: str | None) -> dict[str, Any]:
    """(a): every stored picture and every distinct text the index would hold, through open_clip as is."""
    backbone = load_backbone(backbone_name, pretrained)
    with Corpus.open(ws, PROFILE, readonly=True) as corpus:
        first_url = corpus.first_image_urls()
        pictures, texts = _image_rows(corpus, first_url), _text_rows(corpus, first_url)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(pictures), 64):
            batch = torch.stack([backbone.preprocess(open_image(row.image_path)) for row in pictures[start : start + 64]])
            backbone.model.encode_image(batch)
        for start in range(0, len(texts), 64):
            backbone.model.encode_text(backbone.tokenizer([row.text for row in texts[start : start + 64]]))
    return {"seconds": time.perf_counter() - started, "pictures": len(pictures), "texts": len(texts)}


def train_and_index(ws: Workspace, settings: TrainSettings) -> dict[str, Any]:
    started = time.perf_counter()
    adapter = train_profile(ws, PROFILE, settings)
    trained = time.perf_counter()
    index_profile(ws, PROFILE, adapter.name)
    done = time.perf_counter()
    metrics = json.loads((adapter / "metrics.json").read_text())["adapter"]
    history = json.loads((adapter / "qualia.json").read_text())["history"]
    # one more epoch costs what the last one did (the first can cost more: token embeddings train through
    # the whole text tower until ``token_epochs``)
    epoch_s = history[-1]["seconds"]
    return {"seconds": done - started, "train_s": trained - started, "index_s": done - trained, "epoch_s": epoch_s,
            "epochs_s": [r["seconds"] for r in history], "epochs": len(history),
            "t2i_r10": metrics["t2i"]["r10"], "i2t_r10": metrics["i2t"]["r10"], "retention": metrics.get("retention")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="reuse (or keep) the crawl in this folder")
    parser.add_argument("--backbone", default=TINY_BACKBONE)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--epochs", type=int, default=None, help="default: TrainSettings' own")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a TrainSettings field for (b)")
    parser.add_argument("--skip", default="", help="comma-separated parts not to run: a, b, c")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ws = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-speed-"))
    sample_person(ws, PROFILE)
    common = {"backbone": args.backbone, "pretrained": args.pretrained,
              **({"epochs": args.epochs} if args.epochs else {})}
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    skip = set(args.skip.split(","))
    result: dict[str, Any] = {"machine": {**machine(), "torch": torch.__version__, "threads": torch.get_num_threads()},
                              "backbone": args.backbone, "pretrained": args.pretrained, "settings_b": {**common, **extra}}
    if "a" not in skip:
        result["a_frozen_pass"] = frozen_pass(ws, args.backbone, args.pretrained)
    if "b" not in skip:
        shutil.rmtree(ws.trunk_cache_dir, ignore_errors=True)
        result["b_qualia"] = train_and_index(ws, TrainSettings(**common, **extra))
        result["b_warm"] = train_and_index(ws, TrainSettings(**common, **extra))
    if "c" not in skip:
        skeleton = {"lora_blocks": 0, "token_epochs": 0, "token_lr_scale": 1.0}  # tokens at lr, every epoch
        result["c_full_backprop"] = train_and_index(ws, TrainSettings(**common, **{**extra, **skeleton}))
    a, b, c = (result.get(k, {}).get("seconds") for k in ("a_frozen_pass", "b_qualia", "c_full_backprop"))
    if a and b:
        result["b_over_a"] = round(b / a, 2)
        result["b_warm_over_a"] = round(result["b_warm"]["seconds"] / a, 2)
    if b and c:
        result["c_over_b"] = round(c / b, 2)
    if a and b and c:  # at the default 10 epochs: what one run took, plus the rest at its last epoch's cost
        at_10 = {k: result[k]["seconds"] + (10 - result[k]["epochs"]) * result[k]["epoch_s"]
                 for k in ("b_qualia", "c_full_backprop")}  # fmt: skip
        result["at_10_epochs"] = {**{k: round(v, 1) for k, v in at_10.items()},
                                  "b_over_a": round(at_10["b_qualia"] / a, 2),
                                  "c_over_b": round(at_10["c_full_backprop"] / at_10["b_qualia"], 2)}  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k.endswith(("_over_a", "_over_b"))}), file=sys.stderr)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
