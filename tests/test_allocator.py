"""service.allocator: with its thresholds, a large block that is freed leaves the process's memory;
without them glibc keeps the second one of a size in its heap."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from service.allocator import return_freed_memory

def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024

if sys.argv[1] == "fixed":
    assert return_freed_memory()
for _ in range(3):
    block = bytearray(24 * 2**20)  # 24 MB, touched
    del block
print(rss())
"""


def _rss_after_frees(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_freed_large_blocks_leave_the_process() -> None:
    kept, returned = _rss_after_frees("default"), _rss_after_frees("fixed")
    assert kept - returned > 16 * 2**20, (kept, returned)  # glibc's default kept a 24 MB block
