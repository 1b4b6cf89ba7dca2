"""Property-based tests: generated inputs (hypothesis), and the whole OpenAPI document (schemathesis).

Short in CI; ``QUALIA_FUZZ_EXAMPLES=2000 make test`` (or any number) runs each property that much longer.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from qualia import images
from qualia.errors import ImageTooLarge, InvalidImage, InvalidProfileName, QualiaError
from qualia.workspace import PROFILE_NAME, Workspace, check_profile_name
from service.app import create_app
from service.settings import ServiceSettings
from tests.helpers import PROFILE, write_sample_corpus

EXAMPLES = int(os.environ.get("QUALIA_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])


def _seed_pictures() -> list[bytes]:
    out = []
    for fmt, mode, size in (("PNG", "RGB", (40, 30)), ("JPEG", "RGB", (32, 32)), ("GIF", "P", (20, 20)),
                            ("WEBP", "RGB", (24, 24)), ("PNG", "RGBA", (16, 48))):
        buffer = io.BytesIO()
        Image.new(mode, size).save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return out


SEEDS = _seed_pictures()


@st.composite
def mutated_pictures(draw) -> bytes:
    """A real picture with bytes flipped, cut or spliced: what a broken site or a hostile user sends."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=64))
    return bytes(data)


@FUZZ
@given(st.one_of(mutated_pictures(), st.binary(max_size=512)))
def test_decoding_any_bytes_yields_a_bounded_picture_or_a_plain_refusal(data: bytes) -> None:
    try:
        decoded = images.decode(data)
        picture, fmt = decoded.picture, decoded.format
    except (InvalidImage, ImageTooLarge) as e:
        assert str(e) and " at 0x" not in str(e) and len(str(e)) < 300
        return
    assert picture.mode == "RGB" and fmt in images.FORMATS
    assert max(picture.size) <= images.WORKING_SIDE


@FUZZ
@given(st.text(max_size=80))
def test_profile_names_are_valid_or_refused_and_never_leave_the_workspace(name: str) -> None:
    ws = Workspace(Path("/srv/qualia"))
    try:
        checked = check_profile_name(name)
    except InvalidProfileName as e:
        assert not PROFILE_NAME.fullmatch(name) and e.exit_code == 2 and e.http_status == 404
        return
    assert checked == name
    folder = ws.profile_dir(name)
    assert folder.parent == ws.profiles_dir and ".." not in folder.parts and folder.name == name


# -- the service --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny) -> Path:
    from qualia.embed import Encoder
    from qualia.index import build_index

    root = tmp_path_factory.mktemp("fuzz-home")
    write_sample_corpus(root)
    build_index(Workspace(root), PROFILE, Encoder.load(tiny), None)
    return root


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(home=home, max_body_bytes=64 * 1024)),
                    raise_server_exceptions=False) as c:
        yield c


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
search_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={"text": json_values, "k": json_values, "modality": json_values,
                                        "image_base64": json_values}),
    json_values,
)


@FUZZ
@given(body=search_bodies, raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_search_requests_are_answered_never_with_a_5xx(client: TestClient, body, raw: bytes | None) -> None:
    url = f"/v1/profiles/{PROFILE}/search"
    if raw is None:
        response = client.post(url, content=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"})
    else:
        response = client.post(url, content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code >= 400:
        detail = json.dumps(response.json()["detail"])
        assert " at 0x" not in detail and len(detail) < 4000


@FUZZ
@given(profile=st.text(max_size=30), item=st.text(max_size=30))
def test_paths_with_any_names_are_answered_never_with_a_5xx(client: TestClient, profile: str, item: str) -> None:
    from urllib.parse import quote

    for path in (f"/v1/profiles/{quote(profile, safe='')}/items/{quote(item, safe='')}",
                 f"/v1/profiles/{quote(profile, safe='')}/images/{quote(item, safe='')}",
                 f"/v1/profiles/{quote(profile, safe='')}/report"):
        response = client.get(path)
        assert response.status_code < 500, (path, response.text)


def test_openapi_operations_never_answer_5xx(home: Path) -> None:
    """Every operation of the OpenAPI document, with cases schemathesis generates from it (in and out of
    the schema), answers below 500. (Schemathesis's pytest plugin does not run under pytest 9 yet, so the
    operations' strategies are driven by hypothesis here.)"""
    api = schemathesis.openapi.from_asgi("/openapi.json", create_app(ServiceSettings(home=home)))
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 6
    answered: dict[str, set[int]] = {}
    for operation in operations:
        statuses = answered.setdefault(f"{operation.method.upper()} {operation.path}", set())

        @settings(max_examples=max(10, EXAMPLES // 3), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case) -> None:
            response = case.call()
            statuses.add(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
            if case.path_parameters and "profile" in case.path_parameters:
                case.path_parameters = {**case.path_parameters, "profile": PROFILE}  # past the 404, too
                response = case.call()
                statuses.add(response.status_code)
                assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

        call()
    assert all(statuses for statuses in answered.values()), answered


def test_every_library_error_says_how_both_doors_answer() -> None:
    import qualia.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, QualiaError)]
    assert len(classes) >= 15
    for cls in classes:
        assert cls.exit_code in (1, 2) and 400 <= cls.http_status <= 599, cls
