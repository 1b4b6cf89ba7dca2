from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qualia.workspace import Workspace


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
    """Each test gets an empty QUALIA_HOME of its own (for the commands it runs), unless a module fixture
    has chosen one."""
    if os.environ.get("QUALIA_HOME") == request.config._qualia_home:
        monkeypatch.setenv("QUALIA_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture
def ws() -> Workspace:
    """The test's workspace: the same one the commands it runs see through QUALIA_HOME."""
    return Workspace.at(os.environ["QUALIA_HOME"])


@pytest.fixture(scope="session")
def tiny():
    """The tiny backbone, loaded once per test session (tests must not mutate it)."""
    from qualia.backbone import load_backbone
    from qualia.config import TINY_BACKBONE

    return load_backbone(TINY_BACKBONE)


MAX_SERVICE_BODY = 256 * 1024
MAX_SERVICE_PIXELS = 512 * 512


@pytest.fixture(scope="module")
def service_home(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    """A workspace with the sample corpus indexed by the tiny base, and a profile with no index ("noindex")."""
    from qualia.embed import Encoder
    from qualia.index import build_index
    from tests.helpers import PROFILE, write_sample_corpus

    root = tmp_path_factory.mktemp("service-home")
    write_sample_corpus(root)
    build_index(Workspace(root), PROFILE, Encoder.load(tiny), None)
    write_sample_corpus(root, "noindex")
    return root


@pytest.fixture(scope="module")
def service_client(service_home: Path):
    """The service over ``service_home`` (lifespan run: backbones preloaded, the encoding worker started)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import ServiceSettings

    settings = ServiceSettings(home=service_home, max_body_bytes=MAX_SERVICE_BODY, max_image_pixels=MAX_SERVICE_PIXELS)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def served_sample_site() -> Iterator[Any]:
    """The sample site, served for one test module."""
    from samplesite import SampleSite

    with SampleSite() as site:
        yield site


@pytest.fixture
def site(served_sample_site: Any) -> Iterator[Any]:
    """The module's sample site, with whatever faults a test switched on cleared after it (a module may
    define its own ``site`` instead)."""
    yield served_sample_site
    served_sample_site.clear_faults()


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus after ``qualia train`` (the tiny backbone, two epochs) and ``qualia index``: an adapter
    with its evaluation and plots, and an index built with it. Shared by the page's tests, which only read it."""
    from qualia.config import TrainSettings
    from qualia.index import index_profile
    from qualia.train import train_profile
    from tests.helpers import PROFILE, write_sample_corpus

    root = tmp_path_factory.mktemp("trained-home")
    write_sample_corpus(root)
    ws = Workspace(root)
    train_profile(ws, PROFILE, TrainSettings(backbone="qualia-tiny", epochs=2, batch_size=64, seed=0))
    index_profile(ws, PROFILE)
    return root
