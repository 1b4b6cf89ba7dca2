"""API keys in the service: 401 without a valid key, and a key never reaches another profile (404)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qualia import workspace
from qualia.index import build_index
from qualia.workspace import Workspace
from service import keys
from service.app import create_app
from service.settings import ServiceSettings

from tests.helpers import PROFILE, SHARED_FIRST_URL, png, write_sample_corpus

OTHER = "bob"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qualia.backbone import load_backbone
    from qualia.embed import Encoder

    root = tmp_path_factory.mktemp("auth-home")
    ws = Workspace(root)
    write_sample_corpus(root)
    build_index(ws, PROFILE, Encoder.load(load_backbone("qualia-tiny")), None)
    shutil.copytree(ws.profile_dir(PROFILE), ws.profile_dir(OTHER))
    version = workspace.new_version()  # both profiles have a report to (not) reach
    for name in (PROFILE, OTHER):
        workspace.atomic_write_json(ws.adapters_dir(name) / version / "metrics.json", {"pairs": 1, "of": name})
        (ws.adapters_dir(name) / version / "loss_curve.png").write_bytes(png((0, 0, 255)))
    return root


@pytest.fixture(autouse=True)
def no_keys_yet(home: Path) -> None:
    """Every test starts with an empty key store, whatever ran before it."""
    for stale in home.glob(f"{keys.KEYS_FILE}*"):
        stale.unlink()


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(home=home))) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def paths(profile: str, sha: str) -> list[tuple[str, str]]:
    return [
        ("POST", f"/v1/profiles/{profile}/search"),
        ("GET", f"/v1/profiles/{profile}/items/substack:post:3"),
        ("GET", f"/v1/profiles/{profile}/images/img-{sha}"),
        ("GET", f"/v1/profiles/{profile}/report"),
        ("GET", f"/v1/profiles/{profile}/report/plots/loss_curve.png"),
    ]


def image_sha(home: Path) -> str:
    from tests.helpers import open_corpus

    with open_corpus(home, PROFILE) as c:
        return c.image_sha256(SHARED_FIRST_URL)


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None):
    body = {"json": {"text": "a rock pool", "k": 2}} if method == "POST" else {}
    return client.request(method, path, headers=headers, **body)


def test_open_without_keys_then_closed_once_a_key_exists(client: TestClient, home: Path) -> None:
    # The store is empty, so everything is open (loopback protects it).
    assert {p["name"] for p in client.get("/v1/profiles").json()["profiles"]} == {PROFILE, OTHER}
    assert call(client, "POST", f"/v1/profiles/{OTHER}/search").status_code == 200
    key = keys.create_key(Workspace(home), PROFILE)  # while the server runs
    r = client.get("/v1/profiles")
    assert r.status_code == 401 and r.json()["detail"]
    assert client.get("/v1/profiles", headers=bearer(key)).status_code == 200


def test_missing_or_bad_key_is_401(client: TestClient, home: Path) -> None:
    key = keys.create_key(Workspace(home), PROFILE)
    sha = image_sha(home)
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    for headers in (None, bearer(tampered), bearer("qk_nonsense"), bearer(""), {"Authorization": f"Basic {key}"},
                    {"Authorization": key}):
        for method, path in [("GET", "/v1/profiles"), *paths(PROFILE, sha), *paths("nobody", sha)]:
            r = call(client, method, path, headers)
            assert r.status_code == 401, (headers, path, r.text)
            assert r.json()["detail"] and r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/healthz").json() == {"status": "ok"}  # stays open


def test_a_key_reaches_only_its_own_profile(client: TestClient, home: Path) -> None:
    alice, bob = bearer(keys.create_key(Workspace(home), PROFILE)), bearer(keys.create_key(Workspace(home), OTHER))
    sha = image_sha(home)
    for method, path in paths(PROFILE, sha):
        assert call(client, method, path, alice).status_code == 200, path
        # Another profile is exactly a profile that does not exist.
        theirs = call(client, method, path.replace(f"/{PROFILE}/", f"/{OTHER}/"), alice)
        missing = call(client, method, path.replace(f"/{PROFILE}/", "/nobody/"), alice)
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json()["detail"].replace(OTHER, "?") == missing.json()["detail"].replace("nobody", "?")
    assert call(client, "GET", f"/v1/profiles/{OTHER}/report", bob).json()["of"] == OTHER
    assert call(client, "GET", f"/v1/profiles/{PROFILE}/report", bob).status_code == 404
    assert [p["name"] for p in client.get("/v1/profiles", headers=alice).json()["profiles"]] == [PROFILE]
    assert [p["name"] for p in client.get("/v1/profiles", headers=bob).json()["profiles"]] == [OTHER]


def test_revoked_key_is_401_and_require_keys_stays_closed_when_empty(client: TestClient, home: Path, tmp_path: Path) -> None:
    key, kept = keys.create_key(Workspace(home), PROFILE), keys.create_key(Workspace(home), OTHER)
    assert client.get("/v1/profiles", headers=bearer(key)).status_code == 200
    keys.revoke_key(Workspace(home), key[: keys.PREFIX_LEN])
    assert client.get("/v1/profiles", headers=bearer(key)).status_code == 401
    assert client.get("/v1/profiles", headers=bearer(kept)).status_code == 200
    # An empty store with require_keys (what `qualia serve` sets off loopback) is closed, not open.
    empty = tmp_path / "empty-home"
    shutil.copytree(Workspace(home).profile_dir(PROFILE), Workspace(empty).profile_dir(PROFILE))
    with TestClient(create_app(ServiceSettings(home=empty, require_keys=True, preload=False))) as c:
        assert c.get("/v1/profiles").status_code == 401
        assert c.get(f"/v1/profiles/{PROFILE}/report").status_code == 401
        assert c.get("/healthz").status_code == 200


def test_the_page_and_docs_stay_open_while_the_data_is_closed(client: TestClient, home: Path) -> None:
    """The page asks for the key in the browser, so it and its assets load without one; nothing else does."""
    key = keys.create_key(Workspace(home), PROFILE)
    for path in ("/", "/static/page.js", "/static/page.css", "/docs", "/redoc", "/static-docs/swagger-ui.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/profiles").status_code == 401
    assert client.get(f"/v1/profiles/{PROFILE}/report/plots/loss_curve.png").status_code == 401
    assert client.get(f"/v1/profiles/{PROFILE}/report/plots/loss_curve.png", headers=bearer(key)).status_code == 200


def test_clip_retrievals_endpoints_keep_a_key_to_its_profile(client: TestClient, home: Path) -> None:
    alice = bearer(keys.create_key(Workspace(home), PROFILE))
    assert client.get("/indices-list", headers=alice).json() == [PROFILE]
    assert client.get("/indices-list").status_code == 401
    knn = {"text": "a rock pool", "modality": "image", "num_images": 3}
    mine = client.post("/knn-service", json={**knn, "indice_name": PROFILE}, headers=alice)
    assert mine.status_code == 200 and mine.json()
    theirs = client.post("/knn-service", json={**knn, "indice_name": OTHER}, headers=alice)
    missing = client.post("/knn-service", json={**knn, "indice_name": "nobody"}, headers=alice)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(OTHER, "?") == missing.json()["detail"].replace("nobody", "?")
    ids = [hit["id"] for hit in mine.json()]
    assert client.post("/metadata", json={"indice_name": OTHER, "ids": ids}, headers=alice).status_code == 404
    found = client.post("/metadata", json={"indice_name": PROFILE, "ids": ids}, headers=alice).json()
    assert [entry["id"] for entry in found] == ids and all(entry["metadata"] for entry in found)
    mark = {"query": "a rock pool", "id": f"img-{image_sha(home)}", "fits": True}
    assert client.post(f"/v1/profiles/{OTHER}/feedback", json=mark, headers=alice).status_code == 404
