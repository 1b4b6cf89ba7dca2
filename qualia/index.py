"""The search index: a profile's corpus embedded by backbone + adapter, in FAISS.

One version folder ``profiles/<p>/index/<ver>/`` holds
  index.faiss       the picture rows' L2-normalized vectors (inner product = cosine)
  index.text.faiss  the text rows' vectors, the same way
                    Both are IndexFlatIP (exact) below ``HNSW_THRESHOLD`` rows in all, IndexHNSWFlat (a
                    graph: sub-linear search) from there on, as the manifest's ``index_type`` says. One file
                    per modality, because across the modality gap a graph over both cannot answer a search
                    within one: a text query's neighbourhood holds only texts. Each modality's own graph
                    answers a search within it, and a search over both merges the best of each. Read
                    memory-mapped and read-only: processes serving one workspace share their pages
  rows.jsonl        one JSON record per row: {id, modality, text, image_url, source, source_url, degree,
                    sha256, item_id}; picture rows first, then text rows, so a row's number is its place in
                    its modality's file plus that modality's first row (the manifest's ``rows``)
  manifest.json     what built it (faiss version, backbone, base-weights checksum, adapter version or
                    null for the base alone), dim, counts, centering, the ``layout`` ("per_modality") with
                    each modality's file and its checksum (``files``), and the checksum of the rows file

An index written before the files were split (a manifest without ``layout``) keeps its one
``index.faiss`` of every row, pictures first, with its checksum as the manifest's ``checksum``: it loads
and searches as it always did (a search within one modality of its graph scans that modality's rows
exactly).

Centering. A text query scores other texts far above any picture (the modality gap), so a search
over both returns only texts. With centering on, each modality's mean vector over the corpus is
subtracted from its rows before normalizing, and from a query of that modality at search time
(``ProfileIndex.query_vector``): the two clouds then share a centre. Whether an index centers is
chosen from the adapter's held-out evaluation (``mixed`` vs ``mixed_centered``, see
``qualia.evaluate``, with calibration below) and recorded with both means in the manifest, so every reader (CLI, service)
queries the index the way it was built.

Calibration. Centering brings the clouds together, but a text query's best texts still outscore its
best pictures: in a search over both, pictures would only fill the leftovers. A calibrated index adds,
for each query modality, one number to the other modality's scores: the difference between the mean
of the ``CALIBRATION_K`` best scores each modality gets from the corpus's own rows as queries
(``modality_bias``). The best picture and the best text then compete on equal terms, and a picture
close to the query is not pushed out by many texts a little closer. It changes only ``any`` searches
(``ProfileIndex.search``), and is chosen like centering and recorded beside it as ``calibration``.

Row ids are stable across rebuilds and safe in a URL path: ``img-<sha256>`` for a picture,
``txt-<first 16 hex of sha256(text)>`` for a text unit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import faiss
import numpy as np
from PIL import Image

from qualia import text, workspace
from qualia.corpus import Corpus
from qualia.errors import CorruptIndex, InvalidArgument, InvalidImage, NotEnoughData, NotFound
from qualia.pairs import corpus_pairs, described_occurrences
from qualia.progress import bar

if TYPE_CHECKING:
    from qualia.embed import Encoder

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"  # the picture rows; in an index written before the split, every row
TEXT_INDEX_FILE = "index.text.faiss"
ROWS_FILE = "rows.jsonl"
MANIFEST_FILE = "manifest.json"
MODALITIES = ("image", "text", "any")
ROW_MODALITIES = ("image", "text")  # in row order
PER_MODALITY = "per_modality"  # the manifest's ``layout``: one FAISS file per row modality
MODALITY_FILES = {"image": INDEX_FILE, "text": TEXT_INDEX_FILE}
BATCH = 32


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_id(text: str) -> str:
    return "txt-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def image_id(sha256: str) -> str:
    return "img-" + sha256


# -- collecting what to embed ---------------------------------------------------------------------


@dataclass
class _Row:
    id: str
    modality: str
    text: str | None
    image_url: str | None
    source: str
    source_url: str | None
    degree: int
    sha256: str | None
    item_id: str
    rank: tuple = ()  # ordering key while choosing the best occurrence; not written
    image_path: Path | None = None

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "modality": self.modality,
            "text": self.text,
            "image_url": self.image_url,
            "source": self.source,
            "source_url": self.source_url,
            "degree": self.degree,
            "sha256": self.sha256,
            "item_id": self.item_id,
        }


def _image_rows(corpus: Corpus, first_url: dict[str, str]) -> list[_Row]:
    best: dict[str, _Row] = {}
    degree: dict[str, int] = {}
    # The words shown with a picture are the words training paired it with (the text policy's).
    for occ, texts in described_occurrences(corpus):
        words = texts[0][0] if texts else ""
        degree[occ.sha256] = min(degree.get(occ.sha256, occ.degree), occ.degree)
        # Lowest degree first (closest to the person), then a sighting that has words.
        rank = (occ.degree, not words, occ.item_id, occ.position)
        current = best.get(occ.sha256)
        if current is None or rank < current.rank:
            best[occ.sha256] = _Row(
                id=image_id(occ.sha256),
                modality="image",
                text=words or None,
                image_url=first_url.get(occ.sha256, occ.image_url),
                source=occ.source,
                source_url=occ.item_url,
                degree=occ.degree,
                sha256=occ.sha256,
                item_id=occ.item_id,
                rank=rank,
                image_path=occ.image_path,
            )
    rows = []
    for sha in sorted(best):
        row = best[sha]
        row.degree = degree[sha]
        if not row.image_path or not row.image_path.is_file():
            log.warning("image %s is in the corpus but its file %s is missing; skipped", sha, row.image_path)
            continue
        rows.append(row)
    return rows


def _text_rows(corpus: Corpus, first_url: dict[str, str]) -> list[_Row]:
    items = {row["id"]: row for row in corpus.items()}
    best: dict[str, _Row] = {}

    def offer(words: str, item_id: str, degree: int, sha256: str | None) -> None:
        item = items.get(item_id)
        if not words or item is None:
            return
        rank = (degree, item_id)
        current = best.get(words)
        if current is None or rank < current.rank:
            best[words] = _Row(
                id=text_id(words),
                modality="text",
                text=words,
                # The picture this text accompanies, if any: lets a result grid show it.
                image_url=first_url.get(sha256) if sha256 else None,
                source=item["source"],
                source_url=item["url"],
                degree=degree,
                sha256=sha256,
                item_id=item_id,
                rank=rank,
            )

    paired: set[str] = set()
    for pair in corpus_pairs(corpus):
        paired.add(pair.artifact_id)
        offer(pair.text, pair.artifact_id, pair.degree, pair.image_sha256)
    # Posts and pins that showed no stored picture still carry words worth finding.
    for item_id, item in items.items():
        if item_id in paired or item["kind"] not in ("post", "pin"):
            continue
        offer(text.item_words(item["title"], item["text"]), item_id, item["degree"], None)
    return [best[t] for t in sorted(best, key=lambda t: best[t].id)]


# -- building -------------------------------------------------------------------------------------


def _batches(seq: list, size: int) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _readable(batch: list[_Row]) -> tuple[list[_Row], list[Image.Image]]:
    """The rows of ``batch`` whose stored picture can be read, with their pictures; the others are logged."""
    from qualia.embed import open_image

    kept, pictures = [], []
    for row in batch:
        try:
            pictures.append(open_image(row.image_path))
            kept.append(row)
        except (InvalidImage, NotFound) as e:
            log.warning("not indexing picture %s: %s", row.sha256[:12], e)
    return kept, pictures


def _embed(rows: list[_Row], encoder: Encoder, progress: bool) -> tuple[list[_Row], np.ndarray]:
    """(the rows embedded, their (n, dim) float32 L2-normalized vectors); rows are all of one modality.
    A picture that cannot be read is left out of the index, not allowed to stop it."""
    if not rows:
        return [], np.zeros((0, encoder.dim), dtype=np.float32)
    modality = rows[0].modality
    kept, chunks = [], [np.zeros((0, encoder.dim), dtype=np.float32)]
    for batch in bar(_batches(rows, BATCH), enabled=progress, desc=f"embedding {modality}s", total=-(-len(rows) // BATCH),
                     leave=False):  # fmt: skip
        if modality == "image":
            batch, pictures = _readable(batch)
            chunks.append(encoder.encode_images(pictures))
        else:
            chunks.append(encoder.encode_texts([r.text for r in batch]))
        kept += batch
    vectors = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    faiss.normalize_L2(vectors)
    return kept, vectors


BASE_ONLY = "none"  # ``--adapter none``: index with the backbone alone


# (centering, calibration) -> the evaluation key measuring mixed search that way
MIXED_VARIANTS = {
    (False, False): "mixed",
    (True, False): "mixed_centered",
    (False, True): "mixed_calibrated",
    (True, True): "mixed_centered_calibrated",
}


def mixed_key(manifest: dict[str, Any]) -> str:
    """The evaluation key that measured mixed search the way this index searches."""
    return MIXED_VARIANTS[(bool(manifest.get("centering")), bool(manifest.get("calibration")))]


def describe_mixed(manifest: dict[str, Any]) -> str:
    """How the index treats a search over both modalities, in words."""
    done = [word for word, key in (("centered per modality", "centering"), ("calibrated", "calibration")) if manifest.get(key)]
    return " and ".join(done) or "neither centered nor calibrated"


def choose_mixed(evaluation: dict[str, Any] | None) -> tuple[bool, bool]:
    """(centering, calibration): whichever way the held-out mixed search did best, by recall@10 first,
    then the share of pictures (ties go to the later, more corrected, variant). No evaluation (the base
    alone): both, as measured in docs/benchmarks.md."""
    measured = [(evaluation[key]["r10"], evaluation[key]["image_share"], choice)
                for choice, key in MIXED_VARIANTS.items() if evaluation and key in evaluation]  # fmt: skip
    if not measured:
        return True, True
    return max(reversed(measured), key=lambda m: (m[0], m[1]))[2]


CALIBRATION_K = 10
CALIBRATION_QUERIES = 256  # rows of each modality used as queries; evenly spaced, so the same every build


def modality_bias(image_vectors: np.ndarray, text_vectors: np.ndarray, k: int = CALIBRATION_K) -> dict[str, dict[str, float]] | None:
    """``{query modality: {row modality: bias}}``: what to add to each row modality's scores so that,
    for rows of each modality used as queries, the mean of the ``k`` best scores is the same in both
    modalities (0 for the query's own modality). A row never counts as its own match. None when a
    modality is empty. (n, d) unit vectors in, as searched."""
    if not len(image_vectors) or not len(text_vectors):
        return None
    by_modality = {"image": np.asarray(image_vectors, np.float32), "text": np.asarray(text_vectors, np.float32)}
    bias: dict[str, dict[str, float]] = {}
    for query_modality, rows in by_modality.items():
        picked = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), CALIBRATION_QUERIES)).astype(int))
        level = {}
        for row_modality, gallery in by_modality.items():
            sim = rows[picked] @ gallery.T  # (n_queries, n_rows)
            if row_modality == query_modality:
                sim[np.arange(len(picked)), picked] = -np.inf
            top = min(k, sim.shape[1] - (row_modality == query_modality))
            level[row_modality] = float(np.sort(sim, axis=1)[:, sim.shape[1] - top:].mean()) if top > 0 else 0.0
        bias[query_modality] = {m: level[query_modality] - level[m] for m in by_modality}
    return bias


def index_profile(
    ws: workspace.Workspace,
    profile: str,
    adapter_version: str | None = None,
    progress: bool = False,
    backbone: str | None = None,
    pretrained: str | None = None,
    centering: bool | None = None,
    calibration: bool | None = None,
) -> Path:
    """Build a new index of ``profile`` with the backbone and adapter ``adapter_version`` (None: newest)
    were trained on, or with ``backbone``/``pretrained`` alone when ``adapter_version`` is ``"none"``;
    ``centering`` and ``calibration`` None choose by the adapter's evaluation. Returns the new version folder."""
    from qualia.backbone import load_backbone
    from qualia.config import DEFAULT_BACKBONE
    from qualia.embed import Encoder
    from qualia.lora import usable_adapter

    ws.require(profile, "corpus")
    if adapter_version == BASE_ONLY:
        encoder = Encoder.load(load_backbone(backbone or DEFAULT_BACKBONE, pretrained))
        evaluation, adapter_name = None, None
    else:
        adapter, meta = usable_adapter(ws, profile, adapter_version)
        encoder = Encoder.load(load_backbone(meta["backbone"], meta.get("pretrained")), adapter, trunk_cache=ws.trunk_cache_dir)
        adapter_name = adapter.name
        try:
            evaluation = json.loads((adapter / "metrics.json").read_text()).get("adapter")
        except (OSError, ValueError):
            evaluation = None
    chosen = choose_mixed(evaluation)
    centering = chosen[0] if centering is None else centering
    calibration = chosen[1] if calibration is None else calibration
    return build_index(ws, profile, encoder, adapter_name, progress=progress, centering=centering,
                       calibration=calibration)


# Rows of both modalities together: a search over both scans them all in an exact index, so their total
# is what makes it slow. Above it every modality gets a graph, a small one beside a large one too: a
# graph of a few thousand rows answers about as fast as scanning them (docs/benchmarks.md).
HNSW_THRESHOLD = 50_000  # rows; below it an exact scan takes a few milliseconds (docs/benchmarks.md)
HNSW_M = 32  # graph neighbours per node
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128  # candidates a search keeps (at least k); recall@10 against exact in docs/benchmarks.md


def index_kind(rows: int, hnsw_threshold: int = HNSW_THRESHOLD) -> dict[str, Any]:
    """What the manifest records of the FAISS files of an index of ``rows`` rows in all: exact below
    ``hnsw_threshold``, HNSW graphs from there on."""
    if rows < hnsw_threshold:
        return {"index_type": "IndexFlatIP"}
    return {"index_type": "IndexHNSWFlat",
            "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}}


def new_faiss_index(vectors: np.ndarray, kind: dict[str, Any]) -> faiss.Index:
    """(n, dim) unit vectors in a FAISS index of the ``kind`` that ``index_kind`` chose."""
    dim = vectors.shape[1]
    if kind["index_type"] == "IndexFlatIP":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, int(kind["hnsw"]["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(kind["hnsw"]["ef_construction"])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def modality_indexes(
    vectors: dict[str, np.ndarray], hnsw_threshold: int = HNSW_THRESHOLD
) -> tuple[dict[str, faiss.Index], dict[str, Any]]:
    """({modality: its FAISS index}, what the manifest records of them) for each row modality's (n, dim)
    unit vectors; exact or graphs by the rows of all modalities together."""
    kind = index_kind(sum(len(v) for v in vectors.values()), hnsw_threshold)
    return {m: new_faiss_index(vectors[m], kind) for m in ROW_MODALITIES}, kind


def build_index(
    ws: workspace.Workspace,
    profile: str,
    encoder: Encoder,
    adapter_version: str | None,
    progress: bool = False,
    centering: bool = False,
    calibration: bool = False,
    hnsw_threshold: int = HNSW_THRESHOLD,
) -> Path:
    """Embed every unique stored picture and every distinct text of the profile's corpus; returns the new version folder."""
    with Corpus.open(ws, profile, readonly=True) as corpus:
        first_url = corpus.first_image_urls()
        image_rows = _image_rows(corpus, first_url)
        text_rows = _text_rows(corpus, first_url)
    if not image_rows and not text_rows:
        raise NotEnoughData(f"profile {profile!r} has nothing to index: its corpus holds no pictures or texts")
    log.info("indexing %s: %d images, %d texts", profile, len(image_rows), len(text_rows))

    image_rows, image_vectors = _embed(image_rows, encoder, progress)
    text_rows, text_vectors = _embed(text_rows, encoder, progress)
    means = None
    if centering:
        means = {m: v.mean(axis=0) if len(v) else np.zeros(encoder.dim, np.float32)
                 for m, v in (("image", image_vectors), ("text", text_vectors))}  # fmt: skip
        image_vectors, text_vectors = centered(image_vectors, means["image"]), centered(text_vectors, means["text"])
    bias = modality_bias(image_vectors, text_vectors) if calibration else None
    n_images, n_total = len(image_rows), len(image_rows) + len(text_rows)
    assert image_vectors.shape == (n_images, encoder.dim) and text_vectors.shape == (n_total - n_images, encoder.dim)
    indexes, kind = modality_indexes({"image": image_vectors, "text": text_vectors}, hnsw_threshold)

    version = workspace.new_version()
    final = ws.index_dir(profile) / version
    with workspace.atomic_dir(final) as tmp:
        for modality in ROW_MODALITIES:
            faiss.write_index(indexes[modality], str(tmp / MODALITY_FILES[modality]))
        with open(tmp / ROWS_FILE, "w", encoding="utf-8") as f:
            for row in image_rows + text_rows:
                f.write(json.dumps(row.record(), ensure_ascii=False, sort_keys=True) + "\n")
        manifest = {
            "profile": profile,
            "faiss_version": faiss.__version__,
            **encoder.backbone.describe(),  # backbone, pretrained, weights_sha256
            "adapter_version": adapter_version,
            "dim": int(encoder.dim),
            "metric": "inner_product",
            **kind,  # index_type (of every file), and the graphs' parameters
            "count": n_total,
            "count_by_modality": {"image": n_images, "text": n_total - n_images},
            # Row ranges [start, stop) of each modality: row ``start + i`` is row i of its modality's file.
            "rows": {"image": [0, n_images], "text": [n_images, n_total]},
            "layout": PER_MODALITY,
            "files": {m: {"file": MODALITY_FILES[m], "checksum": sha256_file(tmp / MODALITY_FILES[m])}
                      for m in ROW_MODALITIES},  # fmt: skip
            # each modality's mean (of unit vectors) subtracted before normalizing, rows and queries alike
            "centering": None if means is None else {m: [float(x) for x in v] for m, v in means.items()},
            # {query modality: {row modality: added to its scores}} in ``any`` searches; null: none
            "calibration": bias,
            "rows_checksum": sha256_file(tmp / ROWS_FILE),
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        workspace.atomic_write_json(tmp / MANIFEST_FILE, manifest)
    log.info("index %s of %s written: %d vectors", version, profile, n_total)
    return final


def centered(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-modality centering: (n, d) ``vectors`` minus their modality's (d,) ``mean``, re-normalized
    (a row at the mean stays zero rather than dividing by zero)."""
    out = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32) - mean[None, :], dtype=np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


# -- reading --------------------------------------------------------------------------------------


def _valid_calibration(calibration: Any) -> bool:
    if calibration is None:
        return True
    return isinstance(calibration, dict) and all(
        isinstance(calibration.get(q), dict)
        and all(isinstance(calibration[q].get(m), (int, float)) and np.isfinite(calibration[q][m]) for m in ("image", "text"))
        for q in ("image", "text")
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    except FileNotFoundError as e:
        raise CorruptIndex(f"index {folder} has no {MANIFEST_FILE}") from e
    except (OSError, ValueError) as e:
        raise CorruptIndex(f"index {folder}: unreadable {MANIFEST_FILE}: {e}") from e
    # An index written before the split names its one file's checksum; one file per modality, each file's.
    checksums = "files" if isinstance(manifest, dict) and manifest.get("layout") is not None else "checksum"
    if not isinstance(manifest, dict) or not {"dim", "count", checksums, "rows"} <= manifest.keys():
        raise CorruptIndex(f"index {folder}: {MANIFEST_FILE} lacks dim, count, {checksums} or rows")
    return manifest


def _faiss_files(folder: Path, manifest: dict[str, Any]) -> dict[str, tuple[Path, str | None]]:
    """{modality: (its FAISS file, its checksum)} of an index's manifest; ``"any"`` for the one file of an
    index written before the split (whose checksum, if absent, is not checked, as before). CorruptIndex
    when the manifest's layout, files or row ranges are not what this version writes."""
    layout = manifest.get("layout")
    if layout is None:
        return {"any": (folder / INDEX_FILE, manifest.get("checksum"))}
    if layout != PER_MODALITY:
        raise CorruptIndex(f"index {folder}: unknown layout {str(layout)[:40]!r} in {MANIFEST_FILE}")
    files, ranges, count = manifest["files"], manifest["rows"], manifest["count"]
    # Picture rows first, then text rows, together every row: what turns a file's row into a global row.
    try:
        n_images = ranges["image"][1]
    except (TypeError, KeyError, IndexError):
        n_images = None
    if not (isinstance(n_images, int) and isinstance(count, int) and 0 <= n_images <= count
            and ranges == {"image": [0, n_images], "text": [n_images, count]}):  # fmt: skip
        raise CorruptIndex(f"index {folder}: its row ranges are not its pictures, then its texts, {count} rows in all")
    found = {}
    for modality in ROW_MODALITIES:
        entry = files.get(modality) if isinstance(files, dict) else None
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".faiss") \
                or not isinstance(entry.get("checksum"), str):  # fmt: skip
            raise CorruptIndex(f"index {folder}: {MANIFEST_FILE} names no file and checksum for its {modality} rows")
        found[modality] = (folder / name, entry["checksum"])
    return found


# IO_FLAG_MMAP alone maps only an IVF index's lists: a flat index or a graph was read into memory with it.
# IO_FLAG_MMAP_IFC maps their vectors (and a graph's links) from the file itself, which a version never
# rewrites; a file cut short is refused by FAISS on reading. A faiss without it reads into memory.
MMAP_READ_ONLY = faiss.IO_FLAG_MMAP | getattr(faiss, "IO_FLAG_MMAP_IFC", 0) | faiss.IO_FLAG_READ_ONLY


def _read_faiss(folder: Path, path: Path) -> faiss.Index:
    """A FAISS file memory-mapped read-only: processes serving one workspace share its pages."""
    try:
        return faiss.read_index(str(path), MMAP_READ_ONLY)
    except RuntimeError as e:
        raise CorruptIndex(f"index {folder}: FAISS cannot read {path.name}: {e}") from e


class Rows(Sequence):
    """An index's row records as the bytes of its rows file, each parsed when asked for.

    A server holds many profiles' indexes; as Python dicts their rows took about three times the file's
    size, which is what holding 20 profiles measured beyond their files (docs/benchmarks.md). A search
    parses only the rows it returns."""

    def __init__(self, data: bytes):
        self._data = data
        starts, ends, at = [], [], 0
        while at < len(data):
            stop = data.find(b"\n", at)
            stop = len(data) if stop < 0 else stop
            if data[at:stop].strip():
                starts.append(at)
                ends.append(stop)
            at = stop + 1
        self._starts, self._ends = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
        self.ids: list[str] = [json.loads(self._line(i))["id"] for i in range(len(starts))]
        self.position = {row_id: i for i, row_id in enumerate(self.ids)}

    def _line(self, i: int) -> bytes:
        return self._data[self._starts[i] : self._ends[i]]

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return json.loads(self._line(i if i >= 0 else len(self) + i))

    def get(self, row_id: str) -> dict[str, Any] | None:
        position = self.position.get(row_id)
        return None if position is None else self[position]


class ProfileIndex:
    """A loaded index version: FAISS vectors plus the row records."""

    def __init__(self, folder: Path, manifest: dict[str, Any], indexes: dict[str, faiss.Index], rows: Rows):
        """``indexes``: each row modality's FAISS index (row i of one is row ``manifest["rows"][m][0] + i``
        of the index); for an index written before the split, its one index of every row, as ``"any"``."""
        self.folder = folder
        self.version = folder.name
        self.manifest = manifest
        self.dim = int(manifest["dim"])
        self.indexes = indexes
        self.rows = rows

    @classmethod
    def load(cls, folder: Path) -> ProfileIndex:
        """The index in ``folder``, its FAISS files memory-mapped read-only; CorruptIndex when a file is
        missing, does not match its checksum, does not read, or holds other counts than the manifest."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        files = _faiss_files(folder, manifest)
        rows_path = folder / ROWS_FILE
        for path, checksum in [*files.values(), (rows_path, manifest.get("rows_checksum"))]:
            if not path.is_file():
                raise CorruptIndex(f"index {folder} is missing {path.name}")
            if checksum is not None and sha256_file(path) != checksum:
                raise CorruptIndex(f"index {folder}: {path.name} does not match the checksum in {MANIFEST_FILE}")
        indexes = {key: _read_faiss(folder, path) for key, (path, _) in files.items()}
        try:
            rows = Rows(rows_path.read_bytes())
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptIndex(f"index {folder}: unreadable {ROWS_FILE}: {e}") from e
        centering = manifest.get("centering")
        if centering is not None and not (
            isinstance(centering, dict) and all(len(centering.get(m) or ()) == manifest["dim"] for m in ("image", "text"))
        ):
            raise CorruptIndex(f"index {folder}: its centering means do not have dim {manifest['dim']}")
        if not _valid_calibration(manifest.get("calibration")):
            raise CorruptIndex(f"index {folder}: its calibration is not one number per query and row modality")
        counts = {"any": manifest["count"]} if "any" in indexes else \
            {m: stop - start for m, (start, stop) in manifest["rows"].items()}  # fmt: skip
        for key, index in indexes.items():
            if index.ntotal != counts[key] or index.d != manifest["dim"]:
                raise CorruptIndex(f"index {folder}: {files[key][0].name} holds {index.ntotal} vectors of dim {index.d}, "
                                   f"but the manifest says {counts[key]} of dim {manifest['dim']}")  # fmt: skip
        if len(rows) != manifest["count"]:
            raise CorruptIndex(f"index {folder}: {ROWS_FILE} holds {len(rows)} rows, but the manifest says {manifest['count']}")
        return cls(folder, manifest, indexes, rows)

    def __len__(self) -> int:
        return len(self.rows)

    def query_vector(self, vector: np.ndarray, modality: str) -> np.ndarray:
        """An encoder's unit vector for a query of ``modality`` ("image" or "text"), made comparable
        with the rows: centered as the index was, if it was."""
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        centering = self.manifest.get("centering")
        if not centering:
            return vector[0]
        return centered(vector, np.asarray(centering[modality], dtype=np.float32))[0]

    def row(self, row_id: str) -> dict[str, Any] | None:
        return self.rows.get(row_id)

    @functools.cached_property
    def source_hosts(self) -> frozenset[str]:
        """The hosts the indexed pictures were collected from."""
        return frozenset(host for row in self.rows if row.get("image_url")
                         if (host := (urlsplit(row["image_url"]).hostname or "").lower()))  # fmt: skip

    def stored_vector(self, row_id: str) -> np.ndarray:
        """The (dim,) vector row ``row_id`` is stored as (centered, if the index is): a query for
        "more like this" that needs no encoder. NotFound when the index has no such row."""
        position = self.rows.position.get(row_id)
        if position is None:
            raise NotFound(f"no {str(row_id)[:80]!r} in index {self.version}")
        if "any" in self.indexes:
            return self.indexes["any"].reconstruct(position)
        for modality in ROW_MODALITIES:
            start, stop = self.manifest["rows"][modality]
            if start <= position < stop:
                return self.indexes[modality].reconstruct(position - start)
        raise NotFound(f"row {str(row_id)[:80]!r} is outside every modality's rows in index {self.version}")

    def search(
        self, query: np.ndarray, k: int = 10, modality: str = "any", query_modality: str | None = None
    ) -> list[dict[str, Any]]:
        """Best ``k`` rows for a (dim,) L2-normalized query vector, best first. An ``any`` search of a
        calibrated index ranks by score plus the manifest's bias for ``query_modality`` (the scores
        returned are those ranked by); without a ``query_modality``, by the plain score. An ``any``
        search merges the best ``k`` of each modality's file, equal scores in row order (an uncalibrated
        one of an index written before the split searches its one file)."""
        if modality not in MODALITIES:
            raise InvalidArgument(f"modality must be one of {', '.join(MODALITIES)}, not {str(modality)[:20]!r}")
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, not {k}")
        query = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.dim:
            raise InvalidArgument(f"query has dim {query.shape[1]}, the index has dim {self.dim}")
        bias = (self.manifest.get("calibration") or {}).get(query_modality) if modality == "any" else None
        if bias or (modality == "any" and "any" not in self.indexes):
            return self._merged(query, k, bias or {})
        return [self._result(row_number, score) for score, row_number in self._best(query, k, modality)]

    def _best(self, query: np.ndarray, k: int, modality: str) -> list[tuple[float, int]]:
        """(score, row number) of the best ``k`` rows of ``modality``, best first: through that modality's
        file, or, in an index written before the split, its one file ("any": all of it)."""
        if "any" in self.indexes:
            start, stop = (0, self.indexes["any"].ntotal) if modality == "any" else self.manifest["rows"][modality]
            params = self._params(k, None if modality == "any" else faiss.IDSelectorRange(start, stop))
            searched, offset = self._scanned(params), 0
        else:
            searched, offset = self.indexes[modality], self.manifest["rows"][modality][0]
            start, stop, params = 0, searched.ntotal, self._params(k, None)
        k = min(k, stop - start)
        if k <= 0:
            return []
        scores, ids = searched.search(query, k, params=params)
        return [(float(score), offset + int(i)) for score, i in zip(scores[0], ids[0]) if i >= 0]

    def _params(self, k: int, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        if self.manifest.get("index_type") == "IndexHNSWFlat" and selector is None:
            ef_search = max(int((self.manifest.get("hnsw") or {}).get("ef_search", HNSW_EF_SEARCH)), k)
            return faiss.SearchParametersHNSW(efSearch=ef_search)
        return faiss.SearchParameters(sel=selector) if selector else None

    def _scanned(self, params: faiss.SearchParameters | None) -> faiss.Index:
        """What answers a search of an index written before the split: its one index, except for a search
        within one modality of an HNSW graph, which scans that modality's rows exactly in the graph's own
        storage. The graph cannot answer it: across the modality gap, a text query's neighbourhood holds
        only texts, and a walk that skips them found 45 % of the exact top 10 pictures (docs/benchmarks.md).
        That is why an index now has one file per modality."""
        if getattr(params, "sel", None) is not None and self.manifest.get("index_type") == "IndexHNSWFlat":
            return faiss.downcast_index(self.indexes["any"].storage)
        return self.indexes["any"]

    def _merged(self, query: np.ndarray, k: int, bias: dict[str, float]) -> list[dict[str, Any]]:
        """The best ``k`` of each modality, each shifted by its ``bias`` (none: unshifted), merged by the
        shifted score; equal scores in row order."""
        found = [(score + float(bias.get(modality, 0.0)), row_number)
                 for modality in ROW_MODALITIES for score, row_number in self._best(query, k, modality)]  # fmt: skip
        found.sort(key=lambda hit: (-hit[0], hit[1]))
        return [self._result(row_number, score) for score, row_number in found[:k]]

    def _result(self, row_number: int, score: float) -> dict[str, Any]:
        row = self.rows[row_number]
        return {
            "id": row["id"],
            "modality": row["modality"],
            "score": float(score),
            "text": row["text"],
            "image_url": row["image_url"],
            "source": row["source"],
            "source_url": row["source_url"],
            "degree": row["degree"],
            "sha256": row.get("sha256"),  # its picture's (a text's: the one it describes), for links and files
        }
