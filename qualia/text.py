"""The text policy: how text is cleaned, how long it may be, and which words describe a picture.

One module for the spiders (what the corpus stores), ``qualia.pairs`` (what training sees) and
``qualia.index`` (what search embeds), so a picture is embedded with the words it was trained with.

Lengths
  the corpus     keeps what a site gave, whitespace collapsed (no cap: it is the record)
  embedding      at most ``MAX_EMBED_CHARS``, cut at a word: CLIP reads 77 tokens, about 300
                 characters of English; what lies beyond is cut by the tokenizer anyway
  a query        at most ``MAX_QUERY_CHARS`` from a user; longer is refused, not silently cut

Which words go with a picture depends on where the picture was seen:
  pin, carousel, story  the item's title and description (the picture's alt and caption when both are empty)
  body                  the figure's caption and alt text in the post
  cover                 the post's title and subtitle
  anything else         caption and alt, else the item's title
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_EMBED_CHARS = 300
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


def picture_words(
    role: str,
    *,
    item_title: str | None = None,
    item_text: str | None = None,
    subtitle: str | None = None,
    alt: str | None = None,
    caption: str | None = None,
) -> str:
    """The words that describe one picture, by the role it plays in its item (module docstring); may be ''."""
    if role in ("pin", "carousel", "story"):
        return join_sentences([item_title, item_text]) or join_sentences([alt, caption])
    if role == "body":
        return join_sentences([caption, alt])
    if role == "cover":
        return join_sentences([item_title, subtitle])
    return join_sentences([caption, alt]) or join_sentences([item_title])


def item_words(title: str | None, text: str | None) -> str:
    """The words of an item shown without a picture (a post or pin whose pictures were not stored)."""
    return join_sentences([title, text])
