"""The Close objects of an extracted close.* table as the source delivered them (its `raw` JSON column)."""

from __future__ import annotations

import json
from typing import Any

import duckdb


def raw_objects(
    con: duckdb.DuckDBPyConnection, table: str, missing: type[Exception] = LookupError
) -> list[dict[str, Any]]:
    """Every object of close.<table>; `missing` (the caller's error type) when the table is not extracted."""
    try:
        rows = con.execute(f'SELECT raw FROM close."{table}"').fetchall()
    except duckdb.CatalogException as exc:
        raise missing(f"close.{table} is missing: materialize close/{table} first") from exc
    return [json.loads(r[0]) for r in rows]
