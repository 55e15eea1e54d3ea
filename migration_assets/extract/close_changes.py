"""What changed in Close since a point in time, per close.* table (DESIGN §8, issue 13); no Dagster.

One scan of the event log (`GET /event/` with only `date_updated__gte`, as the Airbyte and Singer
connectors scan it; close_api.md §2.9, §4.14) maps each event to the table its object type fills (`EVENT_OBJECT_TYPES`,
the one mapping). The scan starts `RESCAN` before the point asked for, because Close may consolidate
recent events ("we recommend to scan the latest five minutes of events"). Where the event log refuses us
(400/403: plan or permission, §4.14), date probes take its place: the records each list endpoint reports
as updated (or, for activities, created) since then, which see no deletions and no activity edits.

The observation of Close (defs/close/observe.py), the delta extraction (delta.py) and the cutover's
quiet-period check all read the same `CloseChanges`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_assets.clients.close.client import CloseAPIError, CloseClient
from migration_assets.clients.close.paging import parse_close_datetime

EVENT_RETENTION = timedelta(days=30)  # the event log keeps 30 days (close_api.md §4.14)
RESCAN = timedelta(minutes=5)  # recent events may still be consolidated: re-read this much
REFUSED_STATUSES = (400, 403)  # the event log is not available on this plan / to this key

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

# Event-log object types (close_api.md §4.14) of the records each close.* table holds. Tables missing
# here (lead and opportunity statuses, pipelines) are blind in the event log.
EVENT_OBJECT_TYPES: dict[str, tuple[str, ...]] = {
    "users": ("membership",),
    "custom_fields": tuple(
        f"custom_fields.{kind}" for kind in ("lead", "contact", "opportunity", "activity", "shared")
    ),
    "custom_activity_types": ("custom_activity_type",),
    "sequences": ("sequence",),
    "smart_views": ("saved_search",),
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
TABLE_OF_OBJECT_TYPE: dict[str, str] = {
    object_type: table for table, types in EVENT_OBJECT_TYPES.items() for object_type in types
}
# The lead tables: big, read incrementally, versioned by their changes. The others (configuration
# objects) are small and read in full.
RECORD_TABLES = (
    "leads",
    "contacts",
    "opportunities",
    "tasks",
    "calls",
    "emails",
    "email_threads",
    "sms",
    "meetings",
    "notes",
    "status_changes",
    "custom_activities",
)
ACTIVITY_TABLES = RECORD_TABLES[4:]


@dataclass(frozen=True, order=True)
class Change:
    """One change seen in Close: when, and the id that makes it unique (an event id, or a record id
    when a date probe saw it). Ordered by time, then id: the newest change of a table is its max."""

    at: datetime
    id: str

    @property
    def marker(self) -> str:
        return f"{self.at.isoformat()} {self.id}"


@dataclass(frozen=True)
class Merge:
    """`POST /lead/merge/`: the source lead was deleted, its children moved to the destination."""

    source: str
    destination: str


@dataclass
class TableChanges:
    """What changed in one table: counts by action, the ids, the newest change."""

    table: str
    created: set[str] = field(default_factory=set)
    updated: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    newest: Change | None = None

    def add(self, action: str, object_id: str, change: Change) -> None:
        if action == "created":
            self.created.add(object_id)
        elif action == "deleted":
            self.deleted.add(object_id)
        else:  # updated, merged, completed, sent, answered, ...: the record now reads differently
            self.updated.add(object_id)
        if self.newest is None or change > self.newest:
            self.newest = change

    @property
    def counts(self) -> dict[str, int]:
        return {"created": len(self.created), "updated": len(self.updated), "deleted": len(self.deleted)}

    @property
    def fingerprint(self) -> str:
        """The newest change (event id and date, or the probe's newest record); "" when none."""
        return self.newest.marker if self.newest else ""


@dataclass(frozen=True)
class Seen:
    """One change of one record of a table (an event, or a record a probe listed)."""

    change: Change
    table: str
    action: str
    object_id: str


@dataclass
class CloseChanges:
    """Everything Close reports as changed from `since` (already widened by RESCAN) to `scanned_at`."""

    since: datetime
    scanned_at: datetime
    source: str  # "event_log"; when the event log refused us "probes" (or "none": not probed)
    tables: dict[str, TableChanges]
    # Every change, so that delta extractions of tables with different watermarks share one scan.
    seen: list[Seen] = field(default_factory=list)
    dated_merges: list[tuple[datetime, Merge]] = field(default_factory=list)

    @property
    def merges(self) -> list[Merge]:
        return [m for _, m in self.dated_merges]

    @property
    def event_log(self) -> bool:
        return self.source == "event_log"

    @property
    def last_change_at(self) -> datetime | None:
        """When Close last changed (None: nothing since `since`): the cutover's quiet-period check."""
        newest = [t.newest for t in self.tables.values() if t.newest is not None]
        return max(newest).at if newest else None

    def changed_tables(self) -> list[str]:
        return [name for name, t in self.tables.items() if t.newest is not None]

    def covers(self, since: datetime) -> bool:
        """Whether the event log of this scan saw every change since `since` (scan started early enough,
        and `since` is within the log's retention)."""
        started_early = self.since <= since - RESCAN
        return self.event_log and started_early and self.scanned_at - since <= EVENT_RETENTION

    def since_time(self, table: str, since: datetime) -> TableChanges:
        """The changes of `table` from `since` (minus RESCAN) on, out of this scan's events."""
        out = TableChanges(table)
        start = since - RESCAN
        for seen in self.seen:
            if seen.table == table and seen.change.at >= start:
                out.add(seen.action, seen.object_id, seen.change)
        return out

    def merges_since(self, since: datetime) -> list[Merge]:
        start = since - RESCAN
        return [m for at, m in self.dated_merges if at >= start]

    def summary(self) -> dict[str, Any]:
        """Per changed table its counts, plus the merges: what the cutover prints when Close moved."""
        return {
            "source": self.source,
            "since": self.since.isoformat(),
            "last_change_at": self.last_change_at.isoformat() if self.last_change_at else None,
            "tables": {name: self.tables[name].counts for name in self.changed_tables()},
            "merges": [(m.source, m.destination) for m in self.merges],
        }


def merge_of(event: Mapping[str, Any]) -> Merge | None:
    """The lead merge an event records: the source lead's `deleted` (or a `merged`) event carries
    meta.merge_source_lead_id and meta.merge_destination_lead_id (close_api.md §4.14)."""
    meta = event.get("meta") or {}
    source, destination = meta.get("merge_source_lead_id"), meta.get("merge_destination_lead_id")
    if event.get("object_type") != "lead" or not destination:
        return None
    if not source:  # the source lead's own deletion names only where it went
        source = event.get("object_id") if event.get("action") == "deleted" else None
    return Merge(str(source), str(destination)) if source else None


def event_change(event: Mapping[str, Any]) -> Change | None:
    at = parse_close_datetime(event.get("date_updated")) or parse_close_datetime(event.get("date_created"))
    return Change(at, str(event["id"])) if at and event.get("id") else None


def changes_from_events(
    events: Iterable[Mapping[str, Any]], since: datetime, scanned_at: datetime, tables: Iterable[str]
) -> CloseChanges:
    """Fold event-log entries into per-table changes (pure: the unit tests feed it events)."""
    wanted = set(tables)
    out = CloseChanges(since, scanned_at, "event_log", {t: TableChanges(t) for t in wanted})
    merges: dict[Merge, datetime] = {}
    for event in events:
        change = event_change(event)
        if change is None:
            continue
        merge = merge_of(event)
        if merge is not None:
            merges[merge] = min(change.at, merges.get(merge, change.at))
        table = TABLE_OF_OBJECT_TYPE.get(str(event.get("object_type")))
        if table not in wanted or not event.get("object_id"):
            continue
        action, object_id = str(event.get("action") or "updated"), str(event["object_id"])
        out.tables[table].add(action, object_id, change)
        out.seen.append(Seen(change, table, action, object_id))
    out.dated_merges = sorted(((at, m) for m, at in merges.items()), key=lambda x: (x[0], x[1].source))
    return out


Probe = Callable[[CloseClient, datetime], Iterator[list[dict[str, Any]]]]


def _probe_leads(client: CloseClient, since: datetime) -> Iterator[list[dict[str, Any]]]:
    return client.iter_leads(updated_since=since, fields="id,date_created,date_updated")


def _probe_contacts(client: CloseClient, since: datetime) -> Iterator[list[dict[str, Any]]]:
    for page in client.iter_leads(updated_since=since, fields="id,contacts"):
        yield [c for lead in page for c in lead.get("contacts") or []]


def _probe_updated(path: str) -> Probe:
    def probe(client: CloseClient, since: datetime) -> Iterator[list[dict[str, Any]]]:
        fields = {"_fields": "id,date_created,date_updated"}
        return client.iter_updated(path, fields, updated_since=since)

    return probe


def _probe_activities(paths: tuple[str, ...]) -> Probe:
    def probe(client: CloseClient, since: datetime) -> Iterator[list[dict[str, Any]]]:
        for path in paths:  # activities can only be filtered by date_created (close_api.md §2.9)
            yield from client.iter_activities(path, created_since=since, lookback=timedelta(0))

    return probe


def _probes() -> dict[str, Probe]:
    # The endpoints of the full read; imported here because sources.py brings the Dagster resources along,
    # which this module (used by the CLI's cutover check too) does not otherwise need.
    from migration_assets.extract.sources import ACTIVITY_PATHS

    return {
        "leads": _probe_leads,
        "contacts": _probe_contacts,
        "opportunities": _probe_updated("opportunity/"),
        "tasks": _probe_updated("task/"),
        **{table: _probe_activities(paths) for table, paths in ACTIVITY_PATHS.items()},
    }


def changes_from_probes(
    client: CloseClient, since: datetime, scanned_at: datetime, tables: Iterable[str]
) -> CloseChanges:
    """Per record table, the records Close lists as updated (activities: created) since `since`; a
    record created since then counts as created. Deletions and activity edits are invisible here."""
    probes = _probes()
    out = CloseChanges(since, scanned_at, "probes", {})
    for table in tables:
        changes = out.tables[table] = TableChanges(table)
        if table not in probes:
            continue
        for page in probes[table](client, since):
            for record in page:
                created = parse_close_datetime(record.get("date_created"))
                at = parse_close_datetime(record.get("date_updated")) or created
                if at is None or at < since or not record.get("id"):
                    continue
                action = "created" if created is not None and created >= since else "updated"
                change = Change(at, str(record["id"]))
                changes.add(action, str(record["id"]), change)
                out.seen.append(Seen(change, table, action, str(record["id"])))
    return out


def scan_changes(
    client: CloseClient,
    since: datetime,
    *,
    now: datetime | None = None,
    tables: Iterable[str] = RECORD_TABLES,
    probe: bool = True,
) -> CloseChanges:
    """What changed in Close, per table of `tables`, from `since` on (`now` is injectable for tests).

    One pass over the event log from `since - RESCAN` (the returned `since`); when Close refuses the event
    log (plan or permission), date probes of the record tables instead (see the module docstring), or,
    with `probe=False` (a delta extraction, which lists every id then), no changes from source "none"."""
    scanned_at = now or datetime.now(UTC)
    start = since - RESCAN
    tables = list(tables)
    try:
        events = [e for page in client.iter_events(since=start) for e in page]
    except CloseAPIError as error:
        if error.status not in REFUSED_STATUSES:
            raise
        if not probe:
            return CloseChanges(start, scanned_at, "none", {t: TableChanges(t) for t in tables})
        return changes_from_probes(client, start, scanned_at, tables)
    return changes_from_events(events, start, scanned_at, tables)
