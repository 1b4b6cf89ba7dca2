"""Memory of one `qualia serve` holding many profiles (issue 9): one backbone, each profile's adapter unmerged.

Builds a workspace of N profiles on one backbone (default: 20 on ViT-B-32 with random weights; the sizes,
not the answers, are measured): each profile gets its own adapter (the default recipe's LoRA and trained
token rows, random values) and an index of the sample person's corpus (embedded once with the base; each
profile's copy names that profile's adapter). Then it starts `qualia serve`, reads its resident memory
(VmRSS) once the backbone is loaded, searches each profile once, and reads it again:

    growth = RSS after every profile answered - RSS with the backbone alone, warmed by queries to a
             profile with no adapter
    budget = 1.2 x sum over profiles of (adapter file + index files)

Prints one JSON object (growth, budget, per-profile figures).

    .venv/bin/python benchmarks/service_memory.py --workspace /tmp/persona --out service_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from _report import emit, machine
from _sample import sample_person
from qualia import workspace
from qualia.backbone import load_backbone
from qualia.config import TrainSettings
from qualia.corpus import Corpus
from qualia.embed import Encoder
from qualia.index import MANIFEST_FILE, build_index
from qualia.lora import adapter_identity, attach_lora, save_adapter
from qualia.pairs import corpus_pairs
from qualia.towers import depths
from qualia.workspace import Workspace

SOURCE = "persona"


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def build(ws: Workspace, source: Workspace, backbone_name: str, pretrained: str, n: int) -> list[dict[str, Any]]:
    backbone = load_backbone(backbone_name, pretrained)
    with Corpus.open(source, SOURCE, readonly=True) as corpus:
        texts = [p.text for p in corpus_pairs(corpus)]
    tokens = sorted({int(t) for t in backbone.tokenizer(texts).flatten() if 0 < t < backbone.model.vocab_size - 2})
    settings = TrainSettings(backbone=backbone_name, pretrained=pretrained)
    lora = settings.lora(tokens, depths(backbone.model))
    shutil.copytree(source.images_dir, ws.images_dir, dirs_exist_ok=True)
    first = ws.profile_dir("p00")
    first.mkdir(parents=True)
    shutil.copy(source.corpus_path(SOURCE), ws.corpus_path("p00"))
    index = build_index(ws, "p00", Encoder.load(backbone), None, progress=True)
    profiles = []
    for i in range(n):
        name = f"p{i:02d}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            model = attach_lora(backbone, lora)
            with torch.no_grad():
                for param_name, p in model.named_parameters():
                    if "lora_B" in param_name:
                        p.normal_(0, 0.01)
        version = workspace.new_version()
        adapter = ws.adapters_dir(name) / version
        with workspace.atomic_dir(adapter) as tmp:
            save_adapter(model, tmp, {**adapter_identity(backbone, lora), "train": settings.recipe()})
        del model
        if name != "p00":
            ws.profile_dir(name).mkdir(parents=True, exist_ok=True)
            shutil.copy(source.corpus_path(SOURCE), ws.corpus_path(name))
        own = ws.index_dir(name) / workspace.new_version()
        shutil.copytree(index, own)
        manifest = json.loads((own / MANIFEST_FILE).read_text())
        (own / MANIFEST_FILE).write_text(json.dumps({**manifest, "adapter_version": version, "profile": name}))
        profiles.append({"profile": name, "adapter_bytes": _folder_bytes(adapter), "index_bytes": _folder_bytes(own)})
    # the base index moves to a profile of its own: the first query (which grows torch's and the
    # allocator's working memory once, whatever the profile) goes there, before the baseline is read
    ws.index_dir("base").mkdir(parents=True)
    shutil.copy(source.corpus_path(SOURCE), ws.corpus_path("base"))
    shutil.move(str(index), str(ws.index_dir("base") / index.name))
    return profiles


def _first_picture(ws: Workspace) -> str:
    folder = ws.latest_index("base")
    return json.loads((folder / "rows.jsonl").read_text().splitlines()[0])["id"]


def measure(ws: Workspace, profiles: list[dict[str, Any]], port: int) -> dict[str, Any]:
    env = {**os.environ, "QUALIA_HOME": str(ws.root), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "qualia.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.5)
        for _ in range(3):  # warm: the base alone answers text and picture queries
            httpx.post(f"{base}/v1/profiles/base/search", json={"text": "quiet morning", "k": 5}, timeout=120).raise_for_status()
            httpx.post(f"{base}/v1/profiles/base/search", json={"id": _first_picture(ws), "k": 5}, timeout=120).raise_for_status()
        time.sleep(2)
        backbone_only = _rss(server.pid)
        for p in profiles:
            r = httpx.post(f"{base}/v1/profiles/{p['profile']}/search", json={"text": "quiet morning", "k": 5}, timeout=120)
            r.raise_for_status()
            p["rss_after"] = _rss(server.pid)
        time.sleep(1)
        after = _rss(server.pid)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        server.terminate()
        server.wait(timeout=30)
    held = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("qualia_adapter_bytes "))
    total = sum(p["adapter_bytes"] + p["index_bytes"] for p in profiles)
    return {"rss_backbone_only": backbone_only, "rss_after_all": after, "growth": after - backbone_only,
            "sum_adapter_and_index_bytes": total, "budget_1_2x": 1.2 * total,
            "growth_over_sum": round((after - backbone_only) / total, 3), "adapter_bytes_held": held}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="where the sample person's crawl is (or goes)")
    parser.add_argument("--backbone", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random-seed0")
    parser.add_argument("--profiles", type=int, default=20)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    source = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-memory-src-"))
    sample_person(source, SOURCE)
    ws = Workspace.at(tempfile.mkdtemp(prefix="qualia-memory-"))
    try:
        profiles = build(ws, source, args.backbone, args.pretrained, args.profiles)
        result = {"machine": machine(), "backbone": args.backbone, "pretrained": args.pretrained,
                  "profiles": len(profiles), **measure(ws, profiles, args.port), "per_profile": profiles}  # fmt: skip
    finally:
        shutil.rmtree(ws.root, ignore_errors=True)
    print(json.dumps({k: result[k] for k in ("growth", "budget_1_2x", "growth_over_sum")}), file=sys.stderr)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
