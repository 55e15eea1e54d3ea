"""Shared machinery of the close/* extraction assets: stream pages into DuckDB, report metadata.

Each asset writes its table chunk by chunk as pages arrive (memory stays bounded by one page), then
rewrites it sorted by id with duplicates (a record seen twice when data moved during paging) removed,
so both sources produce the same table. Close client errors become `dg.Failure` with the client's
message (an actionable sentence, not a traceback).
"""

# No `from __future__ import annotations` here: Dagster inspects the asset function's `context`
# annotation at definition time and rejects it as a string.
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from migration_assets.defs.close.sources import table_pages
from migration_assets.defs.close.tables import TABLES, TableSpec
from migration_assets.lib.close_export import CloseExportError
from migration_assets.resources.close import CloseError, CloseResource
from migration_assets.resources.warehouse import WarehouseResource

SCHEMA = "close"
GROUP = "close"
POOL = "close_api"
PREVIEW_ROWS = 5
LOG_EVERY_ROWS = 50_000

Pages = Iterable[list[dict[str, Any]]]
PageSource = Callable[[dg.AssetExecutionContext, CloseResource, WarehouseResource], Pages]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def markdown_table(df: pl.DataFrame, max_rows: int = PREVIEW_ROWS, max_width: int = 60) -> str:
    """A small Markdown table for the Dagster UI (long values truncated, `raw` left out)."""
    shown = df.drop([c for c in ("raw",) if c in df.columns]).head(max_rows)
    if not shown.columns:
        return "(no columns)"

    def cell(v: Any) -> str:
        text = "" if v is None else str(v)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.iter_rows()]
    return "\n".join(lines)


def finalize_table(warehouse: WarehouseResource, spec: TableSpec) -> int:
    """Sort `close.<table>` deterministically and drop duplicate ids (keeping the newest version)."""
    ref = f"{_q(SCHEMA)}.{_q(spec.name)}"
    order = ", ".join(_q(c) for c in spec.sort_by)
    with warehouse.connect() as con:
        before = con.execute(f"SELECT count(*) FROM {ref}").fetchone()[0]  # type: ignore[index]
        if "id" in spec.schema:
            newest = "date_updated DESC NULLS LAST, " if "date_updated" in spec.schema else ""
            dedupe = f"QUALIFY row_number() OVER (PARTITION BY id ORDER BY {newest}raw) = 1"
        else:
            dedupe = ""
        con.execute(f"CREATE OR REPLACE TABLE {ref} AS SELECT * FROM {ref} {dedupe} ORDER BY {order}")
        after = con.execute(f"SELECT count(*) FROM {ref}").fetchone()[0]  # type: ignore[index]
    return int(before - after)


def write_pages(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, spec: TableSpec, pages: Pages
) -> int:
    rows = 0
    next_log = LOG_EVERY_ROWS
    with warehouse.table_writer(SCHEMA, spec.name, empty_schema=spec.schema) as writer:
        for page in pages:
            if not page:
                continue
            writer.write(spec.frame(page))
            rows += len(page)
            if rows >= next_log:
                context.log.info(f"close.{spec.name}: {rows:,} rows written")
                next_log += LOG_EVERY_ROWS
    return rows


def table_metadata(warehouse: WarehouseResource, spec: TableSpec) -> dict[str, Any]:
    ref = f"{_q(SCHEMA)}.{_q(spec.name)}"
    count = int(warehouse.read(f"SELECT count(*) AS n FROM {ref}")["n"][0])
    meta: dict[str, Any] = {"dagster/row_count": count}
    if spec.watermark:
        wm = warehouse.read(f"SELECT max({_q(spec.watermark)}) AS w FROM {ref}")["w"][0]
        meta["watermark"] = dg.MetadataValue.text(wm.isoformat() if wm is not None else "")
        meta["watermark_field"] = spec.watermark
    preview = warehouse.read(f"SELECT * FROM {ref} LIMIT {PREVIEW_ROWS}")
    meta["preview"] = dg.MetadataValue.md(markdown_table(preview))
    return meta


def run_extraction(
    context: dg.AssetExecutionContext,
    close: CloseResource,
    warehouse: WarehouseResource,
    table: str,
    source: PageSource,
) -> dg.MaterializeResult:
    spec = TABLES[table]
    started = time.monotonic()
    before = close.get_client().stats
    try:
        written = write_pages(context, warehouse, spec, source(context, close, warehouse))
    except (CloseError, CloseExportError) as exc:
        raise dg.Failure(description=str(exc), metadata={"table": f"{SCHEMA}.{table}"}) from exc
    dropped = finalize_table(warehouse, spec)
    after = close.get_client().stats
    meta = table_metadata(warehouse, spec)
    meta.update(
        {
            "source": close.source,
            "requests": int(after["requests"] - before["requests"]),
            "retries": int(after["retries"] - before["retries"]),
            "rate_limited_429": int(after["rate_limited_429"] - before["rate_limited_429"]),
            "rows_read": written,
            "duplicates_dropped": dropped,
            "seconds": round(time.monotonic() - started, 2),
        }
    )
    if dropped:
        context.log.warning(f"close.{table}: {dropped} duplicate ids dropped (records moved during paging)")
    return dg.MaterializeResult(metadata=meta)


def close_asset(
    table: str,
    description: str,
    source: PageSource,
    deps: Sequence[dg.AssetKey] = (),
) -> dg.AssetsDefinition:
    """One close/<table> asset: pool close_api, group close, resources `close` and `warehouse`."""

    @dg.asset(
        key=[GROUP, table],
        group_name=GROUP,
        pool=POOL,
        description=description,
        deps=list(deps),
        kinds={"duckdb", "polars"},
    )
    def _extract(
        context: AssetExecutionContext, close: CloseResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        return run_extraction(context, close, warehouse, table, source)

    return _extract


def table_source(table: str) -> PageSource:
    """PageSource reading `table` from the configured source (API, or the run's JSON export)."""

    def source(
        context: dg.AssetExecutionContext, close: CloseResource, warehouse: WarehouseResource
    ) -> Pages:
        return table_pages(close, table, context.run.run_id)

    return source
