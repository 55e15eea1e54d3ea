"""Shared machinery of the close/* extraction assets: stream pages into DuckDB, report metadata.

Each asset collects its table chunk by chunk as pages arrive (memory stays bounded by one page) and
writes it once, sorted by id with duplicates (a record seen twice when data moved during paging)
removed, so both sources produce the same table (see `writer.py`). Close client errors become
`dg.Failure` with the client's message (an actionable sentence, not a traceback).
"""

# No `from __future__ import annotations` here: Dagster inspects the asset function's `context`
# annotation at definition time and rejects it as a string.
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from migration_assets.clients.close.client import CloseError
from migration_assets.clients.close.export_file import CloseExportError
from migration_assets.clients.close.paging import parse_close_datetime
from migration_assets.extract.delta import DELTA_SOURCES, EVENT_RETENTION, deleted_ids
from migration_assets.extract.duplicates import record_quarantine
from migration_assets.extract.finalize import finalize_table
from migration_assets.extract.sources import quarantined_lines, table_pages
from migration_assets.extract.tables import TABLES, TableSpec
from migration_assets.extract.writer import Pages, write_table
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote

SCHEMA = "close"
GROUP = "close"
POOL = "close_api"
PREVIEW_ROWS = 5
LOG_EVERY_ROWS = 50_000

# Executors running every step of a run in one process, where work started by the first asset (an
# export split ahead) is there for the later ones.
SHARED_PROCESS_EXECUTORS = ("in_process", "execute_in_process_executor")

PageSource = Callable[[dg.AssetExecutionContext, CloseResource, WarehouseResource], Pages]


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


def write_pages(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, spec: TableSpec, pages: Pages
) -> tuple[int, int]:
    """Write `close.<spec.name>` from `pages` (sorted, de-duplicated); returns (rows read, dropped)."""
    next_log = LOG_EVERY_ROWS

    def progress(rows: int) -> None:
        nonlocal next_log
        if rows >= next_log:
            context.log.info(f"close.{spec.name}: {rows:,} rows written")
            next_log += LOG_EVERY_ROWS

    return write_table(warehouse, spec, pages, progress, SCHEMA)


def table_metadata(warehouse: WarehouseResource, spec: TableSpec) -> dict[str, Any]:
    ref = f"{quote(SCHEMA)}.{quote(spec.name)}"
    with warehouse.connect() as con:  # one connection: opening the file costs more than these reads
        count = int(fetch_polars(con, f"SELECT count(*) AS n FROM {ref}")["n"][0])
        meta: dict[str, Any] = {"dagster/row_count": count}
        if spec.watermark:
            wm = fetch_polars(con, f"SELECT max({quote(spec.watermark)}) AS w FROM {ref}")["w"][0]
            meta["watermark"] = dg.MetadataValue.text(wm.isoformat() if wm is not None else "")
            meta["watermark_field"] = spec.watermark
        preview = fetch_polars(con, f"SELECT * FROM {ref} LIMIT {PREVIEW_ROWS}")
    meta["preview"] = dg.MetadataValue.md(markdown_table(preview))
    return meta


class CloseExtractConfig(dg.Config):
    """Run config of every close/* asset. `mode="delta"` re-reads only what changed since `since` (or
    the watermark of the last materialization) and applies deletions from the event log; tables
    without a delta filter (configuration objects, file metadata) are simply re-read in full."""

    mode: str = "full"
    since: str | None = None
    # Activities can only be filtered by date_created: re-read this far before the watermark
    # (default: the resource's `activity_lookback_hours`).
    activity_lookback_hours: float | None = None


def _last_watermark(context: dg.AssetExecutionContext) -> datetime | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    mat = event.asset_materialization if event else None
    value = mat.metadata.get("watermark") if mat else None
    return parse_close_datetime(getattr(value, "value", None))


def _ids_frame(ids: set[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": sorted(ids)}, schema={"id": pl.String})


def merge_delta(
    warehouse: WarehouseResource, spec: TableSpec, deleted: set[str], deleted_leads: set[str]
) -> dict[str, int]:
    """Upsert `close._delta_<table>` into `close.<table>` and remove deleted rows, in one transaction."""
    ref, dref = f"{quote(SCHEMA)}.{quote(spec.name)}", f"{quote(SCHEMA)}.{quote('_delta_' + spec.name)}"
    with warehouse.connect() as con:
        con.register("__deleted", _ids_frame(deleted).to_arrow())
        con.register("__deleted_leads", _ids_frame(deleted_leads).to_arrow())
        con.execute("BEGIN TRANSACTION")
        try:
            before = con.execute(f"SELECT count(*) FROM {ref}").fetchone()[0]  # type: ignore[index]
            con.execute(
                f"DELETE FROM {ref} WHERE id IN (SELECT id FROM {dref}) OR id IN (SELECT id FROM __deleted)"
            )
            if "lead_id" in spec.schema:
                con.execute(f"DELETE FROM {ref} WHERE lead_id IN (SELECT id FROM __deleted_leads)")
            kept = con.execute(f"SELECT count(*) FROM {ref}").fetchone()[0]  # type: ignore[index]
            con.execute(f"INSERT INTO {ref} BY NAME SELECT * FROM {dref}")
            changed = con.execute(f"SELECT count(*) FROM {dref}").fetchone()[0]  # type: ignore[index]
            con.execute(f"DROP TABLE {dref}")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return {"delta_rows": int(changed), "rows_removed": int(before - kept)}


def _run_delta(
    context: dg.AssetExecutionContext,
    close: CloseResource,
    warehouse: WarehouseResource,
    spec: TableSpec,
    config: CloseExtractConfig,
) -> dict[str, Any] | None:
    """Apply a delta to an existing table; None when a full extraction is needed instead."""
    if spec.name not in DELTA_SOURCES or not warehouse.table_exists(SCHEMA, spec.name):
        return None
    since = parse_close_datetime(config.since) if config.since else _last_watermark(context)
    if since is None:
        context.log.info(f"close.{spec.name}: no watermark yet, extracting in full")
        return None
    if datetime.now(UTC) - since > EVENT_RETENTION:
        context.log.warning(
            f"close.{spec.name}: watermark {since.isoformat()} is older than the event log's 30-day "
            "retention; deletions before that cannot be detected (run a full extraction)."
        )
    client = close.get_client()
    lookback = timedelta(hours=config.activity_lookback_hours or close.activity_lookback_hours)
    staged = TableSpec(f"_delta_{spec.name}", spec.columns, spec.sort_by)
    written, _ = write_pages(context, warehouse, staged, DELTA_SOURCES[spec.name](client, since, lookback))
    deleted, deleted_leads = deleted_ids(client, spec.name, since)
    return {
        "delta_since": since.isoformat(),
        "rows_read": written,
        **merge_delta(warehouse, spec, deleted, deleted_leads),
    }


def run_extraction(
    context: dg.AssetExecutionContext,
    close: CloseResource,
    warehouse: WarehouseResource,
    table: str,
    source: PageSource,
    config: CloseExtractConfig | None = None,
) -> dg.MaterializeResult:
    spec = TABLES[table]
    config = config or CloseExtractConfig()
    if config.mode not in ("full", "delta"):
        raise dg.Failure(description=f"close/{table}: mode must be 'full' or 'delta', got {config.mode!r}")
    started = time.monotonic()
    extra: dict[str, Any] = {"mode": "full"}
    try:
        delta = _run_delta(context, close, warehouse, spec, config) if config.mode == "delta" else None
        if delta is None:
            # A full read writes the table sorted and de-duplicated in one pass.
            written, dropped = write_pages(context, warehouse, spec, source(context, close, warehouse))
        else:
            written = delta.pop("rows_read")
            extra = {"mode": "delta", **delta}
            # The merged table (old rows + delta) is re-sorted and de-duplicated as a whole.
            dropped = finalize_table(warehouse, spec)
    except (CloseError, CloseExportError) as exc:
        raise dg.Failure(description=str(exc), metadata={"table": f"{SCHEMA}.{table}"}) from exc
    meta = table_metadata(warehouse, spec)
    meta.update(
        {
            "source": close.source,
            "rows_read": written,
            "duplicates_dropped": dropped,
            "seconds": round(time.monotonic() - started, 2),
            **extra,
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
    @reports_api_calls
    def _extract(
        context: AssetExecutionContext,
        config: CloseExtractConfig,
        close: CloseResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        return run_extraction(context, close, warehouse, table, source, config)

    return _extract


def table_source(table: str) -> PageSource:
    """PageSource reading `table` from the configured source (API, or the run's JSON export)."""

    def source(
        context: dg.AssetExecutionContext, close: CloseResource, warehouse: WarehouseResource
    ) -> Pages:
        yield from table_pages(close, table, context.run.run_id, run_close_tables(context))
        if table == "leads":  # the export's unreadable lines, for the check records_readable of close/leads
            with warehouse.connect() as con:
                record_quarantine(con, quarantined_lines(close, context.run.run_id))

    return source


def run_close_tables(context: dg.AssetExecutionContext) -> list[str]:
    """The close tables this run materializes (the job's selected assets whose steps execute), so
    the first asset of the run can start what later ones need (see `sources.prepare_run`)."""
    try:
        executor = context.job_def.executor_def.name
        keys = context.job_def.asset_layer.selected_asset_keys
    except AttributeError:  # another Dagster version: nothing is started ahead, each asset reads on its own
        return []
    if executor not in SHARED_PROCESS_EXECUTORS:  # each step in its own process: nothing to share
        return []
    tables = [key.path[1] for key in keys if len(key.path) == 2 and key.path[0] == GROUP]
    steps = context.run.step_keys_to_execute  # None: every step of the job
    ops = (context.run.run_config or {}).get("ops") or {}

    def full(table: str) -> bool:  # a delta reads the API only (or falls back to full on its own)
        return ((ops.get(f"{GROUP}__{table}") or {}).get("config") or {}).get("mode", "full") == "full"

    return [t for t in tables if (steps is None or f"{GROUP}__{t}" in steps) and full(t)]
