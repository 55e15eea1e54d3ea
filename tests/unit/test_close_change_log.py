"""What a delta extraction changed, recorded for the steps after it (extract/change_log.py, delta.merge_delta):
close._changes holds the ids of each table's most recent extraction (none after a full one), and
close._extractions one row per extraction."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_assets.extract.change_log import record_extraction
from migration_assets.extract.delta import merge_delta
from migration_assets.extract.tables import TABLES
from migration_assets.resources.warehouse import WarehouseResource


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    with wh.connect() as con:
        con.execute("CREATE SCHEMA close")
        con.execute("CREATE TABLE close.notes (id VARCHAR, lead_id VARCHAR, raw VARCHAR)")
        con.execute(
            "INSERT INTO close.notes VALUES ('acti_1', 'lead_a', '1'), ('acti_2', 'lead_a', '2'), "
            "('acti_3', 'lead_b', '3'), ('acti_4', 'lead_c', '4')"
        )
        # The delta read: acti_1 edited, acti_3 moved from lead_b (merged away) to lead_d, acti_5 new.
        con.execute("CREATE TABLE close._delta_notes AS SELECT * FROM close.notes LIMIT 0")
        con.execute(
            "INSERT INTO close._delta_notes VALUES ('acti_1', 'lead_a', '1b'), ('acti_3', 'lead_d', '3'), "
            "('acti_5', 'lead_a', '5')"
        )
    return wh


def rows(warehouse: WarehouseResource, sql: str) -> list[tuple[object, ...]]:
    with warehouse.connect() as con:
        return con.execute(sql).fetchall()


def test_a_delta_records_its_upserted_and_deleted_ids(warehouse: WarehouseResource) -> None:
    counts = merge_delta(warehouse, TABLES["notes"], {"acti_2"}, {"lead_b"}, "close", "run_1")
    assert counts == {"delta_rows": 3, "rows_removed": 1}  # acti_2 deleted; acti_1 and acti_3 replaced
    assert rows(warehouse, "SELECT id, lead_id, raw FROM close.notes ORDER BY id") == [
        ("acti_1", "lead_a", "1b"),
        ("acti_3", "lead_d", "3"),  # re-read under its new lead: not removed with the merged-away lead
        ("acti_4", "lead_c", "4"),
        ("acti_5", "lead_a", "5"),
    ]
    assert rows(warehouse, "SELECT table_name, id, change, run_id FROM close._changes ORDER BY id") == [
        ("notes", "acti_1", "upserted", "run_1"),
        ("notes", "acti_2", "deleted", "run_1"),
        ("notes", "acti_3", "upserted", "run_1"),
        ("notes", "acti_5", "upserted", "run_1"),
    ]
    assert rows(warehouse, "SELECT table_name, mode, run_id FROM close._extractions") == [
        ("notes", "delta", "run_1")
    ]


def test_ids_close_no_longer_lists_are_removed_by_a_reconciliation(warehouse: WarehouseResource) -> None:
    listed = {"acti_1", "acti_3", "acti_5"}  # acti_2 and acti_4 are gone from Close
    merge_delta(warehouse, TABLES["notes"], set(), set(), "close", "run_1", listed)
    assert [r[0] for r in rows(warehouse, "SELECT id FROM close.notes ORDER BY id")] == [
        "acti_1",
        "acti_3",
        "acti_5",
    ]
    deleted = rows(warehouse, "SELECT id FROM close._changes WHERE change = 'deleted' ORDER BY id")
    assert deleted == [("acti_2",), ("acti_4",)]


def test_a_full_extraction_clears_the_tables_ids_and_keeps_the_history(warehouse: WarehouseResource) -> None:
    merge_delta(warehouse, TABLES["notes"], {"acti_2"}, set(), "close", "run_1")
    with warehouse.connect() as con:
        record_extraction(con, "close", "calls", "full", "run_1")
        record_extraction(con, "close", "notes", "full", "run_2")
    assert rows(warehouse, "SELECT count(*) FROM close._changes") == [(0,)]
    history = rows(warehouse, "SELECT table_name, mode, run_id FROM close._extractions ORDER BY extracted_at")
    assert history == [("notes", "delta", "run_1"), ("calls", "full", "run_1"), ("notes", "full", "run_2")]


def test_bad_records_are_refused(warehouse: WarehouseResource) -> None:
    with warehouse.connect() as con:
        with pytest.raises(ValueError, match="mode"):
            record_extraction(con, "close", "notes", "partial", "run_1")
        with pytest.raises(ValueError, match="no ids"):
            record_extraction(con, "close", "notes", "full", "run_1", upserted="SELECT 'x' AS id")
