"""qualia.index: what gets embedded, that search finds it, and that a bad or half-written index is never used."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from qualia import workspace
from qualia.corpus import Corpus
from qualia.embed import open_image
from qualia.errors import CorruptIndex, InvalidArgument, NotEnoughData
from qualia.index import (
    INDEX_FILE,
    MANIFEST_FILE,
    ROWS_FILE,
    TEXT_INDEX_FILE,
    ProfileIndex,
    build_index,
    index_kind,
    new_faiss_index,
    sha256_file,
)
from qualia.pairs import corpus_pairs
from qualia.workspace import Workspace
from tests.helpers import (
    PROFILE,
    ROOT,
    SHARED_FIRST_URL,
    SHARED_SECOND_URL,
    SampleCorpus,
    open_corpus,
    write_sample_corpus,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from qualia.backbone import load_backbone
    from qualia.embed import Encoder

    home = tmp_path_factory.mktemp("index-home")
    sample = write_sample_corpus(home)
    encoder = Encoder.load(load_backbone("qualia-tiny"))
    ws = Workspace(home)
    folder = build_index(ws, PROFILE, encoder, None)
    yield {"home": home, "ws": ws, "sample": sample, "encoder": encoder, "folder": folder,
           "index": ProfileIndex.load(folder)}


def test_index_holds_each_picture_once_and_each_text(built: dict[str, Any]) -> None:
    sample: SampleCorpus = built["sample"]
    index: ProfileIndex = built["index"]
    manifest = index.manifest
    assert built["ws"].latest_index(PROFILE) == built["folder"]
    assert manifest["count_by_modality"]["image"] == sample.unique_images == 27  # 28 URLs, one picture twice
    assert manifest["count"] == len(index) == manifest["count_by_modality"]["image"] + manifest["count_by_modality"]["text"]
    # one FAISS file per modality, each with its checksum; row numbers run on from the pictures to the texts
    assert manifest["layout"] == "per_modality" and "checksum" not in manifest
    assert manifest["rows"] == {"image": [0, 27], "text": [27, manifest["count"]]}
    for modality, name in (("image", INDEX_FILE), ("text", TEXT_INDEX_FILE)):
        assert manifest["files"][modality] == {"file": name, "checksum": sha256_file(built["folder"] / name)}
        assert index.indexes[modality].ntotal == manifest["count_by_modality"][modality]
    assert manifest["dim"] == built["encoder"].dim
    assert manifest["backbone"] == "qualia-tiny"
    assert manifest["weights_sha256"] == built["encoder"].backbone.weights_sha256
    assert manifest["adapter_version"] is None
    ids = [row["id"] for row in index.rows]
    assert len(ids) == len(set(ids))
    texts = {row["text"] for row in index.rows if row["modality"] == "text"}
    assert "shell 4, drawn at dawn. a sketch of shell 4" in texts  # a body figure: caption, then alt
    # The post without pictures is still findable by its words.
    assert "A letter without pictures. only words today" in texts


def test_pictures_are_embedded_with_the_words_training_paired_them_with(built: dict[str, Any]) -> None:
    with open_corpus(built["ws"], PROFILE) as corpus:
        pairs = {(p.text, p.image_sha256) for p in corpus_pairs(corpus)}
    image_rows = [row for row in built["index"].rows if row["modality"] == "image"]
    assert image_rows and all(row["text"] for row in image_rows)
    assert [row["id"] for row in image_rows if (row["text"], row["sha256"]) not in pairs] == []


def test_picture_seen_twice_keeps_first_url_and_lowest_degree(built: dict[str, Any]) -> None:
    sha = built["sample"].sha_by_url[SHARED_FIRST_URL]
    assert built["sample"].sha_by_url[SHARED_SECOND_URL] == sha
    row = built["index"].row(f"img-{sha}")
    assert row is not None
    assert row["image_url"] == SHARED_FIRST_URL
    assert row["degree"] == 1  # the degree-1 post shows it, though a degree-2 pin found it first
    assert row["item_id"] == "substack:post:3"
    assert row["source_url"] == "http://127.0.0.1:9/fieldnotes/p/post-3"
    # the degree-1 sighting's words (a body figure: caption, then alt), not the degree-2 pin's title
    assert row["text"] == "a picture seen twice. the shared picture"


def test_picture_queried_by_its_own_embedding_comes_first(built: dict[str, Any]) -> None:
    encoder, index = built["encoder"], built["index"]
    with open_corpus(built["ws"], PROFILE) as corpus:
        occurrences = corpus.image_occurrences()
    for occ in occurrences[:: max(1, len(occurrences) // 5)]:
        query = encoder.encode_images([open_image(occ.image_path)])[0]
        hits = index.search(query, k=3, modality="image")
        assert hits[0]["id"] == f"img-{occ.sha256}"
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert set(hits[0]) == {"id", "modality", "score", "text", "image_url", "source", "source_url", "degree",
                                "sha256"}  # fmt: skip
        assert hits[0]["sha256"] == occ.sha256


def test_modality_filter_and_order(built: dict[str, Any]) -> None:
    index: ProfileIndex = built["index"]
    query = built["encoder"].encode_texts(["a rock pool with anemones"])[0]
    everything = index.search(query, k=1000, modality="any")
    assert len(everything) == len(index)
    scores = [h["score"] for h in everything]
    assert scores == sorted(scores, reverse=True)
    images = index.search(query, k=1000, modality="image")
    texts = index.search(query, k=5, modality="text")
    assert len(images) == index.manifest["count_by_modality"]["image"]
    assert {h["modality"] for h in images} == {"image"}
    assert len(texts) == 5 and {h["modality"] for h in texts} == {"text"}
    # a text row queried by its own embedding comes first among the texts
    some_text = next(r["text"] for r in index.rows if r["modality"] == "text")
    own = index.search(built["encoder"].encode_texts([some_text])[0], k=1, modality="text")[0]
    assert own["text"] == some_text and own["score"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(InvalidArgument, match="modality"):
        index.search(query, modality="video")
    with pytest.raises(InvalidArgument, match="dim"):
        index.search(np.ones(3, dtype=np.float32))


def test_ids_are_stable_across_rebuilds(built: dict[str, Any]) -> None:
    again = build_index(built["ws"], PROFILE, built["encoder"], None)
    try:
        assert again.name > built["folder"].name
        assert built["ws"].latest_index(PROFILE) == again
        assert [r["id"] for r in ProfileIndex.load(again).rows] == [r["id"] for r in built["index"].rows]
    finally:
        shutil.rmtree(again)


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


FAISS_FILES = pytest.mark.parametrize(("modality", "name"), [("image", INDEX_FILE), ("text", TEXT_INDEX_FILE)])


@FAISS_FILES
def test_corrupt_faiss_file_is_refused(built: dict[str, Any], tmp_path: Path, modality: str, name: str) -> None:
    folder = _copy(built["folder"], tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(CorruptIndex, match=f"{name} does not match the checksum"):
        ProfileIndex.load(folder)


@FAISS_FILES
def test_truncated_faiss_file_with_matching_checksum_is_refused(built: dict[str, Any], tmp_path: Path, modality: str,
                                                                name: str) -> None:  # fmt: skip
    folder = _copy(built["folder"], tmp_path)
    (folder / name).write_bytes((folder / name).read_bytes()[:100])
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][modality]["checksum"] = sha256_file(folder / name)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndex, match=f"FAISS cannot read {name}"):
        ProfileIndex.load(folder)


@pytest.mark.parametrize("name", [ROWS_FILE, INDEX_FILE, TEXT_INDEX_FILE])
def test_missing_pieces_are_refused(built: dict[str, Any], tmp_path: Path, name: str) -> None:
    folder = _copy(built["folder"], tmp_path)
    (folder / name).unlink()
    with pytest.raises(CorruptIndex, match=f"missing {name}"):
        ProfileIndex.load(folder)
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(CorruptIndex, match="manifest"):
        ProfileIndex.load(folder)


def test_files_swapped_between_modalities_are_refused(built: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(built["folder"], tmp_path)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["count_by_modality"]["image"] != manifest["count_by_modality"]["text"]
    manifest["files"]["image"], manifest["files"]["text"] = manifest["files"]["text"], manifest["files"]["image"]
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndex, match=f"{TEXT_INDEX_FILE} holds {manifest['count_by_modality']['text']} vectors"):
        ProfileIndex.load(folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [({"layout": "one_file_per_row"}, "unknown layout"),
     ({"files": {"image": {"file": "../index.faiss", "checksum": ""}}}, "names no file and checksum for its image rows"),
     ({"files": None}, "names no file"),
     ({"rows": {"image": [0, 5], "text": [6, 9]}}, "row ranges"),
     ({"rows": {"text": [0, 5], "image": [5, 9]}}, "row ranges")],
)
def test_a_manifest_that_misplaces_the_files_or_rows_is_refused(built: dict[str, Any], tmp_path: Path,
                                                                damage: dict[str, Any], message: str) -> None:  # fmt: skip
    folder = _copy(built["folder"], tmp_path)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    (folder / MANIFEST_FILE).write_text(json.dumps({**manifest, **damage}))
    with pytest.raises(CorruptIndex, match=message):
        ProfileIndex.load(folder)
    del manifest["files"]
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndex, match="lacks dim, count, files or rows"):
        ProfileIndex.load(folder)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads Linux's list of this process's mapped files")
def test_every_faiss_file_is_memory_mapped_read_only(built: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(built["folder"], tmp_path).resolve()  # files no other test has mapped
    index = ProfileIndex.load(folder)
    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines()]
    mapped = {(Path(f[5]).name, f[1]) for f in maps if len(f) >= 6 and Path(f[5]).parent == folder}
    assert mapped == {(INDEX_FILE, "r--s"), (TEXT_INDEX_FILE, "r--s")}  # read-only, shared with other processes
    assert len(index) == built["index"].manifest["count"]


def test_empty_corpus_is_a_clear_error(built: dict[str, Any], tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    Corpus.open(ws, "empty").close()
    with pytest.raises(NotEnoughData, match="nothing to index"):
        build_index(ws, "empty", built["encoder"], None)
    assert ws.latest_index("empty") is None


KILL_MID_WRITE = """
import os, signal, sys
from pathlib import Path
import faiss
from qualia.backbone import load_backbone
from qualia.embed import Encoder
from qualia import index
from qualia.workspace import Workspace

real_write = faiss.write_index
def write_then_die(ix, path):
    real_write(ix, path)
    with open(path, "r+b") as f:  # leave a half-written file behind, then die as with kill -9
        f.truncate(os.path.getsize(path) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
faiss.write_index = write_then_die
index.build_index(Workspace(Path(sys.argv[2])), sys.argv[1], Encoder.load(load_backbone("qualia-tiny")), None)
"""


@pytest.mark.slow  # a fresh process imports torch and loads the backbone
def test_killed_mid_write_leaves_no_visible_version(built: dict[str, Any]) -> None:
    home, ws, profile = built["home"], built["ws"], "killed"
    shutil.copytree(ws.profile_dir(PROFILE), ws.profile_dir(profile), ignore=shutil.ignore_patterns("index"))
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, profile, str(home)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    debris = list(ws.index_dir(profile).iterdir())
    assert debris and all(p.name.startswith(".") for p in debris)  # it did get as far as writing
    assert ws.latest_index(profile) is None
    assert workspace.versions(ws.index_dir(profile)) == []
    # the next write clears what the killed one left (its writer is gone)
    rebuilt = build_index(ws, profile, built["encoder"], None)
    assert [p.name for p in ws.index_dir(profile).iterdir()] == [rebuilt.name]


def test_centered_index_records_its_means_and_centers_queries_the_same_way(built: dict[str, Any]) -> None:
    encoder = built["encoder"]
    folder = build_index(built["ws"], PROFILE, encoder, None, centering=True)
    index = ProfileIndex.load(folder)
    means = index.manifest["centering"]
    assert set(means) == {"image", "text"} and all(len(v) == index.dim for v in means.values())
    assert built["index"].manifest["centering"] is None
    with open_corpus(built["ws"], PROFILE) as corpus:
        occurrence = corpus.image_occurrences()[0]
    raw = encoder.encode_images([open_image(occurrence.image_path)])[0]
    query = index.query_vector(raw, "image")
    expected = raw - np.asarray(means["image"], dtype=np.float32)
    assert query == pytest.approx(expected / np.linalg.norm(expected), abs=1e-5)
    hits = index.search(query, k=1, modality="image")
    assert hits[0]["id"] == f"img-{occurrence.sha256}" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    # the centered rows have their modality's centre at the origin: the two clouds share a centre
    pictures = index.indexes["image"].reconstruct_n(0, index.indexes["image"].ntotal)
    assert np.linalg.norm(pictures.mean(0)) < np.linalg.norm(np.asarray(means["image"]))


@pytest.mark.parametrize(
    ("key", "damage"),
    [("centering", {"image": [0.0, 1.0], "text": [0.0]}),
     ("calibration", {"text": {"image": "high"}}),
     ("calibration", {"text": {"image": 0.1, "text": 0.0}})],  # no entry for picture queries
)
def test_damaged_centering_or_calibration_is_refused(built: dict[str, Any], tmp_path: Path, key: str, damage: Any) -> None:
    copy = tmp_path / "idx"
    shutil.copytree(built["folder"], copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest[key] = damage
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndex, match=key):
        ProfileIndex.load(copy)


def test_calibrated_index_lets_pictures_into_a_search_over_both(built: dict[str, Any]) -> None:
    encoder = built["encoder"]
    plain: ProfileIndex = built["index"]
    folder = build_index(built["ws"], PROFILE, encoder, None, calibration=True)
    index = ProfileIndex.load(folder)
    bias = index.manifest["calibration"]
    assert set(bias) == {"image", "text"} and bias["text"]["text"] == 0.0 and bias["image"]["image"] == 0.0
    assert plain.manifest["calibration"] is None
    query = encoder.encode_texts(["a quiet morning"])[0]
    k = 10
    uncalibrated = index.search(query, k=k, modality="any")  # no query modality: plain scores
    assert uncalibrated == plain.search(query, k=k, modality="any", query_modality="text")
    mixed = index.search(query, k=k, modality="any", query_modality="text")
    pictures = index.search(query, k=k, modality="image")
    texts = index.search(query, k=k, modality="text")
    # the calibrated merge is exactly: each modality's best k, pictures shifted by the bias, best first
    expected = sorted([(r["score"] + bias["text"]["image"], r["id"]) for r in pictures]
                      + [(r["score"], r["id"]) for r in texts], key=lambda hit: -hit[0])[:k]
    assert [r["id"] for r in mixed] == [i for _, i in expected]
    assert [r["score"] for r in mixed] == pytest.approx([s for s, _ in expected], abs=1e-6)
    assert sum(r["modality"] == "image" for r in mixed) > sum(r["modality"] == "image" for r in uncalibrated)
    # a one-modality search is never shifted
    assert index.search(query, k=k, modality="image", query_modality="text") == pictures


@pytest.mark.slow
def test_search_right_after_a_crawl_with_the_base_alone(ws: Workspace) -> None:
    from tests.helpers import run_qualia

    write_sample_corpus(ws.root)
    refused = run_qualia("index", PROFILE, "--backbone", "qualia-tiny")
    assert refused.returncode != 0 and "adapter none" in refused.stderr
    out = run_qualia("index", PROFILE, "--adapter", "none", "--backbone", "qualia-tiny", "--json")
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert manifest["adapter_version"] is None and manifest["backbone"] == "qualia-tiny"
    assert manifest["centering"] is not None  # the base's default, as measured
    found = run_qualia("search", PROFILE, "tide pool", "--k", "3", "--json")
    assert found.returncode == 0, found.stderr
    body = json.loads(found.stdout)
    assert len(body["results"]) == 3


@pytest.fixture(scope="module")
def graphs(built: dict[str, Any]) -> ProfileIndex:
    """The sample profile's index over the threshold (one row): an HNSW graph per modality; calibrated."""
    return ProfileIndex.load(build_index(built["ws"], PROFILE, built["encoder"], None, calibration=True, hnsw_threshold=1))


def _queries(built: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    with open_corpus(built["ws"], PROFILE) as corpus:
        occurrences = corpus.image_occurrences()
    texts = built["encoder"].encode_texts(["a rock pool", "fog over the harbour", "a red kite", "tea"])
    pictures = built["encoder"].encode_images([open_image(o.image_path) for o in occurrences[::9]])
    return [("text", q) for q in texts] + [("image", q) for q in pictures]


def test_an_index_over_the_threshold_has_a_graph_per_modality_that_finds_what_the_exact_scan_finds(
    built: dict[str, Any], graphs: ProfileIndex
) -> None:
    flat: ProfileIndex = built["index"]
    assert flat.manifest["index_type"] == "IndexFlatIP"
    assert graphs.manifest["index_type"] == "IndexHNSWFlat" and graphs.manifest["hnsw"]["ef_search"] >= 10
    assert {m: type(ix).__name__ for m, ix in graphs.indexes.items()} == {"image": "IndexHNSWFlat", "text": "IndexHNSWFlat"}
    assert graphs.rows.ids == flat.rows.ids
    for query_modality, query in _queries(built):
        for modality, k in (("any", 10), ("image", 10), ("text", 10), ("any", 1000), ("image", 1000), ("text", 3)):
            exact = flat.search(query, k=k, modality=modality)
            found = graphs.search(query, k=k, modality=modality)  # no query modality: plain scores
            _same(found, exact)
            assert all(r["modality"] == modality for r in found if modality != "any")
        # calibrated: each modality's best 10 through its own graph, shifted by the bias, best first
        bias = graphs.manifest["calibration"][query_modality]
        expected = sorted([(r["score"] + bias[r["modality"]], r["id"]) for m in ("image", "text")
                           for r in flat.search(query, k=10, modality=m)], key=lambda hit: -hit[0])[:10]  # fmt: skip
        mixed = graphs.search(query, k=10, modality="any", query_modality=query_modality)
        assert [r["id"] for r in mixed] == [i for _, i in expected]
        assert [r["score"] for r in mixed] == pytest.approx([s for s, _ in expected], abs=1e-5)


def test_stored_vector_reads_an_image_row_and_a_text_row_from_their_own_files(built: dict[str, Any],
                                                                              graphs: ProfileIndex) -> None:  # fmt: skip
    from qualia.search import ProfileSearcher

    encoder, flat = built["encoder"], built["index"]
    with open_corpus(built["ws"], PROFILE) as corpus:
        occurrence = corpus.image_occurrences()[0]
    picture = f"img-{occurrence.sha256}"
    words = next(r for r in flat.rows if r["modality"] == "text")
    assert flat.rows.position[picture] < graphs.manifest["rows"]["text"][0] <= flat.rows.position[words["id"]]
    for index in (flat, graphs):  # exact and graphs, each memory-mapped: the vectors the encoder made (not centered)
        assert index.stored_vector(picture) == pytest.approx(encoder.encode_images([open_image(occurrence.image_path)])[0],
                                                             abs=1e-5)  # fmt: skip
        assert index.stored_vector(words["id"]) == pytest.approx(encoder.encode_texts([words["text"]])[0], abs=1e-5)
    for row in (picture, words["id"]):
        like = ProfileSearcher(PROFILE, graphs, encoder).search_like(row, k=3)
        assert len(like) == 3 and row not in {r["id"] for r in like}


def _same(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same rows in the same order, with the same scores (up to how FAISS sums them)."""
    assert [r["id"] for r in found] == [r["id"] for r in expected]
    assert [r["score"] for r in found] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert [{**r, "score": 0} for r in found] == [{**r, "score": 0} for r in expected]


def _written_before_the_split(index: ProfileIndex, target: Path, graph: bool) -> Path:
    """``index`` as an index was written before the split: one index.faiss of every row, pictures first,
    flat or one HNSW graph, its checksum the manifest's ``checksum``; no ``layout`` or ``files``."""
    shutil.copytree(index.folder, target)
    vectors = np.concatenate([index.indexes[m].reconstruct_n(0, index.indexes[m].ntotal) for m in ("image", "text")])
    kind = index_kind(len(vectors), hnsw_threshold=1 if graph else len(vectors) + 1)
    faiss.write_index(new_faiss_index(vectors, kind), str(target / INDEX_FILE))
    (target / TEXT_INDEX_FILE).unlink()
    manifest = {k: v for k, v in index.manifest.items() if k not in ("layout", "files", "index_type", "hnsw")}
    (target / MANIFEST_FILE).write_text(json.dumps({**manifest, **kind, "checksum": sha256_file(target / INDEX_FILE)}))
    return target


@pytest.mark.parametrize("graph", [False, True], ids=["flat", "graph"])
def test_an_index_written_before_the_split_loads_and_searches_as_it_did(built: dict[str, Any], graphs: ProfileIndex,
                                                                        tmp_path: Path, graph: bool) -> None:  # fmt: skip
    old = ProfileIndex.load(_written_before_the_split(graphs, tmp_path / "old", graph))
    assert set(old.indexes) == {"any"} and old.indexes["any"].ntotal == len(old) == len(graphs)
    assert type(old.indexes["any"]).__name__ == ("IndexHNSWFlat" if graph else "IndexFlatIP")
    flat: ProfileIndex = built["index"]
    for query_modality, query in _queries(built):
        for modality in ("image", "text"):  # an exact scan of that modality's rows, in a graph's own storage too
            _same(old.search(query, k=10, modality=modality), flat.search(query, k=10, modality=modality))
        exact = [r["id"] for r in flat.search(query, k=10)]
        found = [r["id"] for r in old.search(query, k=10)]  # through the graph over both, as before
        assert found == exact if not graph else len(set(found) & set(exact)) >= 9
        _same(old.search(query, k=10, query_modality=query_modality), graphs.search(query, k=10, query_modality=query_modality))
    for row in (old.rows.ids[0], old.rows.ids[-1]):  # a picture, a text
        assert old.stored_vector(row) == pytest.approx(graphs.stored_vector(row), abs=1e-6)
    # Its one file is still checked against the manifest's checksum, and required. (Let go of the mapping
    # before rewriting the file: a mapped file cut short faults the process that reads it.)
    folder = old.folder
    del old
    data = bytearray((folder / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / INDEX_FILE).write_bytes(bytes(data))
    with pytest.raises(CorruptIndex, match=f"{INDEX_FILE} does not match the checksum"):
        ProfileIndex.load(folder)
    (folder / INDEX_FILE).unlink()
    with pytest.raises(CorruptIndex, match=f"missing {INDEX_FILE}"):
        ProfileIndex.load(folder)


def test_rows_are_parsed_when_asked_for_and_read_back_as_written() -> None:
    from qualia.index import Rows

    written = [{"id": "img-1", "text": None, "n": 1}, {"id": "txt-2", "text": "thé au lait\nà l'aube", "n": 2},
               {"id": "txt-3", "text": "", "n": 3}]  # fmt: skip
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in written).encode() + b"\n\n"
    rows = Rows(b"\n" + data.replace(b"\n{\"id\": \"txt-3\"", b"\n  \n{\"id\": \"txt-3\""))  # blank lines between
    assert len(rows) == 3 and rows.ids == ["img-1", "txt-2", "txt-3"]
    assert list(rows) == written and rows[-1] == written[-1] and rows[1:] == written[1:]
    assert rows.get("txt-2") == written[1] and rows.get("txt-9") is None
    assert Rows(data.rstrip(b"\n")).ids == rows.ids  # no newline at the end
    with pytest.raises(ValueError):
        Rows(b'{"id": "img-1"}\n{"id": \n')
