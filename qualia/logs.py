"""How qualia's entry points log: one line per event on stderr, tracebacks only when asked for.

A traceback is for whoever debugs qualia, not for whoever runs it: a failed download or a bug in a
parser logs its one line, and ``QUALIA_DEBUG=1`` (read by the entry point, passed here as ``debug``)
brings the tracebacks back.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """A formatter that keeps the first line of each message and leaves out tracebacks and stacks."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None,
                                            "stack_info": None})
        text = super().format(record)
        return text.split("\n", 1)[0]  # an item's repr after Scrapy's message, a second line of a reason


def configure(level: int, debug: bool = False) -> None:
    """Log ``level`` and above to stderr, one line each unless ``debug``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT) if debug else OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
