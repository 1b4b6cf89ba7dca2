"""The text policy: how text is cleaned, how long it may be, and which words describe a picture.

One module for the spiders (what the corpus stores), ``qualia.pairs`` (what training sees) and
``qualia.index`` (what search embeds), so a picture is embedded with the words it was trained with.

Lengths
  the corpus     keeps what a site gave, whitespace collapsed (no cap: it is the record)
  embedding      at most ``MAX_EMBED_CHARS``, cut at a word: CLIP reads 77 tokens, about 300
                 characters of English; what lies beyond is cut by the tokenizer anyway
  a query        at most ``MAX_QUERY_CHARS`` from a user; longer is refused, not silently cut

Which words go with a picture depends on where the picture was seen (``picture_texts``):
  pin, carousel, story  the item's title and description (the picture's alt and caption when both are empty)
  body                  the figure's caption and alt text in the post; and, as a second, weaker text,
                        the paragraphs around the figure (a picture with an empty alt and no caption is
                        still talked about by the text next to it)
  cover                 the post's title and subtitle
  anything else         caption and alt, else the item's title
Each text carries its source (``TEXT_SOURCES``) and a factor on the pair's weight: the picture's own
words 1, the surrounding paragraphs ``CONTEXT_FACTOR`` (they talk about the picture less surely).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_EMBED_CHARS = 300
CONTEXT_FACTOR = 0.5
TEXT_SOURCES = ("pin", "title", "caption", "alt", "context")
MAX_QUERY_CHARS = 2000
_MIN_CUT_CHARS = 20  # a shorter beginning of another part counts only when it ends at a word
_SENTENCE_END = ".!?:;"


def clean(text: Any) -> str:
    """Whitespace collapsed and stripped; anything that is not a string reads as empty."""
    return " ".join(text.split()) if isinstance(text, str) else ""


def _said_in(short: str, long: str) -> bool:
    """Whether ``short`` (lower case) adds nothing to ``long``: it is its beginning, ended at a word, or
    cut mid-word the way sites cut a grid title or teaser (at least ``_MIN_CUT_CHARS`` kept)."""
    stem = short.rstrip(" .…")
    if not long.startswith(stem):
        return False
    return len(stem) >= _MIN_CUT_CHARS or len(long) == len(stem) or not long[len(stem)].isalnum()


def distinct(parts: Iterable[Any]) -> list[str]:
    """The cleaned, non-empty parts in order, each thing said once: case does not make a part new, and a
    part that another one begins with (a title cut from its description) gives way to the longer."""
    kept: list[str] = []
    for part in map(clean, parts):
        low = part.lower()
        if not part or any(_said_in(low, k.lower()) for k in kept):
            continue
        kept = [k for k in kept if not _said_in(k.lower(), low)]
        kept.append(part)
    return kept


def join_lines(*parts: Any) -> str | None:
    """Parts of one record as the corpus stores them: distinct, one per line; None when there are none."""
    return "\n".join(distinct(parts)) or None


def cut(text: str, limit: int = MAX_EMBED_CHARS) -> str:
    """``text`` shortened to at most ``limit`` characters, at a word boundary where there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return head.rsplit(" ", 1)[0] if " " in head else head


def join_sentences(parts: Iterable[Any], limit: int = MAX_EMBED_CHARS) -> str:
    """Parts as one text to embed: distinct, each ending a sentence, cut to ``limit``."""
    text = ""
    for part in distinct(parts):
        text = part if not text else (f"{text} {part}" if text[-1] in _SENTENCE_END else f"{text}. {part}")
    return cut(text, limit)


def picture_texts(
    role: str,
    *,
    item_title: str | None = None,
    item_text: str | None = None,
    subtitle: str | None = None,
    alt: str | None = None,
    caption: str | None = None,
    context: str | None = None,
) -> list[tuple[str, str, float]]:
    """The texts that describe one picture, by the role it plays in its item (module docstring):
    (words, source, weight factor), the picture's own words first; may be empty."""
    own_words = join_sentences([caption, alt])
    own = [(own_words, "caption" if clean(caption) else "alt", 1.0)] if own_words else []
    if role in ("pin", "carousel", "story"):
        pin = join_sentences([item_title, item_text])
        if pin:
            return [(pin, "pin", 1.0)]
        slide = join_sentences([alt, caption])  # a slide's alt text is its title, its caption the rest
        return [(slide, "alt" if clean(alt) else "caption", 1.0)] if slide else []
    if role == "body":
        around = join_sentences([context])
        if around and not any(around == words for words, _, _ in own):
            return [*own, (around, "context", CONTEXT_FACTOR)]
        return own
    if role == "cover":
        title = join_sentences([item_title, subtitle])
        return [(title, "title", 1.0)] if title else []
    title = join_sentences([item_title])
    return own or ([(title, "title", 1.0)] if title else [])


def picture_words(role: str, **fields: Any) -> str:
    """The words shown with a picture: its best text by ``picture_texts``, '' when none."""
    texts = picture_texts(role, **fields)
    return texts[0][0] if texts else ""


def item_words(title: str | None, text: str | None) -> str:
    """The words of an item shown without a picture (a post or pin whose pictures were not stored)."""
    return join_sentences([title, text])
