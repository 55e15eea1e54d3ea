"""Delta extraction (DESIGN §8): re-read only what changed since the watermark, apply deletions.

What each family can filter on (close_api.md §2.9): leads by the query language on date_updated (a
lead's date_updated moves when its contacts change, so contacts ride along), opportunities and tasks
by `date_updated__gte`, activities only by date_created (a look-back window is re-read). What date
filters cannot see comes from one scan of the event log (close_changes.py): activities edited since
the watermark are re-read by id, every child of a merge's destination lead is re-read by lead (their
lead_id changed, whether or not Close logged an event for them), deleted records are removed (deleting
a lead removes its children too). When the event log cannot cover the window (older than its 30-day
retention, or refused), every id of the table is listed instead so that deletions still apply.
What each extraction changed is recorded in close._changes / close._extractions (change_log.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import polars as pl

from migration_assets.clients.close.client import CloseAPIError, CloseClient
from migration_assets.clients.prefetch import read_ahead
from migration_assets.extract.change_log import record_extraction
from migration_assets.extract.close_changes import ACTIVITY_TABLES, CloseChanges, scan_changes
from migration_assets.extract.duplicates import adopt_delta_conflicts
from migration_assets.extract.sources import ACTIVITY_PATHS
from migration_assets.extract.tables import TableSpec, strip_lead
from migration_assets.extract.writer import write_table
from migration_assets.resources.warehouse import WarehouseResource, quote

Page = list[dict[str, Any]]
DeltaSource = Callable[[CloseClient, datetime, timedelta], Iterator[Page]]
ID_BATCH = 100  # activity ids per `id__in` request


def _leads(client: CloseClient, since: datetime, lookback: timedelta) -> Iterator[Page]:
    for page in client.iter_leads(updated_since=since):
        yield [strip_lead(lead) for lead in page]


def _contacts(client: CloseClient, since: datetime, lookback: timedelta) -> Iterator[Page]:
    for page in client.iter_leads(updated_since=since, fields="id,contacts"):
        yield [c for lead in page for c in lead.get("contacts") or []]


def _updated(path: str) -> DeltaSource:
    def source(client: CloseClient, since: datetime, lookback: timedelta) -> Iterator[Page]:
        return client.iter_updated(path, {}, updated_since=since)

    return source


def _activities(table: str) -> DeltaSource:
    def source(client: CloseClient, since: datetime, lookback: timedelta) -> Iterator[Page]:
        for path in ACTIVITY_PATHS[table]:
            yield from client.iter_activities(path, created_since=since, lookback=lookback)

    return source


DELTA_SOURCES: dict[str, DeltaSource] = {
    "leads": _leads,
    "contacts": _contacts,
    "opportunities": _updated("opportunity/"),
    "tasks": _updated("task/"),
    **{table: _activities(table) for table in ACTIVITY_PATHS},
}


@dataclass(frozen=True)
class DeltaPlan:
    """What the event log adds to a table's date-filtered delta (close_api.md §2.9, §4.14)."""

    reread_ids: frozenset[str]  # activities edited since the watermark: date_created cannot see edits
    reread_leads: frozenset[str]  # merge destinations: every child of theirs may have a new lead_id
    deleted: frozenset[str]
    deleted_leads: frozenset[str]  # their children are gone too (a merge source's moved: re-read above)
    reconcile: bool  # the event log does not cover the window: list every id to find deletions


def delta_plan(changes: CloseChanges, table: str, since: datetime) -> DeltaPlan:
    """The plan of `table`'s delta from `since`, out of one scan of the event log (pure)."""
    own = changes.since_time(table, since)
    leads = changes.since_time("leads", since)
    merges = changes.merges_since(since)
    deleted_leads = leads.deleted | {m.source for m in merges}
    edited = own.updated - own.deleted if table in ACTIVITY_TABLES else set()
    return DeltaPlan(
        reread_ids=frozenset(edited),
        reread_leads=frozenset({m.destination for m in merges} - deleted_leads),
        deleted=frozenset(own.deleted),
        deleted_leads=frozenset(deleted_leads),
        reconcile=not changes.covers(since),
    )


def _lead(client: CloseClient, lead_id: str, fields: str | None = None) -> dict[str, Any] | None:
    try:
        return client.get(f"lead/{lead_id}/", {"_fields": fields} if fields else None)
    except CloseAPIError as error:
        if error.status == 404:  # deleted since the event: its deletion is applied instead
            return None
        raise


def _batches(ids: frozenset[str]) -> Iterator[list[str]]:
    ordered = sorted(ids)
    for i in range(0, len(ordered), ID_BATCH):
        yield ordered[i : i + ID_BATCH]


def reread_pages(client: CloseClient, table: str, plan: DeltaPlan) -> Iterator[Page]:
    """The records of `table` the date filters miss: edited activities by id, every child of a merge
    destination by its lead_id (the endpoints and shapes of the full read, sources.api_pages)."""
    for lead_id in sorted(plan.reread_leads):
        if table in ("leads", "contacts"):
            lead = _lead(client, lead_id, None if table == "leads" else "id,contacts")
            if lead is not None:
                yield [strip_lead(lead)] if table == "leads" else list(lead.get("contacts") or [])
        elif table in ("opportunities", "tasks"):
            yield from client.iter_pages(
                "opportunity/" if table == "opportunities" else "task/", {"lead_id": lead_id}
            )
        elif table in ACTIVITY_PATHS:
            for path in ACTIVITY_PATHS[table]:
                yield from client.iter_pages(path, {"lead_id": lead_id})
    if plan.reread_ids and table in ACTIVITY_PATHS:
        for batch in _batches(plan.reread_ids):
            for path in ACTIVITY_PATHS[table]:
                yield from client.iter_pages(path, {"id__in": ",".join(batch)})


def listed_ids(client: CloseClient, table: str) -> set[str]:
    """Every id Close lists for `table` (`_fields=id`, windowed like the full read): a full id
    reconciliation when the event log cannot say what was deleted."""
    if table == "leads":
        pages: Iterable[Page] = client.iter_leads(fields="id")
    elif table == "contacts":
        pages = (
            [c for lead in page for c in lead.get("contacts") or []]
            for page in client.iter_leads(fields="id,contacts")
        )
    elif table in ("opportunities", "tasks"):
        pages = client.iter_window_pages(
            "opportunity/" if table == "opportunities" else "task/", {"_fields": "id"}
        )
    else:
        pages = (
            page
            for path in ACTIVITY_PATHS[table]
            for page in client.iter_window_pages(path, {"_fields": "id"}, field="date_created")
        )
    return {str(r["id"]) for page in pages for r in page if r.get("id")}


def _ids_frame(ids: Iterable[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": sorted(ids)}, schema={"id": pl.String})


def merge_delta(
    warehouse: WarehouseResource,
    spec: TableSpec,
    deleted: Iterable[str],
    deleted_leads: Iterable[str],
    schema: str = "close",
    run_id: str = "",
    listed: set[str] | None = None,
) -> dict[str, int]:
    """Upsert `<schema>._delta_<table>` into `<schema>.<table>`, remove deleted rows (and, given the ids
    Close `listed`, every row it no longer holds), and record what changed (change_log), in one transaction."""
    ref, dref = f"{quote(schema)}.{quote(spec.name)}", f"{quote(schema)}.{quote('_delta_' + spec.name)}"
    with warehouse.connect() as con:
        con.register("__deleted", _ids_frame(deleted).to_arrow())
        con.register("__deleted_leads", _ids_frame(deleted_leads).to_arrow())
        gone = ["id IN (SELECT id FROM __deleted)"]
        if "lead_id" in spec.schema:
            gone.append("lead_id IN (SELECT id FROM __deleted_leads)")
        if listed is not None:
            con.register("__listed", _ids_frame(listed).to_arrow())
            gone.append("id NOT IN (SELECT id FROM __listed)")
        con.execute("BEGIN TRANSACTION")
        try:
            # Rows removed for good (a re-read row is replaced, not removed): the change log's deletions.
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE __removed AS SELECT DISTINCT id FROM {ref} "
                f"WHERE ({' OR '.join(gone)}) AND id NOT IN (SELECT id FROM {dref})"
            )
            con.execute(f"DELETE FROM {ref} WHERE id IN (SELECT id FROM {dref}) OR {' OR '.join(gone)}")
            removed = con.execute("SELECT count(*) FROM __removed").fetchone()[0]  # type: ignore[index]
            con.execute(f"INSERT INTO {ref} BY NAME SELECT * FROM {dref}")
            changed = con.execute(f"SELECT count(*) FROM {dref}").fetchone()[0]  # type: ignore[index]
            record_extraction(
                con,
                schema,
                spec.name,
                "delta",
                run_id,
                upserted=f"SELECT id FROM {dref}",
                deleted="SELECT id FROM __removed",
            )
            adopt_delta_conflicts(con, spec.name, "_delta_" + spec.name)
            con.execute(f"DROP TABLE {dref}")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return {"delta_rows": int(changed), "rows_removed": int(removed)}


def delta_pages(
    client: CloseClient, table: str, since: datetime, lookback: timedelta, plan: DeltaPlan
) -> Iterator[Page]:
    """Every page a delta of `table` reads: the date-filtered read, then what only the event log shows."""
    return chain(DELTA_SOURCES[table](client, since, lookback), reread_pages(client, table, plan))


@dataclass(frozen=True)
class DeltaRead:
    """One table's delta read: where its date filters start (`since`) and its event log (`log_from`)."""

    table: str
    since: datetime
    lookback: timedelta
    log_from: datetime


_TABLE_END = object()


class DeltaReadAhead:
    """The delta reads of several tables, made in order on one background thread while the tables before
    are written and merged (a delta's requests are a few per table: read one table after another, each
    table's requests waited for Close while nothing else ran). One request stream, as without it; at most
    `depth` pages are held. Take each table's pages with `pages(table)`, in the order given; a table whose
    pages were not all taken (its write failed) has the rest skipped. A table's read error is raised from
    its own pages; the tables after it are still read."""

    def __init__(
        self,
        client: CloseClient,
        reads: Iterable[DeltaRead],
        changes: Callable[[], CloseChanges],
        depth: int = 32,
    ) -> None:
        self._reads = list(reads)
        self._client, self._changes = client, changes
        self._items = read_ahead(self._produce(), depth, name="close-delta-read-ahead")
        self._open: str | None = None  # the table whose end marker was not taken yet

    def _produce(self) -> Iterator[tuple[str, Any]]:
        for read in self._reads:
            try:
                plan = delta_plan(self._changes(), read.table, read.log_from)
                for page in delta_pages(self._client, read.table, read.since, read.lookback, plan):
                    yield read.table, page
            except Exception as error:  # noqa: BLE001 - raised from the table's own pages
                yield read.table, error
            yield read.table, _TABLE_END

    def _skip_open(self) -> None:
        while self._open is not None:
            table, item = next(self._items)
            if table == self._open and item is _TABLE_END:
                self._open = None

    def pages(self, table: str) -> Iterator[Page]:
        self._skip_open()
        self._open = table  # now, not when first iterated: a table whose pages are never read is skipped too
        return self._table_pages(table)

    def _table_pages(self, table: str) -> Iterator[Page]:
        while True:
            read, item = next(self._items)
            if read != table:
                raise RuntimeError(f"delta pages of close.{table} asked out of order (next: {read})")
            if item is _TABLE_END:
                self._open = None
                return
            if isinstance(item, Exception):
                self._skip_open()
                raise item
            yield item

    def close(self) -> None:
        # Stops the background reads: closing the reader ends a started one, dropping it an unstarted one.
        self._items.close()
        self._items = iter(())

    def __enter__(self) -> DeltaReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def apply_delta(
    client: CloseClient,
    warehouse: WarehouseResource,
    spec: TableSpec,
    since: datetime,
    lookback: timedelta,
    on_rows: Callable[[int], None] | None = None,
    schema: str = "close",
    changes: Callable[[], CloseChanges] | None = None,
    run_id: str = "",
    warn: Callable[[str], None] | None = None,
    log_from: datetime | None = None,
    pages: Iterable[Page] | None = None,
) -> dict[str, int]:
    """Re-read what changed in `spec`'s table since `since` into `_delta_<table>` (date filters, plus
    what only the event log shows: edited activities, a merge's moved children), then merge it and
    remove the deleted rows. The event log is read from `log_from` (default `since`): when the previous
    extraction began reading Close. `changes` gives the step's one scan of the event log (scanned here when None).
    `pages`: the delta's pages when already being read (DeltaReadAhead), else read here.
    Beyond the event log's retention (or without it) every id is listed to find the deletions."""
    log_from = log_from or since
    scan = changes() if changes else scan_changes(client, log_from, probe=False)
    plan = delta_plan(scan, spec.name, log_from)
    listed = None
    if plan.reconcile:
        if warn:
            why = (
                "the event log is not available"
                if not scan.event_log
                else "the previous extraction is older than the event log's 30-day retention"
            )
            warn(
                f"close.{spec.name}: {why} ({log_from.isoformat()}); reconciling every id to find deleted "
                "records (edits of old activities stay unseen until a full extraction)"
            )
        listed = listed_ids(client, spec.name)
    staged = TableSpec(f"_delta_{spec.name}", spec.columns, spec.sort_by)
    if pages is None:
        pages = delta_pages(client, spec.name, since, lookback, plan)
    read, dropped = write_table(warehouse, staged, pages, on_rows, schema)
    merged = merge_delta(warehouse, spec, plan.deleted, plan.deleted_leads, schema, run_id, listed)
    return {
        "rows_read": read,
        "duplicates_dropped": dropped,
        **merged,
        "reread_by_id": len(plan.reread_ids),
        "merge_destinations": len(plan.reread_leads),
        "reconciled_ids": int(plan.reconcile),
    }
