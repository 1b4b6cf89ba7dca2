"""What the tests share: paths, subprocess runners, pictures, and a small real profile.

``write_sample_corpus`` makes a corpus with pictures (posts, pins, a picture behind two URLs) that the
index, service and auth tests build their index from.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from qualia.corpus import Corpus
from qualia.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_qualia(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed command line in a fresh process, as a user would."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "qualia.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout,
    )


@contextlib.contextmanager
def uvicorn_thread(app: Any, timeout: float = 60) -> Iterator[str]:
    """``app`` under real uvicorn on a free loopback port, in a thread of this process: its base URL, once started."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {timeout:.0f} s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium(width: int = 1280, height: int = 900) -> Any:
    """Debian's headless Chromium under selenium, through the system's chromedriver (selenium-manager never runs:
    it would try to download a browser). ``make test`` installs both; without them this fails and says so."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} missing: `make browser` (or apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", f"--window-size={width},{height}", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for uncaught errors
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@contextlib.contextmanager
def served(env: dict[str, str], timeout: float = 90) -> Iterator[tuple[str, subprocess.Popen]]:
    """``qualia serve`` on a free loopback port in a process of its own: (base URL, the process), once healthy."""
    import httpx
    import pytest

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qualia.cli", "serve", "--port", str(port)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"qualia serve exited: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"qualia serve did not come up within {timeout:.0f} s")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def open_corpus(ws: Workspace | Path, profile: str) -> Corpus:
    """A profile's corpus, read-only (``ws`` may be a workspace root)."""
    return Corpus.open(ws if isinstance(ws, Workspace) else Workspace(ws), profile, readonly=True)


def png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    """A plain square PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


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
    with Corpus.open(Workspace(home), profile) as c:
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
                sample.sha_by_url[url] = c.store_image(url, picture(seed))[0]
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
            sample.sha_by_url[url] = c.store_image(url, picture(seed, "JPEG"))[0]
            c.add_image_ref(pin, url, "pin")
        # One picture crawled by two URLs: first as a degree-2 pin's image, then in a degree-1 post's body.
        c.upsert_item("pinterest:pin:50", source="pinterest", kind="pin", degree=2, title="Shared picture pin",
                      url="http://127.0.0.1:9/pin/50/", via=("pinterest:pin:2", "related"))
        shared = picture(1000)
        sample.sha_by_url[SHARED_FIRST_URL] = c.store_image(SHARED_FIRST_URL, shared)[0]
        c.add_image_ref("pinterest:pin:50", SHARED_FIRST_URL, "pin")
        time.sleep(0.01)
        sample.sha_by_url[SHARED_SECOND_URL] = c.store_image(SHARED_SECOND_URL, shared)[0]
        c.add_image_ref("substack:post:3", SHARED_SECOND_URL, "body", alt="the shared picture",
                        caption="a picture seen twice", position=2)
        c.commit()
    sample.unique_images = len(set(sample.sha_by_url.values()))
    return sample
