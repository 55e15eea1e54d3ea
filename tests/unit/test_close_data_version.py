"""The data version of a close.* table (issue 13: change detection in Dagster's own terms): equal while
the table holds the same records, different after any record is added, edited or deleted, so that Dagster
marks exactly the assets downstream of a changed table as unsynced."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_assets.extract.table_summary import table_summary
from migration_assets.extract.tables import TABLES
from migration_assets.resources.warehouse import WarehouseResource


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    with wh.connect() as con:
        con.execute("CREATE SCHEMA close")
        con.execute("CREATE TABLE close.calls (id VARCHAR, date_updated TIMESTAMPTZ, raw VARCHAR)")
        con.execute("CREATE TABLE close.lead_statuses (id VARCHAR, raw VARCHAR)")
        for n in range(3):
            con.execute(
                "INSERT INTO close.calls VALUES (?, ?, ?)",
                [
                    f"acti_{n}",
                    f"2026-01-0{n + 1}T00:00:00Z",
                    f'{{"date_updated": "2026-01-0{n + 1}T00:00:00Z"}}',
                ],
            )
        con.execute("""INSERT INTO close.lead_statuses VALUES ('stat_1', '{"label": "Potential"}')""")
    return wh


def version(warehouse: WarehouseResource, table: str) -> str:
    return table_summary(warehouse, TABLES[table], "close", 5).data_version


def test_the_same_records_give_the_same_version(warehouse: WarehouseResource) -> None:
    assert version(warehouse, "calls") == version(warehouse, "calls")
    assert version(warehouse, "lead_statuses") == version(warehouse, "lead_statuses")


@pytest.mark.parametrize(
    "change",
    [
        "INSERT INTO close.calls VALUES ('acti_9', '2026-02-01T00:00:00Z', '{}')",
        "DELETE FROM close.calls WHERE id = 'acti_0'",
        # An old record edited in Close: only its date_updated moves past the others (the extraction writes
        # the typed column and the raw JSON from the same record).
        """UPDATE close.calls SET date_updated = '2026-03-01T00:00:00Z',
        raw = '{"date_updated": "2026-03-01T00:00:00Z"}' WHERE id = 'acti_0'""",
    ],
    ids=["added", "deleted", "edited"],
)
def test_any_change_of_a_table_with_a_watermark_changes_its_version(
    warehouse: WarehouseResource, change: str
) -> None:
    before = version(warehouse, "calls")
    with warehouse.connect() as con:
        con.execute(change)
    assert version(warehouse, "calls") != before


def test_a_configuration_table_is_versioned_by_its_content(warehouse: WarehouseResource) -> None:
    before = version(warehouse, "lead_statuses")
    with warehouse.connect() as con:  # same number of rows, one value renamed
        con.execute("""UPDATE close.lead_statuses SET raw = '{"label": "Prospect"}'""")
    assert version(warehouse, "lead_statuses") != before
