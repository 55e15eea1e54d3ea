"""The staged rows as last loaded (`loaded._snapshot_<table>`): a delta loads only new or changed rows, a
row refused by the target is retried, a changed column set or a missing snapshot falls back to every row,
and a rollback forgets the snapshots."""

from __future__ import annotations

import duckdb
import pytest

from migration_assets.load.ledger import Ledger, Rejection
from migration_assets.load.snapshot import changed_rows, drop_snapshots, save_snapshot


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA staged")
    c.execute(
        'CREATE TABLE staged.contact (contactid VARCHAR, firstname VARCHAR, "parentcustomerid_account@odata.bind" '
        "VARCHAR, _close_id VARCHAR, _n DOUBLE)"
    )
    c.execute(
        "INSERT INTO staged.contact VALUES ('A1', 'Ada', '/accounts(x)', 'cont_a', NULL), "
        "('b2', 'Bob', NULL, 'cont_b', 1.5), ('c3', 'Cy', NULL, 'cont_c', NULL)"
    )
    return c


def _ids(rows: list[dict]) -> list[str]:
    return sorted(r["contactid"] for r in rows)


def test_no_snapshot_means_every_row(con: duckdb.DuckDBPyConnection) -> None:
    assert changed_rows(con, "contact") is None


def test_only_new_and_changed_rows_after_a_load(con: duckdb.DuckDBPyConnection) -> None:
    Ledger(con, "run-1")
    assert save_snapshot(con, "contact", "contactid", "run-1", "contact") == 3
    columns, rows = changed_rows(con, "contact") or ([], [])
    assert rows == [] and "_close_id" in columns
    con.execute("UPDATE staged.contact SET firstname = 'Robert' WHERE contactid = 'b2'")
    con.execute(
        "UPDATE staged.contact SET \"parentcustomerid_account@odata.bind\" = '/accounts(y)' WHERE contactid = 'c3'"
    )
    con.execute("INSERT INTO staged.contact VALUES ('d4', 'Di', NULL, 'cont_d', NULL)")
    con.execute("DELETE FROM staged.contact WHERE contactid = 'A1'")  # vanished: not a row to load
    _, rows = changed_rows(con, "contact") or ([], [])
    assert _ids(rows) == ["b2", "c3", "d4"]
    assert next(r for r in rows if r["contactid"] == "b2")["firstname"] == "Robert"


def test_rows_refused_by_the_target_are_left_out_of_the_snapshot_and_retried(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ledger = Ledger(con, "run-1")
    ledger.reject(
        [Rejection("contact", "a1", "cont_a", "create", 400, "0x1", "bad")]
    )  # ids compare lower-case
    ledger.reject([Rejection("account", "b2", "x", "create", 400, "0x1", "other table")])
    Ledger(con, "run-0").reject([Rejection("contact", "c3", "cont_c", "create", 400, "0x1", "older run")])
    assert save_snapshot(con, "contact", "contactid", "run-1", "contact") == 2
    _, rows = changed_rows(con, "contact") or ([], [])
    assert _ids(rows) == ["A1"]
    # The next load of the same run state succeeds: the row is recorded and no longer changed.
    assert save_snapshot(con, "contact", "contactid", "run-2", "contact") == 3
    assert (changed_rows(con, "contact") or ([], [1]))[1] == []


def test_a_changed_column_set_falls_back_to_every_row(con: duckdb.DuckDBPyConnection) -> None:
    Ledger(con, "run-1")
    save_snapshot(con, "contact", "contactid", "run-1", "contact")
    con.execute("ALTER TABLE staged.contact ADD COLUMN lastname VARCHAR")
    assert changed_rows(con, "contact") is None


def test_drop_snapshots_forgets_every_table(con: duckdb.DuckDBPyConnection) -> None:
    Ledger(con, "run-1")
    save_snapshot(con, "contact", "contactid", "run-1", "contact")
    con.execute("CREATE TABLE loaded.contact_rejected (x INTEGER)")
    assert drop_snapshots(con) == ["contact"]
    assert changed_rows(con, "contact") is None
    assert con.execute("SELECT count(*) FROM loaded.contact_rejected").fetchone() == (0,)  # other tables stay


def test_the_rows_compared_before_the_load_update_the_snapshot_after_it(
    con: duckdb.DuckDBPyConnection,
) -> None:
    Ledger(con, "run-1")
    save_snapshot(con, "contact", "contactid", "run-1", "contact")
    con.execute("UPDATE staged.contact SET firstname = 'Robert' WHERE contactid = 'b2'")
    con.execute("INSERT INTO staged.contact VALUES ('d4', 'Di', NULL, 'cont_d', NULL)")
    con.execute("DELETE FROM staged.contact WHERE contactid = 'c3'")
    _, rows = changed_rows(con, "contact") or ([], [])
    assert _ids(rows) == ["b2", "d4"]
    # The delta load refuses d4; the snapshot is updated from the rows compared above, not compared again.
    Ledger(con, "run-2").reject([Rejection("contact", "d4", "cont_d", "create", 400, "0x1", "bad")])
    assert save_snapshot(con, "contact", "contactid", "run-2", "contact", changed_known=True) == 2
    snapshot = con.execute("SELECT contactid, firstname FROM loaded._snapshot_contact ORDER BY 1").fetchall()
    assert snapshot == [("A1", "Ada"), ("b2", "Robert")]  # c3 gone with its staged row, d4 left to retry
    _, rows = changed_rows(con, "contact") or ([], [])
    assert _ids(rows) == ["d4"]
