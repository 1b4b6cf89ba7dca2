"""The web page in a real browser: Debian's headless Chromium (selenium, the system's chromedriver) against the
service under real uvicorn, over a trained tiny workspace. What the page shows is compared with what the JSON API
answers for the same search. One browser for the module; each test starts from a fresh address."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from qualia.workspace import Workspace
from service import keys
from service.app import create_app
from service.settings import ServiceSettings

from tests.helpers import PROFILE, chromium, picture, uvicorn_thread

pytestmark = [pytest.mark.browser, pytest.mark.slow]

K = 24  # what the page asks for
WAIT_S = 30


@pytest.fixture(scope="module")
def server(trained_home: Path) -> Iterator[str]:
    with uvicorn_thread(create_app(ServiceSettings(home=trained_home))) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def no_script_errors(browser: Any) -> Iterator[None]:
    """Whatever a test saw, the page's own script threw nothing."""
    browser.get_log("browser")  # what earlier tests left
    yield
    thrown = [entry["message"] for entry in browser.get_log("browser") if "Uncaught" in entry["message"]]
    assert not thrown


def api_search(base: str, body: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(f"{base}/v1/profiles/{PROFILE}/search", json={"k": K, **body}, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def run(browser: Any, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def shown_ids(browser: Any) -> list[str]:
    return run(browser, "return [...document.querySelectorAll('#results > li')].map(li => li.dataset.id)")


def wait_until(what: Callable[[], Any], expected: Any, timeout: float = WAIT_S) -> None:
    """Poll ``what()`` until it equals ``expected``; then fail showing the last value it had."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert value == expected


def address(browser: Any) -> dict[str, list[str]]:
    return parse_qs(urlparse(browser.current_url).query)


def pictures_loaded(browser: Any, selector: str, first: int = 6) -> list[bool]:
    return run(browser, "return [...document.querySelectorAll(arguments[0])].slice(0, arguments[1])"
                        ".map(i => i.complete && i.naturalWidth > 0)", selector, first)


def message(browser: Any) -> str:
    return run(browser, "const m = document.getElementById('message'); return m.hidden ? '' : m.textContent")


def visible(browser: Any, element_id: str) -> bool:
    return run(browser, "return !document.getElementById(arguments[0]).hidden", element_id)


def search_words(browser: Any, words: str) -> None:
    box = browser.find_element("id", "q")
    box.clear()
    box.send_keys(words + "\n")


def test_words_show_the_apis_top_pictures(browser: Any, server: str) -> None:
    browser.get(f"{server}/")
    wait_until(lambda: run(browser, "return document.getElementById('profile').value"), PROFILE)
    browser.find_element("css selector", "input[name=modality][value=image]").click()
    search_words(browser, "shell drawn at dawn")
    expected = api_search(server, {"text": "shell drawn at dawn", "modality": "image"})
    wait_until(lambda: shown_ids(browser), [hit["id"] for hit in expected])
    assert address(browser) == {"profile": [PROFILE], "q": ["shell drawn at dawn"], "modality": ["image"]}
    cards = run(browser, """return [...document.querySelectorAll('#results > li')].map(li => ({
        picture: li.classList.contains('picture'), src: li.querySelector('img.thumb').getAttribute('src'),
        alt: li.querySelector('img.thumb').alt, score: li.querySelector('.score').textContent,
        degree: li.querySelector('.degree') && li.querySelector('.degree').textContent,
        source: li.querySelector('a.source') && li.querySelector('a.source').href,
        caption: li.querySelector('.caption') && li.querySelector('.caption').textContent}))""")
    for card, hit in zip(cards, expected):
        assert card["picture"] and card["src"] == hit["image"]  # the service's own picture, no key needed here
        assert card["score"] == f"{hit['score']:.3f}"
        assert card["source"] == hit["source_url"] and card["caption"] == hit["text"]
        assert card["alt"] and (hit["text"] or "") in card["alt"]
        assert str(hit["degree"]) in card["degree"]
    wait_until(lambda: pictures_loaded(browser, "#results img.thumb"), [True] * 6)
    summary = browser.find_element("id", "summary").text
    assert f"{K} results" in summary and "adapter" in summary


def test_a_linkable_search_renders_on_load_and_the_address_follows(browser: Any, server: str) -> None:
    first, second = "a rock pool with anemones", "notes on a walk by the sea"
    browser.get(f"{server}/?profile={PROFILE}&q={first.replace(' ', '+')}&modality=text")
    first_ids = [hit["id"] for hit in api_search(server, {"text": first, "modality": "text"})]
    wait_until(lambda: shown_ids(browser), first_ids)
    assert all(i.startswith("txt-") for i in first_ids)
    assert browser.find_element("id", "q").get_attribute("value") == first
    assert browser.find_element("css selector", "input[name=modality][value=text]").is_selected()

    search_words(browser, second)
    second_ids = [hit["id"] for hit in api_search(server, {"text": second, "modality": "text"})]
    wait_until(lambda: shown_ids(browser), second_ids)
    assert second_ids != first_ids
    assert address(browser) == {"profile": [PROFILE], "q": [second], "modality": ["text"]}

    browser.back()  # the address bar kept the first search: Back shows it again
    wait_until(lambda: shown_ids(browser), first_ids)
    assert address(browser)["q"] == [first] and browser.find_element("id", "q").get_attribute("value") == first
    browser.refresh()
    wait_until(lambda: shown_ids(browser), first_ids)


def test_clicking_a_result_searches_more_like_it(browser: Any, server: str) -> None:
    browser.get(f"{server}/?profile={PROFILE}&q=shell+drawn+at+dawn&modality=image")
    words = [hit["id"] for hit in api_search(server, {"text": "shell drawn at dawn", "modality": "image"})]
    wait_until(lambda: shown_ids(browser), words)
    chosen = words[2]
    browser.find_element("css selector", f'#results > li[data-id="{chosen}"] button.more').click()
    like = [hit["id"] for hit in api_search(server, {"id": chosen, "modality": "image"})]
    wait_until(lambda: shown_ids(browser), like)
    assert like != words and chosen not in like  # more like it, not itself
    assert address(browser) == {"profile": [PROFILE], "like": [chosen], "modality": ["image"]}
    browser.refresh()  # more-like-this is linkable too
    wait_until(lambda: shown_ids(browser), like)


def test_a_mark_on_a_word_search_is_stored_for_training(browser: Any, server: str, trained_home: Path) -> None:
    from qualia.corpus import Corpus

    words = "tide pool at noon"
    browser.get(f"{server}/?profile={PROFILE}&q=tide+pool+at+noon")
    expected = [hit["id"] for hit in api_search(server, {"text": words})]
    wait_until(lambda: shown_ids(browser), expected)
    fits, misfit = expected[0], expected[1]
    browser.find_element("css selector", f'#results > li[data-id="{fits}"] button.fits').click()
    browser.find_element("css selector", f'#results > li[data-id="{misfit}"] button.not-fits').click()
    status = "return document.querySelector(`#results > li[data-id='${arguments[0]}'] .feedback-status`).textContent"
    wait_until(lambda: run(browser, status, fits), "Noted: fits.")
    wait_until(lambda: run(browser, status, misfit), "Noted: does not fit.")
    ws = Workspace(trained_home)
    with Corpus.open(ws, PROFILE, readonly=True) as corpus:
        marks = {m["target"]: m["fits"] for m in corpus.marks(query=words)}
    assert marks == {fits: True, misfit: False}

    browser.find_element("css selector", f'#results > li[data-id="{fits}"] button.more').click()
    wait_until(lambda: shown_ids(browser), [hit["id"] for hit in api_search(server, {"id": fits})])
    assert run(browser, "return document.querySelectorAll('#results button.fits').length") == 0  # no words: no marks


def test_a_picture_searches_when_chosen_dropped_or_pasted(browser: Any, server: str, tmp_path: Path) -> None:
    query = tmp_path / "query.png"
    query.write_bytes(picture(4))
    expected = [hit["id"] for hit in api_search(server, {"image_base64": base64.b64encode(query.read_bytes()).decode()})]
    words = [hit["id"] for hit in api_search(server, {"text": "tide pool"})]
    assert expected != words
    browser.get(f"{server}/?profile={PROFILE}&q=tide+pool")
    wait_until(lambda: shown_ids(browser), words)

    browser.find_element("id", "picture").send_keys(str(query))  # the file chooser, with a real file
    wait_until(lambda: shown_ids(browser), expected)
    assert visible(browser, "query-picture") and browser.find_element("id", "q").get_attribute("value") == ""
    assert "q" not in address(browser)

    # Drop and paste carry the browser's own File of the same real file, in a DataTransfer as a drag would.
    run(browser, "const i = document.createElement('input'); i.type = 'file'; i.id = 'source';"
                 "i.style.display = 'none'; document.body.append(i);")
    browser.find_element("id", "source").send_keys(str(query))
    for gesture in ("""const dt = new DataTransfer(); dt.items.add(document.getElementById('source').files[0]);
                       const drop = document.getElementById('drop');
                       for (const type of ['dragenter', 'dragover', 'drop'])
                         drop.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));""",
                    """const dt = new DataTransfer(); dt.items.add(document.getElementById('source').files[0]);
                       document.body.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true,
                                                                                cancelable: true}));"""):
        search_words(browser, "tide pool")
        wait_until(lambda: shown_ids(browser), words)
        run(browser, gesture)
        wait_until(lambda: shown_ids(browser), expected)
    assert not message(browser)


def test_the_report_renders_its_figures_and_plots(browser: Any, server: str) -> None:
    report = httpx.get(f"{server}/v1/profiles/{PROFILE}/report", timeout=30).json()
    browser.get(f"{server}/?profile={PROFILE}&view=report")
    cell = "const c = document.querySelector(arguments[0]); return c ? c.textContent : null"
    for path in ("t2i.r1", "t2i.r10", "i2t.r1", "i2t.r10", "mixed.image_share"):
        first, second = path.split(".")
        for side in ("base", "adapter"):
            wait_until(lambda: run(browser, cell, f'[data-metric="{path}"] .{side}'),
                       f"{100 * report[side][first][second]:.1f}%")
    assert run(browser, cell, '[data-metric="gap"] .adapter') == f"{report['adapter']['gap']:.3f}"
    assert run(browser, cell, '[data-metric="retention"] .adapter') == f"{100 * report['adapter']['retention']:.1f}%"
    counts = run(browser, "return Object.fromEntries([...document.querySelectorAll('[data-count]')]"
                          ".map(r => [r.closest('table').querySelector('caption').textContent + ':' + r.dataset.count,"
                          " r.querySelector('td').textContent]))")
    corpus = report["corpus"]
    assert counts == {**{f"by source:{s}": str(n) for s, n in corpus["items"].items()},
                      **{f"by degree:{d}": str(n) for d, n in corpus["by_degree"].items()},
                      "besides:images": str(corpus["images"]), "besides:edges": str(corpus["edges"])}
    assert report["version"] in browser.find_element("id", "report").text
    plots = run(browser, "return [...document.querySelectorAll('img.plot')].map(i => i.dataset.plot)")
    assert plots == [plot["name"] for plot in report["plots"]] == ["loss_curve.png", "modality_gap.png"]
    wait_until(lambda: pictures_loaded(browser, "img.plot"), [True, True])

    browser.find_element("id", "tab-search").click()
    wait_until(lambda: visible(browser, "search-view"), True)
    assert not visible(browser, "report-view") and address(browser) == {"profile": [PROFILE]}


def test_the_openapi_page_draws_every_operation_from_local_files(browser: Any, server: str) -> None:
    operations = sum(len(methods) for methods in httpx.get(f"{server}/openapi.json", timeout=30).json()["paths"].values())
    browser.get(f"{server}/docs")
    wait_until(lambda: run(browser, "return document.querySelectorAll('.opblock').length"), operations)
    loaded = run(browser, "return performance.getEntriesByType('resource').map(r => r.name)")
    assert loaded and all(url.startswith(server) for url in loaded), loaded


@pytest.fixture(scope="module")
def keyed(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server whose workspace has keys: one for the profile, one for another ("bob")."""
    home = tmp_path_factory.mktemp("keyed-home")
    source, target = Workspace(trained_home), Workspace(home)
    shutil.copytree(source.images_dir, target.images_dir)
    shutil.copytree(source.profile_dir(PROFILE), target.profile_dir(PROFILE))
    shutil.copytree(source.profile_dir(PROFILE), target.profile_dir("bob"))
    alice, bob = keys.create_key(target, PROFILE), keys.create_key(target, "bob")
    with uvicorn_thread(create_app(ServiceSettings(home=home))) as base:
        yield {"base": base, "alice": alice, "bob": bob}


def enter_key(browser: Any, key: str) -> None:
    wait_until(lambda: visible(browser, "key-view"), True)
    field = browser.find_element("id", "key")
    field.clear()
    field.send_keys(key + "\n")


def test_a_key_is_asked_for_once_and_a_wrong_one_is_told_plainly(browser: Any, keyed: dict[str, str]) -> None:
    base = keyed["base"]
    browser.get(f"{base}/?profile={PROFILE}&q=shell+drawn+at+dawn&modality=image")
    wait_until(lambda: visible(browser, "key-view"), True)
    assert not visible(browser, "search-view") and browser.switch_to.active_element.get_attribute("id") == "key"

    enter_key(browser, "qk_not-a-key")
    wait_until(lambda: "not accepted" in message(browser), True)
    assert visible(browser, "key-view") and run(browser, "return sessionStorage.getItem('qualia.key')") is None

    enter_key(browser, keyed["bob"])  # a real key, of another profile: the page cannot tell that from no profile
    wait_until(lambda: message(browser), f'No such profile "{PROFILE}", or the key does not open it.')
    assert shown_ids(browser) == []

    browser.find_element("id", "forget-key").click()
    enter_key(browser, keyed["alice"])
    expected = [hit["id"] for hit in api_search(base, {"text": "shell drawn at dawn", "modality": "image"}, keyed["alice"])]
    wait_until(lambda: shown_ids(browser), expected)
    assert not message(browser)
    # <img> cannot send the key: the pictures came through fetch with it, shown from blobs
    wait_until(lambda: pictures_loaded(browser, "#results img.thumb"), [True] * 6)
    assert run(browser, "return document.querySelector('#results img.thumb').src").startswith("blob:")

    browser.refresh()  # kept for the browser session: not asked again
    wait_until(lambda: shown_ids(browser), expected)
    assert not visible(browser, "key-view")
    assert run(browser, "return sessionStorage.getItem('qualia.key')") == keyed["alice"]
