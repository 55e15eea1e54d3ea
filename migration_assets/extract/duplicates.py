"""What a source delivers that cannot be migrated as it is (DuckDB schema `close_quality`): ids delivered
twice with different content, and export lines that are not valid text.

The same id seen twice is normal when the API is paged while records change: the copies differ in
`date_updated` and the newest one is kept (writer.py). Two copies that are equally new but
differ (an export file holding one contact under two leads, a hand-edited file) cannot be resolved by
recency: keeping either silently would move or merge a record. They are listed here, per table, so that
the blocking check `ids_unique` stops the run and shows them.
"""

from __future__ import annotations

import duckdb

from migration_assets.extract.tables import TableSpec

QUALITY_SCHEMA = "close_quality"
CONFLICTS = f"{QUALITY_SCHEMA}.duplicate_ids"


def ensure_conflicts_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {QUALITY_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {CONFLICTS} "
        "(table_name VARCHAR, id VARCHAR, copies BIGINT, lead_ids VARCHAR)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {QUALITY_SCHEMA}.export_quarantine (id VARCHAR, line VARCHAR, reason VARCHAR)"
    )


def record_conflicts(con: duckdb.DuckDBPyConnection, source: str, spec: TableSpec, duplicates: bool) -> int:
    """Replace the conflicts listed for `spec`'s table by those in `source` (a FROM clause over every row
    written, before de-duplication); returns how many ids conflict. `duplicates` False: the source has
    no id twice, only the old list is cleared."""
    ensure_conflicts_table(con)
    con.execute(f"DELETE FROM {CONFLICTS} WHERE table_name = ?", [spec.name])
    if not duplicates or "id" not in spec.schema or "raw" not in spec.schema:
        return 0
    newest = "date_updated DESC NULLS LAST" if "date_updated" in spec.schema else "id"
    has_lead = "lead_id" in spec.schema
    con.execute(
        f"""INSERT INTO {CONFLICTS}
        SELECT ?, id, count(*), {"string_agg(DISTINCT lead_id, ', ' ORDER BY lead_id)" if has_lead else "NULL"}
        FROM (
            SELECT id, raw{", lead_id" if has_lead else ""} FROM {source}
            WHERE id IN (SELECT id FROM {source} WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1)
            QUALIFY rank() OVER (PARTITION BY id ORDER BY {newest}) = 1
        )
        GROUP BY id HAVING count(DISTINCT raw) > 1""",
        [spec.name],
    )
    row = con.execute(f"SELECT count(*) FROM {CONFLICTS} WHERE table_name = ?", [spec.name]).fetchone()
    return int(row[0]) if row else 0


QUARANTINE_TABLE = f"{QUALITY_SCHEMA}.export_quarantine"


def record_quarantine(con: duckdb.DuckDBPyConnection, rows: list[dict[str, str | None]]) -> None:
    """Replace the list of export lines that were not valid text (id when known, line, reason)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {QUALITY_SCHEMA}")
    con.execute(f"CREATE OR REPLACE TABLE {QUARANTINE_TABLE} (id VARCHAR, line VARCHAR, reason VARCHAR)")
    if rows:
        con.executemany(
            f"INSERT INTO {QUARANTINE_TABLE} VALUES (?, ?, ?)",
            [(r.get("id"), r.get("line"), r.get("reason")) for r in rows],
        )


def adopt_delta_conflicts(con: duckdb.DuckDBPyConnection, table: str, delta_table: str) -> None:
    """After a delta's merge, `table`'s conflicts are those its re-read rows (written as `delta_table`)
    delivered: the merged table holds one row per id, so the earlier list no longer describes it."""
    ensure_conflicts_table(con)
    con.execute(f"DELETE FROM {CONFLICTS} WHERE table_name = ?", [table])
    con.execute(f"UPDATE {CONFLICTS} SET table_name = ? WHERE table_name = ?", [table, delta_table])
