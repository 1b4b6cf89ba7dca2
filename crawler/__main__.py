"""``python -m crawler PROFILE --substack H --pinterest U --depth 2 --delay 0``: one crawl, stats as JSON.

An entry point like the ``qualia`` command: it reads the workspace (``QUALIA_HOME``) and the sites'
base URLs (``QUALIA_*_URL``) from the environment and passes them down as values. Errors answer with
the exit code the ``qualia`` command gives for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from crawler.options import add_crawl_arguments
from crawler.run import URL_SETTINGS, crawl
from qualia.errors import QualiaError
from qualia.logs import configure as configure_logging
from qualia.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler", description="Crawl Substack and Pinterest into a "
                                     "qualia profile's corpus (base URLs from QUALIA_*_URL).")
    parser.add_argument("profile", help="profile name ([a-z0-9][a-z0-9_-]{0,63})")
    add_crawl_arguments(parser)
    parser.add_argument("--log-level", default="WARNING", metavar="LEVEL", help="Scrapy's log level (default: %(default)s)")
    parser.add_argument("--progress", action="store_true", help="a status line on stderr")
    args = parser.parse_args(argv)
    level = logging.getLevelName(args.log_level.upper())
    configure_logging(level if isinstance(level, int) else logging.WARNING, debug=bool(os.environ.get("QUALIA_DEBUG")))
    ws = Workspace.at(os.environ.get("QUALIA_HOME"))
    urls = {key: os.environ.get(key) for key in URL_SETTINGS}
    try:
        stats = crawl(ws, args.profile, args.substack or [], args.pinterest or [], depth=args.depth, max_items=args.max_items,
                      delay=args.delay, progress=args.progress, log_level=args.log_level, urls=urls)
    except QualiaError as e:
        sys.stderr.write(f"python -m crawler: error: {e}\n")
        return e.exit_code
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
