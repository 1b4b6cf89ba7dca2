"""Feedback that teaches: ``POST /v1/profiles/{p}/feedback`` stores a mark in that profile's corpus, and
the next training learns from it (a fitting mark as a pair, a misfit as a negative), never from the
held-out pictures and never from another profile's marks."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qualia import feedback
from qualia.corpus import Corpus
from qualia.index import ProfileIndex, build_index
from qualia.pairs import corpus_pairs, split_pairs
from qualia.workspace import Workspace
from service import keys
from service.app import create_app
from service.settings import ServiceSettings

from tests.helpers import PROFILE, ROOT, open_corpus, write_sample_corpus

OTHER = "bob"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    """alice and bob: the same sample corpus, each with its own copy and index; "noindex" has a corpus only."""
    from qualia.embed import Encoder

    root = tmp_path_factory.mktemp("feedback-home")
    ws = Workspace(root)
    write_sample_corpus(root)
    build_index(ws, PROFILE, Encoder.load(tiny), None)
    shutil.copytree(ws.profile_dir(PROFILE), ws.profile_dir(OTHER))
    write_sample_corpus(root, "noindex")
    return root


@pytest.fixture(autouse=True)
def fresh(home: Path) -> None:
    """Every test starts with no keys and no marks, whatever ran before it."""
    for stale in home.glob(f"{keys.KEYS_FILE}*"):
        stale.unlink()
    for profile in (PROFILE, OTHER, "noindex"):
        with Corpus.open(Workspace(home), profile) as c:
            c.db.execute("DELETE FROM feedback")
            c.commit()


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(home=home))) as c:
        yield c


@pytest.fixture(scope="module")
def rows(home: Path) -> dict[str, dict[str, Any]]:
    """A picture row, a text row that describes a picture, and a text row that describes none."""
    index = ProfileIndex.load(Workspace(home).index(PROFILE))
    pictures = [r for r in index.rows if r["modality"] == "image"]
    texts = [r for r in index.rows if r["modality"] == "text"]
    return {"image": pictures[0], "other_image": pictures[1],
            "text": next(r for r in texts if r["sha256"]), "bare_text": next(r for r in texts if not r["sha256"])}  # fmt: skip


def marks(home: Path, profile: str) -> list[dict[str, Any]]:
    with open_corpus(home, profile) as c:
        return c.marks()


def mark(client: TestClient, query: str, row_id: str, fits: bool, profile: str = PROFILE,
         headers: dict[str, str] | None = None):  # fmt: skip
    return client.post(f"/v1/profiles/{profile}/feedback", json={"query": query, "id": row_id, "fits": fits},
                       headers=headers)  # fmt: skip


# -- the endpoint ---------------------------------------------------------------------------------


def test_a_mark_is_stored_in_the_profiles_corpus_and_marking_again_replaces_it(client, home, rows) -> None:
    picture = rows["image"]["id"]
    first = mark(client, "  quiet   morning ", picture, True)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body == {**body, "profile": PROFILE, "query": "quiet morning", "id": picture, "modality": "image",
                    "fits": True, "who": "anonymous", "replaced": False}  # fmt: skip
    assert body["marked_at"].endswith("+00:00")
    again = mark(client, "quiet morning", picture, False)  # the same person changes their mind
    assert again.status_code == 200 and again.json()["replaced"] is True and again.json()["fits"] is False
    stored = marks(home, PROFILE)
    assert len(stored) == 1
    assert stored[0] == {**stored[0], "who": "anonymous", "query": "quiet morning", "target": picture, "fits": False,
                         "sha256": rows["image"]["sha256"], "item_id": rows["image"]["item_id"]}  # fmt: skip
    # a text result keeps the picture it describes
    assert mark(client, "quiet morning", rows["text"]["id"], True).status_code == 201
    with open_corpus(home, PROFILE) as c:
        text_mark = c.marks(target=rows["text"]["id"])[0]
        assert c.counts()["feedback"] == {"marks": 2, "fits": 1, "does_not_fit": 1}
    assert text_mark["modality"] == "text" and text_mark["sha256"] == rows["text"]["sha256"]
    assert marks(home, OTHER) == []


@pytest.mark.parametrize("body", [
    {"id": "img-x", "fits": True},  # no query
    {"query": "tea", "fits": True},  # no id
    {"query": "tea", "id": "img-x"},  # no fits
    {"query": "tea", "id": "img-x", "fits": "true"},  # fits must be a JSON boolean
    {"query": "tea", "id": "img-x", "fits": 1},
    {"query": "tea", "id": "img-x", "fits": None},
    {"query": "   ", "id": "img-x", "fits": True},
    {"query": "", "id": "img-x", "fits": True},
    {"query": "x" * 2001, "id": "img-x", "fits": True},
    {"query": 5, "id": "img-x", "fits": True},
    {"query": "tea", "id": "", "fits": True},
    {"query": "tea", "id": "i" * 81, "fits": True},
    {"query": "tea", "id": "img-x", "fits": True, "who": "someone else"},  # who is the key's, never the body's
    ["tea", "img-x", True],
    {"query": "tea\ud800", "id": "ROW", "fits": True},  # JSON may carry a lone surrogate; SQLite cannot store it
    {"query": "tea\x00time", "id": "ROW", "fits": True},
    {"query": "tea", "id": "ROW", "fits": True, "\udcff": 1},
])  # fmt: skip
def test_malformed_marks_are_422_and_store_nothing(client, home, rows, body) -> None:
    if isinstance(body, dict) and body.get("id") == "ROW":
        body = {**body, "id": rows["image"]["id"]}
    r = client.post(f"/v1/profiles/{PROFILE}/feedback", content=json.dumps(body),  # ASCII: a lone surrogate escaped
                    headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and r.json()["detail"], r.text
    assert marks(home, PROFILE) == []


def test_a_body_that_is_not_json_is_a_4xx(client, home) -> None:
    for content, status in ((b"\xff\xfe{", 400), (b"query=tea&id=x&fits=true", 422), (b"", 422)):
        r = client.post(f"/v1/profiles/{PROFILE}/feedback", content=content, headers={"content-type": "application/json"})
        assert r.status_code == status and r.json()["detail"], (content, r.text)
    assert marks(home, PROFILE) == []


def test_unknown_results_and_profiles_are_404(client, home, rows) -> None:
    assert mark(client, "tea", "img-" + "0" * 64, True).status_code == 404
    assert mark(client, "tea", "txt-0000000000000000", True).status_code == 404
    assert mark(client, "tea", "substack:post:3", True).status_code == 404  # an item, not a result
    assert mark(client, "tea", rows["image"]["id"], True, profile="nobody").status_code == 404
    assert mark(client, "tea", rows["image"]["id"], True, profile="Not A Name").status_code == 404
    assert mark(client, "tea", rows["image"]["id"], True, profile="noindex").status_code == 404  # no results yet
    assert all(marks(Path(home), p) == [] for p in (PROFILE, OTHER, "noindex"))
    assert not (Path(home) / "profiles" / "nobody").exists()


def test_with_keys_a_mark_records_whose_key_made_it_and_never_reaches_another_profile(client, home, rows) -> None:
    ws = Workspace(home)
    alice_key, bob_key = keys.create_key(ws, PROFILE), keys.create_key(ws, OTHER)
    picture = rows["image"]["id"]
    assert mark(client, "tea", picture, True).status_code == 401
    assert mark(client, "tea", picture, True, headers={"Authorization": "Bearer qk_notakey"}).status_code == 401
    # alice's key on bob's profile answers as if bob did not exist, and writes nothing there
    refused = mark(client, "tea", picture, True, profile=OTHER, headers={"Authorization": f"Bearer {alice_key}"})
    assert refused.status_code == 404 and refused.json()["detail"] == f"no profile {OTHER!r}"
    assert marks(home, OTHER) == [] and marks(home, PROFILE) == []
    ok = mark(client, "tea", picture, True, headers={"Authorization": f"Bearer {alice_key}"})
    assert ok.status_code == 201 and ok.json()["who"] == keys.public_prefix(alice_key)
    assert ok.json()["who"] in {k["prefix"] for k in keys.list_keys(ws)}
    assert alice_key not in json.dumps(marks(home, PROFILE))  # only the public prefix is stored
    # bob marks the same picture in his own copy: his mark is his profile's alone
    assert mark(client, "coffee", picture, False, profile=OTHER, headers={"Authorization": f"Bearer {bob_key}"}).status_code == 201
    assert [(m["who"], m["query"], m["fits"]) for m in marks(home, PROFILE)] == [(keys.public_prefix(alice_key), "tea", True)]
    assert [(m["who"], m["query"], m["fits"]) for m in marks(home, OTHER)] == [(keys.public_prefix(bob_key), "coffee", False)]
    # two people's marks on one result for one query are two marks
    keys.revoke_key(ws, keys.public_prefix(bob_key))
    second = keys.create_key(ws, PROFILE)
    assert mark(client, "tea", picture, False, headers={"Authorization": f"Bearer {second}"}).status_code == 201
    assert len(marks(home, PROFILE)) == 2


# -- storage --------------------------------------------------------------------------------------


def test_a_mark_answered_as_stored_survives_the_process_being_killed(home, rows) -> None:
    """The writer is killed with SIGKILL right after ``record`` returns: the mark is on disk."""
    code = ("import os, signal, json, sys; from qualia.feedback import record; from qualia.workspace import Workspace;"
            f"record(Workspace.at({str(home)!r}), {PROFILE!r}, 'anonymous', 'kept after a kill', json.loads(sys.argv[1]), False);"
            "os.kill(os.getpid(), signal.SIGKILL)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, json.dumps(rows["image"])], cwd=ROOT, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == -9, done.stderr
    assert [(m["query"], m["fits"]) for m in marks(home, PROFILE)] == [("kept after a kill", False)]


def test_a_mark_that_fails_midway_leaves_nothing_and_the_next_one_is_stored(home, rows) -> None:
    ws = Workspace(home)
    with Corpus.open(ws, PROFILE) as c:
        with pytest.raises(KeyError):  # the row's modality is read after the transaction began
            c.add_mark("anonymous", "half a mark", {"id": rows["image"]["id"]}, True)
        assert c.marks() == [] and not c.db.in_transaction
        stored, new = c.add_mark("anonymous", "a whole mark", rows["image"], True)
    assert new and [m["query"] for m in marks(home, PROFILE)] == ["a whole mark"] == [stored["query"]]


def test_record_refuses_what_it_cannot_store(home, rows) -> None:
    from qualia.errors import InvalidArgument, MissingStep

    ws = Workspace(home)
    with pytest.raises(InvalidArgument):
        feedback.record(ws, PROFILE, "anonymous", " \n ", rows["image"], True)
    with pytest.raises(InvalidArgument):
        feedback.record(ws, PROFILE, "anonymous", "x" * 2001, rows["image"], True)
    with pytest.raises(MissingStep):
        feedback.record(ws, "nobody", "anonymous", "tea", rows["image"], True)
    assert not ws.profile_dir("nobody").exists()


def test_a_corpus_from_before_marks_reads_as_having_none(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    Corpus(path, tmp_path / "images").close()
    old = sqlite3.connect(path)
    old.executescript("DROP TABLE feedback; PRAGMA user_version=3;")
    old.close()
    with Corpus(path, tmp_path / "images", readonly=True) as c:
        assert c.marks() == []
    with Corpus(path, tmp_path / "images") as c:  # opened for writing, it gains the table
        assert c.marks() == [] and c.counts()["feedback"]["marks"] == 0


# -- into training ------------------------------------------------------------------------------


def _target(sha: str, modality: str = "image") -> dict[str, Any]:
    return {"id": f"img-{sha}" if modality == "image" else f"txt-{sha[:16]}", "modality": modality, "sha256": sha,
            "text": None, "item_id": None}  # fmt: skip


def test_marks_become_pairs_and_negatives_once_each_never_on_held_out_pictures(ws: Workspace) -> None:
    write_sample_corpus(ws.root)
    with Corpus.open(ws, PROFILE, readonly=True) as c:
        pairs = corpus_pairs(c)
    train, val = split_pairs(pairs, 0.2, seed=0)
    train_pictures = sorted({p.image_sha256 for p in train} - {p.image_sha256 for p in val})
    val_picture = val[0].image_sha256
    a, b, c_, d = train_pictures[:4]
    caption = next(p for p in train if p.image_sha256 == d).text
    for who, query, target, fits in [
        ("k1", "quiet morning", _target(a), True),
        ("k2", "quiet morning", _target(a), True),  # a second person agrees: still one pair
        ("k1", "quiet morning", _target(b), True),
        ("k2", "quiet morning", _target(b), False),  # ... then someone disagrees: the latest mark decides
        ("k1", "grey  sea", _target(c_, "text"), True),  # a text result: the picture it describes, at half weight
        ("k1", "quiet morning", _target(val_picture), True),  # held out with its picture
        ("k1", "anything", {"id": "txt-00", "modality": "text", "sha256": None, "text": "words", "item_id": None}, True),
        ("k1", caption, _target(d), True),  # the corpus already pairs these words with this picture
    ]:  # fmt: skip
        feedback.record(ws, PROFILE, who, query, target, fits)
    with Corpus.open(ws, PROFILE, readonly=True) as corpus:
        rows, counts = feedback.training_rows(corpus, pairs, val)
    assert counts == {"marks": 8, "pairs": 2, "negatives": 1, "held_out": 1, "unused": 2}
    got = {(r.text, r.image_sha256): r for r in rows}
    assert set(got) == {("quiet morning", a), ("quiet morning", b), ("grey sea", c_)}
    assert not got[("quiet morning", a)].negative and got[("quiet morning", a)].weight == feedback.FEEDBACK_WEIGHT
    assert got[("quiet morning", b)].negative
    assert got[("grey sea", c_)].weight == feedback.FEEDBACK_WEIGHT * feedback.TEXT_FACTOR
    assert all(r.image_path.is_file() and r.source == feedback.SOURCE for r in rows)
    assert val_picture not in {r.image_sha256 for r in rows}


def test_training_data_takes_the_marks_leaves_the_split_alone_and_stays_in_its_profile(ws: Workspace) -> None:
    from qualia.config import TrainSettings
    from qualia.train import split_for_training

    write_sample_corpus(ws.root)
    write_sample_corpus(ws.root, OTHER)
    settings = TrainSettings(backbone="qualia-tiny")
    _, train_before, val_before, _ = split_for_training(ws, PROFILE, settings)
    picture = next(p.image_sha256 for p in train_before if p.image_sha256 not in {v.image_sha256 for v in val_before})
    feedback.record(ws, PROFILE, "anonymous", "quiet morning", _target(picture), True)
    feedback.record(ws, PROFILE, "anonymous", "loud evening", _target(picture), False)
    pairs, train, val, counts = split_for_training(ws, PROFILE, settings)
    assert val == val_before  # marks never move an item across the split
    added = [p for p in train if p not in train_before]
    assert [(p.text, p.image_sha256, p.negative) for p in added] == [
        ("loud evening", picture, True), ("quiet morning", picture, False)]
    assert counts["marks"] == 2 and set(added) <= set(pairs)
    assert not {p.artifact_id for p in added} & {p.artifact_id for p in val}
    # bob has the same corpus and no marks: nothing of alice's reaches his training
    _, other_train, _, other_counts = split_for_training(ws, OTHER, settings)
    assert other_counts["marks"] == 0 and not any(p.source == feedback.SOURCE for p in other_train)


class _Identity:
    """A 'model' whose embeddings are its inputs, so the loss can be computed by hand."""

    def encode_image(self, pixels):
        return pixels

    def encode_text(self, tokens):
        return tokens.float()


def _loss(data, **kwargs) -> float:
    import torch

    from qualia.train import contrastive_loss

    return float(contrastive_loss(_Identity(), data, torch.arange(len(data.tokens)), torch.tensor(1.0),
                                  torch.device("cpu"), **kwargs))  # fmt: skip


def test_a_misfit_row_is_an_unlikelihood_term_that_grows_as_its_picture_nears_its_words() -> None:
    import torch

    from qualia.train import _Data

    def data(misfit_text: list[float]) -> _Data:
        return _Data(
            pixels=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),  # pictures i0, i1
            tokens=torch.tensor([[1.0, 0.0], misfit_text]),  # t0 fits i0; t1 does NOT fit i1
            image_of=torch.tensor([0, 1]),
            text_of=torch.tensor([0, 1]),
            weight=torch.tensor([1.0, 1.0]),
            negative=torch.tensor([False, True]),
        )

    e = math.e
    # t0 over [i0, i1] = [1, 0]: plain InfoNCE both ways; the misfit row adds nothing to i0's column
    # ... except as a text: i0 over texts [t0, t1] = [1, 0.6]
    t0 = ((math.log(e + 1) - 1) + (math.log(e + e**0.6) - 1)) / 2
    # t1 = (0.6, 0.8) over [i0, i1] = [0.6, 0.8]: -log(1 - p(i1)) = log(e^.6 + e^.8) - 0.6
    misfit = math.log(e**0.6 + e**0.8) - 0.6
    assert _loss(data([0.6, 0.8])) == pytest.approx((t0 + misfit) / 2, abs=1e-6)
    closer, farther = _loss(data([0.28, 0.96])), _loss(data([0.96, 0.28]))
    assert closer > _loss(data([0.6, 0.8])) > farther  # the nearer the misfit picture, the larger the loss
    # the gradient pushes the words away from the picture they do not fit
    words = torch.tensor([0.6, 0.8], requires_grad=True)
    batch = data([0.0, 0.0])
    from qualia.train import contrastive_loss

    class Moving(_Identity):
        def encode_text(self, tokens):
            return torch.stack([tokens[0].float(), words])

    contrastive_loss(Moving(), batch, torch.arange(2), torch.tensor(1.0), torch.device("cpu")).backward()
    step = -words.grad  # what gradient descent does to the words
    assert float(step @ torch.tensor([0.0, 1.0])) < 0  # toward i1 no more
    # as a plain pair the same row pulls its words toward the picture instead
    plain = torch.tensor([0.6, 0.8], requires_grad=True)

    class Plain(_Identity):
        def encode_text(self, tokens):
            return torch.stack([tokens[0].float(), plain])

    fitting = _Data(**{**batch.__dict__, "negative": torch.tensor([False, False])})
    contrastive_loss(Plain(), fitting, torch.arange(2), torch.tensor(1.0), torch.device("cpu")).backward()
    assert float(-plain.grad @ torch.tensor([0.0, 1.0])) > 0


def test_a_misfit_is_a_hard_negative_for_a_fitting_row_of_the_same_words() -> None:
    import torch

    from qualia.train import _Data

    data = _Data(
        pixels=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        tokens=torch.tensor([[0.6, 0.8], [0.6, 0.8]]),  # the same words, q
        image_of=torch.tensor([0, 1]),  # q fits i0; q does not fit i1
        text_of=torch.tensor([0, 0]),
        weight=torch.tensor([1.0, 1.0]),
        negative=torch.tensor([False, True]),
    )
    e = math.e
    # the fitting row: q over [i0, i1] = [0.6, 0.8], i1 unmasked; i0 over its texts: the other copy of q masked
    fitting = (math.log(e**0.6 + e**0.8) - 0.6 + 0.0) / 2
    # the misfit row: -log(1 - p(i1)) over [i0, i1]
    misfit = math.log(e**0.6 + e**0.8) - 0.6
    assert _loss(data) == pytest.approx((fitting + misfit) / 2, abs=1e-6)
    # without the mark the two rows would be two fitting pairs of one text, each the other's masked twin
    unmarked = _Data(**{**data.__dict__, "negative": torch.tensor([False, False])})
    assert _loss(unmarked) == pytest.approx(0.0, abs=1e-6)
    # text_negatives leaves the misfit row's term alone
    assert _loss(data, text_negatives=0.5) > _loss(data)
    assert _loss(_Data(**{**data.__dict__, "weight": torch.tensor([0.0, 1.0])}), text_negatives=0.5) == pytest.approx(misfit, abs=1e-6)


def test_a_misfit_with_nothing_to_rank_below_adds_nothing() -> None:
    import torch

    from qualia.train import _Data

    data = _Data(
        pixels=torch.tensor([[1.0, 0.0]]),
        tokens=torch.tensor([[1.0, 0.0], [0.6, 0.8]]),
        image_of=torch.tensor([0, 0]),  # both rows show one picture: the misfit has no other column
        text_of=torch.tensor([0, 1]),
        weight=torch.tensor([0.0, 1.0]),
        negative=torch.tensor([False, True]),
    )
    value = _loss(data)
    assert math.isfinite(value) and value == pytest.approx(0.0, abs=1e-6)


def test_the_next_training_learns_from_the_marks_and_reports_them(ws: Workspace, monkeypatch, capsys) -> None:
    """``qualia train`` (in process): the marks' pairs and negatives in its output, the adapter's data
    counts and its metrics; none in the split it holds out."""
    from qualia.cli.main import main
    from tests.test_train_eval import build_synthetic_corpus

    build_synthetic_corpus(ws, "ada", n_pins=60, n_posts=0)
    with Corpus.open(ws, "ada", readonly=True) as c:
        pairs = corpus_pairs(c)
    train, val = split_pairs(pairs, 0.2, seed=0)
    held = {p.image_sha256 for p in val}
    shas = [p.image_sha256 for p in train if p.image_sha256 not in held]
    for query, sha, fits in (("tidewater", shas[0], True), ("tidewater", shas[1], True), ("tidewater", shas[2], False),
                             ("tidewater", val[0].image_sha256, True)):  # fmt: skip
        feedback.record(ws, "ada", "anonymous", query, _target(sha), fits)
    assert main(["train", "ada", "--backbone", "qualia-tiny", "--epochs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    data = out["data"]
    assert (data["feedback_marks"], data["feedback_pairs"], data["feedback_negatives"], data["feedback_held_out"]) == (4, 2, 1, 1)
    assert data["pairs_train"] == len(train) + 3 and data["pairs_val"] == len(val)
    folder = ws.adapter("ada", out["adapter_version"])
    meta = json.loads((folder / "qualia.json").read_text())
    assert meta["data"] == data
    assert json.loads((folder / "metrics.json").read_text())["feedback"] == {
        "marks": 4, "pairs": 2, "negatives": 1, "held_out": 1, "unused": 0}
    assert not any(a.startswith(feedback.SOURCE) for a in json.loads((folder / "split.json").read_text())["val_artifacts"])
    assert out["pairs"] == len(val)  # the held-out figures are measured on the corpus's own pairs alone


def test_train_says_what_feedback_added() -> None:
    from qualia.cli.format import format_training_data

    shown = format_training_data({"pairs_train": 53, "pairs_val": 12, "feedback_marks": 4, "feedback_pairs": 2,
                                  "feedback_negatives": 1, "feedback_held_out": 1, "feedback_unused": 0})  # fmt: skip
    assert "trained on 52 pairs (2 from feedback) and 1 negatives from feedback; 12 pairs held out" in shown
    assert "4 feedback marks: 1 on held-out pictures and 0 teaching nothing new" in shown
    assert "no feedback" not in shown and "feedback marks" not in format_training_data({"pairs_train": 5})


def test_marks_never_feed_pairs_or_search(ws: Workspace) -> None:
    """A query's words become training rows only: the corpus's pairs and the index's texts stay the crawl's."""
    write_sample_corpus(ws.root)
    with Corpus.open(ws, PROFILE, readonly=True) as c:
        before = corpus_pairs(c)
        sha = before[0].image_sha256
    feedback.record(ws, PROFILE, "anonymous", "never indexed words", _target(sha), True)
    with Corpus.open(ws, PROFILE, readonly=True) as c:
        after = corpus_pairs(c)
    assert after == before and "never indexed words" not in {p.text for p in after}
