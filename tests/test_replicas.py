"""Scale out with nothing but the file system: two `qualia serve` processes over one workspace answer alike,
and both move to a new index version that lands while they run (no request sees a half-written one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qualia.workspace import Workspace
from tests.helpers import PROFILE, ROOT, free_port, write_sample_corpus

pytestmark = pytest.mark.slow
QUERY = {"text": "a rock pool with anemones", "k": 6}


def _serve(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "QUALIA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "qualia.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _ready(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{base} did not start")


def test_two_servers_on_one_workspace_answer_alike_while_a_new_index_lands(tmp_path: Path, tiny) -> None:
    from qualia.embed import Encoder
    from qualia.index import build_index

    ws = Workspace(tmp_path)
    write_sample_corpus(tmp_path)
    first = build_index(ws, PROFILE, Encoder.load(tiny), None).name
    ports = [free_port(), free_port()]
    servers = [_serve(tmp_path, port) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, proc in zip(bases, servers):
            _ready(base, proc)
        search = f"/v1/profiles/{PROFILE}/search"
        answers = [httpx.post(base + search, json=QUERY, timeout=30).json() for base in bases]
        assert answers[0]["index"] == answers[1]["index"] == first
        assert [r["id"] for r in answers[0]["results"]] == [r["id"] for r in answers[1]["results"]]

        # a new version lands (here centered, so its answers differ) while both keep answering
        seen: set[str] = set()
        building = subprocess.Popen([sys.executable, "-c", (
            "import sys; from pathlib import Path; from qualia.backbone import load_backbone; "
            "from qualia.embed import Encoder; from qualia.index import build_index; from qualia.workspace import Workspace; "
            f"build_index(Workspace(Path(sys.argv[1])), {PROFILE!r}, Encoder.load(load_backbone('qualia-tiny')), None, "
            "centering=True)"), str(tmp_path)], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        while building.poll() is None:
            for base in bases:
                r = httpx.post(base + search, json=QUERY, timeout=30)
                assert r.status_code == 200, r.text
                seen.add(r.json()["index"])
        assert building.returncode == 0, building.stderr.read().decode()[-2000:]
        newest = ws.latest_index(PROFILE).name
        assert seen <= {first, newest}  # one complete version or the other, never a half-written one
        answers = [httpx.post(base + search, json=QUERY, timeout=30).json() for base in bases]
        assert answers[0]["index"] == answers[1]["index"] == newest != first
        assert [r["id"] for r in answers[0]["results"]] == [r["id"] for r in answers[1]["results"]]
        assert [r["score"] for r in answers[0]["results"]] == [r["score"] for r in answers[1]["results"]]
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=20)
