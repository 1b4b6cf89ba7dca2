"""The HTTP service: shapes, every 4xx path, picking up new indexes, refusing mismatched ones, and real uvicorn."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from qualia import workspace
from qualia.index import MANIFEST_FILE, ProfileIndex, build_index
from qualia.workspace import Workspace
from service.app import create_app
from service.settings import ServiceSettings

from tests.helpers import CDN, PROFILE, SHARED_FIRST_URL, free_port, open_corpus, picture

MAX_BODY = 256 * 1024
MAX_PIXELS = 512 * 512


@pytest.fixture(scope="module")
def home(service_home: Path) -> Path:
    return service_home


@pytest.fixture(scope="module")
def client(service_client: TestClient) -> TestClient:
    return service_client


def stored_picture(home: Path, url: str) -> tuple[str, bytes]:
    with open_corpus(home, PROFILE) as c:
        sha = c.image_sha256(url)
        return sha, c.image_path(sha).read_bytes()


def copy_profile(home: Path, name: str) -> Path:
    target = Workspace(home).profile_dir(name)
    shutil.copytree(Workspace(home).profile_dir(PROFILE), target)
    return target


def test_health_and_profiles(client: TestClient, home: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/v1/profiles/{profile}/search" in client.get("/openapi.json").json()["paths"]
    profiles = client.get("/v1/profiles").json()["profiles"]
    assert [p["name"] for p in profiles] == [PROFILE]  # "noindex" has no index to search
    alice = profiles[0]
    assert alice["index"] == Workspace(home).latest_index(PROFILE).name
    assert alice["adapter"] is None
    assert alice["counts"]["image"] == 27 and alice["counts"]["total"] > 27


def test_text_search_shape(client: TestClient) -> None:
    r = client.post(f"/v1/profiles/{PROFILE}/search", json={"text": "a rock pool with anemones", "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"results", "adapter", "index", "took_ms"}
    assert len(body["results"]) == 7 and body["took_ms"] >= 0
    for hit in body["results"]:
        assert set(hit) == {"id", "modality", "score", "text", "image", "image_url", "source", "source_url", "degree"}
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    texts = client.post(f"/v1/profiles/{PROFILE}/search", json={"text": "tide", "modality": "text"}).json()
    assert len(texts["results"]) == 10 and {h["modality"] for h in texts["results"]} == {"text"}


def test_image_search_json_and_multipart(client: TestClient, home: Path) -> None:
    sha, data = stored_picture(home, SHARED_FIRST_URL)
    r = client.post(f"/v1/profiles/{PROFILE}/search",
                    json={"image_base64": base64.b64encode(data).decode(), "k": 3, "modality": "image"})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["id"] == f"img-{sha}" and top["score"] == pytest.approx(1.0, abs=1e-3)
    assert top["image_url"] == SHARED_FIRST_URL and top["degree"] == 1
    r = client.post(f"/v1/profiles/{PROFILE}/search", files={"image": ("q.png", data, "image/png")},
                    data={"k": "2", "modality": "image"})
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["results"]][0] == f"img-{sha}" and len(r.json()["results"]) == 2


@pytest.mark.parametrize(
    "profile, body, status",
    [
        ("nobody", {"text": "x"}, 404),
        ("Not..A-Name", {"text": "x"}, 404),
        ("noindex", {"text": "x"}, 404),
        (PROFILE, {"text": "x", "k": 0}, 422),
        (PROFILE, {"text": "x", "k": 101}, 422),
        (PROFILE, {"text": "x", "k": "many"}, 422),
        (PROFILE, {"text": "x", "modality": "video"}, 422),
        (PROFILE, {}, 422),
        (PROFILE, {"text": "   "}, 422),
        (PROFILE, {"text": "x", "image_base64": "AAAA"}, 422),
        (PROFILE, {"text": "x", "unknown": 1}, 422),
        (PROFILE, {"image_base64": "not base64!!"}, 400),
        (PROFILE, {"image_base64": base64.b64encode(b"GIF89a but not really").decode()}, 400),
        (PROFILE, {"image_base64": base64.b64encode(picture(1, size=600)).decode()}, 413),  # 360k pixels > cap
    ],
)
def test_bad_search_input_is_a_4xx_with_detail(client: TestClient, profile: str, body: dict, status: int) -> None:
    r = client.post(f"/v1/profiles/{profile}/search", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_malformed_bodies(client: TestClient) -> None:
    url = f"/v1/profiles/{PROFILE}/search"
    r = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]
    r = client.post(url, content=b"text=x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["detail"]
    r = client.post(url, files={"image": ("q.png", b"\x89PNG\r\n garbage", "image/png")})
    assert r.status_code == 400 and r.json()["detail"]
    r = client.post(url, files={"image": ("q.png", picture(2), "image/png")}, data={"text": "and words"})
    assert r.status_code == 422 and r.json()["detail"]
    r = client.post(url, files={"image": ("q.png", picture(2), "image/png")}, data={"k": "0"})
    assert r.status_code == 422 and r.json()["detail"]


def test_body_over_limit_is_413(client: TestClient) -> None:
    url = f"/v1/profiles/{PROFILE}/search"
    r = client.post(url, json={"text": "x" * (MAX_BODY + 10)})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold on a stream too
        yield b'{"text": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"y" * 1024
        yield b'"}'

    r = client.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_items_and_images(client: TestClient, home: Path) -> None:
    item = client.get(f"/v1/profiles/{PROFILE}/items/substack:post:3")
    assert item.status_code == 200
    assert item.json()["title"] == "Post number 3" and len(item.json()["images"]) == 3
    sha, data = stored_picture(home, SHARED_FIRST_URL)
    row = client.get(f"/v1/profiles/{PROFILE}/items/img-{sha}").json()
    assert row["modality"] == "image" and row["image_url"] == SHARED_FIRST_URL
    assert row["item"]["id"] == "substack:post:3"
    hit = client.post(f"/v1/profiles/{PROFILE}/search", json={"text": "tide", "modality": "text", "k": 1}).json()
    text_row = client.get(f"/v1/profiles/{PROFILE}/items/{hit['results'][0]['id']}")
    assert text_row.status_code == 200 and text_row.json()["text"] == hit["results"][0]["text"]

    image = client.get(f"/v1/profiles/{PROFILE}/images/img-{sha}")
    assert image.status_code == 200 and image.content == data
    assert image.headers["content-type"] == "image/png"
    pin_sha, pin_bytes = stored_picture(home, f"{CDN.replace('cdn', 'pinimg')}/originals/01/pin1.jpg")
    pin = client.get(f"/v1/profiles/{PROFILE}/images/pinterest:pin:1")
    assert pin.status_code == 200 and pin.content == pin_bytes and pin.headers["content-type"] == "image/jpeg"

    for path in (f"/v1/profiles/{PROFILE}/items/substack:post:12345", f"/v1/profiles/{PROFILE}/items/img-{'0' * 64}",
                 f"/v1/profiles/{PROFILE}/images/img-{'0' * 64}", f"/v1/profiles/{PROFILE}/images/..%2F..%2Fetc",
                 f"/v1/profiles/{PROFILE}/images/substack:user:alice", f"/v1/profiles/nobody/images/img-{sha}",
                 "/v1/profiles/Bad%20Name/items/x"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["detail"]


def test_report(client: TestClient, home: Path) -> None:
    assert client.get(f"/v1/profiles/{PROFILE}/report").status_code == 404  # nothing trained yet
    profile = "reported"
    copy_profile(home, profile)
    version = workspace.new_version()
    metrics = {"pairs": 12, "base": {"t2i": {"r1": 0.1}}, "adapter": {"t2i": {"r1": 0.5}}}
    workspace.atomic_write_json(Workspace(home).adapters_dir(profile) / version / "metrics.json", metrics)
    r = client.get(f"/v1/profiles/{profile}/report")
    assert r.status_code == 200
    body = r.json()
    assert {key: body[key] for key in metrics} == metrics  # the evaluation as training wrote it, at the top
    assert body["version"] == version and body["plots"] == []
    assert body["training"] is None  # this adapter folder has no qualia.json to tell
    with open_corpus(home, profile) as c:
        assert body["corpus"] == c.counts()
    assert body["corpus"]["by_degree"] == {"0": 2, "1": 18, "2": 4} and body["corpus"]["items"]["pinterest"] == 13


def test_new_index_version_is_picked_up(client: TestClient, home: Path) -> None:
    profile = "growing"
    copy_profile(home, profile)
    first = client.post(f"/v1/profiles/{profile}/search", json={"text": "shell"}).json()["index"]
    newer = workspace.new_version()
    indexes = Workspace(home).index_dir(profile)
    shutil.copytree(indexes / first, indexes / newer)
    shutil.copytree(indexes / first, indexes / f".{newer}.half.tmp")
    second = client.post(f"/v1/profiles/{profile}/search", json={"text": "shell"}).json()["index"]
    assert (first, second) == (first, newer) and newer > first
    listed = {p["name"]: p["index"] for p in client.get("/v1/profiles").json()["profiles"]}
    assert listed[profile] == newer


def _edit_manifest(home: Path, profile: str, **changes: Any) -> None:
    folder = Workspace(home).latest_index(profile)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest.update(changes)
    workspace.atomic_write_json(folder / MANIFEST_FILE, manifest)


def test_index_built_with_other_weights_or_missing_adapter_is_refused(client: TestClient, home: Path) -> None:
    copy_profile(home, "otherweights")
    _edit_manifest(home, "otherweights", weights_sha256="f" * 64)
    r = client.post("/v1/profiles/otherweights/search", json={"text": "shell"})
    assert r.status_code == 409 and "weights" in r.json()["detail"]

    copy_profile(home, "lostadapter")
    _edit_manifest(home, "lostadapter", adapter_version="20240101T000000000000Z")
    r = client.post("/v1/profiles/lostadapter/search", json={"text": "shell"})
    assert r.status_code == 409 and "20240101T000000000000Z" in r.json()["detail"]

    copy_profile(home, "otherbackbone")
    _edit_manifest(home, "otherbackbone", backbone="no-such-model")
    r = client.post("/v1/profiles/otherbackbone/search", json={"text": "shell"})
    assert r.status_code == 409 and "no-such-model" in r.json()["detail"]

    copy_profile(home, "corrupt")
    folder = Workspace(home).latest_index("corrupt")
    (folder / "index.faiss").write_bytes(b"garbage")
    r = client.post("/v1/profiles/corrupt/search", json={"text": "shell"})
    assert r.status_code == 409 and "checksum" in r.json()["detail"]
    # The healthy profile is untouched by its neighbours' trouble.
    assert client.post(f"/v1/profiles/{PROFILE}/search", json={"text": "shell"}).status_code == 200


def test_search_over_http_under_uvicorn(home: Path) -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServiceSettings(home=home)), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/v1/profiles/{PROFILE}/search", json={"text": "shell drawn at dawn", "k": 4}, timeout=30)
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == 4
        top = r.json()["results"][0]
        assert httpx.get(f"{base}/v1/profiles/{PROFILE}/items/{top['id']}").status_code == 200
        assert httpx.post(f"{base}/v1/profiles/nobody/search", json={"text": "x"}).status_code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_profile_with_adapter_is_served_with_that_adapter(client: TestClient, home: Path, tiny) -> None:
    import torch

    from qualia.embed import Encoder
    from qualia.config import LoraSettings
    from qualia.lora import META_FILE, adapter_identity, attach_lora, save_adapter

    profile = "adapted"
    copy_profile(home, profile)
    backbone = tiny
    settings = LoraSettings(rank=4)
    model = attach_lora(backbone, settings)
    with torch.no_grad():  # a fresh LoRA is the identity (B = 0); make it change the embeddings
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.5)
    version = workspace.new_version()
    ws = Workspace(home)
    adapter = ws.adapters_dir(profile) / version
    with workspace.atomic_dir(adapter) as tmp:
        save_adapter(model, tmp, adapter_identity(backbone, settings))
    build_index(ws, profile, Encoder.load(backbone, adapter), version)

    sha, data = stored_picture(home, SHARED_FIRST_URL)
    query = {"image_base64": base64.b64encode(data).decode(), "k": 1, "modality": "image"}
    body = client.post(f"/v1/profiles/{profile}/search", json=query).json()
    assert body["adapter"] == version
    # Score 1 only if the query went through the same adapter as the index (the base model scores lower).
    assert body["results"][0]["id"] == f"img-{sha}" and body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    base_vector = Encoder.load(backbone).encode_images([Image.open(io.BytesIO(data))])[0]
    assert ProfileIndex.load(ws.latest_index(profile)).search(base_vector, k=1, modality="image")[0]["score"] < 0.99
    listed = {p["name"]: p["adapter"] for p in client.get("/v1/profiles").json()["profiles"]}
    assert listed[profile] == version

    meta = json.loads((adapter / META_FILE).read_text())
    workspace.atomic_write_json(adapter / META_FILE, {**meta, "weights_sha256": "0" * 64})
    newer = workspace.new_version()  # a new index version makes the service load the adapter again
    shutil.copytree(ws.latest_index(profile), ws.index_dir(profile) / newer)
    r = client.post(f"/v1/profiles/{profile}/search", json=query)
    assert r.status_code == 409 and "base weights" in r.json()["detail"]


def test_bad_bytes_never_get_a_5xx_and_errors_show_only_an_excerpt(client: TestClient) -> None:
    search = f"/v1/profiles/{PROFILE}/search"
    not_utf8 = client.post(search, content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert not_utf8.status_code == 422 and not_utf8.json()["detail"][0]["type"] == "json_invalid"
    long = client.post(search, json={"text": "tide " * 2000})  # 10,000 characters, under the body limit
    assert long.status_code == 422 and len(long.text) < 600 and long.json()["detail"][0]["input"].endswith("…")
    for k in (True, "5", 2.5):
        r = client.post(search, json={"text": "shell", "k": k})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "k"], k
    assert client.post(search, files={"text": (None, "shell"), "k": (None, "3")}).json()["results"].__len__() == 3
    for body in (b"[1,2", b"\x00" * 100, b'{"text": "shell", "k": 1e309}'):
        r = client.post(search, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and " at 0x" not in r.text, body


def test_a_damaged_key_store_fails_closed_with_503_and_logs_once(home: Path, tmp_path: Path, caplog) -> None:
    damaged = tmp_path / "home"
    shutil.copytree(Workspace(home).profile_dir(PROFILE), Workspace(damaged).profile_dir(PROFILE))
    (damaged / "keys.sqlite").write_bytes(b"not a database" * 100)
    with TestClient(create_app(ServiceSettings(home=damaged, preload=False))) as c, caplog.at_level("ERROR"):
        for path in ("/v1/profiles", f"/v1/profiles/{PROFILE}/report", "/v1/profiles/nobody/report"):
            r = c.get(path)
            assert r.status_code == 503 and "keys.sqlite" in r.json()["detail"], path
        assert c.post(f"/v1/profiles/{PROFILE}/search", json={"text": "shell"}).status_code == 503
        assert c.get("/healthz").status_code == 200
        (damaged / "keys.sqlite").write_bytes(b"")  # emptied: still not a key store
        assert c.get("/v1/profiles").status_code == 503
    logged = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(logged) == 2  # once per state of the file, not once per request


def test_openapi_lists_the_error_answers(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    search = paths["/v1/profiles/{profile}/search"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413", "503"} <= search.keys()
    assert {"401", "404"} <= paths["/v1/profiles/{profile}/images/{image_id}"]["get"]["responses"].keys()
    assert "401" in paths["/v1/profiles"]["get"]["responses"]


def test_a_damaged_newest_index_gives_way_to_the_newest_usable_one(client: TestClient, home: Path, caplog) -> None:
    profile = "fallback"
    copy_profile(home, profile)
    indexes = Workspace(home).index_dir(profile)
    good = Workspace(home).latest_index(profile).name
    cut = workspace.new_version()
    shutil.copytree(indexes / good, indexes / cut)
    (indexes / cut / "index.faiss").write_bytes((indexes / cut / "index.faiss").read_bytes()[:100])
    with caplog.at_level("WARNING"):
        r = client.post(f"/v1/profiles/{profile}/search", json={"text": "shell", "k": 2})
        assert r.status_code == 200 and r.json()["index"] == good
        assert client.post(f"/v1/profiles/{profile}/search", json={"text": "tide"}).json()["index"] == good
    damaged_logged = [rec for rec in caplog.records if cut in rec.getMessage() and "damaged" in rec.getMessage()]
    assert len(damaged_logged) == 2  # "damaged, skipped" and "using ... the newer ... is damaged", once
    empty = workspace.new_version()
    (indexes / empty).mkdir()  # an empty version folder, newest of all
    assert client.post(f"/v1/profiles/{profile}/search", json={"text": "shell"}).json()["index"] == good
    listed = {p["name"]: p["index"] for p in client.get("/v1/profiles").json()["profiles"]}
    assert listed[profile] == good
    assert client.get(f"/v1/profiles/{profile}/items/{r.json()['results'][0]['id']}").status_code == 200
    shutil.rmtree(indexes / good)  # the copy in memory still answers until a newer version appears ...
    assert client.post(f"/v1/profiles/{profile}/search", json={"text": "shell"}).json()["index"] == good
    (indexes / workspace.new_version()).mkdir()  # ... and then nothing usable is left: a 409 that says so
    r = client.post(f"/v1/profiles/{profile}/search", json={"text": "shell"})
    assert r.status_code == 409 and "every index" in r.json()["detail"]
