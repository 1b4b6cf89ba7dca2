"""The stand-in's world: procedural pictures and captions, seeded, and blind to the sample person's words."""

from __future__ import annotations

import random
import re

import numpy as np

from qualia import procedural
from samplesite import STYLES


def _vocabulary() -> set[str]:
    words: set[str] = set()
    phrases = [*procedural.GROUND_WORDS, *procedural.PICTURE_WORDS]
    phrases += [w for _, names in procedural.COLORS.values() for w in names]
    phrases += [w for names in procedural.TEXTURES.values() for w in names]
    phrases += [w for pair in procedural.SHAPES.values() for names in pair for w in names]
    for table in (procedural.COUNT_WORDS, procedural.SIZE_WORDS, procedural.POSITION_WORDS, procedural.FINISH_WORDS):
        phrases += [w for names in table.values() for w in names]
    for phrase in phrases:
        words |= set(re.findall(r"[a-z]+", phrase.lower()))
    return words


def test_same_seed_same_picture_and_caption() -> None:
    pool = procedural.nonce_words()
    a = procedural.pair(random.Random(42), pool, 0.3)
    b = procedural.pair(random.Random(42), pool, 0.3)
    assert a[1] == b[1] and np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    c = procedural.pair(random.Random(43), pool, 0.3)
    assert c[1] != a[1] or not np.array_equal(np.asarray(c[0]), np.asarray(a[0]))
    assert a[0].size == (procedural.SIZE, procedural.SIZE) and a[0].mode == "RGB"


def test_captions_say_what_is_drawn() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        scene = procedural.scene(rng)
        words = procedural.caption(scene, rng)
        assert words and words == words.strip()
        said_colors, rest = set(), words
        synonyms = sorted(((n, name) for name, (_, names) in procedural.COLORS.items() for n in names),
                          key=lambda x: -len(x[0]))  # "blue-green" before "blue"
        for synonym, name in synonyms:
            pattern = rf"(?<![\w-]){re.escape(synonym)}(?![\w-])"
            if re.search(pattern, rest):
                said_colors.add(name)
                rest = re.sub(pattern, " ", rest)
        # every colour a caption names is one the scene has
        assert set(said_colors) <= {scene.color, scene.texture_color, scene.shape_color}, (words, scene)


def test_the_stand_in_never_sees_the_sample_persons_words() -> None:
    private = {w for style in STYLES for w in style.split()}
    assert not private & _vocabulary()
    pool_words = {n.word for n in procedural.nonce_words()}
    assert not private & pool_words
    for seed in range(300):  # nor do they turn up by chance in a caption
        _, words = procedural.pair(random.Random(seed), procedural.nonce_words(), 0.3)
        assert not private & set(re.findall(r"[a-z]+", words.lower())), words


def test_gate_words_are_never_trained_on() -> None:
    pool = {n.word for n in procedural.nonce_words()}
    assert not pool & set(procedural.GATE_WORDS)
    assert not set(procedural.GATE_WORDS) & _vocabulary()


def test_invented_words_bind_their_look() -> None:
    pool = procedural.nonce_words()
    assert len({n.word for n in pool}) == len(pool)
    rng = random.Random(5)
    for _ in range(300):
        scene = procedural.scene(rng, pool, nonce_rate=1.0)
        word = next(n for n in pool if n.word == scene.nonce)
        for key, value in word.binds.items():
            if key == "finishes":
                assert set(value) <= set(scene.finishes)
            else:
                assert getattr(scene, key) == value


def test_held_out_set_is_fixed_and_distinct() -> None:
    pictures, captions = procedural.generic_set(50)
    again_pictures, again = procedural.generic_set(50)
    assert captions == again and len(set(captions)) == 50
    assert np.array_equal(np.asarray(pictures[7]), np.asarray(again_pictures[7]))
    pool = {n.word for n in procedural.nonce_words()}
    assert not any(set(c.split()) & pool for c in captions)  # plain words only
