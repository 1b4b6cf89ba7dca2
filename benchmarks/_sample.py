"""The sample person, crawled once from the bundled sample site into a benchmark's workspace."""

from __future__ import annotations

from crawler.run import crawl
from qualia.workspace import Workspace
from samplesite import SampleSite


def sample_person(ws: Workspace, profile: str) -> Workspace:
    """``ws`` with the sample person crawled (depth 2) into ``profile``, unless its corpus is there already."""
    if not ws.corpus_path(profile).is_file():
        with SampleSite() as site:
            crawl(ws, profile, substack=[site.substack_handle], pinterest=[site.pinterest_username],
                  depth=2, delay=0.0, progress=False, urls=site.env())
    return ws
