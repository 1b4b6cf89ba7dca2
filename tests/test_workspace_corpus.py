from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from qualia import workspace
from qualia.corpus import Corpus, InvalidImage


def png_bytes(color: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", ["a", "mara", "user_1-x", "0" * 64])
def test_valid_profile_names(name: str) -> None:
    assert workspace.check_profile_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "../etc", "a/b", "-x", "_x", "a" * 65, "a.b", "mara\n"])
def test_invalid_profile_names(name: str) -> None:
    with pytest.raises(workspace.InvalidProfileName):
        workspace.check_profile_name(name)


def test_versions_ignore_temporaries_and_newest_wins(tmp_path: Path) -> None:
    for name in ("20260101T000000000000Z", "20260102T000000000000Z", ".20260103T000000000000Z.x.tmp", "junk"):
        (tmp_path / name).mkdir()
    assert workspace.latest_version(tmp_path) == "20260102T000000000000Z"
    assert workspace.resolve_version(tmp_path, None).name == "20260102T000000000000Z"
    with pytest.raises(FileNotFoundError):
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
        sha_a = c.store_image("http://a.example/x.png", data)
        sha_b = c.store_image("http://b.example/y.png", data)
        c.commit()
        assert sha_a == sha_b
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
    with pytest.raises(FileNotFoundError, match="no corpus"):
        Corpus(tmp_path / "missing.sqlite", readonly=True)
