"""Declarations shared by the close/* assets: the run config, one asset per table read on its own
(`close_asset`), one subsettable multi_asset per pass over Close (`close_pass_asset`), their metadata.

Each table is collected chunk by chunk as pages arrive (memory stays bounded by one page) and
writes it once, sorted by id with duplicates (a record seen twice when data moved during paging)
removed, so both sources produce the same table (see `writer.py`). Close client errors become
`dg.Failure` with the client's message (an actionable sentence, not a traceback).
"""

# No `from __future__ import annotations` here: Dagster inspects the asset function's `context`
# annotation at definition time and rejects it as a string.
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.clients.call_scope import call_scope
from migration_assets.clients.close.client import CloseError
from migration_assets.clients.close.export_file import CloseExportError
from migration_assets.clients.close.paging import parse_close_datetime
from migration_assets.clients.fastjson import dumps_canonical
from migration_assets.extract.change_log import record_extraction
from migration_assets.extract.close_changes import RECORD_TABLES, CloseChanges, scan_changes
from migration_assets.extract.delta import DELTA_SOURCES, DeltaRead, DeltaReadAhead, Page, apply_delta
from migration_assets.extract.sources import ClosePass, pass_pages
from migration_assets.extract.table_summary import table_summary
from migration_assets.extract.tables import TABLES, TableSpec
from migration_assets.extract.writer import Pages, write_table
from migration_assets.resources.api_calls import reports_api_calls, step_calls
from migration_assets.resources.close import CloseResource
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.progress import StepProgress
from migration_assets.resources.warehouse import WarehouseResource

SCHEMA = "close"
GROUP = "close"
SOURCE_PREFIX = "close_source"  # observable source assets: the objects in Close itself
POOL = "close_api"
READ_STARTED = "read_started"  # metadata: when the extraction began reading Close
PREVIEW_ROWS = 5
CELL_WIDTH = 60  # characters of a value shown in a Markdown table of the UI
KINDS = {"duckdb", "polars"}
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster reads an observation's data version
CONTENT_VERSION = "content_version"  # metadata: the version of a configuration table as read (observe.py)

PageSource = Callable[[dg.AssetExecutionContext, CloseResource, WarehouseResource], Pages]


def _progress(context: dg.AssetExecutionContext, spec: TableSpec) -> StepProgress:
    """Rows read so far (Close's lists give no total up front): the run's log and the console show them."""
    return StepProgress(f"{GROUP}/{spec.name}", None, log=context.log.info)


def write_pages(
    warehouse: WarehouseResource, spec: TableSpec, pages: Pages, progress: StepProgress
) -> tuple[int, int]:
    """Write `close.<spec.name>` from `pages` (sorted, de-duplicated); returns (rows read, dropped)."""
    return write_table(warehouse, spec, pages, progress.advance_to, SCHEMA)


def table_metadata(warehouse: WarehouseResource, spec: TableSpec) -> tuple[dict[str, Any], dg.DataVersion]:
    """The materialization's metadata and data version of close.<table> as it now is."""
    summary = table_summary(warehouse, spec, SCHEMA, PREVIEW_ROWS)
    meta: dict[str, Any] = {"dagster/row_count": summary.rows}
    if spec.watermark:
        wm = summary.watermark
        meta["watermark"] = dg.MetadataValue.text(wm.isoformat() if wm is not None else "")
        meta["watermark_field"] = spec.watermark
    shown = markdown_table(summary.preview, max_rows=PREVIEW_ROWS, max_width=CELL_WIDTH, drop=("raw",))
    meta["preview"] = dg.MetadataValue.md(shown)
    return meta, dg.DataVersion(summary.data_version)


class CloseExtractConfig(dg.Config):
    """Run config of every close/* step (for a multi_asset, of every table it extracts). `mode="delta"` re-reads only what changed since `since` (or
    the watermark of the last materialization) and applies deletions from the event log; tables
    without a delta filter (configuration objects, file metadata) are simply re-read in full."""

    mode: str = "full"
    since: str | None = None
    # Activities can only be filtered by date_created: re-read this far before the watermark
    # (default: the resource's `activity_lookback_hours`).
    activity_lookback_hours: float | None = None


LatestMetadata = Mapping[str, Mapping[str, Any]]  # table -> metadata of its latest materialization


def latest_metadata(context: dg.AssetExecutionContext, tables: Sequence[str]) -> LatestMetadata:
    """The metadata of the latest materialization of each close/<table>, read in one query of the instance
    (a step of every Close table read two times per table otherwise)."""
    out: dict[str, Mapping[str, Any]] = {}
    for record in context.instance.get_asset_records([key_of(t) for t in tables]):
        event = record.asset_entry.last_materialization
        mat = event.asset_materialization if event else None
        if mat is not None:
            out[record.asset_entry.asset_key.path[-1]] = mat.metadata
    return out


def _last_time(
    context: dg.AssetExecutionContext, table: str, name: str, latest: LatestMetadata | None = None
) -> datetime | None:
    """A time the latest materialization of close/<table> recorded in its metadata (`watermark`,
    `read_started`); `latest`: those metadata, read beforehand for every table of the step."""
    metadata = latest.get(table) if latest is not None else latest_metadata(context, [table]).get(table)
    value = metadata.get(name) if metadata else None
    return parse_close_datetime(getattr(value, "value", None))


def events_from(
    context: dg.AssetExecutionContext,
    table: str,
    config: CloseExtractConfig,
    since: datetime | None,
    latest: LatestMetadata | None = None,
) -> datetime | None:
    """Where the event log of a delta of `table` starts: when the previous extraction began reading Close
    (what happened before is in the table; the watermark, the newest record's date, can be much older),
    or `since` when given explicitly or unknown."""
    if since is None or config.since:
        return since
    return _last_time(context, table, READ_STARTED, latest) or since


def check_mode(config: CloseExtractConfig, what: str) -> None:
    if config.mode not in ("full", "delta"):
        raise dg.Failure(description=f"{what}: mode must be 'full' or 'delta', got {config.mode!r}")


def delta_since(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    table: str,
    config: CloseExtractConfig,
    latest: LatestMetadata | None = None,
) -> datetime | None:
    """Where a delta of `table` starts; None when the table must be extracted in full instead (a full
    run, a table without a delta filter or not extracted yet, no watermark)."""
    if config.mode != "delta" or table not in DELTA_SOURCES or not warehouse.table_exists(SCHEMA, table):
        return None
    since = (
        parse_close_datetime(config.since)
        if config.since
        else _last_time(context, table, "watermark", latest)
    )
    if since is None:
        context.log.info(f"close.{table}: no watermark yet, extracting in full")
    # Beyond the event log's retention, apply_delta warns and reconciles every id instead.
    return since


def key_of(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


def source_key(table: str) -> dg.AssetKey:
    """The observable source asset standing for the Close objects of close/<table> (observe.py)."""
    return dg.AssetKey([SOURCE_PREFIX, table])


def scan_for_deltas(close: CloseResource, since: Mapping[str, datetime | None]) -> Callable[[], CloseChanges]:
    """One scan of Close's event log for every delta of a step (`since`: where each table's event log
    starts), from the oldest: made when the first delta needs it, shared by the others."""
    starts = [s for s in since.values() if s is not None]
    lock = threading.Lock()  # the delta read-ahead's thread and the step's thread both ask for it
    # Without the event log a delta lists every id instead: probing Close's dates would be wasted.
    scan = functools.cache(lambda: scan_changes(close.get_client(), min(starts), probe=False))

    def changes() -> CloseChanges:
        with lock:
            return scan()

    return changes


def extract_table(
    context: dg.AssetExecutionContext,
    close: CloseResource,
    warehouse: WarehouseResource,
    table: str,
    pages: Callable[[], Pages],
    config: CloseExtractConfig,
    since: datetime | None,
    changes: Callable[[], CloseChanges] | None = None,
    log_from: datetime | None = None,
    read_started: datetime | None = None,
    delta_pages: Iterable[Page] | None = None,
) -> dg.MaterializeResult:
    """Write close.<table> in full from `pages()`, or apply a delta from `since` (`changes`: the step's
    scan of the event log from `log_from`, scanned for this table alone when None; `delta_pages`: its
    pages when already being read); its materialization.
    `read_started`: when the step began reading Close (where the next delta's event log starts)."""
    spec = TABLES[table]
    started = time.monotonic()
    read_started = read_started or datetime.now(UTC)
    extra: dict[str, Any] = {"mode": "full"}
    run_id = context.run.run_id
    progress = _progress(context, spec)
    try:
        if since is None:
            # A full read writes the table sorted and de-duplicated in one pass.
            written, dropped = write_pages(warehouse, spec, pages(), progress)
            with warehouse.connect() as con:
                record_extraction(con, SCHEMA, table, "full", run_id)
        else:
            lookback = timedelta(hours=config.activity_lookback_hours or close.activity_lookback_hours)
            delta = apply_delta(
                close.get_client(),
                warehouse,
                spec,
                since,
                lookback,
                progress.advance_to,
                SCHEMA,
                changes,
                run_id,
                context.log.warning,
                log_from,
                delta_pages,
            )
            written, dropped = delta.pop("rows_read"), delta.pop("duplicates_dropped")
            extra = {"mode": "delta", "delta_since": since.isoformat(), **delta}
            # The merge replaced each re-read id's row: the table holds one row per id without being
            # rewritten (a rewrite of every row cost a delta seconds per large table). Its changed rows sit
            # at its end; readers slice by rowid to the highest one (mapping/frame.py object_chunks).
    except (CloseError, CloseExportError) as exc:
        raise dg.Failure(description=str(exc), metadata={"table": f"{SCHEMA}.{table}"}) from exc
    progress.advance_to(written)
    meta, version = table_metadata(warehouse, spec)
    meta.update(
        {
            **progress.finish(),
            "source": close.source,
            "rows_read": written,
            "duplicates_dropped": dropped,
            "seconds": round(time.monotonic() - started, 2),
            READ_STARTED: dg.MetadataValue.text(read_started.isoformat()),
            **extra,
        }
    )
    if dropped:
        context.log.warning(f"close.{table}: {dropped} duplicate ids dropped (records moved during paging)")
    return dg.MaterializeResult(asset_key=key_of(table), metadata=meta, data_version=version)


def close_asset(
    table: str,
    description: str,
    source: PageSource,
    deps: Sequence[dg.AssetKey] = (),
) -> dg.AssetsDefinition:
    """One close/<table> asset read on its own (file metadata, derived from extracted tables): pool
    close_api, group close, resources `close` and `warehouse`."""

    @dg.asset(
        key=key_of(table),
        group_name=GROUP,
        pool=POOL,
        description=description,
        deps=list(deps),
        kinds=KINDS,
    )
    @reports_api_calls
    def _extract(
        context: AssetExecutionContext,
        config: CloseExtractConfig,
        close: CloseResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        check_mode(config, f"close/{table}")
        since = delta_since(context, warehouse, table, config)
        return extract_table(
            context, close, warehouse, table, lambda: source(context, close, warehouse), config, since
        )

    return _extract


def close_pass_asset(name: str, descriptions: Mapping[str, str]) -> dg.AssetsDefinition:
    """One subsettable multi_asset for the tables one pass over Close reads (`ClosePass`), in TABLES
    order: when lead tables come from an export, one step requests it first and splits it once for all
    of them while the configuration objects are read through the API (with the API source, each table
    is read from its endpoints); it yields one materialization per selected table."""
    # TABLES order: configuration objects first (they hide the export's build), tasks after the other
    # lead tables (the /task/ read that completes it overlaps their writes).
    order = [t for t in TABLES if t in descriptions]

    @dg.multi_asset(
        name=f"{GROUP}__{name}",
        specs=[
            dg.AssetSpec(
                key_of(t), description=descriptions[t], group_name=GROUP, kinds=KINDS, deps=[source_key(t)]
            )
            for t in order
        ],
        can_subset=True,
        pool=POOL,
    )
    def _extract(
        context: AssetExecutionContext,
        config: CloseExtractConfig,
        close: CloseResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult]:
        with call_scope() as scope:
            yield from _read(context, config, close, warehouse, lambda: scope.counts("close")["close"])

    def _read(
        context: AssetExecutionContext,
        config: CloseExtractConfig,
        close: CloseResource,
        warehouse: WarehouseResource,
        close_calls: Callable[[], dict[str, int]],
    ) -> Iterator[dg.MaterializeResult]:
        check_mode(config, f"{GROUP}/{name}")
        read_started = datetime.now(UTC)
        selected = {key.path[-1] for key in context.selected_asset_keys}
        tables = [t for t in order if t in selected]
        latest = latest_metadata(context, tables) if config.mode == "delta" else {}
        since = {t: delta_since(context, warehouse, t, config, latest) for t in tables}
        log_from = {t: events_from(context, t, config, since[t], latest) for t in tables}
        # A configuration table whose version this run's observation found unchanged since it was read is
        # not read again (a delta re-read them all: a request or two and a table write each).
        kept = {t: v for t in tables if (v := unchanged_configuration(context, warehouse, t, config, latest))}
        tables = [t for t in tables if t not in kept]
        full = [t for t in tables if since[t] is None]  # only these may need the export
        changes = scan_for_deltas(close, log_from)
        # Deltas first (API only): the export of the full tables builds and splits meanwhile.
        tables.sort(key=lambda t: since[t] is None)
        for table, version in kept.items():
            yield kept_result(warehouse, table, version, read_started)
        calls = close_calls()
        failed: list[tuple[str, Exception]] = []
        lookback = timedelta(hours=config.activity_lookback_hours or close.activity_lookback_hours)
        # The deltas' requests run ahead of their writes (one stream, in order): each table's pages are
        # there when its write begins. The requests a table's materialization carries are those made
        # while it was written, some of them the next tables' reads (the run's total is unchanged).
        reads = [DeltaRead(t, s, lookback, log_from[t] or s) for t in tables if (s := since[t]) is not None]
        with (
            ClosePass(close, full, context.run.run_id) as close_pass,
            DeltaReadAhead(close.get_client(), reads, changes) as delta_reads,
        ):
            for table in tables:
                content = ContentRead()
                try:
                    result = extract_table(
                        context,
                        close,
                        warehouse,
                        table,
                        lambda t=table, c=content: c.through(t, pass_pages(close_pass, warehouse, t)),
                        config,
                        since[table],
                        changes,
                        log_from[table],
                        read_started,
                        delta_reads.pages(table) if since[table] is not None else None,
                    )
                except Exception as error:
                    # As with one asset per table, one table's failure leaves the others to be read: they
                    # are materialized, the step fails at the end with the first error.
                    context.log.error(f"{GROUP}/{table} was not extracted: {error}")
                    failed.append((table, error))
                    continue
                except BaseException:
                    _log_calls(context, calls, close_calls())
                    raise
                # Each table carries the requests made since the previous one (the split's included),
                # so the run's totals are the sum over its materializations, as for one asset per step.
                before, calls = calls, close_calls()
                extra = step_calls({"close": before}, {"close": calls})
                if content.version is not None:
                    extra[CONTENT_VERSION] = content.version
                yield result._replace(metadata={**(result.metadata or {}), **extra})
        if failed:
            _log_calls(context, calls, close_calls())
            if len(failed) > 1:
                context.log.error(f"not extracted: {', '.join(f'{GROUP}/{t}' for t, _ in failed)}")
            raise failed[0][1]

    return _extract


class ContentRead:
    """The content version (`content_hash`) of a configuration table read through `through`, for its
    materialization; None for a record table or a read not made of object pages."""

    def __init__(self) -> None:
        self.version: str | None = None

    def through(self, table: str, pages: Pages) -> Iterator[Any]:
        records: list[dict[str, Any]] | None = [] if table not in RECORD_TABLES else None
        for page in pages:
            if records is not None:
                if isinstance(page, list):
                    records += page
                else:
                    records = None
            yield page
        if records is not None:
            self.version = content_hash(records)


def unchanged_configuration(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    table: str,
    config: CloseExtractConfig,
    latest: LatestMetadata,
) -> str | None:
    """The content version of configuration table `table` when a delta need not read it again: this run's
    observation of Close found the version it had when it was last read (and the table is there)."""
    if config.mode != "delta" or table in RECORD_TABLES:
        return None
    read = getattr((latest.get(table) or {}).get(CONTENT_VERSION), "value", None)
    observed = observed_in_run(context.instance, table, context.run.run_id)
    if read is None or observed != read or not warehouse.table_exists(SCHEMA, table):
        return None
    return observed


def kept_result(
    warehouse: WarehouseResource, table: str, version: str, read_started: datetime
) -> dg.MaterializeResult:
    """The materialization of a configuration table kept as it is: its unchanged figures, no request made."""
    meta, data_version = table_metadata(warehouse, TABLES[table])
    meta.update(
        {
            "mode": "unchanged",
            "rows_read": 0,
            CONTENT_VERSION: version,
            READ_STARTED: dg.MetadataValue.text(read_started.isoformat()),
        }
    )
    return dg.MaterializeResult(asset_key=key_of(table), metadata=meta, data_version=data_version)


def _log_calls(context: dg.AssetExecutionContext, before: dict[str, int], after: dict[str, int]) -> None:
    calls = step_calls({"close": before}, {"close": after})
    if calls:
        context.log.warning(f"API calls of this step before it stopped: {calls}")


def content_hash(records: Iterable[dict[str, Any]]) -> str:
    """The version of a configuration table holding `records` (as `api_config` lists them), for an observation
    of Close (observe.py) and for its extraction: a delta re-reads the configuration tables whose version moved
    since they were read, and only those."""
    # Injected context counts too (a user deactivated in Close changes only `__is_active`).
    lines = sorted(dumps_canonical(record) for record in records)
    return "content " + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def observed_in_run(instance: dg.DagsterInstance, table: str, run_id: str) -> str | None:
    """The data version an observation of this run recorded for close_source/<table> (None: none did)."""
    record = instance.get_latest_data_version_record(source_key(table), is_source=True)
    observation = record.asset_observation if record else None
    if record is None or observation is None or record.run_id != run_id or not observation.tags:
        return None
    return observation.tags.get(DATA_VERSION_TAG)
