"""Keep freed tensor memory inside the process on Linux (glibc), where CPU inference pays for it otherwise.

glibc hands large freed blocks back to the kernel (``munmap`` / heap trimming) and every later tensor of the same
size is page-faulted in again, layer after layer: on the 2-core development CPU that doubled the LiteMedSAM
encoder's time per slice. Raising the mmap and trim thresholds keeps those blocks for reuse, as PyTorch's own
CPU performance guide achieves by swapping in jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB; True when applied (Linux with glibc), else a no-op."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD_BYTES))
