"""Pictures one can open from the shell: `qualia search` and the demo name each picture's file in the
workspace (the sample site a demo crawled is gone once it ends), and `--json` carries it as ``file``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qualia.search import ProfileSearcher, with_files
from qualia.workspace import Workspace

from tests.helpers import CDN, PINIMG, PROFILE


def test_results_carry_their_pictures_file_in_the_workspace(service_home: Path) -> None:
    ws = Workspace(service_home)
    searcher = ProfileSearcher.load(ws, PROFILE)
    results = with_files(ws, PROFILE, searcher.search_text("a rock pool", k=50))
    assert {r["modality"] for r in results} == {"image", "text"}
    for r in results:
        sha = searcher.index.row(r["id"])["sha256"]
        if sha is None:  # a text about no picture
            assert r["file"] is None
            continue
        path = Path(r["file"])
        assert path.is_absolute() and path.is_file() and path.is_relative_to(ws.images_dir.resolve())
        assert path.stem == sha
    assert any(r["file"] is None for r in results)  # the sample has a post without pictures


def test_qualia_search_prints_each_pictures_file_and_json_carries_it(service_home: Path, monkeypatch, capsys) -> None:
    from qualia.cli.main import main

    monkeypatch.setenv("QUALIA_HOME", str(service_home))
    assert main(["search", PROFILE, "a rock pool", "--k", "5", "--modality", "image"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    images = Workspace(service_home).images_dir.resolve()
    for line in lines:
        shown = line.rsplit("<", 1)[1].rstrip(">")
        assert Path(shown).is_file() and Path(shown).is_relative_to(images), line
        assert CDN not in line and PINIMG not in line
    assert main(["search", PROFILE, "a rock pool", "--k", "5", "--modality", "image", "--json"]) == 0
    pictures = json.loads(capsys.readouterr().out)["results"]
    assert [r["file"] for r in pictures] == [line.rsplit("<", 1)[1].rstrip(">") for line in lines]
    assert all(r["image_url"].startswith((CDN, PINIMG)) and r["source_url"] for r in pictures)  # where it was found, kept
    # a text result's file is the picture it describes; its line still links where it was found
    assert main(["search", PROFILE, "a rock pool", "--k", "5", "--modality", "text", "--json"]) == 0
    texts = json.loads(capsys.readouterr().out)["results"]
    assert any(r["file"] for r in texts) and all(Path(r["file"]).is_file() for r in texts if r["file"])


@pytest.mark.parametrize("modality", ["image", "text"])
def test_a_result_whose_picture_file_is_gone_shows_where_it_was_found(modality: str) -> None:
    from qualia.cli.format import format_results

    result = {"id": "x", "modality": modality, "score": 0.5, "text": "t", "degree": 1, "file": None,
              "image_url": "http://site/p.png", "source_url": "http://site/post"}  # fmt: skip
    assert format_results([result]).endswith("<http://site/p.png>" if modality == "image" else "<http://site/post>")
    assert "/ws/images/aa/x.png" in format_results([{**result, "modality": "image", "file": "/ws/images/aa/x.png"}])


def test_the_demo_shows_workspace_files_not_the_sample_site(service_home: Path) -> None:
    from qualia.cli.demo import personal_searches

    ws = Workspace(service_home)
    answers, shown = personal_searches(ws, PROFILE, ProfileSearcher.load(ws, PROFILE), ["a rock pool", "shell"], k=3)
    assert CDN not in shown and PINIMG not in shown and "127.0.0.1" not in shown
    files = [r["file"] for a in answers for r in a["results"]]
    assert len(files) == 6 and all(f and f in shown and Path(f).is_file() for f in files)
    assert all(r["image_url"] and r["source_url"] for a in answers for r in a["results"])  # --json keeps them
