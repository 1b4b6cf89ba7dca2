"""Pictures made to hurt: every entry point answers them with a bounded cost and a plain 4xx.

The memory test runs the real server (``qualia serve`` under uvicorn) and reads its peak resident
memory (VmHWM) from /proc while hostile pictures arrive concurrently.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from qualia import images
from qualia.corpus import Corpus
from qualia.errors import ImageTooLarge, InvalidImage
from qualia.workspace import Workspace
from tests.helpers import PROFILE, served, write_sample_corpus

QUERY_PIXELS = 4_000_000  # the server's max_image_pixels in the memory test
# Two query pictures are decoded at once (max_concurrent_images); each costs about its pixels x 3 bytes as
# RGB plus the decoder's own copy and the bounded working copy. The bound leaves room for allocator slack.
PEAK_GROWTH_BOUND_MB = 200


def encoded(im: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb(side: int = 20_000) -> bytes:
    """A PNG whose header claims side x side pixels, in a few hundred kilobytes."""
    return encoded(Image.new("1", (side, side)), optimize=True)


def hostile() -> dict[str, bytes]:
    """Named hostile pictures, generated here (nothing of them is committed)."""
    solid = Image.new("RGB", (2000, 2000), (120, 30, 200))
    jpeg = encoded(solid, "JPEG", quality=90)
    frames = [Image.new("RGB", (500, 500), (i * 20 % 256, 0, 0)) for i in range(40)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)
    huge_text = Image.new("RGB", (64, 64))
    return {
        "thin 1x100000": encoded(Image.new("RGB", (1, 100_000))),
        "thin 100000x1": encoded(Image.new("RGB", (100_000, 1))),
        "thin but allowed 447x8940": encoded(Image.new("RGB", (447, 8940), (9, 9, 9))),
        "solid 2000x2000 png": encoded(solid),
        "2000x2000 jpeg": jpeg,
        "truncated jpeg": jpeg[: len(jpeg) // 2],
        "bomb 20000x20000": bomb(),
        "animated gif, 40 frames": gif.getvalue(),
        "cmyk jpeg": encoded(Image.new("CMYK", (300, 300), (10, 20, 30, 40)), "JPEG"),
        "palette png with transparency": encoded(Image.new("P", (300, 300)), transparency=0),
        "16-bit grey png": encoded(Image.new("I;16", (300, 300))),
        "huge metadata png": encoded(huge_text, pnginfo=_big_text_chunk()),
        "not a picture": b"GIF89a" + b"\x00" * 64,
        "empty": b"",
    }


def _big_text_chunk():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * 2_000_000)
    return info


@pytest.mark.parametrize("name", sorted(hostile()))
def test_every_hostile_picture_is_decoded_within_bounds_or_refused_plainly(name: str) -> None:
    data = hostile()[name]
    try:
        picture = images.decode(data).picture
    except ImageTooLarge as e:
        assert "limit" in str(e) or "too large" in str(e)
        return
    except InvalidImage as e:
        assert str(e) and " at 0x" not in str(e)
        return
    width, height = picture.size
    assert picture.mode == "RGB"
    assert max(width, height) <= images.WORKING_SIDE and max(width, height) <= images.WORKING_ASPECT * min(width, height)


def test_the_corpus_stores_only_what_decodes(tmp_path: Path) -> None:
    pictures = hostile()
    stored, refused = [], []
    with Corpus.open(Workspace(tmp_path), "mara") as corpus:
        for name, data in pictures.items():
            try:
                corpus.store_image(f"http://127.0.0.1:9/{len(stored) + len(refused)}.png", data)
                stored.append(name)
            except (InvalidImage, ImageTooLarge):
                refused.append(name)
        corpus.commit()
        assert corpus.counts()["images"] == len(stored)
    assert {"truncated jpeg", "bomb 20000x20000", "thin 1x100000", "thin 100000x1", "not a picture",
            "empty"} <= set(refused)
    assert {"2000x2000 jpeg", "animated gif, 40 frames", "cmyk jpeg", "thin but allowed 447x8940"} <= set(stored)
    for path in (tmp_path / "images").rglob("*.*"):
        images.read(path)  # everything stored reads back


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny) -> Iterator[tuple[str, subprocess.Popen]]:
    from qualia.embed import Encoder
    from qualia.index import build_index

    home = tmp_path_factory.mktemp("hostile-home")
    write_sample_corpus(home)
    build_index(Workspace(home), PROFILE, Encoder.load(tiny), None)
    env = {"QUALIA_HOME": str(home), "QUALIA_MAX_IMAGE_PIXELS": str(QUERY_PIXELS), "QUALIA_MAX_CONCURRENT_IMAGES": "2"}
    with served(env) as running:
        yield running


@pytest.mark.slow
def test_hostile_pictures_sent_concurrently_keep_the_servers_memory_bounded(server) -> None:
    base, proc = server
    search = f"{base}/v1/profiles/{PROFILE}/search"
    small = encoded(Image.new("RGB", (64, 64), (1, 2, 3)))
    for body in ({"text": "warm up"}, {"image_base64": base64.b64encode(small).decode()}):
        assert httpx.post(search, json=body, timeout=60).status_code == 200
    before = _peak_rss_mb(proc.pid)

    answers: list[tuple[str, int, dict]] = []
    pictures = hostile()

    def send(name: str, data: bytes, as_upload: bool) -> None:
        if as_upload:
            r = httpx.post(search, files={"image": ("x", data, "application/octet-stream")}, timeout=120)
        else:
            r = httpx.post(search, json={"image_base64": base64.b64encode(data).decode() or "AA=="}, timeout=120)
        answers.append((name, r.status_code, r.json()))

    threads = [threading.Thread(target=send, args=(name, data, i % 2 == 0))
               for round_ in range(2) for i, (name, data) in enumerate(pictures.items())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    growth = _peak_rss_mb(proc.pid) - before
    assert len(answers) == len(threads)
    assert all(status < 500 for _, status, _ in answers), [a for a in answers if a[1] >= 500]
    assert all(status == 200 or body.get("detail") for _, status, body in answers)
    refused = {name for name, status, _ in answers if status in (400, 413)}
    assert {"thin 1x100000", "thin 100000x1", "bomb 20000x20000", "truncated jpeg"} <= refused
    assert growth < PEAK_GROWTH_BOUND_MB, f"peak RSS grew {growth:.0f} MB"
    print(f"peak RSS {before:.0f} MB -> +{growth:.0f} MB over {len(threads)} hostile requests")


def test_a_damaged_stored_picture_costs_its_pairs_not_the_profile(ws: Workspace) -> None:
    """A picture damaged on disk (or stored before pictures were fully decoded) is skipped and counted."""
    from qualia.config import TrainSettings
    from qualia.evaluate import evaluate_profile
    from qualia.index import index_profile
    from qualia.lora import read_adapter_meta
    from qualia.train import train_profile
    from tests.test_train_eval import FAST, build_synthetic_corpus

    build_synthetic_corpus(ws, "hurt", n_pins=60, n_posts=0)
    stored = sorted((ws.images_dir).rglob("*.png"))
    for path in stored[:3]:
        path.write_bytes(path.read_bytes()[:60])  # the header survives, the pixels do not
    adapter = train_profile(ws, "hurt", TrainSettings(epochs=1, **FAST))
    data = read_adapter_meta(adapter)["data"]
    assert data["images_unreadable"] == 3 and data["images"] == len(stored) - 3
    assert evaluate_profile(ws, "hurt")["pairs"] > 0
    manifest = json.loads((index_profile(ws, "hurt") / "manifest.json").read_text())
    assert manifest["count_by_modality"]["image"] == len(stored) - 3
