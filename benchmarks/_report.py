"""What every benchmark script ends with: the machine it ran on, and one JSON object out."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def emit(result: dict[str, Any], out: Path | None) -> int:
    """Print ``result`` as JSON on stdout, and write it to ``out`` too when given."""
    text = json.dumps(result, indent=1, sort_keys=True)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0
