"""The web page's server side: the page and the OpenAPI pages with every asset served locally, and the report
the page draws (what was collected, how the adapter was trained, what it changed, the plots training drew).
tests/test_page_browser.py drives the page itself in Chromium."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from qualia import workspace
from qualia.workspace import Workspace
from service.app import create_app
from service.settings import ServiceSettings

from tests.helpers import PROFILE, open_corpus

REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
EXTERNAL = re.compile(r"(?:https?:)?//[a-z0-9.-]+", re.IGNORECASE)


@pytest.fixture(scope="module")
def client(trained_home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(home=trained_home))) as c:
        yield c


def references(html: str) -> list[str]:
    return [ref for ref in REFERENCE.findall(html) if not ref.startswith("data:")]


def test_the_page_and_its_assets_are_all_local(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    refs = references(page.text)
    assert {"static/page.js", "static/page.css"} <= set(refs)
    assert not [ref for ref in refs if EXTERNAL.match(ref)]
    total = len(page.content)
    for ref in refs:
        asset = client.get(urljoin("/", ref))
        assert asset.status_code == 200, ref
        if ref.startswith("static/"):
            total += len(asset.content)
            # nothing the page loads reaches out: no URL to another host in its script or style
            assert not re.search(r"https?://", asset.text), ref
    assert client.get("/static/page.js").headers["content-type"].startswith("text/javascript")
    assert total < 64 * 1024, f"the page weighs {total} bytes"
    assert client.get("/static/nothing.js").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


@pytest.mark.parametrize("path, marker", [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
def test_the_openapi_pages_work_offline(client: TestClient, path: str, marker: str) -> None:
    html = client.get(path)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z]", html.text, re.IGNORECASE), html.text  # no CDN, no web font
    refs = references(html.text)
    scripts = [ref for ref in refs if ref.endswith(".js")]
    assert scripts and all(ref.startswith("/static-docs/") for ref in refs), refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 1000, ref
    assert any(marker in client.get(ref).text[:200_000] for ref in scripts)
    assert "'/openapi.json'" in html.text or '"/openapi.json"' in html.text
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_the_report_says_what_was_collected_how_it_trained_and_what_changed(client: TestClient, trained_home: Path) -> None:
    ws = Workspace(trained_home)
    index_version = ws.latest_index(PROFILE).name
    adapter = json.loads((ws.index_dir(PROFILE) / index_version / "manifest.json").read_text())["adapter_version"]
    folder = ws.adapters_dir(PROFILE) / adapter
    r = client.get(f"/v1/profiles/{PROFILE}/report")
    assert r.status_code == 200, r.text
    body = r.json()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {key: body[key] for key in metrics} == metrics
    assert {"base", "adapter", "pairs"} <= metrics.keys() and "retention" in body["adapter"]
    assert body["version"] == adapter
    training = body["training"]
    assert training["backbone"] == "qualia-tiny" and training["epochs_run"] == 2 and training["lora_rank"] == 8
    assert training["data"]["pairs_val"] == body["pairs"] > 0
    with open_corpus(trained_home, PROFILE) as c:
        assert body["corpus"] == c.counts()
    assert body["corpus"]["items"] == {"substack": 11, "pinterest": 13}
    assert body["corpus"]["by_degree"] == {"0": 2, "1": 18, "2": 4}
    assert [plot["name"] for plot in body["plots"]] == ["loss_curve.png", "modality_gap.png"]
    for plot in body["plots"]:
        assert plot["title"] and plot["url"] == f"/v1/profiles/{PROFILE}/report/plots/{plot['name']}"
        image = client.get(plot["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content == (folder / plot["name"]).read_bytes()


def test_only_the_plots_training_drew_are_served(client: TestClient, trained_home: Path) -> None:
    base = f"/v1/profiles/{PROFILE}/report/plots"
    for name in ("metrics.json", "qualia.json", "adapter_model.safetensors", "..%2Fmetrics.json", "x.png",
                 "%2Fetc%2Fpasswd", "loss_curve.png%00"):
        r = client.get(f"{base}/{name}")
        assert r.status_code == 404 and r.json()["detail"], name
    assert client.get("/v1/profiles/nobody/report/plots/loss_curve.png").status_code == 404


def test_a_plot_missing_from_the_adapter_is_not_found(client: TestClient, trained_home: Path) -> None:
    profile = "plotless"
    ws = Workspace(trained_home)
    version = workspace.new_version()
    workspace.atomic_write_json(ws.adapters_dir(profile) / version / "metrics.json", {"pairs": 3})
    try:
        body = client.get(f"/v1/profiles/{profile}/report").json()
        assert body["plots"] == [] and body["corpus"] is None and body["pairs"] == 3
        r = client.get(f"/v1/profiles/{profile}/report/plots/loss_curve.png")
        assert r.status_code == 404 and "no loss_curve.png" in r.json()["detail"]
    finally:
        shutil.rmtree(ws.profile_dir(profile))
