"""The whole flow as a user runs it: sample site -> qualia crawl -> train -> index -> qualia serve -> HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qualia.index import MIXED_VARIANTS, mixed_key
from samplesite import SampleSite
from tests.helpers import open_corpus, run_qualia, served

pytestmark = pytest.mark.slow
PROFILE = "e2e"


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("e2e-home")
    with SampleSite() as site:
        env = {"QUALIA_HOME": str(home), **site.env()}
        crawl = run_qualia("crawl", PROFILE, "--substack", site.substack_handle, "--pinterest",
                           site.pinterest_username, "--depth", "2", "--delay", "0", "--json", env=env)
        assert crawl.returncode == 0, crawl.stderr
        corpus = run_qualia("corpus", PROFILE, "--json", env=env)
        train = run_qualia("train", PROFILE, "--backbone", "qualia-tiny", "--json", env=env)
        assert train.returncode == 0, train.stderr
        evaluation = run_qualia("eval", PROFILE, "--json", env=env)
        index = run_qualia("index", PROFILE, "--json", env=env)
        assert index.returncode == 0, index.stderr
        yield {"site": site, "env": env, "home": home, "corpus": corpus, "train": train,
               "eval": evaluation, "index": index}


@pytest.fixture(scope="module")
def server(flow: dict[str, Any]) -> Iterator[str]:
    with served(flow["env"]) as (base, _):
        yield base


def test_corpus_counts_are_what_the_site_implies(flow: dict[str, Any]) -> None:
    out = flow["corpus"]
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout)
    expected = flow["site"].expected_counts(2)
    assert counts["items"] == expected["items"]
    assert counts["by_degree"] == expected["by_degree"]
    assert counts["images"] == expected["images"]
    assert "3" not in counts["by_degree"]
    assert counts["pairs"] > 200 and counts["edges"] > 0
    # figures with neither alt nor caption are paired with the paragraphs around them
    assert counts["pairs_by_text_source"]["context"] > 10
    assert sum(counts["pairs_by_text_source"].values()) == counts["pairs"]


def test_degree_three_is_absent_and_shared_picture_stored_once(flow: dict[str, Any]) -> None:
    facts = flow["site"].facts
    home: Path = flow["home"]
    with open_corpus(home, PROFILE) as c:
        assert c.item(f"substack:publication:{facts['degree3_publication_id']}") is None
        for post_id in facts["degree3_post_ids"]:
            assert c.item(f"substack:post:{post_id}") is None
        url_a, url_b = facts["shared_picture_urls"]
        shas = {c.image_sha256(url_a), c.image_sha256(url_b)}
        assert len(shas) == 1
        (sha,) = shas
        assert c.image_path(sha).exists()
    assert len(list((home / "images").rglob(f"{sha}.*"))) == 1


def test_adapter_beats_frozen_backbone_on_held_out_pairs(flow: dict[str, Any]) -> None:
    out = flow["eval"]
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["pairs"] > 20
    for side in ("base", "adapter"):
        for direction in ("t2i", "i2t"):
            assert set(report[side][direction]) == {"r1", "r5", "r10"}
    assert report["adapter"]["t2i"]["r10"] > report["base"]["t2i"]["r10"]
    assert report["adapter"]["gap"] < report["base"]["gap"]  # the adapter narrows the modality gap
    # `qualia train` reports what training measured on the same held-out pairs; training caches
    # pictures in float16, so the figures agree closely, not bit for bit.
    trained = json.loads(flow["train"].stdout)
    assert trained["pairs"] == report["pairs"]
    for direction in ("t2i", "i2t"):
        for k, value in report["adapter"][direction].items():
            assert abs(trained["adapter"][direction][k] - value) <= 0.05


def test_over_the_stand_in_the_adapter_learns_her_words_and_keeps_the_generic_ones(flow: dict[str, Any]) -> None:
    """Issue 7's persona figures over the stand-in. Targets: t2i R@10 +0.30, gap halved, retention 0.95,
    pictures 0.4 of a mixed top 10; measured (docs/benchmarks.md) +0.33, -70 %, 0.977, 0.53. Asserted here
    with a margin below the measured figures, so a regression fails and seed noise does not: +0.22,
    halved, 0.95, 0.4."""
    report = json.loads(flow["eval"].stdout)
    base, adapter = report["base"], report["adapter"]
    assert adapter["t2i"]["r10"] - base["t2i"]["r10"] >= 0.22, (base["t2i"], adapter["t2i"])
    assert adapter["gap"] <= 0.5 * base["gap"], (base["gap"], adapter["gap"])
    assert adapter["retention"] >= 0.95, adapter["generic"]
    for side in (base, adapter):
        for mixed in MIXED_VARIANTS.values():
            assert set(side[mixed]) == {"image_share", "r10"} and 0 <= side[mixed]["image_share"] <= 1
    manifest = json.loads(flow["index"].stdout)
    assert manifest["adapter_version"] == json.loads(flow["train"].stdout)["adapter_version"]
    chosen = adapter[mixed_key(manifest)]
    assert all((chosen["r10"], chosen["image_share"]) >= (adapter[key]["r10"], adapter[key]["image_share"])
               for key in MIXED_VARIANTS.values())
    assert chosen["image_share"] >= 0.4, chosen


def test_cli_search_answers_from_the_index(flow: dict[str, Any]) -> None:
    query = flow["site"].queries[0]
    out = run_qualia("search", PROFILE, query, "--k", "5", "--modality", "image", "--json", env=flow["env"])
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert len(body["results"]) == 5
    assert all(r["modality"] == "image" for r in body["results"])


def test_http_search_under_uvicorn(flow: dict[str, Any], server: str) -> None:
    site: SampleSite = flow["site"]
    assert httpx.get(f"{server}/healthz").status_code == 200
    r = httpx.post(f"{server}/v1/profiles/{PROFILE}/search",
                   json={"text": site.queries[0], "k": 8, "modality": "image"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"results", "adapter", "index", "took_ms"}
    assert len(body["results"]) == 8
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for hit in body["results"]:
        assert set(hit) >= {"id", "modality", "score", "text", "image_url", "source", "source_url", "degree"}
        assert hit["modality"] == "image"
        assert hit["image_url"].startswith(site.base_url)  # the URL it was crawled from
        assert hit["degree"] in (1, 2)
    image = httpx.get(f"{server}/v1/profiles/{PROFILE}/images/{body['results'][0]['id']}")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    assert httpx.post(f"{server}/v1/profiles/nobody/search", json={"text": "x"}).status_code == 404
