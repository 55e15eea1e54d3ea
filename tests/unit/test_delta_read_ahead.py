"""DeltaReadAhead (extract/delta.py): the delta reads of a step's tables made ahead of their writes, in
order, each table's pages (and its read error) handed to that table alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migration_assets.extract import delta
from migration_assets.extract.close_changes import CloseChanges
from migration_assets.extract.delta import DeltaPlan, DeltaRead, DeltaReadAhead

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGES = {"leads": [[{"id": "lead_1"}], [{"id": "lead_2"}]], "notes": [[{"id": "acti_1"}]], "tasks": []}


class Reads:
    """A fake Close: the pages of each table, a failure where asked, and the order of the reads."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.order: list[str] = []
        self.notes_read = threading.Event()

    def pages(
        self, client: Any, table: str, since: datetime, lookback: timedelta, plan: DeltaPlan
    ) -> Iterator[Any]:
        assert isinstance(plan, DeltaPlan)  # planned from the step's one scan of the event log
        for page in PAGES[table]:
            self.order.append(table)
            if table == "notes":
                self.notes_read.set()
            if table == self.fail:
                raise RuntimeError(f"Close answered 500 five times for {table}")
            yield page


def ahead(monkeypatch: pytest.MonkeyPatch, reads: Reads) -> DeltaReadAhead:
    monkeypatch.setattr(delta, "delta_pages", reads.pages)

    def changes() -> CloseChanges:
        return CloseChanges(T0, T0 + timedelta(minutes=5), "event_log", {})

    return DeltaReadAhead(object(), [DeltaRead(t, T0, timedelta(hours=1), T0) for t in PAGES], changes)  # type: ignore[arg-type]


def test_each_table_gets_its_own_pages_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = Reads()
    with ahead(monkeypatch, reads) as reader:
        assert list(reader.pages("leads")) == PAGES["leads"]
        assert list(reader.pages("notes")) == PAGES["notes"]
        assert list(reader.pages("tasks")) == []
    assert reads.order == ["leads", "leads", "notes"]


def test_the_next_tables_are_read_while_one_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = Reads()
    with ahead(monkeypatch, reads) as reader:
        leads = reader.pages("leads")
        assert next(leads) == PAGES["leads"][0]
        # The consumer holds the first page; the background thread goes on to the other tables.
        assert reads.notes_read.wait(timeout=60)
        assert list(leads) == PAGES["leads"][1:]


def test_a_tables_read_error_is_raised_from_its_own_pages_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with ahead(monkeypatch, Reads(fail="leads")) as reader:
        with pytest.raises(RuntimeError, match="500 five times for leads"):
            list(reader.pages("leads"))
        assert list(reader.pages("notes")) == PAGES["notes"]


def test_pages_left_by_a_failed_write_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with ahead(monkeypatch, Reads()) as reader:
        leads = reader.pages("leads")
        next(leads)  # the write of leads failed after its first page
        reader.pages("notes")  # and the write of notes before reading any
        assert list(reader.pages("tasks")) == []


def test_tables_must_be_taken_in_the_order_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with ahead(monkeypatch, Reads()) as reader:
        with pytest.raises(RuntimeError, match="out of order"):
            list(reader.pages("notes"))


def test_closing_before_any_table_is_taken_stops_the_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = threading.Event()

    def endless(client: Any, table: str, *rest: Any) -> Iterator[Any]:
        try:
            while True:
                yield [{"id": table}]
        finally:
            stopped.set()

    monkeypatch.setattr(delta, "delta_pages", endless)
    reader = DeltaReadAhead(
        object(),  # type: ignore[arg-type]
        [DeltaRead("leads", T0, timedelta(hours=1), T0)],
        lambda: CloseChanges(T0, T0 + timedelta(minutes=5), "event_log", {}),
        depth=2,
    )
    reader.close()  # the step failed before reading any table
    assert stopped.wait(60)
