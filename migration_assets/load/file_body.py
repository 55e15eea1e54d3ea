"""File bodies downloaded from Close, measured against the target's upload limit as they arrive.

Close declares an attachment's size (`size`) and none for a call recording; the body it serves can be larger
than declared. The loader therefore measures what it downloads: a body that passes the limit is never held
whole (memory stays at the limit) and is refused with the same reason and code as a declared oversize file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from migration_assets.load.batches import base64_size

# The code the loader gives a file above the target's maxuploadfilesize (declared or measured): the reports
# tell these expected exclusions (listed for the admin) from errors by it.
OVERSIZE_CODE = "0x80044a02"
# Dataverse's ceiling for organization.maxuploadfilesize (base64 bytes). Past it no setting can load the
# file, so an oversize body is counted only up to there: the admin learns whether raising the limit helps.
DATAVERSE_MAX_UPLOAD = 131_072_000


@dataclass(frozen=True)
class FileBody:
    """A downloaded file: its size in bytes and its body as Dataverse takes it (base64)."""

    size: int
    base64: str


@dataclass(frozen=True)
class Oversize:
    """A body above the limit: `size` bytes were read, the whole body when `complete`."""

    size: int
    complete: bool


def max_raw_bytes(max_base64: int) -> int:
    """The largest file whose base64 form fits in `max_base64` bytes."""
    return max(0, max_base64) // 4 * 3


def read_capped(chunks: Iterable[bytes], max_base64: int | None) -> bytes | Oversize:
    """The body, or `Oversize` once it passes `max_base64` (as base64). Past the limit chunks are only
    counted, never kept, and reading stops at Dataverse's ceiling; the iterator is closed either way (an
    abandoned HTTP stream goes back to its pool)."""
    keep = None if max_base64 is None else max_raw_bytes(max_base64)
    measure_to = max_raw_bytes(max(DATAVERSE_MAX_UPLOAD, max_base64 or 0))
    parts: list[bytes] = []
    size = 0
    it = iter(chunks)
    try:
        for chunk in it:
            size += len(chunk)
            if keep is None or size <= keep:
                parts.append(chunk)
                continue
            parts.clear()  # over the limit: from here on, only the count matters
            if size > measure_to:
                return Oversize(size, complete=False)
        return Oversize(size, complete=True) if keep is not None and size > keep else b"".join(parts)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def oversize_reason(declared: int | None, limit: int, body: Oversize | None = None) -> str:
    """Why a file is not loaded: one wording for a declared size above the limit and a body measured above
    it (then both sizes, as Close declared it and as it was served)."""
    if body is None:
        size = f"file of {declared} bytes"
    else:
        actual = f"{body.size} bytes" if body.complete else f"more than {body.size} bytes"
        said = f"{declared} bytes" if declared is not None else "no size"
        size = f"file of {actual} (Close declared {said})"
    return (
        f"{size} is above the target's maxuploadfilesize ({limit} bytes, base64): not loaded, listed for "
        "the admin"
    )


def too_big(size: int | None, max_base64: int | None) -> bool:
    """A declared size whose base64 form exceeds the limit (no limit or no size: not known to be too big)."""
    return max_base64 is not None and size is not None and base64_size(size) > max_base64
