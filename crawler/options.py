"""The flags of a crawl, shared by ``python -m crawler`` and ``qualia crawl``. No Scrapy here: building a
parser must stay fast for the command line's other answers."""

from __future__ import annotations

import argparse


def add_crawl_arguments(parser: argparse.ArgumentParser) -> None:
    """--substack, --pinterest, --depth, --max-items and --delay, with their defaults in the help."""
    parser.add_argument("--substack", action="append", metavar="HANDLE", help="a Substack handle (repeatable)")
    parser.add_argument("--pinterest", action="append", metavar="USER", help="a Pinterest username (repeatable)")
    parser.add_argument("--depth", type=int, choices=(1, 2), default=2, help="hops from the person (default: %(default)s)")
    parser.add_argument("--max-items", type=int, default=None, metavar="N", help="stop after N new posts and pins from each source")
    parser.add_argument("--delay", type=float, default=1.0, metavar="SECONDS",
                        help="polite delay between requests to one site, 0 for a local mirror (default: %(default)s)")
