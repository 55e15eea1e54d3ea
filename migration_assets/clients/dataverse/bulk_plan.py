"""Pure planning for Dataverse bulk writes: chunking, bisection of all-or-nothing failures, and the
classification of a failed write (row problem, request problem, or "already there").

CreateMultiple/UpdateMultiple/UpsertMultiple roll back the whole request when one row fails, and the
error does not say which row (reference §4.3). Halving the failed range until single rows remain lands
every good row and isolates each bad one with the server's own message, in about 2·log2(n) extra
requests per bad row.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

Segment = tuple[int, int]  # [start, end) indices into the caller's rows

DUPLICATE_ID_CODE = "0x80040237"  # DuplicateRecord: the primary key GUID already exists (reference §2.6)


def weighted_ranges(weights: Sequence[int], size: int, max_weight: int) -> list[Segment]:
    """Consecutive segments of at most `size` rows whose weights add up to at most `max_weight`; a row
    heavier than that alone is a segment of its own. With no weight at all, chunks of `size` rows."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    segments: list[Segment] = []
    start, weight = 0, 0
    for i, w in enumerate(weights):
        if i > start and (i - start >= size or weight + w > max_weight):
            segments.append((start, i))
            start, weight = i, 0
        weight += w
    if start < len(weights):
        segments.append((start, len(weights)))
    return segments


def halve(segment: Segment) -> list[Segment]:
    start, end = segment
    if end - start < 2:
        return [segment]
    mid = start + (end - start) // 2
    return [(start, mid), (mid, end)]


class Failure(Enum):
    ROW = "row"  # something in the rows (length, choice value, missing parent): isolate and reject
    REQUEST = "request"  # the request itself is wrong for every row (schema, privilege): surface, stop
    DUPLICATE_ID = "duplicate_id"  # create of an id that exists: "already loaded" (reference §13.4)


# Errors that no row split can cure: a column or navigation property that does not exist, a wrong entity
# set, a missing privilege. Bisecting them would only multiply one message into n rejections; the caller
# must see the server's error as-is (a custom column not deployed yet must halt that table, DESIGN §3).
_REQUEST_LEVEL_MARKERS = (
    "Invalid property",
    "Could not find a property",
    "undeclared property",
    "Resource not found for the segment",
    "does not support untyped value",
)


def classify_failure(status: int, code: str, message: str) -> Failure:
    if status == 412 and code.lower() == DUPLICATE_ID_CODE:
        return Failure.DUPLICATE_ID
    if status in (401, 403, 405):
        return Failure.REQUEST
    if any(marker in message for marker in _REQUEST_LEVEL_MARKERS):
        return Failure.REQUEST
    return Failure.ROW


def contiguous_runs(indices: list[int]) -> list[Segment]:
    """[2,3,4,7,9,10] -> [(2,5),(7,8),(9,11)]: re-send what is left of a segment as few requests as possible."""
    runs: list[Segment] = []
    for i in sorted(indices):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs
