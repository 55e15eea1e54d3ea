"""The emulator process's C heap: large blocks go back to the system when freed (glibc only).

A bulk message of file uploads parses into strings of megabytes (each annotation's base64 body), freed a
moment later. glibc serves blocks from 128 KiB up with their own mappings, returned on free, but raises that
threshold to the size of each such block freed (up to 32 MiB): from then on the bodies come from the heap,
whose freed space the process keeps, and a load of many uploads grows the emulator by hundreds of MB it no
longer uses. A fixed threshold (mallopt M_MMAP_THRESHOLD, which also turns the adjustment off) keeps every
block of 1 MiB or more in its own mapping. Measured with 4 uploads of 96 MB in flight: peak RSS the same,
RSS after the load 116 MB -> 60 MB; the difference grows with the number of uploads.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # malloc.h
LARGE_BLOCK_BYTES = 1 << 20


def return_large_blocks_to_system() -> bool:
    """Set glibc's mmap threshold to LARGE_BLOCK_BYTES; False where the C library has no mallopt."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))
