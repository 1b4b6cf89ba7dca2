"""Procedural picture-caption pairs: the generic visual world the ``qualia-tiny`` stand-in is pre-trained on.

A scene is a background colour with a texture (stripes, rings, checks, dots, grain, rain...), some
shapes (kind, colour, count, size, position) and a finish (dark or bright, faded, blurred, warm or
cool, vignette). Its caption says part of that in plain English, with synonyms and varied templates,
as real captions do: never everything, sometimes only the look.

Invented words. A stand-in that only ever sees its own vocabulary learns to map every other word to
one point, and then a LoRA adapter cannot teach it a person's private words (measured: mean pairwise
cosine 0.98 between unseen words). A real CLIP has seen almost every word piece in some context. So
a pool of invented words (``nonce_words``), each bound to a look (a colour, a texture, a finish, or a
combination such as "grainy and warm"), appears in captions: the text tower learns that unfamiliar
pieces carry visual meaning, in combination, which is exactly what a person's words are. The
collapse gate uses other invented words (``GATE_WORDS``), never seen in pre-training.

Everything is a function of a seed: ``scene(rng)`` with ``random.Random(seed)``; the held-out set
(``generic_set``) comes from seeds the pre-training stream never draws. numpy and Pillow only.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 64

COLORS: dict[str, tuple[tuple[int, int, int], list[str]]] = {
    "red": ((200, 30, 35), ["red", "crimson", "scarlet"]),
    "orange": ((240, 130, 20), ["orange", "tangerine"]),
    "yellow": ((245, 215, 40), ["yellow", "golden", "lemon yellow"]),
    "green": ((40, 150, 50), ["green", "emerald", "grass green"]),
    "teal": ((0, 128, 128), ["teal", "turquoise", "blue-green"]),
    "blue": ((40, 80, 210), ["blue", "cobalt", "azure"]),
    "navy": ((15, 25, 90), ["navy", "dark blue", "indigo"]),
    "purple": ((120, 40, 160), ["purple", "violet", "plum"]),
    "pink": ((240, 130, 180), ["pink", "rose", "blush"]),
    "brown": ((110, 70, 35), ["brown", "chocolate", "umber"]),
    "black": ((15, 15, 15), ["black", "jet black", "ink black"]),
    "white": ((245, 245, 245), ["white", "snow white", "ivory"]),
    "gray": ((128, 128, 128), ["gray", "grey", "silver"]),
    "cream": ((235, 220, 185), ["cream", "beige", "sand"]),
}
TEXTURES: dict[str, list[str]] = {
    "plain": ["plain", "solid", "flat", "bare"],
    "stripes": ["striped", "stripes", "lined", "pinstripe"],
    "bands": ["broad bands", "wide stripes", "banded"],
    "checks": ["checkered", "checks", "checkerboard", "chequered"],
    "rings": ["rings", "concentric circles", "ripples", "target pattern"],
    "dots": ["polka dots", "dotted", "spots", "spotted"],
    "grid": ["grid", "lattice", "tiled", "mesh"],
    "gradient": ["gradient", "ombre", "fade"],
    "speckle": ["speckled", "flecked", "spattered", "sprinkled"],
    "grain": ["grainy", "film grain", "noisy", "gritty"],
    "rain": ["rain streaks", "rainy", "drizzle", "slanting lines"],
}
SHAPES: dict[str, tuple[list[str], list[str]]] = {  # kind: (singular synonyms, plural synonyms)
    "circle": (["circle", "disc", "round shape"], ["circles", "discs", "round shapes"]),
    "square": (["square", "box", "block"], ["squares", "boxes", "blocks"]),
    "triangle": (["triangle", "wedge", "pyramid shape"], ["triangles", "wedges", "pyramid shapes"]),
    "ring": (["ring", "hoop", "donut"], ["rings", "hoops", "donuts"]),
    "cross": (["cross", "plus sign", "x"], ["crosses", "plus signs", "xs"]),
    "diamond": (["diamond", "rhombus", "lozenge"], ["diamonds", "rhombuses", "lozenges"]),
    "bar": (["bar", "stick", "line"], ["bars", "sticks", "lines"]),
}
COUNT_WORDS = {1: ["a", "one", "a single"], 2: ["two", "a pair of"], 3: ["three"], 4: ["four"]}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big", "huge"], "medium": [""]}
POSITION_WORDS = {
    "left": ["on the left", "at the left"],
    "right": ["on the right", "at the right"],
    "top": ["at the top", "up top"],
    "bottom": ["at the bottom", "down below"],
    "center": ["in the middle", "in the center", "centered"],
}
FINISH_WORDS = {
    "dark": ["dark", "dim", "shadowy", "underexposed"],
    "bright": ["bright", "pale", "light", "washed"],
    "faded": ["faded", "muted", "low contrast", "hazy"],
    "blur": ["blurry", "soft focus", "out of focus", "smudged"],
    "warm": ["warm", "sunny toned", "amber tinted"],
    "cool": ["cool", "cold toned", "bluish"],
    "vignette": ["vignetted", "dark edges", "dark corners"],
}
FINISHES = list(FINISH_WORDS)
GROUND_WORDS = ["background", "backdrop", "ground", "surface"]
PICTURE_WORDS = ["picture", "photo", "image", "shot", "print"]
# Never seen in pre-training: the collapse gate measures how apart the stand-in keeps them.
GATE_WORDS = ["brevin", "quorlish", "tandemere", "osquell", "vintrago", "mellowfen", "pashkin", "zorbel",
              "lummery", "crandish", "yeltro", "fossamund"]  # fmt: skip

_SYLLABLES = ("ba be bi bo bu ca ce co da de di do fa fe fi fo ga ge go ha he ho ka ke ki ko la le li lo lu "
              "ma me mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so su ta te ti to tu va ve "
              "vi vo wa we wi ya yo za zo").split()  # fmt: skip
_CODAS = ["", "", "n", "r", "l", "s", "th", "sh", "m", "x", "nd", "rk"]


@dataclass
class Scene:
    """What is drawn; ``caption`` says part of it."""

    color: str
    texture: str
    texture_color: str
    orientation: str  # stripes and gradients: horizontal, vertical, diagonal
    shape: str | None
    shape_color: str
    count: int
    size: str
    position: str
    finishes: list[str] = field(default_factory=list)
    nonce: str | None = None  # an invented word for (part of) this look, when the caption uses one


@dataclass(frozen=True)
class NonceWord:
    word: str
    binds: dict  # the attributes it names, e.g. {"texture": "grain", "finishes": ["warm"]}


def _invent(rng: random.Random, taken: set[str]) -> str:
    while True:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) + rng.choice(_CODAS)
        if word not in taken and word not in GATE_WORDS:
            taken.add(word)
            return word


def nonce_words(n: int = 600, seed: int = 7) -> list[NonceWord]:
    """A fixed pool of invented words, each bound to a look: one attribute, or two together."""
    rng = random.Random(seed)
    taken: set[str] = set()
    out = []
    for _ in range(n):
        kinds = rng.sample(["color", "texture", "finish", "shape"], rng.choice([1, 2, 2]))
        binds: dict = {}
        for kind in kinds:
            if kind == "color":
                binds["color"] = rng.choice(list(COLORS))
            elif kind == "texture":
                binds["texture"] = rng.choice([t for t in TEXTURES if t != "plain"])
            elif kind == "finish":
                binds["finishes"] = [rng.choice(FINISHES)]
            else:
                binds["shape"] = rng.choice(list(SHAPES))
        out.append(NonceWord(_invent(rng, taken), binds))
    return out


def scene(rng: random.Random, nonce_pool: list[NonceWord] | None = None, nonce_rate: float = 0.0) -> Scene:
    colors = list(COLORS)
    color = rng.choice(colors)
    s = Scene(
        color=color,
        texture=rng.choice(list(TEXTURES)),
        texture_color=rng.choice([c for c in colors if c != color]),
        orientation=rng.choice(["horizontal", "vertical", "diagonal"]),
        shape=rng.choice([*SHAPES, None]) if rng.random() < 0.8 else None,
        shape_color=rng.choice([c for c in colors if c != color]),
        count=rng.choice([1, 1, 1, 2, 3, 4]),
        size=rng.choice(["small", "medium", "large"]),
        position=rng.choice(list(POSITION_WORDS)),
        finishes=rng.sample(FINISHES, rng.choice([0, 0, 1, 1, 2])),
    )
    if "dark" in s.finishes and "bright" in s.finishes:
        s.finishes.remove("bright")
    if "warm" in s.finishes and "cool" in s.finishes:
        s.finishes.remove("cool")
    if nonce_pool and rng.random() < nonce_rate:
        word = rng.choice(nonce_pool)
        s.nonce = word.word
        for key, value in word.binds.items():
            if key == "finishes":
                opposite = {"warm": "cool", "cool": "warm", "dark": "bright", "bright": "dark"}
                clash = {opposite.get(f) for f in value}
                s.finishes = sorted((set(s.finishes) - clash) | set(value))
            elif key == "shape":
                s.shape = value
            else:
                setattr(s, key, value)
        if s.texture_color == s.color:
            s.texture_color = "white" if s.color != "white" else "black"
        if s.shape_color == s.color:
            s.shape_color = "black" if s.color != "black" else "white"
    return s


# --- drawing ---------------------------------------------------------------------------------------

def _rgb(name: str, rng: random.Random, jitter: int = 18) -> np.ndarray:
    base = np.array(COLORS[name][0], dtype=np.float32)
    return np.clip(base + [rng.randint(-jitter, jitter) for _ in range(3)], 0, 255)


def _texture(s: Scene, rng: random.Random, size: int) -> np.ndarray:
    """(size, size, 3) float32 background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = _rgb(s.color, rng), _rgb(s.texture_color, rng)
    along = {"horizontal": yy, "vertical": xx, "diagonal": (xx + yy) / 2}[s.orientation]
    period = rng.uniform(0.09, 0.2)
    t = s.texture
    if t == "plain":
        mask = np.zeros_like(xx)
    elif t == "stripes":
        mask = ((along / period + rng.random()) % 1 < 0.5).astype(np.float32)
    elif t == "bands":
        mask = (np.floor(yy * rng.randint(3, 6)) % 2).astype(np.float32)
    elif t == "checks":
        mask = (((xx / period).astype(int) + (yy / period).astype(int)) % 2).astype(np.float32)
    elif t == "rings":
        cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        mask = ((np.hypot(xx - cx, yy - cy) / period) % 1 < 0.5).astype(np.float32)
    elif t == "dots":
        fx, fy = (xx / period) % 1 - 0.5, (yy / period) % 1 - 0.5
        mask = (fx**2 + fy**2 < 0.07).astype(np.float32)
    elif t == "grid":
        mask = (((xx / period) % 1 < 0.15) | ((yy / period) % 1 < 0.15)).astype(np.float32)
    elif t == "gradient":
        mask = along
    elif t == "speckle":
        nprng = np.random.default_rng(rng.getrandbits(32))
        mask = (nprng.random((size, size)) < 0.1).astype(np.float32)
    elif t == "grain":
        nprng = np.random.default_rng(rng.getrandbits(32))
        img = np.broadcast_to(a, (size, size, 3)).copy()
        return img + nprng.normal(0, 38, (size, size, 1)).astype(np.float32)
    elif t == "rain":
        img = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(25, 45)):
            x, y, n = rng.uniform(0, size), rng.uniform(-size * 0.2, size), rng.uniform(0.12, 0.25) * size
            draw.line([x, y, x - n * 0.35, y + n], fill=255, width=1)
        mask = np.asarray(img, dtype=np.float32) / 255
    else:
        raise ValueError(f"unknown texture {t!r}")
    return a * (1 - mask[..., None]) + b * mask[..., None]


def _places(s: Scene, rng: random.Random, size: int) -> list[tuple[float, float, float]]:
    """(cx, cy, half side) of each shape."""
    half = {"small": 0.1, "medium": 0.17, "large": 0.28}[s.size] * size * rng.uniform(0.85, 1.15)
    if s.count == 1:
        cx, cy = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73),
                  "center": (0.5, 0.5)}[s.position]  # fmt: skip
        return [((cx + rng.uniform(-0.05, 0.05)) * size, (cy + rng.uniform(-0.05, 0.05)) * size, half)]
    half = min(half, size * 0.14)
    cells = rng.sample([(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73), (0.5, 0.5)], s.count)
    return [((x + rng.uniform(-0.04, 0.04)) * size, (y + rng.uniform(-0.04, 0.04)) * size, half) for x, y in cells]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, h: float, ink: tuple) -> None:
    w = max(2, int(h / 3))
    if kind == "circle":
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=ink)
    elif kind == "square":
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=ink)
    elif kind == "triangle":
        draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)], fill=ink)
    elif kind == "ring":
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], outline=ink, width=w)
    elif kind == "cross":
        draw.rectangle([cx - h, cy - w / 2, cx + h, cy + w / 2], fill=ink)
        draw.rectangle([cx - w / 2, cy - h, cx + w / 2, cy + h], fill=ink)
    elif kind == "diamond":
        draw.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)], fill=ink)
    elif kind == "bar":
        draw.rectangle([cx - h, cy - w / 2, cx + h, cy + w / 2], fill=ink)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def render(s: Scene, rng: random.Random, size: int = SIZE) -> Image.Image:
    """The scene as an RGB picture of ``size`` pixels a side."""
    img = Image.fromarray(np.clip(_texture(s, rng, size), 0, 255).astype(np.uint8))
    if s.shape:
        draw = ImageDraw.Draw(img)
        ink = tuple(int(v) for v in _rgb(s.shape_color, rng, 10))
        for cx, cy, h in _places(s, rng, size):
            _draw_shape(draw, s.shape, cx, cy, h, ink)
    if "blur" in s.finishes:
        img = img.filter(ImageFilter.GaussianBlur(size / rng.uniform(28, 40)))
    x = np.asarray(img, dtype=np.float32)
    if "dark" in s.finishes:
        x = x * rng.uniform(0.3, 0.45)
    if "bright" in s.finishes:
        x = x * 0.45 + 255 * 0.55
    if "faded" in s.finishes:
        x = x * 0.4 + x.mean() * 0.6
    if "warm" in s.finishes:
        x = x * [1.15, 1.0, 0.7] + [25, 8, 0]
    if "cool" in s.finishes:
        x = x * [0.7, 0.95, 1.15] + [0, 5, 25]
    if "vignette" in s.finishes:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        x = x * np.clip(1.25 - 2.0 * np.hypot(xx, yy), 0.1, 1)[..., None]
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


# --- captions --------------------------------------------------------------------------------------

def _shape_phrase(s: Scene, rng: random.Random) -> str:
    assert s.shape
    singular, plural = SHAPES[s.shape]
    noun = rng.choice(singular if s.count == 1 else plural)
    words = [rng.choice(COUNT_WORDS[s.count])]
    if rng.random() < 0.6:
        words.append(rng.choice(SIZE_WORDS[s.size]))
    if rng.random() < 0.75:
        words.append(rng.choice(COLORS[s.shape_color][1]))
    words.append(noun)
    if s.count == 1 and rng.random() < 0.5:
        words.append(rng.choice(POSITION_WORDS[s.position]))
    return " ".join(w for w in words if w)


def _ground_phrase(s: Scene, rng: random.Random) -> str:
    color = rng.choice(COLORS[s.color][1])
    texture = rng.choice(TEXTURES[s.texture])
    if s.texture in ("plain", "grain"):
        parts = [texture, color] if rng.random() < 0.5 else [color]
    elif s.texture in ("stripes", "bands", "checks", "gradient") and rng.random() < 0.5:
        other = rng.choice(COLORS[s.texture_color][1])
        orient = f"{s.orientation} " if s.texture in ("stripes", "gradient") and rng.random() < 0.6 else ""
        parts = [f"{color} and {other} {orient}{texture}"]
        return " ".join(parts)
    else:
        parts = [color, texture]
    return " ".join(parts) + " " + rng.choice(GROUND_WORDS)


def _finish_phrase(s: Scene, rng: random.Random) -> str:
    return " ".join(rng.choice(FINISH_WORDS[f]) for f in s.finishes)


def _articles(words: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", words)


def caption(s: Scene, rng: random.Random) -> str:
    """Plain words for part of the scene: templates and synonyms vary, some attributes go unsaid."""
    return _articles(_caption(s, rng))


def _caption(s: Scene, rng: random.Random) -> str:
    finish = _finish_phrase(s, rng) if s.finishes and rng.random() < 0.8 else ""
    ground = _ground_phrase(s, rng) if not s.shape or rng.random() < 0.75 else ""
    shape = _shape_phrase(s, rng) if s.shape and (rng.random() < 0.85 or not ground) else ""
    picture = rng.choice(PICTURE_WORDS)
    if shape and ground:
        body = rng.choice([f"{shape} on a {ground}", f"{shape} against a {ground}", f"a {ground} with {shape}"])
    else:
        body = shape or (f"a {ground}" if not ground.endswith(tuple(TEXTURES["stripes"])) else ground)
    if finish:
        body = rng.choice([f"{finish} {picture} of {body}", f"{body}, {finish}", f"a {finish} {picture}: {body}"])
    elif rng.random() < 0.3:
        body = f"a {picture} of {body}"
    if s.nonce:
        body = rng.choice([f"{s.nonce}: {body}", f"{body}, very {s.nonce}", f"{s.nonce}", f"{s.nonce} {picture}",
                           f"a {s.nonce} {picture} of {shape or 'nothing much'}"])  # fmt: skip
    return body


def pair(rng: random.Random, nonce_pool: list[NonceWord] | None = None, nonce_rate: float = 0.0,
         size: int = SIZE) -> tuple[Image.Image, str]:  # fmt: skip
    s = scene(rng, nonce_pool, nonce_rate)
    return render(s, rng, size), caption(s, rng)


HELD_OUT_SEED = 10**9  # pre-training draws seeds below this


def generic_set(n: int = 400, size: int = SIZE) -> tuple[list[Image.Image], list[str]]:
    """The held-out generic set: ``n`` pictures with plain captions (no invented words), from seeds
    the pre-training stream never draws. Distinct captions; deterministic."""
    pictures, captions, seen = [], [], set()
    i = 0
    while len(pictures) < n:
        rng = random.Random(HELD_OUT_SEED + i)
        i += 1
        picture, words = pair(rng, size=size)
        if words in seen:
            continue
        seen.add(words)
        pictures.append(picture)
        captions.append(words)
    return pictures, captions
