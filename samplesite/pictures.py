"""The sample person's pictures: a private visual vocabulary drawn with Pillow.

An image is style x subject x jitter. The style names are the words the sample person uses for a look
that a generic CLIP has no reason to connect with them ("tidewater" for teal horizontal bands), so an
adapter trained on her corpus has something real to learn. ``STYLE_LOOKS`` says what each word means.

Some words mean a combination: "quiet morning" is grainy *and* warm. Other styles share one of its
cues ("harbor fog" is grainy and cool, "honey" warm and smooth; "lagoon" is teal like "tidewater",
in ripples instead of bands), so an adapter that learned one cue per word is caught out.
``STYLE_CUES`` lists each style's cues, for per-cue precision.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFilter, ImageOps

STYLE_LOOKS: dict[str, str] = {
    "quiet morning": "grainy, warm, low-contrast film photo",
    "tidewater": "teal horizontal bands",
    "ember hour": "deep orange-red with a dark vignette",
    "paper moon": "pale pastel with a big soft circle",
    "static": "high-contrast black and white stripes",
    "greenhouse": "green grid of panes",
    "harbor fog": "grainy, cool blue-grey",
    "honey": "warm amber, smooth and clean",
    "lagoon": "teal concentric ripples",
}
STYLE_CUES: dict[str, frozenset[str]] = {
    "quiet morning": frozenset({"grain", "warm"}),
    "tidewater": frozenset({"teal", "bands"}),
    "ember hour": frozenset({"red", "vignette"}),
    "paper moon": frozenset({"pastel", "circle"}),
    "static": frozenset({"monochrome", "stripes"}),
    "greenhouse": frozenset({"green", "grid"}),
    "harbor fog": frozenset({"grain", "cool"}),
    "honey": frozenset({"warm", "smooth"}),
    "lagoon": frozenset({"teal", "ripples"}),
}
STYLES: list[str] = list(STYLE_LOOKS)
SUBJECTS: list[str] = ["kitchen", "window", "cup", "tree", "house", "bicycle", "chair", "boat"]

RGB = tuple[int, int, int]


def _jitter(rng: random.Random, color: RGB, amount: int) -> RGB:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _background(style: str, size: int, rng: random.Random) -> tuple[Image.Image, RGB]:
    """The style's look, and an ink colour that stays visible on it."""
    s = size
    if style == "quiet morning":
        base = _jitter(rng, (196, 168, 132), 14)
        img = Image.new("RGB", (s, s), base)
        # Pillow's effect_noise is seeded by C rand(), so grain comes from our own generator.
        grain = Image.frombytes("L", (s, s), rng.randbytes(s * s)).convert("RGB")
        img = Image.blend(img, grain, 0.22)
        return img, _jitter(rng, (150, 122, 96), 10)
    if style == "tidewater":
        img = Image.new("RGB", (s, s))
        draw = ImageDraw.Draw(img)
        bands = rng.randint(4, 7)
        teals = [(0, 128, 128), (32, 178, 170), (0, 96, 112), (64, 196, 190)]
        for i in range(bands):
            y0, y1 = i * s // bands, (i + 1) * s // bands
            draw.rectangle([0, y0, s, y1], fill=_jitter(rng, teals[i % len(teals)], 12))
        return img, _jitter(rng, (230, 245, 240), 10)
    if style == "ember hour":
        img = Image.new("RGB", (s, s), _jitter(rng, (214, 72, 28), 16))
        vignette = ImageOps.invert(Image.radial_gradient("L").resize((s, s)))
        dark = Image.new("RGB", (s, s), (40, 6, 0))
        img = Image.composite(img, dark, vignette.point(lambda v: min(255, int(v * 1.6))))
        return img, _jitter(rng, (255, 190, 90), 10)
    if style == "paper moon":
        pastel = _jitter(rng, (236, 222, 240), 10)
        img = Image.new("RGB", (s, s), pastel)
        circle = Image.new("L", (s, s), 0)
        r = int(s * rng.uniform(0.28, 0.38))
        cx, cy = int(s * rng.uniform(0.4, 0.6)), int(s * rng.uniform(0.35, 0.55))
        ImageDraw.Draw(circle).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        circle = circle.filter(ImageFilter.GaussianBlur(s / 24))
        img = Image.composite(Image.new("RGB", (s, s), _jitter(rng, (252, 246, 214), 6)), img, circle)
        return img, _jitter(rng, (176, 160, 196), 10)
    if style == "static":
        img = Image.new("RGB", (s, s), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        step = rng.randint(5, 9)
        vertical = rng.random() < 0.5
        for k in range(0, s, step * 2):
            box = [k, 0, k + step - 1, s] if vertical else [0, k, s, k + step - 1]
            draw.rectangle(box, fill=(0, 0, 0))
        return img, (255, 32, 32) if rng.random() < 0.5 else (128, 128, 128)
    if style == "greenhouse":
        img = Image.new("RGB", (s, s), _jitter(rng, (46, 120, 60), 14))
        draw = ImageDraw.Draw(img)
        cell = rng.randint(10, 16)
        line = _jitter(rng, (190, 230, 170), 10)
        for k in range(rng.randint(0, cell), s, cell):
            draw.line([k, 0, k, s], fill=line, width=2)
            draw.line([0, k, s, k], fill=line, width=2)
        return img, _jitter(rng, (20, 50, 24), 8)
    if style == "harbor fog":
        base = _jitter(rng, (120, 138, 160), 12)
        img = Image.new("RGB", (s, s), base)
        grain = Image.frombytes("L", (s, s), rng.randbytes(s * s)).convert("RGB")
        img = Image.blend(img, grain, 0.24)
        return img, _jitter(rng, (60, 72, 92), 10)
    if style == "honey":
        top, bottom = _jitter(rng, (236, 176, 84), 10), _jitter(rng, (200, 130, 50), 10)
        ramp = Image.linear_gradient("L").resize((s, s))
        img = Image.composite(Image.new("RGB", (s, s), bottom), Image.new("RGB", (s, s), top), ramp)
        return img, _jitter(rng, (120, 70, 20), 8)
    if style == "lagoon":
        img = Image.new("RGB", (s, s), _jitter(rng, (0, 128, 128), 12))
        draw = ImageDraw.Draw(img)
        cx, cy = s * rng.uniform(0.3, 0.7), s * rng.uniform(0.3, 0.7)
        light = _jitter(rng, (64, 196, 190), 10)
        for r in range(rng.randint(4, 8), s, rng.randint(9, 13)):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=light, width=3)
        return img, _jitter(rng, (230, 245, 240), 10)
    raise ValueError(f"unknown style {style!r}; styles are {STYLES}")


def _subject(draw: ImageDraw.ImageDraw, subject: str, size: int, ink: RGB, rng: random.Random) -> None:
    """Simple shapes, placed and scaled with a little jitter, in a box of side ``u``."""
    u = size * rng.uniform(0.45, 0.6)
    x = size * rng.uniform(0.2, 0.8) - u / 2
    y = size * rng.uniform(0.3, 0.7) - u / 2

    def box(a: float, b: float, c: float, d: float) -> list[float]:
        return [x + a * u, y + b * u, x + c * u, y + d * u]

    w = max(1, size // 40)
    if subject == "kitchen":
        draw.rectangle(box(0, 0.5, 1, 1), outline=ink, width=w)
        draw.rectangle(box(0.1, 0.0, 0.4, 0.3), fill=ink)
        draw.ellipse(box(0.55, 0.3, 0.85, 0.5), outline=ink, width=w)
    elif subject == "window":
        draw.rectangle(box(0.1, 0, 0.9, 1), outline=ink, width=2 * w)
        draw.line(box(0.5, 0, 0.5, 1), fill=ink, width=w)
        draw.line(box(0.1, 0.5, 0.9, 0.5), fill=ink, width=w)
    elif subject == "cup":
        draw.rectangle(box(0.2, 0.3, 0.7, 0.9), fill=ink)
        draw.arc(box(0.6, 0.4, 0.9, 0.75), -90, 90, fill=ink, width=2 * w)
    elif subject == "tree":
        draw.rectangle(box(0.42, 0.55, 0.58, 1), fill=ink)
        draw.ellipse(box(0.1, 0, 0.9, 0.65), fill=ink)
    elif subject == "house":
        draw.rectangle(box(0.15, 0.45, 0.85, 1), fill=ink)
        draw.polygon([(x + 0.05 * u, y + 0.47 * u), (x + 0.5 * u, y), (x + 0.95 * u, y + 0.47 * u)], fill=ink)
    elif subject == "bicycle":
        draw.ellipse(box(0, 0.5, 0.4, 0.9), outline=ink, width=w + 1)
        draw.ellipse(box(0.6, 0.5, 1, 0.9), outline=ink, width=w + 1)
        draw.line(box(0.2, 0.7, 0.5, 0.4), fill=ink, width=w + 1)
        draw.line(box(0.5, 0.4, 0.8, 0.7), fill=ink, width=w + 1)
    elif subject == "chair":
        draw.rectangle(box(0.2, 0, 0.3, 1), fill=ink)
        draw.rectangle(box(0.2, 0.5, 0.8, 0.6), fill=ink)
        draw.rectangle(box(0.7, 0.5, 0.8, 1), fill=ink)
    elif subject == "boat":
        draw.polygon([(x, y + 0.7 * u), (x + u, y + 0.7 * u), (x + 0.8 * u, y + u), (x + 0.2 * u, y + u)], fill=ink)
        draw.polygon([(x + 0.5 * u, y), (x + 0.5 * u, y + 0.65 * u), (x + 0.9 * u, y + 0.65 * u)], fill=ink)
    else:
        raise ValueError(f"unknown subject {subject!r}; subjects are {SUBJECTS}")


def draw_picture(style: str, subject: str, seed: int, size: int = 96) -> Image.Image:
    """A deterministic RGB picture of ``subject`` in the look the person calls ``style``."""
    rng = random.Random(f"{style}|{subject}|{seed}|{size}")
    img, ink = _background(style, size, rng)
    _subject(ImageDraw.Draw(img), subject, size, ink, rng)
    if style == "quiet morning":
        img = img.filter(ImageFilter.GaussianBlur(0.6))
    return img
