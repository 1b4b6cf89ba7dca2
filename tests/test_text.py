"""The text policy: one cleaner, one set of lengths, one choice of words for a picture."""

from __future__ import annotations

import pytest

from qualia import text


def test_clean_collapses_whitespace_and_reads_non_strings_as_empty() -> None:
    assert text.clean("  a\n\tquiet   morning ") == "a quiet morning"
    assert text.clean(None) == "" and text.clean(42) == "" and text.clean(["x"]) == ""


def test_cut_stops_at_a_word_and_never_exceeds_the_limit() -> None:
    words = "grainy film photos of kitchens " * 20
    cut = text.cut(text.clean(words))
    assert len(cut) <= text.MAX_EMBED_CHARS and words.startswith(cut) and not cut.endswith(" ")
    assert text.cut("x" * 400, 10) == "x" * 10  # one long word: cut inside it
    assert text.cut("short", 10) == "short"


def test_each_thing_is_said_once() -> None:
    description = "kept this one. paper moon, kitchen, nothing else"
    grid_title = description[:40]  # the site's cut: "kept this one. paper moon, kitchen, noth"
    closeup = description + ". Saved for later."
    assert text.distinct([grid_title, description, closeup]) == [closeup]
    assert text.distinct(["Tidewater", "tidewater", "TIDEWATER boat"]) == ["TIDEWATER boat"]
    # a short beginning that does not end at a word is another word, not a cut
    assert text.distinct(["Sea", "Seasons of light"]) == ["Sea", "Seasons of light"]
    assert text.distinct(["Sea", "Sea glass"]) == ["Sea glass"]
    assert text.distinct(["", None, " ", "a"]) == ["a"]


def test_join_lines_and_join_sentences() -> None:
    assert text.join_lines("  Ember hour ", None, "ember hour", "notes") == "Ember hour\nnotes"
    assert text.join_lines(None, "") is None
    assert text.join_sentences(["Ember hour", "notes from the evening"]) == "Ember hour. notes from the evening"
    assert text.join_sentences(["Why?", "because"]) == "Why? because"
    assert len(text.join_sentences(["word " * 100])) <= text.MAX_EMBED_CHARS


@pytest.mark.parametrize(
    ("role", "fields", "words"),
    [
        ("pin", {"item_title": "Tidewater boat", "item_text": "by the sea", "alt": "a boat"}, "Tidewater boat. by the sea"),
        ("carousel", {"alt": "static stripes", "caption": "slide two"}, "static stripes. slide two"),
        ("story", {"item_title": None, "item_text": None, "caption": "a page"}, "a page"),
        ("body", {"item_title": "Post", "caption": "Paper moon.", "alt": "a pale moon"}, "Paper moon. a pale moon"),
        ("cover", {"item_title": "Ember hour", "subtitle": "notes", "alt": "ignored"}, "Ember hour. notes"),
        ("other", {"item_title": "Only the title"}, "Only the title"),
        ("body", {}, ""),
    ],
)
def test_picture_words_by_role(role: str, fields: dict, words: str) -> None:
    assert text.picture_words(role, **fields) == words
