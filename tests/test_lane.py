"""The search lane (service/lane.py): a plain text search is answered below FastAPI, with the route's own
answer; everything else reaches the route with its body untouched."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import keys
from service.app import create_app
from service.lane import SearchLane
from service.routers import search
from service.settings import ServiceSettings
from tests.helpers import PROFILE, picture

ROUTE_STATUS = 299  # what the stand-in for the rest of the app answers: the lane passed the request on


class Route:
    """The rest of the app, as the lane sees it: records what reaches it, body included."""

    def __init__(self) -> None:
        self.reached: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.reached.append((scope["path"], body))
        await send({"type": "http.response.start", "status": ROUTE_STATUS, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lane-home") / "home"
    shutil.copytree(trained_home, root)  # keys are made here: the shared trained workspace stays as it is
    return root


@pytest.fixture(scope="module")
def app_client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(home=home))) as c:
        yield c


@pytest.fixture
def lane(app_client: TestClient) -> tuple[TestClient, Route]:
    """The lane over the running app's state (its worker, searchers and adapters), with a recorder behind it."""
    route = Route()
    return TestClient(SearchLane(route, app_client.app.state, search.router.routes[0])), route


def _form(fields: dict[str, Any]) -> dict[str, tuple[None, str]]:
    """``fields`` as multipart form fields (a form is text: k too)."""
    return {name: (None, str(value)) for name, value in fields.items()}


def _without_took(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "took_ms"}


def test_a_text_search_is_the_routes_answer_without_reaching_the_route(app_client: TestClient, lane) -> None:
    lane_client, route = lane
    path = f"/v1/profiles/{PROFILE}/search"
    assert app_client.post(path, files=_form({"text": "warm up"})).status_code == 200  # the profile loaded, by the route
    for text, k, modality in [("a rock pool", None, "any"), ("fog over the harbour", 3, "image"), ("tea", 7, "text")]:
        fields = {"text": text, "modality": modality, **({"k": k} if k else {})}
        by_lane = lane_client.post(path, json=fields)
        assert by_lane.status_code == 200 and by_lane.headers["content-type"] == "application/json"
        # multipart is the route's alone: the same query, answered by FastAPI
        by_route = app_client.post(path, files=_form(fields))
        assert by_route.status_code == 200
        assert _without_took(by_lane.json()) == _without_took(by_route.json())
        assert len(by_lane.json()["results"]) == (k or 10) and by_lane.json()["adapter"]
    assert route.reached == []


@pytest.mark.parametrize("body, content_type", [
    (b'{"text": "fog", "k": "5"}', "application/json"),  # the route's 422
    (b'{"text": "fog", "extra": 1}', "application/json"),
    (b'{"text": "fog"', "application/json"),
    (b'{"text": "fog"}', "text/plain"),  # the route's 415
    (b'{"id": "img-' + b"0" * 64 + b'"}', "application/json"),  # not a text search
    (b'{"image_base64": "' + base64.b64encode(picture(3, "PNG", 32)) + b'"}', "application/json"),
])  # fmt: skip
def test_anything_but_a_plain_text_search_reaches_the_route_untouched(app_client: TestClient, lane, body: bytes,
                                                                      content_type: str) -> None:  # fmt: skip
    lane_client, route = lane
    path = f"/v1/profiles/{PROFILE}/search"
    app_client.post(path, json={"text": "warm up"})
    assert lane_client.post(path, content=body, headers={"Content-Type": content_type}).status_code == ROUTE_STATUS
    assert route.reached == [(path, body)]


def test_unknown_profiles_and_other_paths_reach_the_route(app_client: TestClient, lane) -> None:
    lane_client, route = lane
    for path in ["/v1/profiles/nobody/search", "/v1/profiles/Bad..Name/search", f"/v1/profiles/{PROFILE}/search/",
                 f"/v1/profiles/{PROFILE}/items/x"]:  # fmt: skip
        assert lane_client.post(path, json={"text": "fog"}).status_code == ROUTE_STATUS
    assert lane_client.get(f"/v1/profiles/{PROFILE}/search").status_code == ROUTE_STATUS
    assert len(route.reached) == 5


def test_with_keys_only_a_key_to_the_profile_is_answered_by_the_lane(app_client: TestClient, lane, home: Path) -> None:
    lane_client, route = lane
    path = f"/v1/profiles/{PROFILE}/search"
    app_client.post(path, json={"text": "warm up"})
    from qualia.workspace import Workspace

    ws = Workspace(home)
    mine, other = keys.create_key(ws, PROFILE), keys.create_key(ws, "someone-else")
    try:
        for headers in [{}, {"Authorization": f"Bearer {other}"}, {"Authorization": "Bearer qk_nope"},
                        {"Authorization": f"Basic {mine}"}]:  # fmt: skip
            assert lane_client.post(path, json={"text": "fog"}, headers=headers).status_code == ROUTE_STATUS
        assert len(route.reached) == 4
        answered = lane_client.post(path, json={"text": "fog"}, headers={"Authorization": f"bearer {mine}"})
        assert answered.status_code == 200 and len(route.reached) == 4
        # and through the whole app: the route's refusals, the lane's answer
        assert app_client.post(path, json={"text": "fog"}).status_code == 401
        assert app_client.post(path, json={"text": "fog"}, headers={"Authorization": f"Bearer {other}"}).status_code == 404
        assert app_client.post(path, json={"text": "fog"}, headers={"Authorization": f"Bearer {mine}"}).status_code == 200
    finally:
        for store in home.glob(f"{keys.KEYS_FILE}*"):
            store.unlink()


def test_a_profile_whose_adapter_is_not_held_is_loaded_by_the_route(home: Path) -> None:
    """The first search of a profile reads its index and adapter: the route does it, off the event loop."""
    with TestClient(create_app(ServiceSettings(home=home, preload=False))) as c:
        route = Route()
        lane_client = TestClient(SearchLane(route, c.app.state, search.router.routes[0]))
        path = f"/v1/profiles/{PROFILE}/search"
        assert lane_client.post(path, json={"text": "fog"}).status_code == ROUTE_STATUS
        assert c.post(path, json={"text": "fog"}).status_code == 200  # the whole app: the route loads it
        assert lane_client.post(path, json={"text": "fog"}).status_code == 200
        assert len(route.reached) == 1


def test_an_error_of_the_search_is_answered_as_the_route_answers_it(app_client: TestClient, lane,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from qualia.errors import Unavailable

    lane_client, route = lane
    path = f"/v1/profiles/{PROFILE}/search"
    assert app_client.post(path, files=_form({"text": "warm up"})).status_code == 200
    searcher = app_client.app.state.resources.current_searcher(PROFILE)

    def unavailable(*args, **kwargs):
        raise Unavailable("the index «fog» is being replaced")

    monkeypatch.setattr(searcher, "search_vector", unavailable)
    by_lane = lane_client.post(path, json={"text": "fog"})
    by_route = app_client.post(path, files=_form({"text": "fog"}))
    assert by_lane.status_code == by_route.status_code == Unavailable.http_status
    assert by_lane.json() == by_route.json() == {"detail": "the index «fog» is being replaced"}
    assert by_lane.content == by_route.content and route.reached == []
