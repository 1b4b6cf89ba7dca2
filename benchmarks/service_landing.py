"""16 clients for 60 s (and 10 s past the last landing) while a new adapter and a new index land in the
served workspace (issue 9).

On a copy of the sample person's workspace (as ``service_load.py`` prepares it), a real `qualia serve`
answers 16 clients that search without pause; meanwhile `qualia train` (qualia-tiny) and then
`qualia index` run on that same workspace, so a new adapter version and then a new index version appear
under the server while it answers. Each answer names its adapter and index; the run records errors,
p50/p99, which (adapter, index) pairs were answered with and when the new one was first seen. Every answer
must pair an index with the adapter its manifest names: a mix would be an answer from two versions.

    .venv/bin/python benchmarks/service_landing.py --workspace /tmp/persona --seconds 60 --out landing.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
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
from qualia.config import TINY_BACKBONE
from qualia.index import read_manifest
from qualia.workspace import Workspace
from service_load import PROFILE, person_queries, prepare_person, serve


def _clients(base: str, queries: list[str], clients: int, stop: threading.Event) -> list[tuple[float, float, Any]]:
    """(sent at, seconds, (adapter, index) or the error) of every request until ``stop``."""
    answers: list[tuple[float, float, Any]] = []

    def loop(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            i = offset
            while not stop.is_set():
                words, i = queries[i % len(queries)], i + clients
                sent = time.perf_counter()
                try:
                    r = client.post(f"/v1/profiles/{PROFILE}/search", json={"text": words, "k": 10})
                    seen: Any = (r.json()["adapter"], r.json()["index"]) if r.status_code == 200 else f"HTTP {r.status_code}"
                except (httpx.HTTPError, ValueError, KeyError) as e:
                    seen = f"{type(e).__name__}: {e}"
                answers.append((sent, time.perf_counter() - sent, seen))

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="where the sample person's crawl is (or goes); copied, not changed")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="of the training that lands a new adapter")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    source = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-landing-"))
    prepare_person(source)
    ws = Workspace(Path(tempfile.mkdtemp(prefix="qualia-landing-served-")))
    shutil.copytree(source.profile_dir(PROFILE), ws.profile_dir(PROFILE))
    shutil.copytree(source.images_dir, ws.images_dir)
    queries = person_queries(ws, 300)
    env = {**os.environ, "QUALIA_HOME": str(ws.root), "HF_HUB_OFFLINE": "1"}
    server = serve(ws, args.port, 1)
    stop = threading.Event()
    landed: dict[str, float] = {}
    try:
        started = time.perf_counter()

        def land() -> None:  # the same commands a person would run, on the served workspace
            for step, command in (("adapter", ["train", PROFILE, "--backbone", TINY_BACKBONE, "--epochs",
                                               str(args.epochs), "--patience", "0"]),
                                  ("index", ["index", PROFILE])):  # fmt: skip
                subprocess.run([sys.executable, "-m", "qualia.cli", *command], env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                landed[step] = time.perf_counter() - started
            time.sleep(max(10.0, args.seconds - (time.perf_counter() - started)))  # the new version answers a while
            stop.set()

        lander = threading.Thread(target=land)
        lander.start()
        answers = _clients(f"http://127.0.0.1:{args.port}", queries, args.clients, stop)
        lander.join()
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
    pairs = collections.Counter(seen for _, _, seen in answers if isinstance(seen, tuple))
    errors = collections.Counter(seen for _, _, seen in answers if not isinstance(seen, tuple))
    manifests = {folder.name: read_manifest(folder).get("adapter_version") for folder in ws.index_dir(PROFILE).iterdir()
                 if folder.is_dir() and not folder.name.startswith(".")}  # fmt: skip
    mixed = {f"{a} / {i}": n for (a, i), n in pairs.items() if manifests.get(i) != a}
    first_seen = {}
    for sent, _, seen in sorted(answers, key=lambda a: a[0]):
        if isinstance(seen, tuple) and seen[1] not in first_seen:
            first_seen[seen[1]] = round(sent - started, 2)
    ms = np.array([s for _, s, _ in answers]) * 1000
    result = {"machine": machine(), "clients": args.clients, "seconds": round(seconds, 1), "requests": len(answers),
              "per_second": round(len(answers) / seconds, 1), "errors": dict(errors), "mixed_versions": mixed,
              "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
              "landed_at_s": {k: round(v, 1) for k, v in landed.items()},
              "index_first_answered_at_s": first_seen,
              "answers_by_version": {f"{a} / {i}": n for (a, i), n in pairs.items()}}  # fmt: skip
    print(json.dumps({k: result[k] for k in ("requests", "errors", "mixed_versions", "p50_ms", "p99_ms")}), file=sys.stderr)
    shutil.rmtree(ws.root, ignore_errors=True)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
