"""Imports point downstream only: samplesite and crawler upstream, the library in the middle, service
downstream, and the command line (``qualia/cli``) the one place that imports all of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, banned: tuple[str, ...], exempt: str | None = None) -> list[str]:
    bad = []
    for path, names in imported_modules(package).items():
        if exempt and path.startswith(exempt):
            continue
        for name in names:
            if any(name == b or name.startswith(b + ".") for b in banned):
                bad.append(f"{path} imports {name}")
    return sorted(bad)


def test_library_imports_neither_crawler_nor_service_nor_samplesite() -> None:
    assert offenders("qualia", ("crawler", "service", "samplesite"), exempt="qualia/cli/") == []


def test_samplesite_is_the_outside_world() -> None:
    """The sample site stands for Substack and Pinterest: it knows nothing of qualia."""
    assert offenders("samplesite", ("qualia", "crawler", "service")) == []


def test_only_the_command_line_and_tests_import_samplesite() -> None:
    assert offenders("crawler", ("samplesite",)) == [] and offenders("service", ("samplesite",)) == []


def test_service_never_imports_training_or_crawling() -> None:
    assert offenders("service", ("qualia.train", "qualia.cli", "crawler", "scrapy")) == []


def test_crawler_stays_light() -> None:
    banned = ("torch", "open_clip", "peft", "faiss", "service", "qualia.train", "qualia.embed", "qualia.cli")
    assert offenders("crawler", banned) == []


def test_crawler_components_share_no_module_state() -> None:
    """Pipelines and middlewares reach the crawl's writer through the crawler, not a spider module."""
    assert offenders("crawler", ("crawler.spiders",), exempt="crawler/spiders/") == [
        "crawler/run.py imports crawler.spiders.imports",
        "crawler/run.py imports crawler.spiders.imports.ImportSpider",
        "crawler/run.py imports crawler.spiders.pinterest",
        "crawler/run.py imports crawler.spiders.pinterest.PinterestSpider",
        "crawler/run.py imports crawler.spiders.substack",
        "crawler/run.py imports crawler.spiders.substack.SubstackSpider",
    ]


def test_light_imports_pull_no_torch() -> None:
    """The crawler, and the command line up to the point it needs a model, never import torch."""
    code = ("import sys, crawler.run, crawler.pipelines, qualia.cli.main, qualia.config, qualia.errors; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
