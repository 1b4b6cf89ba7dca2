"""A small real profile (corpus with pictures, tiny backbone, FAISS index) shared by the index and service tests."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from qualia.corpus import Corpus
from qualia.workspace import corpus_path, images_dir

PROFILE = "alice"
CDN = "http://127.0.0.1:9/cdn"
PINIMG = "http://127.0.0.1:9/pinimg"
SHARED_FIRST_URL = f"{PINIMG}/originals/zz/shared.png"  # fetched first, sorts last: order must come from time
SHARED_SECOND_URL = f"{CDN}/aa/shared-copy.png"


def picture(seed: int, fmt: str = "PNG", size: int = 48) -> bytes:
    """A distinct little picture per seed: coloured background, a few shapes."""
    colour = ((seed * 53) % 256, (seed * 97) % 256, (seed * 151) % 256)
    im = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(im)
    for j in range(3):
        x, y = (seed * 7 + j * 13) % size, (seed * 11 + j * 17) % size
        draw.rectangle([x, y, x + 10, y + 6], fill=((seed + j * 80) % 256, 255 - colour[1], j * 60))
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()


@dataclass
class SampleCorpus:
    home: Path
    sha_by_url: dict[str, str] = field(default_factory=dict)
    unique_images: int = 0


def write_sample_corpus(home: Path, profile: str = PROFILE) -> SampleCorpus:
    sample = SampleCorpus(home)
    with Corpus(corpus_path(profile, home), images_root=images_dir(home)) as c:
        c.upsert_item("substack:user:alice", source="substack", kind="user", degree=0, title="Alice")
        c.upsert_item("substack:publication:1", source="substack", kind="publication", degree=1,
                      title="Field Notes", url="http://127.0.0.1:9/fieldnotes",
                      via=("substack:user:alice", "writes"))
        seed = 0
        for n in range(1, 9):
            post = f"substack:post:{n}"
            c.upsert_item(post, source="substack", kind="post", degree=1, title=f"Post number {n}",
                          text=f"notes on walk {n} by the sea", url=f"http://127.0.0.1:9/fieldnotes/p/post-{n}",
                          via=("substack:publication:1", "published"))
            for role, alt, caption in (("cover", None, None), ("body", f"a sketch of shell {n}", f"shell {n}, drawn at dawn")):
                seed += 1
                url = f"{CDN}/{role}/{n}.png"
                sample.sha_by_url[url] = c.store_image(url, picture(seed))
                c.add_image_ref(post, url, role, alt=alt, caption=caption, position=0 if role == "cover" else 1)
        # A post with words and no picture.
        c.upsert_item("substack:post:99", source="substack", kind="post", degree=1, title="A letter without pictures",
                      text="only words today", url="http://127.0.0.1:9/fieldnotes/p/letter",
                      via=("substack:publication:1", "published"))

        c.upsert_item("pinterest:user:alice", source="pinterest", kind="user", degree=0, title="alice")
        c.upsert_item("pinterest:board:10", source="pinterest", kind="board", degree=1, title="Tide pools",
                      url="http://127.0.0.1:9/alice/tide-pools/", via=("pinterest:user:alice", "owns"))
        for n in range(1, 11):
            pin = f"pinterest:pin:{n}"
            degree = 1 if n <= 7 else 2
            via = ("pinterest:board:10", "contains") if degree == 1 else ("pinterest:pin:1", "related")
            c.upsert_item(pin, source="pinterest", kind="pin", degree=degree, title=f"Pin {n} tide pool",
                          text=f"a rock pool with anemones, number {n}", url=f"http://127.0.0.1:9/pin/{n}/", via=via)
            seed += 1
            url = f"{PINIMG}/originals/{n:02d}/pin{n}.jpg"
            sample.sha_by_url[url] = c.store_image(url, picture(seed, "JPEG"))
            c.add_image_ref(pin, url, "pin")
        # One picture crawled by two URLs: first as a degree-2 pin's image, then in a degree-1 post's body.
        c.upsert_item("pinterest:pin:50", source="pinterest", kind="pin", degree=2, title="Shared picture pin",
                      url="http://127.0.0.1:9/pin/50/", via=("pinterest:pin:2", "related"))
        shared = picture(1000)
        sample.sha_by_url[SHARED_FIRST_URL] = c.store_image(SHARED_FIRST_URL, shared)
        c.add_image_ref("pinterest:pin:50", SHARED_FIRST_URL, "pin")
        time.sleep(0.01)
        sample.sha_by_url[SHARED_SECOND_URL] = c.store_image(SHARED_SECOND_URL, shared)
        c.add_image_ref("substack:post:3", SHARED_SECOND_URL, "body", alt="the shared picture",
                        caption="a picture seen twice", position=2)
        c.commit()
    sample.unique_images = len(set(sample.sha_by_url.values()))
    return sample
