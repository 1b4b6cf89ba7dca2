"""``python -m crawler PROFILE --substack H --pinterest U --depth 2 --delay 0``: one crawl, stats as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from crawler.run import crawl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler", description="Crawl Substack and Pinterest into a "
                                     "qualia profile's corpus (base URLs from QUALIA_*_URL).")
    parser.add_argument("profile")
    parser.add_argument("--substack", action="append", default=[], metavar="HANDLE")
    parser.add_argument("--pinterest", action="append", default=[], metavar="USERNAME")
    parser.add_argument("--depth", type=int, choices=(1, 2), default=2)
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one site")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        stats = crawl(args.profile, args.substack, args.pinterest, depth=args.depth, max_items=args.max_items,
                      delay=args.delay, progress=args.progress, log_level=args.log_level)
    except ValueError as e:  # InvalidProfileName included
        sys.stderr.write(f"error: {e}\n")
        return 2
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
