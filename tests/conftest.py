from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Before any fixture of any scope: nothing in the suite may see the user's (or make's) QUALIA_HOME.
    os.environ["QUALIA_HOME"] = tempfile.mkdtemp(prefix="qualia-test-home-")
    os.environ["HF_HUB_OFFLINE"] = "1"
    config._qualia_home = os.environ["QUALIA_HOME"]


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(getattr(config, "_qualia_home", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Each test gets an empty QUALIA_HOME of its own, unless a module fixture has chosen one."""
    if os.environ.get("QUALIA_HOME") == request.config._qualia_home:
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
