"""Screenshots of the web page's main views for the README: the search grid, the report and the key prompt.

On the sample person (crawled, trained on qualia-tiny and indexed into ``--workspace`` if it is not there yet),
served by real uvicorn and shown in Debian's headless Chromium (the tests' driver: ``make browser`` installs
it). Writes docs/screenshots/{search,more-like-this,report,key}.png and prints one JSON object: what each
shows, and the page's asset sizes.

    .venv/bin/python benchmarks/screenshots.py --workspace /tmp/persona
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' browser and server helpers: one way to drive the page, not two

from _report import emit, machine  # noqa: E402
from _sample import sample_person  # noqa: E402
from qualia.config import TINY_BACKBONE, TrainSettings  # noqa: E402
from qualia.workspace import Workspace  # noqa: E402
from service import keys  # noqa: E402
from service.app import create_app  # noqa: E402
from service.routers.page import PAGE_DIR  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402
from tests.helpers import chromium, uvicorn_thread  # noqa: E402

log = logging.getLogger("screenshots")
PROFILE = "demo"
OUT = ROOT / "docs" / "screenshots"
WIDTH = 1280


def prepared(ws: Workspace, epochs: int) -> Workspace:
    """The sample person with an adapter and an index built with it (each made only when missing)."""
    from qualia.index import index_profile
    from qualia.train import train_profile

    sample_person(ws, PROFILE)
    if ws.latest_adapter(PROFILE) is None:
        log.info("training %s on %s (%d epochs at most)", PROFILE, TINY_BACKBONE, epochs)
        train_profile(ws, PROFILE, TrainSettings(backbone=TINY_BACKBONE, epochs=epochs))
    if ws.latest_index(PROFILE) is None:
        index_profile(ws, PROFILE)
    return ws


def wait_for(browser: Any, script: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not browser.execute_script(script):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never satisfied: {script}")
        time.sleep(0.2)


PICTURES_SHOWN = ("const imgs = [...document.querySelectorAll('#results img')].slice(0, 12);"
                  "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)")


def shoot(browser: Any, name: str, height: int | None = None) -> str:
    """The viewport, or the whole page when ``height`` is None (the window grown to fit it)."""
    full = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, height or full + 100)
    time.sleep(0.5)  # let the layout settle at the new size
    path = OUT / f"{name}.png"
    browser.save_screenshot(str(path))
    return str(path.relative_to(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="the sample person's workspace (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs at most, when an adapter is made")
    parser.add_argument("--query", default="quiet morning cup", help="the words of the search shown")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = args.workspace or Path(tempfile.mkdtemp(prefix="qualia-screenshots-"))
    ws = prepared(Workspace(root), args.epochs)
    OUT.mkdir(parents=True, exist_ok=True)
    shots: dict[str, str] = {}

    browser = chromium(WIDTH, 900)
    try:
        with uvicorn_thread(create_app(ServiceSettings(home=ws.root))) as base:
            browser.get(f"{base}/?profile={PROFILE}&q={quote_plus(args.query)}")
            wait_for(browser, PICTURES_SHOWN)
            shots["search"] = shoot(browser, "search", 1000)
            browser.execute_script("document.querySelector('#results li.picture button.more').click()")
            wait_for(browser, "return new URLSearchParams(location.search).has('like')")
            wait_for(browser, PICTURES_SHOWN)
            shots["more-like-this"] = shoot(browser, "more-like-this", 1000)
            browser.set_window_size(WIDTH, 900)
            browser.get(f"{base}/?profile={PROFILE}&view=report")
            wait_for(browser, "const p = [...document.querySelectorAll('img.plot')];"
                              "return p.length > 0 && p.every(i => i.complete && i.naturalWidth > 0)")
            shots["report"] = shoot(browser, "report")

        # The key prompt, on a copy (keys close every profile of a workspace, and this may be the user's).
        with tempfile.TemporaryDirectory(prefix="qualia-keyed-") as keyed:
            copy = Workspace(Path(keyed))
            shutil.copytree(ws.profile_dir(PROFILE), copy.profile_dir(PROFILE))
            shutil.copytree(ws.images_dir, copy.images_dir)
            keys.create_key(copy, PROFILE)
            with uvicorn_thread(create_app(ServiceSettings(home=copy.root))) as base:
                browser.set_window_size(WIDTH, 900)
                browser.get(f"{base}/?profile={PROFILE}&q={quote_plus(args.query)}")
                wait_for(browser, "return !document.getElementById('key-view').hidden")
                browser.find_element("id", "key").send_keys("qk_mistyped\n")
                wait_for(browser, "return !document.getElementById('message').hidden")
                shots["key"] = shoot(browser, "key", 520)
    finally:
        browser.quit()

    assets = {path.name: path.stat().st_size for path in sorted(PAGE_DIR.iterdir()) if path.is_file()}
    return emit({"machine": machine(), "screenshots": shots, "page_assets_bytes": assets,
                 "page_total_bytes": sum(assets.values())}, None)


if __name__ == "__main__":
    sys.exit(main())
