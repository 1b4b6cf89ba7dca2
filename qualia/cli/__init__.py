"""The command line: the composition root that wires crawler, library and service together."""

from qualia.cli.main import main

__all__ = ["main"]
