from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may read or write the user's real ~/.qualia, nor reach a hub."""
    if "QUALIA_HOME" not in os.environ or not os.environ["QUALIA_HOME"].startswith(str(tmp_path_factory.getbasetemp())):
        monkeypatch.setenv("QUALIA_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def tiny():
    """The tiny backbone, loaded once per test session (tests must not mutate it)."""
    from qualia.backbone import TINY_BACKBONE, load_backbone

    return load_backbone(TINY_BACKBONE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_qualia(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed command line in a fresh process, as a user would."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "qualia.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout,
    )
