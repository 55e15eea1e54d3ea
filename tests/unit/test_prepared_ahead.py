"""The loader's look-ahead (load/batches.py prepared_ahead): items are prepared in order in a worker, the next
one while the caller works on the current one, never more than one ahead; an item that depends on the one
before it waits for the caller; an error is raised to the caller at that item."""

from __future__ import annotations

import threading
from contextlib import closing

import pytest

from migration_assets.load.batches import prepared_ahead

WAIT = 5.0  # seconds a synchronisation may take before the test fails (never reached when it passes)


class Recorder:
    """A `prepare` that notes when each item starts being prepared, and by which thread."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.started: dict[int, threading.Event] = {}
        self.threads: set[str] = set()
        self.fail_at = fail_at
        self.lock = threading.Lock()

    def event(self, item: int) -> threading.Event:
        with self.lock:
            return self.started.setdefault(item, threading.Event())

    def __call__(self, item: int) -> str:
        self.threads.add(threading.current_thread().name)
        self.event(item).set()
        if item == self.fail_at:
            raise OSError(f"item {item} could not be read")
        return f"ready {item}"


def test_the_next_item_is_prepared_while_the_caller_works_and_never_two_ahead() -> None:
    prepare = Recorder()
    seen = []
    for ready in prepared_ahead(range(1, 5), prepare, lambda _item: True):
        n = int(ready.split()[1])
        seen.append(ready)
        if n < 4:
            assert prepare.event(n + 1).wait(WAIT), f"item {n + 1} is prepared while item {n} is handled"
        assert not prepare.event(n + 2).is_set(), "at most one item is prepared ahead"
    assert seen == ["ready 1", "ready 2", "ready 3", "ready 4"]
    assert prepare.threads and threading.current_thread().name not in prepare.threads


def test_an_item_that_depends_on_the_one_before_waits_for_the_caller() -> None:
    prepare = Recorder()
    handled: list[int] = []
    for ready in prepared_ahead([1, 2, 3, 4], prepare, lambda item: item < 3):
        n = int(ready.split()[1])
        if n == 2:
            assert not prepare.event(3).is_set(), "item 3 needs what the caller does with item 2"
        handled.append(n)
    assert handled == [1, 2, 3, 4]


def test_an_error_reaches_the_caller_at_its_item_after_the_items_before_it() -> None:
    prepare = Recorder(fail_at=2)
    handled: list[str] = []
    with pytest.raises(OSError, match="item 2 could not be read"):
        for ready in prepared_ahead([1, 2, 3], prepare, lambda _item: True):
            handled.append(ready)
    assert handled == ["ready 1"]


def test_closing_early_prepares_nothing_further() -> None:
    prepare = Recorder()
    gen = prepared_ahead(range(1, 10), prepare, lambda _item: True)
    with closing(gen):
        assert next(gen) == "ready 1"
    assert sorted(prepare.started) == [1, 2], "only the item under way when the caller stopped"
    assert list(prepared_ahead([], prepare, lambda _item: True)) == []
