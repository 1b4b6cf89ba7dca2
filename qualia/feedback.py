"""People's marks on search results ("fits" / "does not fit"): stored in the corpus, trained on next.

Storing (``record``): the service passes who marked (an API key's public prefix, or ``ANONYMOUS``
when the server has no keys), the query's words, the index row marked and whether it fits. The mark
goes into the profile's own corpus (``Corpus.add_mark``), so it can reach no other profile. Per person,
a later mark on the same row for the same words replaces the earlier one.

Training (``training_rows``): the pair model pairs words with pictures, so each mark becomes a row
(query words, picture):
  fits          a pair like the corpus's own, weight ``FEEDBACK_WEIGHT``
  does not fit  a *negative* row: the loss asks the words to rank that picture below the batch's other
                pictures, and a fitting pair of the same words in the batch meets it as a negative that
                is never masked (``qualia.train.contrastive_loss``)
  a text result stands for the picture it describes (the ``sha256`` of its index row) at ``TEXT_FACTOR``:
                the person judged words, which speak for their picture less surely; a text that
                describes no picture teaches nothing (``unused``)
One row per (words, picture): the latest mark decides, whoever made it, so a repeated or contradicted
mark never adds weight. A fitting mark the corpus already holds as a pair adds nothing (``unused``).
A row whose picture is on the held-out side of the split is not trained on (``held_out``): the pictures
the evaluation scores stay unseen by training, so feedback cannot inflate the figures, and the split
itself is made from the corpus's pairs alone, so marks never move an item from one side to the other.
"""

from __future__ import annotations

from typing import Any

from qualia import text, workspace
from qualia.corpus import Corpus
from qualia.errors import InvalidArgument
from qualia.pairs import Pair

ANONYMOUS = "anonymous"
FEEDBACK_WEIGHT = 1.0  # a person's explicit judgement counts like their own pins
TEXT_FACTOR = 0.5
SOURCE = "feedback"  # Pair.source and Pair.text_source of rows made from marks
MAX_WHO_CHARS = 200


def query_text(query: str) -> str:
    """The words of a query as a mark stores them: whitespace collapsed; empty or over
    ``text.MAX_QUERY_CHARS`` is refused (InvalidArgument)."""
    words = text.clean(query)
    if not words:
        raise InvalidArgument("the query is empty")
    if len(words) > text.MAX_QUERY_CHARS:
        raise InvalidArgument(f"the query is over {text.MAX_QUERY_CHARS} characters")
    if not words.isprintable() and any(ord(c) < 32 or 0xD800 <= ord(c) < 0xE000 for c in words):
        raise InvalidArgument("the query has control characters or unpaired surrogates (not text)")
    return words


def record(
    ws: workspace.Workspace, profile: str, who: str, query: str, target: dict[str, Any], fits: bool
) -> tuple[dict[str, Any], bool]:
    """Store ``who``'s mark on index row ``target`` (a row of the profile's index: ``id``, ``modality``,
    ``sha256``, ``text``, ``item_id``) for ``query`` in ``profile``'s corpus: (the stored mark, whether it
    is new rather than a replacement). MissingStep when the profile has no corpus."""
    words = query_text(query)
    if not who or len(who) > MAX_WHO_CHARS:
        raise InvalidArgument("a mark needs who made it")
    ws.require(profile, "corpus")
    with Corpus.open(ws, profile) as corpus:
        return corpus.add_mark(who, words, target, fits)


def training_rows(corpus: Corpus, pairs: list[Pair], val: list[Pair]) -> tuple[list[Pair], dict[str, int]]:
    """The corpus's marks as training rows (module docstring), given its ``pairs`` and their held-out
    side ``val``: (rows in a stable order, counts ``marks``, ``pairs``, ``negatives``, ``held_out``,
    ``unused``; the last four count distinct (words, picture) rows, so they may sum to fewer than ``marks``)."""
    marks = corpus.marks()  # oldest first: a later mark on the same (words, picture) overwrites
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for mark in marks:
        words = text.cut(text.clean(mark["query"]))
        latest[(words, mark["sha256"] or mark["target"])] = mark
    held_out = {p.image_sha256 for p in val}
    known = {(p.text, p.image_sha256) for p in pairs}
    rows: list[Pair] = []
    counts = {"marks": len(marks), "pairs": 0, "negatives": 0, "held_out": 0, "unused": 0}
    for (words, sha), mark in sorted(latest.items()):
        path = corpus.image_path(sha) if mark["sha256"] else None
        if not words or path is None or (mark["fits"] and (words, sha) in known):
            counts["unused"] += 1
            continue
        if sha in held_out:
            counts["held_out"] += 1
            continue
        counts["pairs" if mark["fits"] else "negatives"] += 1
        rows.append(Pair(
            text=words, image_sha256=sha, image_path=path, artifact_id=f"{SOURCE}:img-{sha}", source=SOURCE,
            degree=1, role=mark["modality"], text_source=SOURCE, negative=not mark["fits"],
            weight=FEEDBACK_WEIGHT * (1.0 if mark["modality"] == "image" else TEXT_FACTOR),
        ))  # fmt: skip
    return rows, counts
