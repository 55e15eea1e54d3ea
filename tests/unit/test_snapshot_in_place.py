"""The snapshot of the staged rows as loaded is updated in place after a load (issue 13: a delta writes about
as many snapshot rows as it loaded, not a copy of the whole staged table), and ends up exactly as a fresh copy
would: the staged rows minus the ones this run's target refused."""

from __future__ import annotations

import duckdb
import pytest

from migration_assets.load.ledger import Ledger, Rejection
from migration_assets.load.snapshot import changed_rows, save_snapshot

SNAPSHOT = 'loaded."_snapshot_contact"'


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA staged")
    c.execute("CREATE TABLE staged.contact (contactid VARCHAR, firstname VARCHAR, _n DOUBLE)")
    c.execute(
        "INSERT INTO staged.contact VALUES ('A1', 'Ada', NULL), ('b2', 'Bob', 1.5), ('c3', 'Cy', NULL), "
        "('d4', 'Di', 2.0)"
    )
    Ledger(c, "run-1")
    assert save_snapshot(c, "contact", "contactid", "run-1", "contact") == 4
    return c


def _oid(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(
        "SELECT table_oid FROM duckdb_tables() WHERE schema_name = 'loaded' AND table_name = '_snapshot_contact'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _rows(con: duckdb.DuckDBPyConnection, ref: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {ref} ORDER BY contactid").fetchall()


def test_a_delta_updates_the_snapshot_in_place_to_the_staged_rows_minus_this_runs_refusals(
    con: duckdb.DuckDBPyConnection,
) -> None:
    table = _oid(con)
    con.execute("UPDATE staged.contact SET firstname = 'Robert' WHERE contactid = 'b2'")  # changed
    con.execute("UPDATE staged.contact SET _n = 3.0 WHERE contactid = 'c3'")  # changed from NULL
    con.execute("DELETE FROM staged.contact WHERE contactid = 'd4'")  # gone from Close
    con.execute("INSERT INTO staged.contact VALUES ('e5', 'Eve', NULL), ('f6', 'Fay', NULL)")  # new
    # This run's target refused a new row and (a full re-load) an unchanged one: both are retried next time.
    Ledger(con, "run-2").reject(
        [
            Rejection("contact", "F6", "cont_f", "create", 400, "0x1", "bad"),
            Rejection("contact", "a1", "cont_a", "update", 400, "0x1", "bad"),
        ]
    )
    assert save_snapshot(con, "contact", "contactid", "run-2", "contact") == 3
    assert _oid(con) == table  # the same table, updated: not a new copy
    expected = [r for r in _rows(con, "staged.contact") if r[0] not in ("A1", "f6")]
    assert _rows(con, SNAPSHOT) == expected
    _, retried = changed_rows(con, "contact") or ([], [])
    assert sorted(r["contactid"] for r in retried) == ["A1", "f6"]


def test_other_column_types_rebuild_the_snapshot(con: duckdb.DuckDBPyConnection) -> None:
    table = _oid(con)
    con.execute("ALTER TABLE staged.contact ALTER _n TYPE VARCHAR")
    assert save_snapshot(con, "contact", "contactid", "run-2", "contact") == 4
    assert _oid(con) != table
    assert _rows(con, SNAPSHOT) == _rows(con, "staged.contact")


def test_a_row_without_a_key_rebuilds_the_snapshot(con: duckdb.DuckDBPyConnection) -> None:
    table = _oid(con)
    con.execute("INSERT INTO staged.contact VALUES (NULL, 'Nobody', NULL)")
    save_snapshot(con, "contact", "contactid", "run-2", "contact")
    assert _oid(con) != table
    assert con.execute(f"SELECT count(*) FROM {SNAPSHOT}").fetchone() == (5,)  # a copy, as before
