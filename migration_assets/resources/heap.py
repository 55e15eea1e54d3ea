"""The run process's C heap: large blocks go back to the system when freed (glibc only).

The load of attachments and call recordings downloads each file from Close, encodes it to base64 and puts
it in JSON request bodies of up to ~96 MB (engine.py holds the files of two batches at a time); the
extraction's pages and the load's responses are strings of MBs too. glibc serves a block from 128 KiB up
with its own mapping, returned on free, but raises that threshold to the size of each such block freed
(up to 32 MiB, "dynamic mmap threshold" in mallopt(3)), and the heap's trim threshold to twice that:
after a few big strings, blocks of up to 32 MiB come from the heaps (one per thread that allocates), and
each heap keeps up to 64 MiB of freed space besides the holes between live blocks. Fixing the threshold
(mallopt M_MMAP_THRESHOLD, which turns both adjustments off) maps every block of LARGE_BLOCK_BYTES or
more apart, unmapped on free. Measured (glibc 2.36): the free space the heaps keep, 130-220 MB at every
step of `typical` before, is 30-125 MB on `large` (bench/e2e.py; the tool's peak 2,059 -> 1,250 MB with
the warehouse's DuckDB cap).

DuckDB, Polars and Arrow bring their own allocators: this setting concerns Python's and the HTTP
clients' buffers only. Other C libraries (musl, macOS) have no such adjustment to turn off, or no
mallopt: nothing is set there, and `HeapTuning.detail` says why.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

M_MMAP_THRESHOLD = -3  # <malloc.h>
# Blocks from this size up get a mapping of their own. Not lower: a fresh mapping's pages fault in on
# first touch, and at 128 KiB every attachment body (1-400 KB in the generated orgs) paid it: +30% CPU
# for the encode-and-send loop of 20,000 bodies, measured; at 1 MiB the cost is nil and the bodies reuse
# heap space that the JSON request bodies, which dwarf them, no longer fragment.
LARGE_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class HeapTuning:
    applied: bool
    detail: str  # what was set, or why nothing was


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it alone has gnu_get_libc_version), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded in this process
    except (OSError, TypeError):  # Windows cannot open the process itself this way
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def return_large_blocks_to_system(threshold: int = LARGE_BLOCK_BYTES) -> HeapTuning:
    """Fix glibc's mmap threshold at `threshold` bytes for this process (idempotent)."""
    libc = _glibc()
    if libc is None:
        return HeapTuning(False, "not glibc: the C library's own policy for large blocks is kept")
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    version = libc.gnu_get_libc_version().decode()
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if not libc.mallopt(M_MMAP_THRESHOLD, threshold):
        return HeapTuning(False, f"glibc {version} refused mallopt(M_MMAP_THRESHOLD, {threshold})")
    return HeapTuning(True, f"glibc {version}: blocks of {threshold // 1024} KiB or more mapped apart")
