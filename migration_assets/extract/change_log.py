"""What each extraction of a close.* table changed, for the steps after it (incremental staging):

- `close._extractions(table_name, mode, run_id, extracted_at)`: one row per extraction (full or delta),
  appended; the latest row of a table (by extracted_at) says how it was last extracted.
- `close._changes(table_name, id, change, run_id)`: the ids the table's most recent extraction changed
  (`upserted` or `deleted`), replaced per table by each extraction. A full extraction leaves no rows for
  its table: everything may have changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from migration_assets.resources.warehouse import quote

CHANGES = "_changes"
EXTRACTIONS = "_extractions"
MODES = ("full", "delta")


def ensure_change_tables(con: duckdb.DuckDBPyConnection, schema: str = "close") -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{CHANGES} "
        "(table_name VARCHAR, id VARCHAR, change VARCHAR, run_id VARCHAR)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{EXTRACTIONS} "
        "(table_name VARCHAR, mode VARCHAR, run_id VARCHAR, extracted_at TIMESTAMPTZ)"
    )


def record_extraction(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    mode: str,
    run_id: str,
    *,
    upserted: str | None = None,
    deleted: str | None = None,
    at: datetime | None = None,
) -> None:
    """Record an extraction of `table`; `upserted` / `deleted` are queries of an `id` column (a delta's
    re-read and removed rows). Runs inside the caller's transaction when there is one."""
    if mode not in MODES:
        raise ValueError(f"extraction mode must be one of {MODES}, got {mode!r}")
    if mode == "full" and (upserted or deleted):
        raise ValueError("a full extraction records no ids: every row may have changed")
    ensure_change_tables(con, schema)
    changes = f"{quote(schema)}.{CHANGES}"
    con.execute(f"DELETE FROM {changes} WHERE table_name = ?", [table])
    for change, query in (("upserted", upserted), ("deleted", deleted)):
        if query:
            con.execute(
                f"INSERT INTO {changes} SELECT DISTINCT ?, id, ?, ? FROM ({query}) WHERE id IS NOT NULL",
                [table, change, run_id],
            )
    con.execute(
        f"INSERT INTO {quote(schema)}.{EXTRACTIONS} VALUES (?, ?, ?, ?)",
        [table, mode, run_id, at or datetime.now(UTC)],
    )
