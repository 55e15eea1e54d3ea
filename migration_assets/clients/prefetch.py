"""Producing items on a background thread while the consumer works (page requests, downloads, gunzip)."""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from migration_assets.clients.call_scope import in_context

T = TypeVar("T")

_END = object()


def read_ahead(pages: Iterable[T], depth: int = 8, name: str = "close-read-ahead") -> Iterator[T]:
    """Iterate `pages` on a background thread, up to `depth` pages ahead of the consumer.

    Turning a page into rows and writing it is CPU work on the consumer's thread; meanwhile the page
    requests (and the date-window probes between them) keep going, so the request rate stays at the
    rate limit instead of dropping whenever the consumer is busy. Errors are re-raised here.
    The thread starts now, not at the first page taken: the first requests overlap whatever the consumer
    does before it reads. A reader dropped without being read to its end stops the thread.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(pages)
        try:
            for page in it:
                if not put((True, page)):
                    return
            put((False, _END))
        except BaseException as exc:  # handed to the consumer
            put((False, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # cancels the requests still in flight

    threading.Thread(target=in_context(produce), name=name, daemon=True).start()
    reader = _taken(q, stop)
    # A generator never started runs no `finally`: the thread is stopped when the reader is collected.
    weakref.finalize(reader, stop.set)
    return reader


def _taken(q: queue.Queue[Any], stop: threading.Event) -> Iterator[Any]:
    try:
        while True:
            ok, item = q.get()
            if ok:
                yield item
            elif item is _END:
                return
            else:
                raise item
    finally:
        stop.set()
