"""Change detection in Close (extract/close_changes.py), the delta plan built on it (extract/delta.py) and
the observation's data versions (defs/close/observe.py): pure functions fed with event-log entries shaped
as close_api.md §4.14 documents them, and a client whose event log is refused (plan or permission)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migration_assets.clients.close.client import CloseAPIError
from migration_assets.defs.close.observe import Previous, record_version
from migration_assets.extract.close_changes import (
    EVENT_OBJECT_TYPES,
    RECORD_TABLES,
    RESCAN,
    Change,
    Merge,
    changes_from_events,
    scan_changes,
)
from migration_assets.extract.delta import delta_plan
from migration_assets.extract.tables import TABLES

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    """An event timestamp `minutes` after T0, naive as Close writes them on events."""
    return (T0 + timedelta(minutes=minutes)).replace(tzinfo=None).isoformat()


def event(
    n: int, action: str, object_type: str, object_id: str, minutes: float, **meta: str
) -> dict[str, Any]:
    return {
        "id": f"ev_{n:03d}",
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "lead_id": None,
        "date_created": at(minutes),
        "date_updated": at(minutes),
        "meta": {"request_method": "PUT", **meta},
    }


MERGE = {"merge_source_lead_id": "lead_src", "merge_destination_lead_id": "lead_dst"}
EVENTS = [
    event(1, "created", "lead", "lead_new", 1),
    event(2, "updated", "activity.call", "acti_old_call", 2),
    event(3, "deleted", "contact", "cont_gone", 3),
    event(4, "updated", "task.missed_call", "noti_1", 4),
    event(5, "updated", "activity.note", "acti_moved", 5, **MERGE),
    event(6, "deleted", "lead", "lead_src", 6, **MERGE),
    event(7, "merged", "lead", "lead_dst", 7, **MERGE),
    event(8, "updated", "phone_number", "phon_1", 8),  # an object no close.* table holds
    event(9, "completed", "activity.lead_merge", "acti_merge", 9),  # not migrated either
]


def scan(events: list[dict[str, Any]] = EVENTS, since: datetime = T0) -> Any:
    return changes_from_events(events, since, T0 + timedelta(minutes=10), RECORD_TABLES)


def test_every_event_object_type_names_a_close_table() -> None:
    assert set(EVENT_OBJECT_TYPES) <= set(TABLES)
    # The record tables are all seen by the event log; statuses and pipelines are not (probed instead).
    assert set(RECORD_TABLES) <= set(EVENT_OBJECT_TYPES)
    assert {"lead_statuses", "opportunity_statuses", "pipelines"}.isdisjoint(EVENT_OBJECT_TYPES)


def test_events_are_counted_per_table_and_action() -> None:
    changes = scan()
    assert changes.tables["leads"].counts == {"created": 1, "updated": 1, "deleted": 1}
    assert changes.tables["calls"].updated == {"acti_old_call"}
    assert changes.tables["contacts"].deleted == {"cont_gone"}
    assert changes.tables["tasks"].updated == {"noti_1"}
    assert changes.tables["notes"].updated == {"acti_moved"}
    assert set(changes.changed_tables()) == {"leads", "calls", "contacts", "tasks", "notes"}
    assert changes.merges == [Merge("lead_src", "lead_dst")]  # one merge, however many of its events
    # Objects no table holds do not count as a change of Close's data.
    assert changes.last_change_at == T0 + timedelta(minutes=7)


def test_a_tables_fingerprint_is_its_newest_change() -> None:
    changes = scan()
    assert changes.tables["leads"].fingerprint == f"{(T0 + timedelta(minutes=7)).isoformat()} ev_007"
    assert changes.tables["leads"].newest == Change(T0 + timedelta(minutes=7), "ev_007")
    assert changes.tables["emails"].fingerprint == ""
    # Independent of the order the pages arrive in (newest first from Close).
    assert scan(list(reversed(EVENTS))).tables["leads"].newest == changes.tables["leads"].newest


def test_a_merge_is_read_from_the_source_leads_deletion_alone() -> None:
    deletion = event(1, "deleted", "lead", "lead_a", 1, merge_destination_lead_id="lead_b")
    assert scan([deletion]).merges == [Merge("lead_a", "lead_b")]
    plain = event(2, "deleted", "lead", "lead_c", 2)
    assert scan([plain]).merges == []


def test_the_delta_plan_rereads_what_date_filters_miss() -> None:
    changes = scan(since=T0 - RESCAN)
    notes = delta_plan(changes, "notes", T0)
    assert notes.reread_ids == {"acti_moved"}  # an edited activity: date_created cannot see it
    assert notes.reread_leads == {"lead_dst"}  # every child of the destination moved
    assert notes.deleted_leads == {"lead_src"}  # the source's own rows go (its children are re-read)
    assert not notes.reconcile
    calls = delta_plan(changes, "calls", T0)
    assert calls.reread_ids == {"acti_old_call"}
    contacts = delta_plan(changes, "contacts", T0)
    assert contacts.deleted == {"cont_gone"} and contacts.reread_ids == set()
    # A later watermark leaves out what happened before it (beyond the re-scanned five minutes).
    later = delta_plan(changes, "calls", T0 + timedelta(minutes=13))
    assert later.reread_ids == set() and later.reread_leads == set()


def test_beyond_the_event_logs_retention_the_ids_are_reconciled() -> None:
    old = T0 - timedelta(days=31)
    changes = changes_from_events([], old - RESCAN, T0, RECORD_TABLES)
    assert delta_plan(changes, "leads", old).reconcile
    recent = changes_from_events([], T0 - timedelta(days=2) - RESCAN, T0, RECORD_TABLES)
    assert not delta_plan(recent, "leads", T0 - timedelta(days=2)).reconcile
    # A scan that started after the watermark cannot vouch for what happened before.
    assert delta_plan(recent, "leads", T0 - timedelta(days=3)).reconcile


class RefusingClient:
    """The event log answers 400 (plan or permission); the list endpoints answer date-filtered pages."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def iter_events(self, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        raise CloseAPIError("GET /event/: 400", status=400, endpoint="event/")

    def iter_leads(self, *, updated_since: datetime, fields: str) -> Iterator[list[dict[str, Any]]]:
        self.calls.append(f"lead {fields}")
        yield [{"id": "lead_1", "date_created": "2025-01-01T00:00:00+00:00", "date_updated": at(3)}]

    def iter_updated(self, path: str, params: dict[str, Any], *, updated_since: datetime) -> Any:
        self.calls.append(path)
        created = {"id": "oppo_new", "date_created": at(2), "date_updated": at(2)}
        return iter([[created]] if path == "opportunity/" else [])

    def iter_activities(self, path: str, *, created_since: datetime, lookback: timedelta) -> Any:
        self.calls.append(path)
        return iter([])


def test_a_refused_event_log_falls_back_to_date_probes() -> None:
    client = RefusingClient()
    changes = scan_changes(client, T0, now=T0 + timedelta(minutes=10))  # type: ignore[arg-type]
    assert changes.source == "probes" and not changes.event_log
    assert changes.tables["leads"].updated == {"lead_1"}
    assert changes.tables["opportunities"].created == {"oppo_new"}
    assert changes.last_change_at == T0 + timedelta(minutes=3)
    assert delta_plan(changes, "leads", T0).reconcile  # deletions are invisible to probes
    # A delta extraction lists every id instead of probing: nothing is read but the refused event log.
    client.calls.clear()
    unprobed = scan_changes(client, T0, now=T0 + timedelta(minutes=10), probe=False)  # type: ignore[arg-type]
    assert unprobed.source == "none" and client.calls == []
    assert delta_plan(unprobed, "notes", T0).reconcile


def test_an_event_log_error_other_than_a_refusal_is_raised() -> None:
    class Failing(RefusingClient):
        def iter_events(self, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
            raise CloseAPIError("GET /event/ failed after 6 attempts", status=503)

    with pytest.raises(CloseAPIError, match="6 attempts"):
        scan_changes(Failing(), T0)  # type: ignore[arg-type]


def test_an_observations_version_is_stable_until_close_changes() -> None:
    first = scan([], since=T0 - RESCAN)
    version, newest = record_version("calls", None, first)
    assert newest is None and version.startswith("observed from")
    previous = Previous(version, T0 + timedelta(minutes=10), None)
    # Nothing new: the same version however often Close is observed.
    again = changes_from_events([], T0 + timedelta(minutes=5), T0 + timedelta(minutes=20), RECORD_TABLES)
    assert record_version("calls", previous, again) == (version, None)
    # An edit of a call: a new version, carried while nothing newer happens.
    edit = [event(11, "updated", "activity.call", "acti_1", 15)]
    seen = changes_from_events(edit, T0 + timedelta(minutes=5), T0 + timedelta(minutes=20), RECORD_TABLES)
    changed, newest = record_version("calls", previous, seen)
    assert changed != version and newest == Change(T0 + timedelta(minutes=15), "ev_011")
    # The next scan re-reads the last five minutes: the same event again is not a new change.
    after = Previous(changed, T0 + timedelta(minutes=20), newest)
    overlap = changes_from_events(edit, T0 + timedelta(minutes=15), T0 + timedelta(minutes=30), RECORD_TABLES)
    assert record_version("calls", after, overlap) == (changed, newest)
    # Other tables' changes leave this one alone.
    assert record_version("emails", previous, seen)[0] == version


def test_an_observation_after_the_retention_is_a_new_version() -> None:
    previous = Previous("v1", T0, None)
    later = changes_from_events([], T0, T0 + timedelta(days=31), RECORD_TABLES)
    version, _ = record_version("calls", previous, later)
    assert version != "v1" and "retention" in version
