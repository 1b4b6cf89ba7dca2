from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qualia import workspace
from qualia.corpus import Corpus
from qualia.errors import InvalidImage, InvalidProfileName, MissingStep, NoIndex, NotFound
from qualia.workspace import Workspace
from tests.helpers import png as png_bytes


@pytest.mark.parametrize("name", ["a", "mara", "user_1-x", "0" * 64])
def test_valid_profile_names(name: str) -> None:
    assert workspace.check_profile_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "../etc", "a/b", "-x", "_x", "a" * 65, "a.b", "mara\n"])
def test_invalid_profile_names(name: str) -> None:
    with pytest.raises(InvalidProfileName):
        workspace.check_profile_name(name)


def test_versions_ignore_temporaries_and_newest_wins(tmp_path: Path) -> None:
    for name in ("20260101T000000000000Z", "20260102T000000000000Z", ".20260103T000000000000Z.x.tmp", "junk"):
        (tmp_path / name).mkdir()
    assert workspace.latest_version(tmp_path) == "20260102T000000000000Z"
    assert workspace.resolve_version(tmp_path, None).name == "20260102T000000000000Z"
    with pytest.raises(NotFound):
        workspace.resolve_version(tmp_path, "../junk")


def test_atomic_dir_leaves_nothing_visible_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with workspace.atomic_dir(tmp_path / "20260101T000000000000Z") as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert workspace.versions(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_kill_9_during_atomic_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "artifact.bin"
    workspace.atomic_write_bytes(target, b"old")
    # The child writes a large file slowly through atomic_write_bytes and is killed mid-write.
    code = (
        "import sys, time; from pathlib import Path; from qualia import workspace\n"
        "import os\n"
        "def slow_fsync(fd):\n"
        "    print('writing', flush=True); time.sleep(30)\n"
        "os.fsync = slow_fsync\n"
        f"workspace.atomic_write_bytes(Path({str(target)!r}), b'new' * 1000)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"old"


def test_corpus_degree_takes_shortest_path_and_keeps_fields(tmp_path: Path) -> None:
    with Corpus(tmp_path / "c.sqlite", images_root=tmp_path / "images") as c:
        assert c.upsert_item("pinterest:pin:1", source="pinterest", kind="pin", degree=2, title="t",
                             via=("pinterest:pin:9", "related"))
        assert not c.upsert_item("pinterest:pin:1", source="pinterest", kind="pin", degree=1,
                                 via=("pinterest:board:3", "pinned"))
        c.upsert_item("pinterest:pin:1", source="pinterest", kind="pin", degree=2, via=("pinterest:pin:8", "related"))
        c.commit()
        record = c.item("pinterest:pin:1")
        assert record["degree"] == 1 and record["title"] == "t"
        assert record["via"] == {"src": "pinterest:board:3", "relation": "pinned", "degree": 1}
        assert c.counts()["edges"] == 3


def test_picture_behind_two_urls_is_stored_once(tmp_path: Path) -> None:
    images = tmp_path / "images"
    with Corpus(tmp_path / "c.sqlite", images_root=images) as c:
        data = png_bytes((200, 10, 10))
        sha_a, new_a = c.store_image("http://a.example/x.png", data)
        sha_b, new_b = c.store_image("http://b.example/y.png", data)
        c.commit()
        assert sha_a == sha_b and new_a and not new_b
        assert c.image_sha256("http://b.example/y.png") == sha_a and c.image_sha256("http://c.example/z.png") is None
        counts = c.counts()
        assert counts["images"] == 1 and counts["image_urls"] == 2
    assert len([p for p in images.rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize("data", [b"", b"not an image", png_bytes((1, 2, 3))[:40]])
def test_malformed_images_are_refused_and_nothing_is_stored(tmp_path: Path, data: bytes) -> None:
    with Corpus(tmp_path / "c.sqlite", images_root=tmp_path / "images") as c:
        with pytest.raises(InvalidImage):
            c.store_image("http://a.example/bad.png", data)
        assert c.counts()["images"] == 0
    assert not (tmp_path / "images").exists()


def test_readonly_corpus_of_missing_profile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no corpus"):
        Corpus(tmp_path / "missing.sqlite", tmp_path / "images", readonly=True)
    with pytest.raises(MissingStep, match=r"no profile 'ghost'.*: run `qualia crawl ghost --substack HANDLE` \(or --pinterest USER\)$"):
        Corpus.open(Workspace(tmp_path), "ghost", readonly=True)


def test_a_missing_step_names_the_whole_remaining_chain_once(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    with pytest.raises(NoIndex) as no_profile:
        ws.require("mara", "index")
    assert "no profile 'mara'" in str(no_profile.value)
    assert str(no_profile.value).count("then") == 2  # crawl, then train, then index
    Corpus.open(ws, "mara").close()
    with pytest.raises(NoIndex, match=r"has no adapter yet: run `qualia train mara`, then `qualia index mara`$"):
        ws.require("mara", "index")
    with pytest.raises(MissingStep, match=r"has no adapter yet: run `qualia train mara`$"):
        ws.adapter("mara")
    (ws.adapters_dir("mara") / "20260101T000000000000Z").mkdir(parents=True)
    assert ws.adapter("mara").name == "20260101T000000000000Z"
    with pytest.raises(NoIndex, match=r"has no index yet: run `qualia index mara`$"):
        ws.index("mara")
    with pytest.raises(NotFound, match="no adapter of 'mara' version '20990101T000000000000Z'"):
        ws.adapter("mara", "20990101T000000000000Z")


def test_two_workspaces_in_one_process_stay_apart(tmp_path: Path) -> None:
    """Nothing reads QUALIA_HOME below the command line: each workspace value is its own world."""
    first, second = Workspace(tmp_path / "one"), Workspace(tmp_path / "two")
    for ws, colour in ((first, (1, 2, 3)), (second, (200, 100, 50))):
        with Corpus.open(ws, "mara") as c:
            c.upsert_item("pinterest:pin:1", source="pinterest", kind="pin", degree=1, title=str(colour))
            c.store_image("http://x/1.png", png_bytes(colour))
            c.commit()
    assert first.list_profiles() == second.list_profiles() == ["mara"]
    with Corpus.open(first, "mara", readonly=True) as a, Corpus.open(second, "mara", readonly=True) as b:
        assert a.item("pinterest:pin:1")["title"] == "(1, 2, 3)" and b.item("pinterest:pin:1")["title"] == "(200, 100, 50)"
        assert a.image_path(a.image_sha256("http://x/1.png")).is_relative_to(first.images_dir)
        assert b.image_path(b.image_sha256("http://x/1.png")).is_relative_to(second.images_dir)


def test_no_library_module_reads_the_environment_for_the_workspace_or_the_sites() -> None:
    """Only the entry points (the command line, ``python -m crawler``, the service's settings) read them."""
    import ast

    root = Path(__file__).resolve().parents[1]
    entry_points = {"qualia/cli/main.py", "crawler/__main__.py"}
    # huggingface_hub's own offline switch, read where the hub is asked (it is not qualia's configuration)
    hub_switch = {"qualia/backbone.py"}
    offenders = []
    for package in ("qualia", "crawler", "service", "samplesite"):
        for path in (root / package).rglob("*.py"):
            name = str(path.relative_to(root))
            if name in entry_points:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and name not in hub_switch:
                    offenders.append(f"{name}:{node.lineno} uses os.environ")
                if isinstance(node, ast.Constant) and node.value == "QUALIA_HOME":
                    offenders.append(f"{name}:{node.lineno} names QUALIA_HOME")
    assert offenders == []
