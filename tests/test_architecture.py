"""Imports point downstream only (crawler -> corpus -> train -> adapter -> index -> service)."""

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


def test_library_imports_neither_crawler_nor_service() -> None:
    assert offenders("qualia", ("crawler", "service"), exempt="qualia/cli/") == []


def test_service_never_imports_training_or_crawling() -> None:
    assert offenders("service", ("qualia.train", "qualia.cli", "crawler", "scrapy")) == []


def test_crawler_stays_light() -> None:
    banned = ("torch", "open_clip", "peft", "faiss", "service", "qualia.train", "qualia.embed", "qualia.cli")
    assert offenders("crawler", banned) == []


def test_crawler_import_does_not_pull_torch() -> None:
    code = "import sys, crawler.run, crawler.pipelines; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
