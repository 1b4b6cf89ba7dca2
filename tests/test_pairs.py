"""From corpus rows to weighted text-image pairs, and a split that never leaks an item."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from qualia.corpus import Corpus
from qualia.errors import InvalidArgument
from qualia.pairs import Pair, corpus_pairs, split_pairs


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def corpus(tmp_path):
    with Corpus(tmp_path / "corpus.sqlite", images_root=tmp_path / "images") as c:
        c.upsert_item("pinterest:user:ada", source="pinterest", kind="user", degree=0)
        c.upsert_item("pinterest:pin:1", source="pinterest", kind="pin", degree=1, title="Tidewater  boat",
                      text="  by the sea ", via=("pinterest:user:ada", "pinned"))
        c.store_image("http://x/1.png", _png((0, 128, 128)))
        c.add_image_ref("pinterest:pin:1", "http://x/1.png", "pin")
        # a related pin (degree 2) that reuses the same picture and words: one pair, at degree 1
        c.upsert_item("pinterest:pin:2", source="pinterest", kind="pin", degree=2, title="Tidewater boat",
                      text="by the sea", via=("pinterest:pin:1", "related"))
        c.store_image("http://y/1-copy.png", _png((0, 128, 128)))
        c.add_image_ref("pinterest:pin:2", "http://y/1-copy.png", "pin")
        # a degree-2 pin with no title or description: its alt text speaks for it
        c.upsert_item("pinterest:pin:3", source="pinterest", kind="pin", degree=2, via=("pinterest:pin:1", "related"))
        c.store_image("http://x/3.png", _png((10, 10, 10)))
        c.add_image_ref("pinterest:pin:3", "http://x/3.png", "carousel", alt="static stripes")
        # a pin with no words at all: no pair
        c.upsert_item("pinterest:pin:4", source="pinterest", kind="pin", degree=1)
        c.store_image("http://x/4.png", _png((20, 20, 20)))
        c.add_image_ref("pinterest:pin:4", "http://x/4.png", "pin")
        # a post: cover -> title + subtitle; body -> caption + alt; the body text itself is not used
        c.upsert_item("substack:post:9", source="substack", kind="post", degree=1, title="Ember hour",
                      text="<p>a very long body</p>", data={"subtitle": "notes from the evening"})
        c.store_image("http://x/cover.png", _png((214, 72, 28)))
        c.add_image_ref("substack:post:9", "http://x/cover.png", "cover")
        c.store_image("http://x/body.png", _png((240, 230, 250)))
        c.add_image_ref("substack:post:9", "http://x/body.png", "body", alt="a pale moon", caption="Paper moon.", position=1)
        # an image reference whose picture was never downloaded: no pair
        c.add_image_ref("substack:post:9", "http://x/missing.png", "body", alt="lost", position=2)
        c.commit()
        yield c


def test_pairs_take_their_words_from_the_pictures_role(corpus):
    pairs = {p.artifact_id + "/" + p.role: p for p in corpus_pairs(corpus)}
    assert set(pairs) == {"pinterest:pin:1/pin", "pinterest:pin:3/carousel", "substack:post:9/cover",
                          "substack:post:9/body"}
    assert pairs["pinterest:pin:1/pin"].text == "Tidewater boat. by the sea"
    assert pairs["pinterest:pin:3/carousel"].text == "static stripes"
    assert pairs["substack:post:9/cover"].text == "Ember hour. notes from the evening"
    assert pairs["substack:post:9/body"].text == "Paper moon. a pale moon"
    assert all(p.image_path.is_file() for p in pairs.values())


def test_repeated_pair_counts_once_at_its_closest_degree_and_far_pairs_weigh_less(corpus):
    pairs = corpus_pairs(corpus)
    boats = [p for p in pairs if p.text.startswith("Tidewater")]
    assert len(boats) == 1 and boats[0].degree == 1 and boats[0].weight == 1.0
    far = next(p for p in pairs if p.artifact_id == "pinterest:pin:3")
    assert far.degree == 2 and far.weight == 0.5


def _synthetic(n_artifacts: int, per_artifact: int = 3) -> list[Pair]:
    return [
        Pair(f"text {a}.{k}", f"sha{a}.{k}", None, f"pinterest:pin:{a}", "pinterest", 1, "pin", 1.0)  # type: ignore[arg-type]
        for a in range(n_artifacts)
        for k in range(per_artifact)
    ]


def test_split_is_by_artifact_deterministic_and_independent_of_order():
    pairs = _synthetic(200)
    train, val = split_pairs(pairs, 0.2, seed=0)
    assert len(train) + len(val) == len(pairs)
    assert not {p.artifact_id for p in train} & {p.artifact_id for p in val}
    assert 0.1 < len({p.artifact_id for p in val}) / 200 < 0.3
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    train2, val2 = split_pairs(shuffled, 0.2, seed=0)
    assert set(val2) == set(val) and set(train2) == set(train)
    # an artifact keeps its side when the corpus grows
    _, val_grown = split_pairs(pairs + _synthetic(300)[600:], 0.2, seed=0)
    assert set(val) <= set(val_grown)
    _, val_other_seed = split_pairs(pairs, 0.2, seed=1)
    assert set(val_other_seed) != set(val)


def test_items_sharing_a_picture_stay_on_one_side():
    pairs = _synthetic(100, per_artifact=1)
    shared = [Pair(f"repin {a}", "sha0.0", None, f"pinterest:pin:r{a}", "pinterest", 2, "pin", 0.5) for a in range(30)]  # type: ignore[arg-type]
    for seed in range(5):
        train, val = split_pairs(pairs + shared, 0.2, seed=seed)
        sides = {p.artifact_id for p in val if p.image_sha256 == "sha0.0"}, {p.artifact_id for p in train if p.image_sha256 == "sha0.0"}
        assert not (sides[0] and sides[1])


def test_split_keeps_both_sides_non_empty_and_checks_its_fraction():
    train, val = split_pairs(_synthetic(2), 0.01)
    assert train and val
    with pytest.raises(InvalidArgument, match="val_fraction"):
        split_pairs(_synthetic(5), 1.0)


def test_a_bare_figure_pairs_with_the_paragraphs_around_it_at_lower_weight(corpus):
    corpus.store_image("http://x/bare.png", _png((0, 90, 90)))
    corpus.add_image_ref("substack:post:9", "http://x/bare.png", "body", alt="", caption=None, position=3,
                         context="Here is the boat from Tuesday, tidewater all the way through.")
    corpus.store_image("http://x/both.png", _png((90, 0, 90)))
    corpus.add_image_ref("substack:post:9", "http://x/both.png", "body", alt="a boat", caption=None, position=4,
                         context="More soon.")
    corpus.commit()
    pairs = corpus_pairs(corpus)
    bare = [p for p in pairs if p.image_sha256 == corpus.image_sha256("http://x/bare.png")]
    assert [(p.text, p.text_source, p.weight) for p in bare] == [
        ("Here is the boat from Tuesday, tidewater all the way through.", "context", 0.5)]
    both = {p.text_source: p for p in pairs if p.image_sha256 == corpus.image_sha256("http://x/both.png")}
    assert both["alt"].weight == 1.0 and both["context"].weight == 0.5 and both["context"].text == "More soon."


def test_corpus_summary_counts_pairs_by_where_their_words_came_from(corpus):
    from qualia.pairs import corpus_summary

    summary = corpus_summary(corpus)
    assert summary["pairs_by_text_source"] == {"alt": 1, "caption": 1, "pin": 1, "title": 1}
    assert sum(summary["pairs_by_text_source"].values()) == summary["pairs"]
    assert summary["pairs_by_degree"]["2"] == {"pairs": 1, "weight": 0.5}
    assert summary["pair_weights"]["by_degree"]["2"] == 0.5 and summary["pair_weights"]["context_factor"] == 0.5
