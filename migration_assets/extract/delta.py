"""Delta extraction (DESIGN §8): re-read only what changed since the watermark, apply deletions.

What each family can filter on (close_api.md §2.9): leads by the query language on date_updated (a
lead's date_updated moves when its contacts change, so contacts ride along), opportunities and tasks
by `date_updated__gte`, activities only by date_created — a look-back window is re-read and edits to
older activities stay invisible until the next full run. Deletions come from the event log
(`action=deleted`, 30-day retention); deleting a lead removes its children too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from migration_assets.clients.close.client import CloseClient
from migration_assets.extract.sources import ACTIVITY_PATHS
from migration_assets.extract.tables import TableSpec, strip_lead
from migration_assets.extract.writer import write_table
from migration_assets.resources.warehouse import WarehouseResource, quote

Page = list[dict[str, Any]]
DeltaSource = Callable[[CloseClient, datetime, timedelta], Iterator[Page]]

TASK_TYPES = (
    "lead",
    "outgoing_call",
    "incoming_email",
    "email_followup",
    "missed_call",
    "answered_detached_call",
    "voicemail",
    "opportunity_due",
    "incoming_sms",
)
EVENT_RETENTION = timedelta(days=30)

# Event-log object types whose deletions remove rows of each table.
DELETED_OBJECT_TYPES: dict[str, tuple[str, ...]] = {
    "leads": ("lead",),
    "contacts": ("contact",),
    "opportunities": ("opportunity",),
    "tasks": tuple(f"task.{t}" for t in TASK_TYPES),
    "calls": ("activity.call",),
    "emails": ("activity.email",),
    "email_threads": ("activity.email_thread",),
    "sms": ("activity.sms",),
    "meetings": ("activity.meeting",),
    "notes": ("activity.note",),
    "status_changes": ("activity.lead_status_change", "activity.opportunity_status_change"),
    "custom_activities": ("activity.custom_activity",),
}


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


def deleted_ids(client: CloseClient, table: str, since: datetime) -> tuple[set[str], set[str]]:
    """(ids of `table` deleted since `since`, ids of leads deleted since then)."""
    deleted = {i for t in DELETED_OBJECT_TYPES[table] for i in client.deleted_ids(t, since)}
    leads = deleted if table == "leads" else set(client.deleted_ids("lead", since))
    return deleted, leads


def _ids_frame(ids: set[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": sorted(ids)}, schema={"id": pl.String})


def merge_delta(
    warehouse: WarehouseResource,
    spec: TableSpec,
    deleted: set[str],
    deleted_leads: set[str],
    schema: str = "close",
) -> dict[str, int]:
    """Upsert `<schema>._delta_<table>` into `<schema>.<table>` and remove deleted rows, in one transaction."""
    ref, dref = f"{quote(schema)}.{quote(spec.name)}", f"{quote(schema)}.{quote('_delta_' + spec.name)}"
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


def apply_delta(
    client: CloseClient,
    warehouse: WarehouseResource,
    spec: TableSpec,
    since: datetime,
    lookback: timedelta,
    on_rows: Callable[[int], None] | None = None,
    schema: str = "close",
) -> dict[str, int]:
    """Re-read what changed in `spec`'s table since `since` into `_delta_<table>`, then merge it and
    remove the rows the event log says were deleted; returns rows read, delta rows and rows removed."""
    staged = TableSpec(f"_delta_{spec.name}", spec.columns, spec.sort_by)
    pages = DELTA_SOURCES[spec.name](client, since, lookback)
    read, _ = write_table(warehouse, staged, pages, on_rows, schema)
    deleted, deleted_leads = deleted_ids(client, spec.name, since)
    return {"rows_read": read, **merge_delta(warehouse, spec, deleted, deleted_leads, schema)}
