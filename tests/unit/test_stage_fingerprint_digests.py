"""The digests of the tables every staged row depends on (mapping/delta_staging.py fingerprint), computed for
all of them at once: each equals the table's own digest, a missing table is "-", and bookkeeping columns
(when fetched, by which run) never change a digest, so that a delta re-stages in full exactly when a shared
table's content changed."""

from __future__ import annotations

import duckdb
import pytest

from migration_assets.mapping.delta_staging import fingerprint, table_digest, table_digests


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA close")
    c.execute("CREATE SCHEMA staged")
    c.execute("CREATE TABLE close.users (id VARCHAR, email VARCHAR, _extracted_at TIMESTAMP)")
    c.execute("INSERT INTO close.users VALUES ('user_1', 'a@x.io', now()), ('user_2', NULL, now())")
    c.execute(
        "CREATE TABLE staged.owner_map (close_user_id VARCHAR, systemuserid VARCHAR, fetched_at TIMESTAMP)"
    )
    c.execute("INSERT INTO staged.owner_map VALUES ('user_1', 'su-1', now())")
    return c


def test_each_digest_of_a_batch_equals_the_tables_own(con: duckdb.DuckDBPyConnection) -> None:
    tables = [("close", "users"), ("staged", "owner_map"), ("close", "custom_fields")]
    digests = table_digests(con, tables)
    assert digests == {t: table_digest(con, *t) for t in tables}
    assert digests[("close", "custom_fields")] == "-"
    assert digests[("close", "users")].startswith("2:")


def test_a_content_change_changes_the_fingerprint_and_bookkeeping_does_not(
    con: duckdb.DuckDBPyConnection,
) -> None:
    before = fingerprint(con)
    con.execute("UPDATE close.users SET _extracted_at = now() + INTERVAL 1 DAY")
    con.execute("UPDATE staged.owner_map SET fetched_at = now() + INTERVAL 1 DAY")
    assert fingerprint(con) == before
    con.execute("UPDATE staged.owner_map SET systemuserid = 'su-2'")
    assert fingerprint(con) != before
