"""Latency and throughput of `qualia serve` (issue 9): serial vs concurrent clients, idle and beside training.

On the sample person's profile (crawled, trained on ``--backbone`` and indexed into ``--workspace`` unless
its newest index is of that backbone already), for each ``--torch-threads`` setting, against a real
`qualia serve` process:

  in_process   encode one query + search, in this process, no HTTP, the adapter applied unmerged over the
               shared backbone as the server applies it: the floor (``in_process_merged``: merged, as the
               command line does)
  serial       one client, one request after the other: p50/p99 and requests/s
  concurrent   16 clients, each busy for all of ``--concurrent-seconds``: requests/s, p50/p99
  beside_train one client while `qualia train` runs on the same cores (on a copy of the workspace): p50/p99
  no_op_http   one client against an HTTP server that does nothing but hop to a thread and back and answer
               as many bytes: the least HTTP costs here (``http_budget_ms``: what the 1.15 x target leaves)

All but beside_train are taken in turn, ``--rounds`` times, so each ratio compares phases run seconds apart
(this machine's speed drifts between runs by more than the differences measured). Targets: concurrent
requests/s >= 2.5 x serial; serial HTTP p50 <= 1.15 x in-process; beside_train p99 <= 2 x serial p99.
Prints one JSON object.

    .venv/bin/python benchmarks/service_load.py --workspace /tmp/persona --threads 1,2 --out service_load.json

The backbone is the offline stand-in qualia-tiny unless told otherwise. A real CLIP, with random weights
(the timing is the same, and nothing is downloaded), trained for one epoch (minutes on two cores):

    .venv/bin/python benchmarks/service_load.py --workspace /tmp/persona-b32 --backbone ViT-B-32 \
        --pretrained random-seed0 --threads 1 --out service_load_b32.json

The training run beside the server (``beside_train``) is qualia-tiny's whatever the served backbone: the
same load on the cores in every run.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
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
from urllib.parse import urlsplit

import httpx
import numpy as np

from _report import emit, machine
from _sample import sample_person
from qualia.config import TINY_BACKBONE, TINY_PRETRAINED, TrainSettings
from qualia.corpus import Corpus
from qualia.index import index_profile, read_manifest
from qualia.pairs import corpus_pairs
from qualia.search import ProfileSearcher, query_words
from qualia.train import train_profile
from qualia.workspace import Workspace

PROFILE = "persona"


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}  # fmt: skip


def _client_loop(base: str, queries: list[str], latencies: list[float], until: float | None = None) -> None:
    """One client: one kept-alive connection, one request after the other. The standard library's client,
    not httpx: its own Python costs a fraction of httpx's (16 such loops share this process's GIL and the
    server's cores), so the figures are the server's. ``until`` (a ``perf_counter`` time): round the
    queries again and again until then, counting only the answers that came before it."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    path, headers = f"/v1/profiles/{PROFILE}/search", {"Content-Type": "application/json"}
    try:
        while True:
            for words in queries:
                body = json.dumps({"text": words, "k": 10})
                started = time.perf_counter()
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                answer = response.read()
                ended = time.perf_counter()
                if response.status != 200:
                    raise RuntimeError(f"search answered {response.status}: {answer[:300]!r}")
                if until is not None and ended > until:
                    return
                latencies.append(ended - started)
            if until is None:
                return
    finally:
        connection.close()


def _wanted_weights(backbone: str, pretrained: str | None) -> str | None:
    """``pretrained`` as an index's manifest records it (a file by its resolved path; None: any weights of
    ``backbone``, qualia-tiny's shipped stand-in for qualia-tiny)."""
    if pretrained is None:
        return TINY_PRETRAINED if backbone == TINY_BACKBONE else None
    path = Path(pretrained).expanduser()
    return str(path.resolve()) if path.is_file() else pretrained


def indexed_with(ws: Workspace) -> dict[str, Any] | None:
    """The backbone, weights and versions of the person's newest index in ``ws``, or None."""
    latest = ws.latest_index(PROFILE)
    if latest is None:
        return None
    manifest = read_manifest(latest)
    return {"backbone": manifest.get("backbone"), "pretrained": manifest.get("pretrained"), "rows": manifest["count"],
            "adapter": manifest.get("adapter_version"), "index": latest.name}  # fmt: skip


def prepare_person(ws: Workspace, backbone: str = TINY_BACKBONE, pretrained: str | None = None,
                   epochs: int | None = None) -> None:  # fmt: skip
    """The sample person crawled into ``ws``, trained on ``backbone`` (``pretrained`` weights) and indexed,
    unless the person's newest index is of that backbone already. ``epochs``: default the training's own
    on qualia-tiny, 1 on any other backbone (a real CLIP's epoch takes minutes on a CPU)."""
    sample_person(ws, PROFILE)
    held, weights = indexed_with(ws), _wanted_weights(backbone, pretrained)
    if held is not None and held["backbone"] == backbone and weights in (None, held["pretrained"]):
        return
    if epochs is None:
        epochs = TrainSettings.epochs if backbone == TINY_BACKBONE else 1
    adapter = train_profile(ws, PROFILE, TrainSettings(backbone=backbone, pretrained=pretrained, epochs=epochs))
    index_profile(ws, PROFILE, adapter.name)


def person_queries(ws: Workspace, n: int) -> list[str]:
    """``n`` queries drawn from the corpus's own texts (spread over them, cut to 60 characters)."""
    with Corpus.open(ws, PROFILE, readonly=True) as corpus:
        texts = sorted({p.text for p in corpus_pairs(corpus)})
    return [texts[(i * 7919) % len(texts)][:60] for i in range(n)]


class InProcess:
    """Encode + search with no HTTP, in this process. ``unmerged``: the adapter applied over the shared
    backbone, as the server does (``LowRankCache``); else merged into a copy of the backbone, as the command
    line does."""

    def __init__(self, ws: Workspace, queries: list[str], unmerged: bool = True) -> None:
        import torch

        from qualia.adapter_bank import LowRankCache

        torch.set_num_threads(1)
        self.searcher = ProfileSearcher.load(ws, PROFILE, adapters=LowRankCache(1 << 30) if unmerged else None)
        for words in queries[:20]:
            self.searcher.search_text(words)

    def latencies(self, queries: list[str]) -> list[float]:
        latencies = []
        for words in queries:
            started = time.perf_counter()
            vector = self.searcher.encoder.encode_texts([query_words(words)])[0]
            self.searcher.search_vector(vector, "text", 10)
            latencies.append(time.perf_counter() - started)
        return latencies


# The least any HTTP server here can cost a search: uvicorn as `qualia serve` runs it (uvloop, httptools),
# an app that reads the body, hands it to a worker thread and back (the encoder's hop) and answers as many
# bytes as a real answer, with no Python of its own beyond that.
_NO_OP_SERVER = """
import asyncio, concurrent.futures, sys, uvicorn
answer = b"x" * int(sys.argv[2])
hop = concurrent.futures.ThreadPoolExecutor(1)
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    await asyncio.wrap_future(hop.submit(len, body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def no_op_server(port: int, answer_bytes: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _NO_OP_SERVER, str(port), str(answer_bytes)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return _started(proc, f"http://127.0.0.1:{port}/")


def _answer_bytes(base: str, words: str) -> int:
    """The length of a real search's answer."""
    answer = httpx.post(f"{base}/v1/profiles/{PROFILE}/search", json={"text": words, "k": 10}, timeout=60)
    answer.raise_for_status()
    return len(answer.content)


def _started(proc: subprocess.Popen, health: str) -> subprocess.Popen:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server at {health} did not start")


def serve(ws: Workspace, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "QUALIA_HOME": str(ws.root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qualia.cli", "serve", "--port", str(port), "--torch-threads",
                             str(threads)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return _started(proc, f"http://127.0.0.1:{port}/healthz")


def _concurrent(base: str, queries: list[str], clients: int, seconds: float, latencies: list[float]) -> float:
    """``clients`` clients at once for ``seconds``, each going round its share of ``queries``: the answers
    that came within the window, all of it spent at full concurrency (a run of a fixed number of requests
    ends with a few clients still waiting while the others are done)."""
    until = time.perf_counter() + seconds + 0.2  # the threads start within the 0.2 s
    start = threading.Barrier(clients + 1)

    def client(share: list[str]) -> None:
        start.wait()
        _client_loop(base, share, latencies, until)

    workers = [threading.Thread(target=client, args=(queries[i::clients],)) for i in range(clients)]
    for w in workers:
        w.start()
    time.sleep(max(0.0, until - seconds - time.perf_counter()))
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    return until - began


def against_server(ws: Workspace, queries: list[str], port: int, threads: int, clients: int, floor: InProcess,
                   rounds: int, train_nice: int | None = None, concurrent_seconds_each: float = 4.0) -> dict[str, Any]:  # fmt: skip
    """The in-process floor, one client and ``clients`` clients, taken in turn, ``rounds`` times over: this
    machine's speed drifts by more than the differences measured (the floor's p50 went from 3.9 to 6.8 ms
    between runs with nothing changed), so each ratio compares phases run within seconds of each other.
    The pooled figures are over every round; ``rounds`` has each round's own."""
    base, no_op_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    server = serve(ws, port, threads)
    no_op = None
    try:
        _client_loop(base, queries[:30], [])  # warm up: adapter and index loaded
        # and batches of every size: the first concurrent rounds of a fresh server ran 10-15 % slower
        _concurrent(base, queries, clients, concurrent_seconds_each, [])
        no_op = no_op_server(port + 1, _answer_bytes(base, queries[0]))
        _client_loop(no_op_base, queries[:30], [])
        gc.collect()
        gc.freeze()  # a full collection in the client took ~300 ms, in the middle of someone's request
        pooled: dict[str, list[float]] = {"in_process": [], "serial": [], "concurrent": [], "no_op_http": []}
        seconds = {"serial": 0.0, "concurrent": 0.0, "no_op_http": 0.0}
        per_round = []
        for _ in range(rounds):
            floor_latencies = floor.latencies(queries)
            serial_latencies: list[float] = []
            started = time.perf_counter()
            _client_loop(base, queries, serial_latencies)
            serial_seconds = time.perf_counter() - started
            no_op_latencies: list[float] = []
            started = time.perf_counter()
            _client_loop(no_op_base, queries, no_op_latencies)
            seconds["no_op_http"] += time.perf_counter() - started
            pooled["no_op_http"] += no_op_latencies
            concurrent_latencies: list[float] = []
            concurrent_seconds = _concurrent(base, queries, clients, concurrent_seconds_each, concurrent_latencies)
            this = {"in_process": _summary(floor_latencies, sum(floor_latencies)),
                    "serial": _summary(serial_latencies, serial_seconds),
                    "concurrent": _summary(concurrent_latencies, concurrent_seconds)}  # fmt: skip
            per_round.append({**this, **_ratios(this)})
            pooled["in_process"] += floor_latencies
            pooled["serial"] += serial_latencies
            pooled["concurrent"] += concurrent_latencies
            seconds["serial"] += serial_seconds
            seconds["concurrent"] += concurrent_seconds
        result: dict[str, Any] = {
            "in_process": _summary(pooled["in_process"], sum(pooled["in_process"])),
            "serial": _summary(pooled["serial"], seconds["serial"]),
            "concurrent": _summary(pooled["concurrent"], seconds["concurrent"]),
            "no_op_http": _summary(pooled["no_op_http"], seconds["no_op_http"]),
        }

        busy = Workspace(Path(tempfile.mkdtemp(prefix="qualia-load-train-")))
        shutil.copytree(ws.profile_dir(PROFILE), busy.profile_dir(PROFILE), ignore=shutil.ignore_patterns("index"))
        shutil.copytree(ws.images_dir, busy.images_dir)
        env = {**os.environ, "QUALIA_HOME": str(busy.root), "HF_HUB_OFFLINE": "1"}
        training = subprocess.Popen([sys.executable, "-m", "qualia.cli", "train", PROFILE, "--backbone", TINY_BACKBONE,
                                     "--epochs", "30", "--patience", "0",
                                     *([] if train_nice is None else ["--nice", str(train_nice)])], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(8)  # past loading, into the epochs
        latencies: list[float] = []
        started = time.perf_counter()
        _client_loop(base, queries * rounds, latencies)
        beside = _summary(latencies, time.perf_counter() - started)
        beside["training_still_running"] = training.poll() is None
        training.kill()
        training.wait()
        shutil.rmtree(busy.root, ignore_errors=True)
    finally:
        for proc in (server, no_op):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    return {**result, "beside_train": beside, **_ratios(result),
            "beside_p99_over_idle_p99": round(beside["p99_ms"] / result["serial"]["p99_ms"], 2),
            "http_ms_over_in_process": round(result["serial"]["p50_ms"] - result["in_process"]["p50_ms"], 2),
            "http_budget_ms": round(0.15 * result["in_process"]["p50_ms"], 2),
            "rounds": per_round}  # fmt: skip


def _ratios(phases: dict[str, dict[str, float]]) -> dict[str, float]:
    return {"concurrent_over_serial": round(phases["concurrent"]["per_second"] / phases["serial"]["per_second"], 2),
            "serial_p50_over_in_process": round(phases["serial"]["p50_ms"] / phases["in_process"]["p50_ms"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--threads", default="1,2", help="comma-separated --torch-threads settings to measure")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--train-nice", type=int, default=None, metavar="N",
                        help="the training run's --nice beside the server (default: train's own)")
    parser.add_argument("--concurrent-seconds", type=float, default=4.0,
                        help="how long each round's concurrent phase runs, its clients at full concurrency throughout")
    parser.add_argument("--rounds", type=int, default=5, help="in-process, serial and concurrent phases taken in turn")
    parser.add_argument("--backbone", default=TINY_BACKBONE,
                        help=f"open_clip model name the person is trained and served on (default {TINY_BACKBONE})")
    parser.add_argument("--pretrained", default=None, metavar="TAG|PATH",
                        help="its weights: hub tag already in the cache, local file, or random-seed<N> "
                             "(default: the backbone's own default tag)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs when the person is prepared (default: train's on qualia-tiny, 1 otherwise)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ws = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-load-"))
    prepare_person(ws, args.backbone, args.pretrained, args.epochs)
    queries = person_queries(ws, args.queries)
    result: dict[str, Any] = {"machine": machine(), "profile": PROFILE, "clients": args.clients,
                              "backbone": args.backbone, "served": indexed_with(ws),
                              "rounds": args.rounds, "train_nice": args.train_nice}  # fmt: skip
    merged = InProcess(ws, queries, unmerged=False).latencies(queries)
    result["in_process_merged"] = _summary(merged, sum(merged))
    floor = InProcess(ws, queries)
    for threads in (int(t) for t in args.threads.split(",")):
        run = against_server(ws, queries, args.port, threads, args.clients, floor, args.rounds, args.train_nice,
                             args.concurrent_seconds)  # fmt: skip
        result[f"torch_threads_{threads}"] = run
        print(threads, {k: v for k, v in run.items() if "over" in k}, file=sys.stderr)
    result["median_query_chars"] = statistics.median(len(q) for q in queries)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
