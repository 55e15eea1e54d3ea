"""The staged rows as last loaded successfully (`loaded._snapshot_<staged table>`): what makes a delta load
proportional to the change (DESIGN §8).

After every load that completed (any run, full or delta) the snapshot becomes the staged table minus the rows
this run refused, so that those are retried. A delta run then loads only the staged rows that differ from
the snapshot (new or changed, compared on every column) and reads back and diffs only those. Without a
snapshot, or when the staged table's columns changed since (a mapping change), it loads every staged row as
a full run does: the loader's diff against the target keeps that correct.

A rollback changes the target behind the snapshots' back, so it drops them (`drop_snapshots`): the next
delta falls back to the full diff once.

A snapshot that has the staged table's columns is updated in place: only the rows that differ from the
staged ones (and this run's refused rows) are removed and the new or changed ones inserted, so a delta writes
about as many snapshot rows as it loaded instead of copying every staged row again (seconds per delta).
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from migration_assets.load.ledger import SCHEMA as LEDGER_SCHEMA
from migration_assets.load.ledger import ensure_schema
from migration_assets.resources.warehouse import fetch_polars, quote, table_exists

SCHEMA = "loaded"
PREFIX = "_snapshot_"


def snapshot_name(staged_table: str) -> str:
    return PREFIX + staged_table


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    return [name for name, _ in _typed_columns(con, schema, table)]


def _typed_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [schema, table],
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def changed_rows(
    con: duckdb.DuckDBPyConnection, staged_table: str
) -> tuple[list[str], list[dict[str, Any]]] | None:
    """(columns, staged rows new or changed since the snapshot); None when there is no usable snapshot
    (none yet, or the staged columns differ from it): then every staged row is to be loaded."""
    name = snapshot_name(staged_table)
    if not table_exists(con, SCHEMA, name):
        return None
    columns = _columns(con, "staged", staged_table)
    if columns != _columns(con, SCHEMA, name):
        return None
    # EXCEPT compares whole rows with NULLs equal: exactly "this row was not loaded as it now is". Kept on the
    # connection for save_snapshot after the load (`changed_known`): neither table changes in between.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_pending(staged_table)} AS "
        f"SELECT * FROM staged.{quote(staged_table)} EXCEPT SELECT * FROM {SCHEMA}.{quote(name)}"
    )
    frame = fetch_polars(con, f"SELECT * FROM {_pending(staged_table)}")
    return frame.columns, frame.to_dicts()


def _pending(staged_table: str) -> str:
    """The temporary table of the staged rows that differ from the snapshot (on the connection that made it)."""
    return quote("__snapshot_new_" + staged_table)


def parties_as_loaded(
    con: duckdb.DuckDBPyConnection, staged_table: str, primary_key: str, rows: list[dict[str, Any]]
) -> frozenset[str]:
    """Ids (lower-cased) of these staged rows whose activity parties (`_parties`) equal those of the row the
    last completed load wrote: their parties need no read nor write. Empty when the table has no parties."""
    name = snapshot_name(staged_table)
    if not rows or "_parties" not in rows[0] or not table_exists(con, SCHEMA, name):
        return frozenset()
    if "_parties" not in _columns(con, SCHEMA, name):
        return frozenset()
    pk = quote(primary_key)
    ids = sorted({str(r.get(primary_key) or "").lower() for r in rows})
    con.register("__party_rows", pl.DataFrame({"id": ids}, schema={"id": pl.String}).to_arrow())
    try:
        # Only these rows' parties: the snapshot holds every loaded row's.
        key = f"lower(CAST({pk} AS VARCHAR))"
        loaded = dict(
            con.execute(
                f"SELECT {key}, _parties FROM {SCHEMA}.{quote(name)} "
                f"WHERE _parties IS NOT NULL AND {key} IN (SELECT id FROM __party_rows)"
            ).fetchall()
        )
    finally:
        con.unregister("__party_rows")
    return frozenset(
        rid
        for r in rows
        if (rid := str(r.get(primary_key) or "").lower()) in loaded and r.get("_parties") == loaded[rid]
    )


def save_snapshot(
    con: duckdb.DuckDBPyConnection,
    staged_table: str,
    primary_key: str,
    run_id: str,
    table: str,
    changed_known: bool = False,
) -> int:
    """Record the staged rows as loaded by run `run_id` (its rows refused in `table` left out, so that the
    next delta retries them); returns the snapshot's row count. `changed_known`: `changed_rows` compared the
    tables on this connection and neither changed since (the load writes neither): not compared again."""
    name = snapshot_name(staged_table)
    ensure_schema(con)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    refused = (
        f"SELECT lower(record_id) FROM {LEDGER_SCHEMA}.rejected WHERE run_id = ? AND table_name = ? "
        "AND record_id IS NOT NULL"
    )
    if not _update_in_place(con, staged_table, primary_key, refused, [run_id, table], changed_known):
        con.execute(
            f"CREATE OR REPLACE TABLE {SCHEMA}.{quote(name)} AS SELECT * FROM staged.{quote(staged_table)} s "
            f"WHERE lower(CAST(s.{quote(primary_key)} AS VARCHAR)) NOT IN ({refused})",
            [run_id, table],
        )
    row = con.execute(f"SELECT count(*) FROM {SCHEMA}.{quote(name)}").fetchall()
    return int(row[0][0]) if row else 0


def _update_in_place(
    con: duckdb.DuckDBPyConnection,
    staged_table: str,
    primary_key: str,
    refused: str,
    params: list[str],
    changed_known: bool = False,
) -> bool:
    """Make the existing snapshot equal to the staged rows minus the `refused` ones (a query of lower-cased
    ids) by replacing only the rows that differ; False (nothing changed) when it cannot: no snapshot, other
    columns or types than the staged table's, or a row without a primary key (rows are replaced by key)."""
    name = snapshot_name(staged_table)
    if not table_exists(con, SCHEMA, name):
        return False
    if _typed_columns(con, "staged", staged_table) != _typed_columns(con, SCHEMA, name):
        return False
    snap, staged, pk = f"{SCHEMA}.{quote(name)}", f"staged.{quote(staged_table)}", quote(primary_key)
    new = _pending(staged_table)
    con.execute("BEGIN TRANSACTION")
    try:
        # New or changed rows: whole rows compared with NULLs equal, as changed_rows. They replace the rows of
        # their key; the rows of a key no longer staged go (one key column compared, not every column).
        if not changed_known:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {new} AS SELECT * FROM {staged} EXCEPT SELECT * FROM {snap}"
            )
        keyless = con.execute(
            f"SELECT (SELECT count(*) FROM {new} WHERE {pk} IS NULL) + "
            f"(SELECT count(*) FROM {snap} WHERE {pk} IS NULL)"
        ).fetchall()
        if keyless[0][0]:
            con.execute("ROLLBACK")
            return False
        con.execute(
            f"DELETE FROM {snap} WHERE {pk} IN (SELECT {pk} FROM {new}) "
            f"OR {pk} NOT IN (SELECT {pk} FROM {staged} WHERE {pk} IS NOT NULL) "
            f"OR lower(CAST({pk} AS VARCHAR)) IN ({refused})",
            params,
        )
        con.execute(
            f"INSERT INTO {snap} SELECT * FROM {new} WHERE lower(CAST({pk} AS VARCHAR)) NOT IN ({refused})",
            params,
        )
        con.execute(f"DROP TABLE {new}")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return True


def drop_snapshots(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Forget every snapshot (after a rollback); returns the staged tables whose snapshot was dropped."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND starts_with(table_name, ?)",
        [SCHEMA, PREFIX],
    ).fetchall()
    for (name,) in rows:
        con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{quote(name)}")
    return sorted(str(n)[len(PREFIX) :] for (n,) in rows)
