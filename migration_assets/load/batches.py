"""How the loader cuts a table into ledgered batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def base64_size(raw_bytes: int) -> int:
    """Bytes of a file once base64-encoded: what Dataverse sends, and measures against maxuploadfilesize."""
    return (int(raw_bytes) + 2) // 3 * 4


def batches_of(
    rows: Sequence[dict[str, Any]], max_rows: int, max_file_bytes: int
) -> Iterator[Sequence[dict[str, Any]]]:
    """Consecutive slices of at most `max_rows` rows whose file bodies (`_file_size`, as base64) add up to
    at most `max_file_bytes`; a single larger file is a batch of its own."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        raw = row.get("_file_size") if row.get("_file_url") else None
        encoded = base64_size(raw) if raw else 0
        if i > start and (i - start >= max_rows or size + encoded > max_file_bytes):
            yield rows[start:i]
            start, size = i, 0
        size += encoded
    if start < len(rows):
        yield rows[start:]
