"""What an extracted close.* table holds, for its materialization: rows, the newest watermark, a preview,
and the data version Dagster compares to tell which downstream assets a change in Close makes stale."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from migration_assets.extract.tables import TableSpec
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote


@dataclass(frozen=True)
class TableSummary:
    rows: int
    watermark: datetime | None  # the newest value of the table's watermark field (None: none or no field)
    preview: pl.DataFrame
    # What the data version is made of: for a table with a watermark, the row count, the newest watermark
    # and the newest date_updated (an edit of an old record moves only the latter; the same value when the
    # watermark is date_updated); these an observation of Close can also read without extracting. A table
    # without one (configuration objects, file metadata: small) is fingerprinted by its content.
    fingerprint: str

    @property
    def data_version(self) -> str:
        return hashlib.sha256(self.fingerprint.encode()).hexdigest()[:16]


def table_summary(
    warehouse: WarehouseResource, spec: TableSpec, schema: str, preview_rows: int
) -> TableSummary:
    ref = f"{quote(schema)}.{quote(spec.name)}"
    with warehouse.connect() as con:  # one connection: opening the file costs more than these reads
        rows = int(fetch_polars(con, f"SELECT count(*) AS n FROM {ref}")["n"][0])
        watermark = None
        if spec.watermark:
            watermark = fetch_polars(con, f"SELECT max({quote(spec.watermark)}) AS w FROM {ref}")["w"][0]
        preview = fetch_polars(con, f"SELECT * FROM {ref} LIMIT {preview_rows}")
        if spec.watermark:
            newest = _newest_update(con, spec, ref, watermark)
            fingerprint = f"{rows}|{watermark.isoformat() if watermark else ''}|{newest}"
        else:
            query = f"SELECT md5(coalesce(string_agg(t::VARCHAR, chr(10) ORDER BY t::VARCHAR), '')) FROM {ref} AS t"
            fingerprint = f"{rows}|{con.execute(query).fetchall()[0][0]}"
    return TableSummary(rows, watermark, preview, fingerprint)


def _newest_update(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, ref: str, watermark: datetime | None
) -> str:
    """The newest date_updated of the table, from its typed column (which holds each record's raw value): the
    watermark itself when that is date_updated, as for every table with records. A scan of every record's raw
    JSON for it cost a delta a quarter of a second per run."""
    if spec.watermark == "date_updated":
        return watermark.isoformat() if watermark else ""
    if "date_updated" not in spec.schema:
        return ""  # file metadata: no date of its own beyond the watermark
    value = con.execute(f"SELECT max(date_updated) FROM {ref}").fetchall()[0][0]
    return value.isoformat() if value else ""
