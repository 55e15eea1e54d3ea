"""How the loader cuts a table into ledgered batches, and prepares the next batch while one is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from migration_assets.clients.call_scope import submit

Item = TypeVar("Item")
Ready = TypeVar("Ready")


def base64_size(raw_bytes: int) -> int:
    """Bytes of a file once base64-encoded: what Dataverse sends, and measures against maxuploadfilesize."""
    return (int(raw_bytes) + 2) // 3 * 4


def batches_of(
    rows: Sequence[dict[str, Any]],
    max_rows: int,
    max_file_bytes: int,
    undeclared: Callable[[], int] = lambda: 0,
) -> Iterator[Sequence[dict[str, Any]]]:
    """Consecutive slices of at most `max_rows` rows whose file bodies (`_file_size`, as base64) add up to
    at most `max_file_bytes`; a single larger file is a batch of its own. A file without a declared size
    (Close declares none for a call recording) counts as `undeclared()` bytes (raw), asked when its row is
    reached: the loader's estimate from the bodies it downloaded so far."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        if row.get("_file_url"):
            raw = row.get("_file_size")
            encoded = base64_size(undeclared() if raw is None else raw)
        else:
            encoded = 0
        if i > start and (i - start >= max_rows or size + encoded > max_file_bytes):
            yield rows[start:i]
            start, size = i, 0
        size += encoded
    if start < len(rows):
        yield rows[start:]


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
