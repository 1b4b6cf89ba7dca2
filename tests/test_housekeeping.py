"""Leftovers of killed writes go on the next write; old versions go, what is still needed stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qualia import workspace
from qualia.errors import InvalidArgument, NotFound
from qualia.housekeeping import collect
from qualia.workspace import Workspace
from tests.helpers import run_qualia

VERSIONS = [f"2026010{day}T000000000000Z" for day in range(1, 7)]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_profile(ws: Workspace, profile: str = "mara") -> None:
    """Six adapter versions and six index versions; each index names the adapter of its day, but the
    oldest index names the oldest adapter... and so on."""
    for version in VERSIONS:
        adapter = ws.adapters_dir(profile) / version
        adapter.mkdir(parents=True)
        (adapter / "qualia.json").write_text("{}")
        index = ws.index_dir(profile) / version
        index.mkdir(parents=True)
        manifest = {"dim": 4, "count": 0, "checksum": "", "rows": {}, "adapter_version": version}
        (index / "manifest.json").write_text(json.dumps(manifest))


def test_temporaries_name_their_writer_and_dead_writers_leave_debris(tmp_path: Path) -> None:
    live = tmp_path / f".{VERSIONS[0]}+{os.uname().nodename}+{os.getpid()}+abc.tmp"
    dead = tmp_path / f".{VERSIONS[1]}+{os.uname().nodename}+{dead_pid()}+abc.tmp"
    elsewhere = tmp_path / f".{VERSIONS[2]}+some-other-host+1+abc.tmp"
    for path in (live, dead, elsewhere):
        path.mkdir()
    old = tmp_path / ".state.pt.x1y2.tmp"  # a name that does not say whose it is: only its age tells
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    assert workspace.debris(tmp_path) == sorted([dead, old])
    with workspace.atomic_dir(tmp_path / VERSIONS[3]) as tmp:
        assert workspace.TEMPORARY_NAME.match(tmp.name)["pid"] == str(os.getpid())
        (tmp / "f").write_text("x")
    assert not dead.exists() and not old.exists() and live.exists() and elsewhere.exists()


def test_collect_keeps_the_newest_and_what_they_need(ws: Workspace) -> None:
    fake_profile(ws)
    # the newest index was built with the oldest adapter: that adapter must stay
    newest = ws.index_dir("mara") / VERSIONS[-1] / "manifest.json"
    newest.write_text(json.dumps({**json.loads(newest.read_text()), "adapter_version": VERSIONS[0]}))
    report = collect(ws, "mara", keep=2)
    assert workspace.versions(ws.index_dir("mara")) == VERSIONS[-2:]
    assert workspace.versions(ws.adapters_dir("mara")) == [VERSIONS[0], *VERSIONS[-2:]]
    assert len(report["removed"]) == 4 + 3 and report["freed_bytes"] > 0
    assert all(not r["path"].startswith("/") for r in report["removed"])
    again = collect(ws, "mara", keep=2)
    assert again["removed"] == [] and again["freed_bytes"] == 0


def test_collect_never_takes_the_last_index_that_reads(ws: Workspace) -> None:
    fake_profile(ws)
    for version in VERSIONS[-2:]:  # the two newest are damaged
        (ws.index_dir("mara") / version / "manifest.json").unlink()
    collect(ws, "mara", keep=2)
    assert workspace.versions(ws.index_dir("mara")) == VERSIONS[-3:]


def test_collect_refuses_what_makes_no_sense(ws: Workspace) -> None:
    with pytest.raises(NotFound):
        collect(ws, "nobody")
    fake_profile(ws)
    with pytest.raises(InvalidArgument):
        collect(ws, "mara", keep=0)


def test_cli_gc_reports_what_it_freed(ws: Workspace) -> None:
    fake_profile(ws)
    debris = ws.index_dir("mara") / f".{VERSIONS[0]}+{os.uname().nodename}+{dead_pid()}+zz.tmp"
    debris.mkdir()
    (debris / "index.faiss").write_bytes(b"\0" * 1000)
    out = run_qualia("gc", "mara", "--keep", "3", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["keep"] == 3 and report["freed_bytes"] >= 1000
    whys = [r["why"] for r in report["removed"]]
    assert whys.count("left by an interrupted write") == 1 and len(whys) == 1 + 3 + 3
    human = run_qualia("gc", "mara")
    assert human.returncode == 0 and human.stdout.strip() == "freed 0 bytes"
    assert run_qualia("gc", "mara", "--keep", "0").returncode == 2
