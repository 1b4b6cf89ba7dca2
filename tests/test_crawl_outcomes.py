"""Honest outcomes (issue 11, item 4): `qualia crawl` says what happened, in one line when it failed.

A crawl that fetched nothing exits 1 with one line saying why and what to do instead (`qualia import`);
a crawl that lost some pages exits 0 and says, per source, what it kept and what it lost. No traceback
reaches the terminal unless QUALIA_DEBUG=1. On a terminal each source has a live line; in a pipe, none.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from samplesite import SampleSite
from tests.helpers import ROOT, free_port, run_qualia

pytestmark = pytest.mark.slow


def crawl(site: SampleSite, home: Path, *sources: str, extra_env: dict[str, str] | None = None,
          urls: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    args = ["crawl", "out", "--depth", "1", "--delay", "0", "--json"]
    for source in sources:
        args += [f"--{source}", site.substack_handle if source == "substack" else site.pinterest_username]
    return run_qualia(*args, env={"QUALIA_HOME": str(home), **(urls or site.env()), **(extra_env or {})}, timeout=300)


def test_everything_refused_exits_1_with_one_line_pointing_to_import(site: SampleSite, tmp_path: Path) -> None:
    site.fail_next("/", 403, times=100_000)
    out = crawl(site, tmp_path, "substack", "pinterest")
    assert out.returncode == 1 and out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("qualia: error: the crawl fetched nothing (substack and pinterest: HTTP 403)")
    assert "qualia import out --substack-export PATH or --pinterest-export PATH" in last
    assert "Traceback" not in out.stderr


def test_robots_forbidding_everything_exits_1(site: SampleSite, tmp_path: Path) -> None:
    site.disallow("/")
    before = len(site.requests)
    out = crawl(site, tmp_path, "pinterest")
    assert out.returncode == 1 and "forbidden by robots.txt" in out.stderr.splitlines()[-1]
    assert set(site.requests[before:]) == {"/robots.txt"}


def test_no_server_at_all_exits_1_quickly_without_a_traceback(site: SampleSite, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    urls = {"QUALIA_SUBSTACK_URL": dead, "QUALIA_SUBSTACK_PUBLICATION_URL": dead + "/{subdomain}",
            "QUALIA_PINTEREST_URL": dead}
    started = time.monotonic()
    out = crawl(site, tmp_path, "substack", "pinterest", urls=urls)
    assert out.returncode == 1 and time.monotonic() - started < 30
    assert "connection was refused" in out.stderr.splitlines()[-1] and "Traceback" not in out.stderr
    debug = crawl(site, tmp_path, "substack", urls=urls, extra_env={"QUALIA_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # asked for: the whole story


def test_a_partial_failure_exits_0_and_says_what_each_source_lost(site: SampleSite, tmp_path: Path) -> None:
    site.fail_next("/pub/smallkitchens/", 404, times=100_000)  # one whole publication is gone
    out = crawl(site, tmp_path, "substack", "pinterest")
    assert out.returncode == 0, out.stderr[-2000:]
    sources = json.loads(out.stdout)["crawl"]["sources"]
    assert sources["pinterest"]["failures"] == {} and sources["pinterest"]["pages"] > 0
    assert sources["substack"]["failures"] == {"HTTP 404": 2} and sources["substack"]["pages_lost"] == 2
    summary = [line for line in out.stderr.splitlines() if line.startswith("substack: kept")]
    assert len(summary) == 1 and "lost 2 pages and 0 pictures (HTTP 404 x2)" in summary[0]
    assert not any(line.startswith("pinterest: kept") for line in out.stderr.splitlines())
    assert "\r" not in out.stderr and "items/s" not in out.stderr  # a pipe gets no progress lines


def test_a_terminal_gets_a_live_line_per_source(site: SampleSite, tmp_path: Path) -> None:
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide
    args = [sys.executable, "-m", "qualia.cli", "crawl", "tty", "--depth", "1", "--delay", "0",
            "--substack", site.substack_handle, "--pinterest", site.pinterest_username]
    proc = subprocess.Popen(args, env={**os.environ, "QUALIA_HOME": str(tmp_path), **site.env()}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=child, stdin=subprocess.DEVNULL)
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=300)
    os.close(parent)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0
    assert "substack" in text and "pinterest" in text and " items" in text and "pictures" in text
    assert "errors" in text
