"""The requests a step sends, counted where they are sent, into the step's own scope.

A run shares one client per service among its steps, and a step's requests leave from worker threads (bulk
segments, page read-ahead, file downloads). The difference of a client's totals before and after a step is
that step's own only while nothing else sends meanwhile; counted into the step's scope (a context variable
that the worker threads inherit from the thread that handed them the work, `submit` and `in_context`), each
request is credited to the step it was sent for, whatever runs at the same time.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

COUNTERS = ("requests", "retries", "throttled_429")


class CallScope:
    """Counters per service (`COUNTERS`), added to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def add(self, service: str, counter: str, n: int = 1) -> None:
        with self._lock:
            counts = self._counts.setdefault(service, dict.fromkeys(COUNTERS, 0))
            counts[counter] = counts.get(counter, 0) + n

    def counts(self, service: str | None = None) -> dict[str, dict[str, int]]:
        """A copy: every service counted so far (or `service` alone, zeros when it sent nothing)."""
        with self._lock:
            if service is not None:
                return {service: dict(self._counts.get(service, dict.fromkeys(COUNTERS, 0)))}
            return {s: dict(c) for s, c in self._counts.items()}


_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "close2d365_call_scope", default=None
)


def count(service: str, counter: str, n: int = 1) -> None:
    """Credit the current scope (none outside a step: nothing to credit)."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.add(service, counter, n)


def current_counts(service: str) -> dict[str, int] | None:
    """The current scope's counters of `service` (None outside any scope)."""
    scope = _SCOPE.get()
    return None if scope is None else scope.counts(service)[service]


@contextmanager
def call_scope() -> Iterator[CallScope]:
    """A new scope for the block: what is sent in it, and from the threads it hands work to, counts there."""
    scope = CallScope()
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def submit(pool: Executor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """`pool.submit`, the work running in a copy of the caller's context (its scope included). Each call
    copies: one context cannot be entered by two threads at once."""
    return pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)  # type: ignore[arg-type]


def in_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` bound to a copy of the caller's context: the target of one new thread."""
    ctx = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        return ctx.run(fn, *args, **kwargs)

    return run
