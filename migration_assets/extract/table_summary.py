"""What an extracted close.* table holds, for its materialization: rows, the newest watermark, a preview."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from migration_assets.extract.tables import TableSpec
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote


@dataclass(frozen=True)
class TableSummary:
    rows: int
    watermark: datetime | None  # the newest value of the table's watermark field (None: none or no field)
    preview: pl.DataFrame


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
    return TableSummary(rows, watermark, preview)
