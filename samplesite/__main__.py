"""``python -m samplesite [--port N]``: serve the sample site in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from samplesite.server import SampleSite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samplesite", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with SampleSite(args.host, args.port) as site:
        lines = [f"sample site at {site.base_url}  (Ctrl-C to stop)", "use it with:"]
        lines += [f"  export {k}='{v}'" for k, v in site.env().items()]
        lines.append(f"  qualia crawl sample --substack {site.substack_handle} --pinterest {site.pinterest_username} "
                     "--delay 0")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
