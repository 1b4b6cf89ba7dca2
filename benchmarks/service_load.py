"""Latency and throughput of `qualia serve` (issue 9): serial vs concurrent clients, idle and beside training.

On the sample person's profile (crawled, trained on qualia-tiny and indexed into ``--workspace`` if it is
not there yet), for each ``--torch-threads`` setting, against a real `qualia serve` process:

  in_process   encode one query + search, in this process, no HTTP: the floor
  serial       one client, one request after the other: p50/p99 and requests/s
  concurrent   16 clients at once: requests/s, p50/p99
  beside_train one client while `qualia train` runs on the same cores (on a copy of the workspace): p50/p99

Targets: concurrent requests/s >= 2.5 x serial; serial HTTP p50 <= 1.15 x in-process; beside_train p99
<= 2 x serial p99. Prints one JSON object.

    .venv/bin/python benchmarks/service_load.py --workspace /tmp/persona --threads 1,2 --out service_load.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _report import emit, machine
from _sample import sample_person
from qualia.config import TINY_BACKBONE, TrainSettings
from qualia.corpus import Corpus
from qualia.index import index_profile
from qualia.pairs import corpus_pairs
from qualia.search import ProfileSearcher, query_words
from qualia.train import train_profile
from qualia.workspace import Workspace

PROFILE = "persona"


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}  # fmt: skip


def _client_loop(base: str, queries: list[str], latencies: list[float], stop: threading.Event | None = None) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        for i, words in enumerate(queries):
            if stop is not None and stop.is_set():
                return
            started = time.perf_counter()
            r = client.post(f"/v1/profiles/{PROFILE}/search", json={"text": words, "k": 10})
            latencies.append(time.perf_counter() - started)
            r.raise_for_status()


def prepare_person(ws: Workspace) -> None:
    """The sample person crawled into ``ws``, trained (qualia-tiny) and indexed, unless already there."""
    sample_person(ws, PROFILE)
    if ws.latest_index(PROFILE) is None:
        adapter = train_profile(ws, PROFILE, TrainSettings(backbone=TINY_BACKBONE))
        index_profile(ws, PROFILE, adapter.name)


def person_queries(ws: Workspace, n: int) -> list[str]:
    """``n`` queries drawn from the corpus's own texts (spread over them, cut to 60 characters)."""
    with Corpus.open(ws, PROFILE, readonly=True) as corpus:
        texts = sorted({p.text for p in corpus_pairs(corpus)})
    return [texts[(i * 7919) % len(texts)][:60] for i in range(n)]


def in_process(ws: Workspace, queries: list[str]) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    searcher = ProfileSearcher.load(ws, PROFILE)
    for words in queries[:20]:
        searcher.search_text(words)
    latencies = []
    for words in queries:
        started = time.perf_counter()
        vector = searcher.encoder.encode_texts([query_words(words)])[0]
        searcher.search_vector(vector, "text", 10)
        latencies.append(time.perf_counter() - started)
    return _summary(latencies, sum(latencies))


def serve(ws: Workspace, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "QUALIA_HOME": str(ws.root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qualia.cli", "serve", "--port", str(port), "--torch-threads",
                             str(threads)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def against_server(ws: Workspace, queries: list[str], port: int, threads: int, clients: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    server = serve(ws, port, threads)
    try:
        _client_loop(base, queries[:30], [])  # warm up: adapter and index loaded
        latencies: list[float] = []
        started = time.perf_counter()
        _client_loop(base, queries, latencies)
        serial = _summary(latencies, time.perf_counter() - started)

        latencies = []
        share = [queries[i::clients] * 2 for i in range(clients)]
        workers = [threading.Thread(target=_client_loop, args=(base, share[i], latencies)) for i in range(clients)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        concurrent = _summary(latencies, time.perf_counter() - started)

        busy = Workspace(Path(tempfile.mkdtemp(prefix="qualia-load-train-")))
        shutil.copytree(ws.profile_dir(PROFILE), busy.profile_dir(PROFILE), ignore=shutil.ignore_patterns("index"))
        shutil.copytree(ws.images_dir, busy.images_dir)
        env = {**os.environ, "QUALIA_HOME": str(busy.root), "HF_HUB_OFFLINE": "1"}
        training = subprocess.Popen([sys.executable, "-m", "qualia.cli", "train", PROFILE, "--backbone", TINY_BACKBONE,
                                     "--epochs", "30", "--patience", "0"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(8)  # past loading, into the epochs
        latencies = []
        started = time.perf_counter()
        stop = threading.Event()
        _client_loop(base, queries * 3, latencies, stop)
        beside = _summary(latencies, time.perf_counter() - started)
        beside["training_still_running"] = training.poll() is None
        training.kill()
        training.wait()
        shutil.rmtree(busy.root, ignore_errors=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"serial": serial, "concurrent": concurrent, "beside_train": beside,
            "concurrent_over_serial": round(concurrent["per_second"] / serial["per_second"], 2),
            "beside_p99_over_idle_p99": round(beside["p99_ms"] / serial["p99_ms"], 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--threads", default="1,2", help="comma-separated --torch-threads settings to measure")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ws = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-load-"))
    prepare_person(ws)
    queries = person_queries(ws, args.queries)
    result: dict[str, Any] = {"machine": machine(), "profile": PROFILE, "clients": args.clients,
                              "in_process": in_process(ws, queries)}  # fmt: skip
    for threads in (int(t) for t in args.threads.split(",")):
        run = against_server(ws, queries, args.port, threads, args.clients)
        run["serial_p50_over_in_process"] = round(run["serial"]["p50_ms"] / result["in_process"]["p50_ms"], 2)
        result[f"torch_threads_{threads}"] = run
        print(threads, {k: v for k, v in run.items() if "over" in k}, file=sys.stderr)
    result["median_query_chars"] = statistics.median(len(q) for q in queries)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
