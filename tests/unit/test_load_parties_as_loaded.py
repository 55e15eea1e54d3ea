"""A delta reads (and rewrites) the activity parties only of rows whose parties changed since the last
completed load: `parties_as_loaded` names the changed rows whose `_parties` equal the snapshot's."""

from __future__ import annotations

import duckdb
import pytest

from migration_assets.load.ledger import Ledger
from migration_assets.load.snapshot import changed_rows, parties_as_loaded, save_snapshot

TO_A = '[{"participationtypemask": 2, "partyid_contact@odata.bind": "/contacts(a)"}]'
TO_B = '[{"participationtypemask": 2, "partyid_contact@odata.bind": "/contacts(b)"}]'


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA staged")
    c.execute("CREATE TABLE staged.email (activityid VARCHAR, subject VARCHAR, _parties VARCHAR)")
    c.execute(
        f"INSERT INTO staged.email VALUES ('E1', 'one', '{TO_A}'), ('e2', 'two', '{TO_A}'), ('e3', 'x', NULL)"
    )
    Ledger(c, "run-1")
    save_snapshot(c, "email", "activityid", "run-1", "email")
    return c


def test_only_rows_whose_parties_changed_are_left_to_read(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE staged.email SET subject = 'one (edited)' WHERE activityid = 'E1'")  # parties kept
    con.execute(f"UPDATE staged.email SET _parties = '{TO_B}' WHERE activityid = 'e2'")  # parties changed
    con.execute(f"INSERT INTO staged.email VALUES ('e4', 'new', '{TO_A}')")  # never loaded
    _, rows = changed_rows(con, "email") or ([], [])
    assert sorted(r["activityid"] for r in rows) == ["E1", "e2", "e4"]
    assert parties_as_loaded(con, "email", "activityid", rows) == {"e1"}


def test_nothing_is_as_loaded_without_a_snapshot_or_parties(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE loaded._snapshot_email")
    rows = [{"activityid": "E1", "subject": "one", "_parties": TO_A}]
    assert parties_as_loaded(con, "email", "activityid", rows) == frozenset()
    assert (
        parties_as_loaded(con, "email", "activityid", [{"activityid": "E1", "subject": "one"}]) == frozenset()
    )
