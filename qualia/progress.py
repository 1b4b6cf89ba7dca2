"""Progress bars for long work: tqdm (rate, ETA) on a terminal, nothing in a pipe.

``enabled`` is what the caller wants (the command line passes whether stderr is a terminal); a bar is
drawn only when stderr is a terminal as well. A bar that is not drawn is the same tqdm object, disabled:
iterating, ``update`` and ``set_postfix_str`` work and print nothing, so callers never branch on it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def bar(iterable: Iterable | None = None, *, enabled: bool, desc: str, unit: str = "batch", **options: Any) -> tqdm:
    return tqdm(iterable, desc=desc, unit=unit, dynamic_ncols=True, disable=not (enabled and sys.stderr.isatty()),
                **options)  # fmt: skip
