"""Give freed memory back to the system: a server that holds many profiles must not keep what it let go.

glibc's malloc serves a large block from a memory map and returns it on free, but after such a free it
raises the size it maps at (up to 32 MB), so later blocks of that size come from its heap, where freed
space is kept. Loading one profile after another (its adapter, its index rows, each query's activations)
then left the server about twice the memory its profiles need: 20 ViT-B-32 profiles grew it by 232 MB
for 92 MB of adapters and indexes (docs/benchmarks.md). Fixing the thresholds keeps large blocks mapped
and trims the heap's free top. ``mallopt`` has no Python binding, hence ctypes; MALLOC_MMAP_THRESHOLD_
and MALLOC_TRIM_THRESHOLD_ in the environment do the same, but only for a process started with them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, no longer raised on free


def return_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where malloc is not glibc's."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc mallopt here (%s): memory thresholds left as they are", name)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES))
