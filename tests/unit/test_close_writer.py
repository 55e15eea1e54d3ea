"""SortedTableWriter: one sorted, de-duplicated write per table from frames and/or Arrow datasets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.dataset as pads
import pytest

from migration_assets.extract.tables import TABLES
from migration_assets.extract.writer import read_ahead, write_table
from migration_assets.resources.warehouse import WarehouseResource

SPEC = TABLES["notes"]


def note(i: int, updated: str = "2024-01-01T00:00:00+00:00", text: str = "x") -> dict[str, str]:
    return {"id": f"acti_{i:03d}", "date_updated": updated, "note": text}


def test_pages_are_sorted_and_only_real_duplicates_dropped(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    stale = note(3, "2023-01-01T00:00:00+00:00", "old")
    pages = [[note(5), note(3), note(9)], [], [stale, note(1)], SPEC.frame([note(7)])]
    rows, dropped = write_table(wh, SPEC, pages)
    assert (rows, dropped) == (6, 1)
    out = wh.read("SELECT id, date_updated, raw FROM close.notes")
    assert out["id"].to_list() == ["acti_001", "acti_003", "acti_005", "acti_007", "acti_009"]
    kept = out.filter(pl.col("id") == "acti_003")
    assert kept["date_updated"][0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert '"note":"x"' in kept["raw"][0]


def test_dataset_and_frames_together_match_frames_alone(tmp_path: Path) -> None:
    parts = []
    for n, ids in enumerate([(8, 2), (6,)]):
        path = tmp_path / f"part-{n}.arrow"
        SPEC.frame([note(i) for i in ids]).write_ipc(path)
        parts.append(str(path))
    mixed = WarehouseResource(path=str(tmp_path / "mixed.duckdb"))
    write_table(mixed, SPEC, [pads.dataset(parts, format="ipc"), [note(4)]])
    plain = WarehouseResource(path=str(tmp_path / "plain.duckdb"))
    write_table(plain, SPEC, [[note(i) for i in (8, 2, 6, 4)]])
    a, b = (w.read("SELECT * FROM close.notes") for w in (mixed, plain))
    assert a.equals(b) and a["id"].to_list() == ["acti_002", "acti_004", "acti_006", "acti_008"]


def test_no_pages_gives_an_empty_typed_table(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    assert write_table(wh, SPEC, []) == (0, 0)
    assert wh.read("SELECT * FROM close.notes").columns == list(SPEC.schema)


def test_failure_keeps_the_previous_table(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    write_table(wh, SPEC, [[note(1)]])

    def broken() -> Iterator[list[dict[str, str]]]:
        yield [note(2)]
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        write_table(wh, SPEC, broken())
    assert wh.read("SELECT id FROM close.notes")["id"].to_list() == ["acti_001"]
    leftovers = wh.read(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '\\_\\_%' ESCAPE '\\'"
    )
    assert leftovers.is_empty()


def test_read_ahead_keeps_order_and_reraises_errors() -> None:
    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("page 2 failed")

    got = []
    with pytest.raises(ValueError, match="page 2 failed"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]


def test_read_ahead_closes_the_source_when_the_consumer_stops() -> None:
    closed = threading.Event()

    def pages() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    for item in read_ahead(pages(), depth=2):
        if item == 3:
            break
    assert closed.wait(5)


def test_read_ahead_starts_reading_before_the_first_page_is_taken_and_stops_when_dropped() -> None:
    started, closed = threading.Event(), threading.Event()

    def pages() -> Iterator[int]:
        started.set()
        try:
            yield from range(1000)
        finally:
            closed.set()

    reader = read_ahead(pages(), depth=2)
    assert started.wait(5)  # requested while the consumer was still busy elsewhere
    del reader  # never read: its thread must not wait for a consumer forever
    assert closed.wait(5)


def test_a_table_is_written_once_not_through_the_wal(tmp_path: Path) -> None:
    """A big table goes straight into the database file: no copy left in the write-ahead log."""
    path = tmp_path / "w.duckdb"
    wh = WarehouseResource(path=str(path))
    pages = [[note(i, text="y" * 2000) for i in range(j, j + 500)] for j in range(0, 3000, 500)]
    with wh.connect() as con:  # a second connection keeps the database open: no checkpoint at close
        assert write_table(wh, SPEC, pages) == (3000, 0)
        wal = Path(str(path) + ".wal")
        assert not wal.exists() or wal.stat().st_size < (1 << 20)
        assert con.execute("SELECT count(*) FROM close.notes").fetchone() == (3000,)


def test_equally_new_copies_that_differ_are_listed_not_merged(tmp_path: Path) -> None:
    """One id twice: an older copy is a record that moved while paging (kept newest, not a conflict); an
    identical copy is harmless; two equally new copies that differ (a contact under two leads) conflict."""
    from migration_assets.extract.duplicates import CONFLICTS

    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    pages = [
        [note(1, text="a"), note(2), note(3, "2023-01-01T00:00:00+00:00", "old")],
        [note(1, text="b"), note(2), note(3)],
    ]
    write_table(wh, SPEC, pages)
    assert wh.read(f"SELECT table_name, id, copies FROM {CONFLICTS}").rows() == [("notes", "acti_001", 2)]
    contacts = TABLES["contacts"]
    first = {"id": "cont_1", "lead_id": "lead_a", "name": "Jo", "date_updated": "2024-01-01T00:00:00+00:00"}
    write_table(wh, contacts, [[first, {**first, "lead_id": "lead_b"}]])
    assert wh.read(f"SELECT id, lead_ids FROM {CONFLICTS} WHERE table_name = 'contacts'").rows() == [
        ("cont_1", "lead_a, lead_b")
    ]
    write_table(wh, SPEC, [[note(1), note(2)]])  # extracted again without the conflict: the list is cleared
    assert wh.read(f"SELECT id FROM {CONFLICTS} WHERE table_name = 'notes'").is_empty()
