"""Text encoding cut to each batch's longest text, against open_clip's full-context ``encode_text`` (issue 8).

Encodes the distinct texts of a workspace profile's pairs (by default the sample person's, crawled once
into a scratch folder, as ``persona_quality.py`` does) both ways, and prints one JSON object: texts/s
each way, the speed-up, the largest difference between the two embeddings, and the texts' token
lengths. Random weights are fine for timing ViT-B-32 (``--backbone ViT-B-32 --pretrained random-seed0``).

    .venv/bin/python benchmarks/text_encoding.py --workspace /tmp/persona [--backbone ViT-B-32 --pretrained random-seed0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _report import emit, machine
from _sample import sample_person
from qualia.backbone import load_backbone
from qualia.towers import text_length
from qualia.config import TINY_BACKBONE
from qualia.corpus import Corpus
from qualia.embed import Encoder
from qualia.pairs import corpus_pairs
from qualia.workspace import Workspace


def _texts(ws: Workspace, profile: str) -> list[str]:
    sample_person(ws, profile)
    with Corpus.open(ws, profile, readonly=True) as corpus:
        return list(dict.fromkeys(p.text for p in corpus_pairs(corpus)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="reuse (or keep) the crawl in this folder")
    parser.add_argument("--profile", default="persona")
    parser.add_argument("--backbone", default=TINY_BACKBONE)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ws = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-text-"))
    texts = _texts(ws, args.profile)
    backbone = load_backbone(args.backbone, args.pretrained)
    tokens = backbone.tokenizer(texts)
    lengths = (tokens != 0).sum(dim=1).float()

    def full_context() -> np.ndarray:
        with torch.inference_mode():
            out = [backbone.model.encode_text(batch) for batch in tokens.split(args.batch_size)]
        return torch.nn.functional.normalize(torch.cat(out), dim=-1).numpy()

    encoder = Encoder(backbone.model, backbone, batch_size=args.batch_size)
    timings, vectors = {}, {}
    for name, run in (("full_context", full_context), ("cut", lambda: encoder.encode_tokens(tokens))):
        run()  # warm-up
        started = time.perf_counter()
        vectors[name] = run()
        timings[name] = time.perf_counter() - started
    result = {
        "machine": {**machine(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "backbone": args.backbone, "pretrained": backbone.pretrained, "texts": len(texts),
        "context_length": int(tokens.shape[1]), "tokens_mean": round(float(lengths.mean()), 1),
        "tokens_max": text_length(tokens), "batch_size": args.batch_size,
        "texts_per_s": {k: round(len(texts) / v, 1) for k, v in timings.items()},
        "speedup": round(timings["full_context"] / timings["cut"], 2),
        "max_abs_difference": float(np.abs(vectors["full_context"] - vectors["cut"]).max()),
    }
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
