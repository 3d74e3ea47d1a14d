"""Process-wide settings applied once at entry points (command line, benchmark, dashboard), never on import."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune_allocator", "ALLOCATOR_THRESHOLD_BYTES"]

log = logging.getLogger(__name__)

ALLOCATOR_THRESHOLD_BYTES = 1 << 30
"""glibc returns blocks above its mmap threshold to the OS on free; float64 kernel buffers of ~20 MB were then
faulted back every step (system time = user time). Keeping blocks up to 1 GiB in the heap halved the step time."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(threshold: int = ALLOCATOR_THRESHOLD_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds so large tensors are reused instead of unmapped and faulted back.

    Same effect as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment.  Returns whether
    it applied (False off glibc, e.g. on macOS or musl).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, int(threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(threshold)))
    log.debug("glibc allocator thresholds set to %d bytes: %s", threshold, applied)
    return applied
