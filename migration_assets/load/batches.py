"""How the loader cuts a table into ledgered batches, and prepares the next batch while one is sent."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, TypeVar

from migration_assets.clients.call_scope import submit

Item = TypeVar("Item")
Ready = TypeVar("Ready")


def base64_size(raw_bytes: int) -> int:
    """Bytes of a file once base64-encoded: what Dataverse sends, and measures against maxuploadfilesize."""
    return (int(raw_bytes) + 2) // 3 * 4


def batches_of(
    rows: Iterable[dict[str, Any]],
    max_rows: int,
    max_file_bytes: int,
    undeclared: Callable[[], int] = lambda: 0,
    fill: Iterable[dict[str, Any]] = (),
    counts: tuple[int, int] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of at most `max_rows` rows whose file bodies (`_file_size`, as base64) add up to
    at most `max_file_bytes`; a single larger file is a batch of its own. A file without a declared size
    (Close declares none for a call recording) counts as `undeclared()` bytes (raw), asked when its row is
    reached: the loader's estimate from the bodies it downloaded so far.

    Batches are then topped up to `max_rows` with rows of `fill` (rows without files, in their order), and
    what `fill` has left once `rows` are done follows in batches of `max_rows`: a byte-bound batch of a few
    dozen files still carries a request's worth of rows. With `counts` (how many rows and fill rows there
    are), only the last batches of `rows` are topped up, as many as the fill needs at the room the batches
    so far left: the engine sends an annotation table's files first and its notes, which cost the service's
    budget and no bytes, at the end, in no more requests than if they had ridden from the start."""
    rows, fill = iter(rows), iter(fill)
    rows_left, fill_left = counts if counts is not None else (0, 0)
    cut = 0  # rows of `rows` in the batches so far, and the batches
    cuts = 0
    first = next(rows, None)
    pending = None if first is None else (first, _encoded(first, undeclared))
    while pending is not None:
        batch, size = [pending[0]], pending[1]
        pending = None
        for row in rows:
            encoded = _encoded(row, undeclared)
            if len(batch) >= max_rows or size + encoded > max_file_bytes:
                pending = (row, encoded)
                break
            batch.append(row)
            size += encoded
        cut, cuts = cut + len(batch), cuts + 1
        room = max_rows - len(batch)
        if counts is not None:
            rows_left -= len(batch)
            per_batch = cut / cuts
            after = math.ceil(max(rows_left, 0) / per_batch)  # batches of `rows` still to come
            carried = after * max(max_rows - per_batch, 1)  # what they can carry
            room = min(room, max(fill_left - int(carried), 0))
        taken = list(islice(fill, room))
        fill_left -= len(taken)
        batch.extend(taken)
        yield batch
    while rest := list(islice(fill, max_rows)):
        yield rest


def _encoded(row: dict[str, Any], undeclared: Callable[[], int]) -> int:
    if not row.get("_file_url"):
        return 0
    raw = row.get("_file_size")
    return base64_size(undeclared() if raw is None else raw)


def prepared_ahead(
    items: Iterable[Item], prepare: Callable[[Item], Ready], ahead: Callable[[Item], bool]
) -> Iterator[Ready]:
    """`prepare(item)` of each item, in order, done in a worker thread: while the caller works on one item,
    the next is prepared (the loader downloads batch N+1's files while batch N is sent). At most one item
    is prepared ahead, so at most two prepared items exist at once. An item for which `ahead` is False
    depends on what the caller does with the one before it: it is prepared only once the caller asks for it.
    An error of `prepare` is raised to the caller when it asks for that item, as without the worker; closing
    the iterator early waits for the preparation under way (it holds no lock the caller needs)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-ahead") as pool:
        pending: Future[Ready] | None = None
        for item in items:
            if pending is None:  # the first item: nothing to overlap with
                pending = submit(pool, prepare, item)
                continue
            if ahead(item):
                following = submit(pool, prepare, item)  # queued behind `pending` on the one worker
                yield pending.result()
                pending = following
            else:
                yield pending.result()
                pending = submit(pool, prepare, item)
        if pending is not None:
            yield pending.result()
