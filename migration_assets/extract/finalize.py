"""Sort a freshly written close.* table by id and drop duplicate ids, with bounded memory.

A single `CREATE TABLE .. AS SELECT .. ORDER BY id` over a table whose `raw` column holds hundreds of
MB (email bodies) makes DuckDB hold it all in memory, and its sort cannot spill wide strings. So big
tables are rewritten range by range: id boundaries are chosen so that each range holds about
`chunk_bytes` of data, and each range is sorted (and de-duplicated) on its own.
"""

from __future__ import annotations

import duckdb

from migration_assets.extract.duplicates import record_conflicts
from migration_assets.extract.tables import TableSpec
from migration_assets.extract.writer import EXTRACT_MEMORY_LIMIT
from migration_assets.resources.warehouse import WarehouseResource, quote, swap_in

CHUNK_BYTES = 48 << 20


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0


def _boundaries(con: duckdb.DuckDBPyConnection, ref: str, chunk_bytes: int) -> list[str]:
    """Ids splitting the table into ranges of about `chunk_bytes` each (ids and sizes only are read)."""
    cursor = con.execute(
        f"SELECT id, coalesce(strlen(raw), 0) + 200 FROM {ref} WHERE id IS NOT NULL ORDER BY id"
    )
    bounds: list[str] = []
    acc = 0
    previous: str | None = None
    while rows := cursor.fetchmany(50_000):
        for row_id, size in rows:
            if acc >= chunk_bytes and row_id != previous:
                bounds.append(row_id)
                acc = 0
            acc += size
            previous = row_id
    return bounds


def finalize_table(
    warehouse: WarehouseResource, spec: TableSpec, schema: str = "close", chunk_bytes: int = CHUNK_BYTES
) -> int:
    """Sort `schema.<table>` by `spec.sort_by`, keep one row per id (the newest); returns rows dropped."""
    with warehouse.connect() as con:
        # Cap DuckDB's buffer cache for the rewrite (without it DuckDB keeps every block it scanned); the
        # setting is global to the run's shared database, so it is given back afterwards.
        con.execute(f"SET memory_limit = '{EXTRACT_MEMORY_LIMIT}'")
        try:
            return _rewrite(con, spec, schema, chunk_bytes)
        finally:
            con.execute("RESET memory_limit")


def _rewrite(con: duckdb.DuckDBPyConnection, spec: TableSpec, schema: str, chunk_bytes: int) -> int:
    ref = f"{quote(schema)}.{quote(spec.name)}"
    order = ", ".join(quote(c) for c in spec.sort_by)
    before = _count(con, f"SELECT count(*) FROM {ref}")
    has_id = "id" in spec.schema
    dupes = has_id and _count(con, f"SELECT count(id) - count(DISTINCT id) FROM {ref}") > 0
    record_conflicts(con, ref, spec, dupes)
    newest = "date_updated DESC NULLS LAST, " if "date_updated" in spec.schema else ""
    dedupe = f"QUALIFY row_number() OVER (PARTITION BY id ORDER BY {newest}raw) = 1" if dupes else ""
    if not (has_id and spec.sort_by == ("id",) and "raw" in spec.schema):
        con.execute(f"CREATE OR REPLACE TABLE {ref} AS SELECT * FROM {ref} {dedupe} ORDER BY {order}")
        return before - _count(con, f"SELECT count(*) FROM {ref}")
    bounds = _boundaries(con, ref, chunk_bytes)
    new = f"{quote(schema)}.{quote('__sorted_' + spec.name)}"
    con.execute(f"CREATE OR REPLACE TABLE {new} AS SELECT * FROM {ref} LIMIT 0")
    edges: list[str | None] = [None, *bounds, None]
    for lo, hi in zip(edges, edges[1:], strict=False):
        where = ["id IS NOT NULL"]
        params: list[object] = []
        if lo is not None:
            where.append("id >= ?")
            params.append(lo)
        if hi is not None:
            where.append("id < ?")
            params.append(hi)
        con.execute(
            f"INSERT INTO {new} SELECT * FROM {ref} WHERE {' AND '.join(where)} {dedupe} ORDER BY id",
            params,
        )
    con.execute(f"INSERT INTO {new} SELECT * FROM {ref} WHERE id IS NULL")
    swap_in(con, schema, "__sorted_" + spec.name, spec.name)
    return before - _count(con, f"SELECT count(*) FROM {ref}")
