"""The service as an engine: more like this by id, the service's own picture links, image_url queries only
from allowed public hosts (each refusal a 4xx with a reason), clip-retrieval's API as its client and front
end call it, and /metrics."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.helpers import PROFILE, SHARED_FIRST_URL, picture
from tests.test_service import stored_picture

QUERY_PICTURE = picture(7, "PNG", 64)


class _Pictures(http.server.BaseHTTPRequestHandler):
    """/pic: a picture; /big: more bytes than allowed; /slow: a picture after 3 s; /to-metadata: a redirect
    to the cloud metadata address; /to-pic: a redirect to /pic; /missing: 404."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in ("/to-metadata", "/to-pic"):
            target = "http://169.254.169.254/latest/meta-data/" if self.path == "/to-metadata" else "/pic"
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
            return
        if self.path == "/missing":
            self.send_error(404)
            return
        if self.path == "/slow":
            time.sleep(3)
        body = b"\0" * 300_000 if self.path == "/big" else QUERY_PICTURE
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def picture_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _client(home: Path, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(home=home, preload=False, **settings)))


def test_more_like_this_by_id_and_links_to_the_services_own_pictures(service_client: TestClient, service_home: Path) -> None:
    search = f"/v1/profiles/{PROFILE}/search"
    first = service_client.post(search, json={"text": "a rock pool", "k": 5, "modality": "image"}).json()["results"][0]
    assert first["image"] == f"/v1/profiles/{PROFILE}/images/{first['id']}"
    assert service_client.get(first["image"]).status_code == 200
    like = service_client.post(search, json={"id": first["id"], "k": 4}).json()["results"]
    assert len(like) == 4 and first["id"] not in {r["id"] for r in like}
    texts = service_client.post(search, json={"id": first["id"], "k": 3, "modality": "text"}).json()["results"]
    assert {r["modality"] for r in texts} == {"text"}
    described = [r for r in texts if r["image"]]  # a text that describes a picture links to it
    assert all(service_client.get(r["image"]).status_code == 200 for r in described)
    missing = service_client.post(search, json={"id": "img-" + "0" * 64})
    assert missing.status_code == 404 and "no 'img-" in missing.json()["detail"]
    both = service_client.post(search, json={"id": first["id"], "text": "fog"})
    assert both.status_code == 422


def test_image_url_from_a_listed_host_searches_like_the_bytes(service_home: Path, picture_server: str) -> None:
    with _client(service_home, image_hosts="127.0.0.1") as c:
        search = f"/v1/profiles/{PROFILE}/search"
        by_url = c.post(search, json={"image_url": f"{picture_server}/pic", "k": 3}).json()["results"]
        by_bytes = c.post(search, json={"image_base64": base64.b64encode(QUERY_PICTURE).decode(), "k": 3}).json()["results"]
        assert [r["id"] for r in by_url] == [r["id"] for r in by_bytes]
        redirected = c.post(search, json={"image_url": f"{picture_server}/to-pic", "k": 3}).json()["results"]
        assert [r["id"] for r in redirected] == [r["id"] for r in by_bytes]


@pytest.mark.parametrize("hosts,path,status,reason", [
    ("", "/pic", 403, "non-public address"),  # the corpus's own host is loopback: not without the operator's word
    ("images.example.org", "/pic", 403, "allow-list"),
    ("127.0.0.1", "/to-metadata", 403, "allow-list"),  # every redirect is checked again
    ("127.0.0.1", "/big", 413, "limit"),
    ("127.0.0.1", "/slow", 408, "too long"),
    ("127.0.0.1", "/missing", 400, "HTTP 404"),
])  # fmt: skip
def test_image_url_refusals_are_4xx_with_a_reason(service_home: Path, picture_server: str, hosts: str, path: str,
                                                  status: int, reason: str) -> None:  # fmt: skip
    with _client(service_home, image_hosts=hosts, max_image_bytes=200_000, image_fetch_timeout=1.0) as c:
        r = c.post(f"/v1/profiles/{PROFILE}/search", json={"image_url": picture_server + path})
    assert r.status_code == status and reason in r.json()["detail"], r.text


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/pic", "file:///etc/passwd", "http://[::1]:9/", "not a url",
                                 "http://169.254.169.254/latest/meta-data/"])  # fmt: skip
def test_image_url_of_other_schemes_or_inner_addresses_is_refused(service_home: Path, url: str) -> None:
    with _client(service_home) as c:
        r = c.post(f"/v1/profiles/{PROFILE}/search", json={"image_url": url})
    assert r.status_code in (400, 403) and r.json()["detail"], r.text


def test_clip_retrieval_client_and_front_end_requests(service_client: TestClient, service_home: Path) -> None:
    assert service_client.get("/indices-list").json() == [PROFILE]
    # ClipClient: JSON without a Content-Type, every field present, the unused ones null
    client_body = {"text": "a rock pool", "image": None, "image_url": None, "embedding_input": None,
                   "deduplicate": True, "use_safety_model": True, "use_violence_detector": True,
                   "indice_name": PROFILE, "use_mclip": False, "aesthetic_score": 9, "aesthetic_weight": 0.5,
                   "modality": "image", "num_images": 5, "num_result_ids": 5}  # fmt: skip
    r = service_client.post("/knn-service", content=json.dumps(client_body).encode(), headers={"content-type": ""})
    assert r.status_code == 200, r.text
    results = r.json()
    assert len(results) == 5 and all(isinstance(x["id"], int) and x["id"] < 2**53 for x in results)
    assert all(x["modality"] == "image" and x["url"].startswith("http://testserver/v1/profiles/") for x in results)
    assert [x["similarity"] for x in results] == sorted((x["similarity"] for x in results), reverse=True)
    ours = service_client.post(f"/v1/profiles/{PROFILE}/search", json={"text": "a rock pool", "k": 5, "modality": "image"})
    assert [x["qualia_id"] for x in results] == [x["id"] for x in ours.json()["results"]]

    # the front end: numbers as strings, a picture as base64, then /metadata for the ids it shows
    _, data = stored_picture(service_home, SHARED_FIRST_URL)
    front = {"image": base64.b64encode(data).decode(), "modality": "text", "num_images": "3", "num_result_ids": "30",
             "indice_name": PROFILE, "aesthetic_score": "", "aesthetic_weight": ""}  # fmt: skip
    texts = service_client.post("/knn-service", json=front).json()
    assert len(texts) == 3 and {x["modality"] for x in texts} == {"text"}
    meta = service_client.post("/metadata", json={"ids": [texts[0]["id"], 12345], "indice_name": PROFILE}).json()
    assert meta[0]["id"] == texts[0]["id"] and meta[0]["metadata"]["caption"] == texts[0]["caption"]
    assert meta[1] == {"id": 12345, "metadata": None}

    vector = service_client.post("/knn-service", json={"embedding_input": [1.0] + [0.0] * 127, "indice_name": PROFILE,
                                               "modality": "image", "num_images": 2})  # fmt: skip
    assert vector.status_code == 200 and len(vector.json()) == 2

    for bad, status in (({**client_body, "indice_name": "nobody"}, 404), ({**client_body, "num_images": "many"}, 422),
                        ({**client_body, "modality": "video"}, 422), ({"indice_name": PROFILE}, 422),
                        ({**client_body, "text": None, "embedding_input": [1, 2]}, 422)):  # fmt: skip
        r = service_client.post("/knn-service", json=bad)
        assert r.status_code == status and r.json()["detail"], (bad, r.text)
    assert service_client.post("/knn-service", content=b"[1, 2").status_code == 400


def test_metrics_count_requests_by_endpoint_and_status(service_client: TestClient) -> None:
    service_client.post(f"/v1/profiles/{PROFILE}/search", json={"text": "fog"})
    service_client.post(f"/v1/profiles/{PROFILE}/search", json={"k": 3})
    service_client.get("/no/such/path")
    text = service_client.get("/metrics").text
    assert 'qualia_http_requests_total{endpoint="/v1/profiles/{profile}/search",method="POST",status="200"}' in text
    assert 'qualia_http_requests_total{endpoint="/v1/profiles/{profile}/search",method="POST",status="422"}' in text
    assert 'endpoint="unmatched"' in text and "/no/such/path" not in text
    count = next(line for line in text.splitlines() if line.startswith("qualia_encode_batch_queries_count"))
    assert float(count.split()[-1]) >= 1
    assert f'qualia_index_rows{{modality="image",profile="{PROFILE}"}} 27.0' in text
    assert "qualia_adapters_loaded" in text


def test_the_newest_index_version_is_seen_the_moment_it_lands(tmp_path: Path) -> None:
    """The folder listing is kept while the index folder's stamp holds, and never trusted within the
    stamp's tick: a version renamed in right after a listing is seen by the next request."""
    import os

    from qualia import workspace
    from qualia.workspace import Workspace
    from service.resources import RACY_NS, Resources

    ws = Workspace(tmp_path)
    folder = ws.index_dir("ada")
    folder.mkdir(parents=True)
    resources = Resources(ws)
    first = workspace.new_version()
    (folder / first).mkdir()
    assert resources.newest_version("ada") == first  # changed just now: listed, not kept
    second = workspace.new_version()
    (folder / second).mkdir()
    assert resources.newest_version("ada") == second
    past = time.time_ns() - 2 * RACY_NS
    os.utime(folder, ns=(past, past))
    assert resources.newest_version("ada") == second
    (folder / second).rename(folder / f".gone-{second}")  # not a version any more, stamp kept old on purpose
    os.utime(folder, ns=(past, past))
    assert resources.newest_version("ada") == second  # the stamp held: the kept listing answers
    third = workspace.new_version()
    (folder / third).mkdir()  # a real landing moves the stamp
    assert resources.newest_version("ada") == third
