"""The picture policy: what a picture may cost, and how every picture is read.

Every picture qualia touches (a crawled or imported one before it is stored, a query upload, a stored
one read for training, evaluation or indexing) goes through ``decode`` or ``read`` here, so its memory
and time are bounded by its pixels, not by tricks:

  bytes    at most ``MAX_BYTES`` (the service has its own, lower, setting for uploads)
  pixels   at most ``MAX_PIXELS``, read from the header before anything is decoded
  shape    at most ``MAX_ASPECT`` : 1; a thin line of 1 x 100,000 pixels is not a picture
  frames   the first frame only (animated GIF and WEBP)
  decoded  fully, once: a truncated file is refused here, not found out later in training

What is kept after decoding is reduced safely: CLIP's preprocessing scales the short side to its input
size and keeps the central square, so only the central band of aspect ``WORKING_ASPECT`` is kept and
the long side is scaled to ``WORKING_SIDE`` at most. Without this, a few hundred bytes of a thin PNG
made the preprocessing scale its short side up to an image of gigabytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from qualia.errors import ImageTooLarge, InvalidImage, NotFound

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_ASPECT = 20
WORKING_ASPECT = 2
WORKING_SIDE = 1024
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
_READABLE = "not a picture qualia can read (PNG, JPEG, WEBP or GIF)"


def probe(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; ImageTooLarge / InvalidImage when over a bound."""
    if not data:
        raise InvalidImage("the image is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image of {len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format or "", im.size
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image is too large: {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError) as e:
        # PIL's message names the BytesIO it read from: say what a person can use instead
        raise InvalidImage(_READABLE) from e
    if fmt not in FORMATS:
        raise InvalidImage(_READABLE)
    if width < 1 or height < 1:
        raise InvalidImage(f"image of {width}x{height} pixels has no area")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image of {width}x{height} pixels is over the {max_pixels}-pixel limit")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidImage(f"image of {width}x{height} pixels is too thin (more than {MAX_ASPECT}:1)")
    return fmt, width, height


def _bound(im: Image.Image) -> Image.Image:
    """``im`` (a picture of its own, changed in place) reduced to what CLIP can see of it: the central
    band of aspect at most ``WORKING_ASPECT``, the long side at most ``WORKING_SIDE``."""
    width, height = im.size
    short = min(width, height)
    keep_w, keep_h = min(width, WORKING_ASPECT * short), min(height, WORKING_ASPECT * short)
    if (keep_w, keep_h) != (width, height):
        left, top = (width - keep_w) // 2, (height - keep_h) // 2
        im = im.crop((left, top, left + keep_w, top + keep_h))
    if max(im.size) > WORKING_SIDE:
        im.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BICUBIC)
    return im


@dataclass(frozen=True)
class Decoded:
    picture: Image.Image  # RGB, bounded (what CLIP can see of it)
    format: str  # one of FORMATS
    width: int  # of the file, before any reduction
    height: int


def decode(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Decoded:
    """The picture fully decoded and bounded, with what its header said; ImageTooLarge / InvalidImage."""
    fmt, width, height = probe(data, max_bytes, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.seek(0)
                if im.format == "JPEG":  # decode at a reduced scale where the codec can (DCT scaling)
                    im.draft("RGB", (WORKING_SIDE, WORKING_SIDE))
                im.load()  # every byte decoded: a truncated file fails here
                picture = _bound(im.convert("RGB"))  # convert makes a copy
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError) as e:
        raise InvalidImage(f"not a readable picture: {str(e)[:120]}") from e
    return Decoded(picture, fmt, width, height)


def read(path: Path, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The picture in file ``path``, decoded and bounded like any other; NotFound / InvalidImage otherwise."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no picture file {str(path)!r}" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size > max_bytes:
        raise ImageTooLarge(f"{path} is over the {max_bytes}-byte limit")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidImage(f"cannot read {path}: {e.strerror or e}") from e
    return decode(data, max_bytes, max_pixels).picture
