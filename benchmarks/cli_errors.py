"""How fast the command line answers mistakes that need no model (issue: under 1 s; serve on a taken port under 2 s).

Runs each command several times in a fresh process against a scratch workspace and prints one JSON
object: per case the exit code, the one-line answer, and the minimum / median / maximum wall time.

    .venv/bin/python benchmarks/cli_errors.py [--runs 5] [--out results.json] [--tree DIR]

``--tree`` runs the command line of another checkout (say, an older commit) with this environment,
for a before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit, machine
from qualia.corpus import Corpus
from qualia.workspace import Workspace


def cases(ws: Workspace, busy_port: int, scratch: Path) -> dict[str, list[str]]:
    not_a_picture = scratch / "notimg.jpg"
    not_a_picture.write_text("hello")
    return {
        "corpus, unknown profile": ["corpus", "nobody"],
        "eval, unknown profile": ["eval", "nobody"],
        "train, unknown profile": ["train", "nobody"],
        "index, unknown profile": ["index", "nobody"],
        "search, unknown profile": ["search", "nobody", "tea"],
        "search, corpus but no adapter": ["search", "mara", "tea"],
        "eval, corpus but no adapter": ["eval", "mara", "--json"],
        "search --image, missing file": ["search", "indexed", "--image", str(scratch / "nothere.jpg")],
        "search --image, not a picture": ["search", "indexed", "--image", str(not_a_picture)],
        "train --epochs 0": ["train", "mara", "--epochs", "0"],
        "serve, port in use": ["serve", "--port", str(busy_port)],
    }


def run_case(args: list[str], env: dict[str, str], runs: int, tree: Path) -> dict:
    times, answers, codes = [], set(), set()
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "qualia.cli", *args], capture_output=True, text=True, env=env,
                             cwd=tree, timeout=120)
        times.append(time.perf_counter() - started)
        codes.add(out.returncode)
        answers.add(out.stderr.strip())
    answer = answers.pop() if len(answers) == 1 else sorted(answers)
    return {
        "args": args,
        "exit_codes": sorted(codes),
        "answer": answer,
        "one_line": isinstance(answer, str) and len(answer.splitlines()) == 1,
        "seconds": {"min": round(min(times), 3), "median": round(statistics.median(times), 3),
                    "max": round(max(times), 3)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose command line to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qualia-bench-") as scratch, socket.socket() as busy:
        ws = Workspace(Path(scratch) / "home")
        Corpus.open(ws, "mara").close()
        Corpus.open(ws, "indexed").close()
        for folder in (ws.adapters_dir("indexed"), ws.index_dir("indexed")):
            (folder / "20260101T000000000000Z").mkdir(parents=True)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {**os.environ, "QUALIA_HOME": str(ws.root), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(args.tree)}
        env.pop("QUALIA_DEBUG", None)
        results = {name: run_case(argv, env, args.runs, args.tree)
                   for name, argv in cases(ws, busy.getsockname()[1], Path(scratch)).items()}
    report = {
        "benchmark": "cli_errors",
        "machine": machine(),
        "runs": args.runs,
        "commit": subprocess.run(["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip() or None,
        "cases": results,
    }
    return emit(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
