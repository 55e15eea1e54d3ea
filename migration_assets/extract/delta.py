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

from migration_assets.clients.close.client import CloseClient
from migration_assets.extract.sources import ACTIVITY_PATHS
from migration_assets.extract.tables import strip_lead

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
