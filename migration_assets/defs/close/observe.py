"""close_source/*: observable source assets standing for the objects in Close itself (DESIGN §8).

One observation (`close__observe`, a multi_observable_source_asset: one scan of the event log for every
table) records a data version per Close table without extracting anything. close/<table> depends on
close_source/<table>, so each extraction records the version it read, and after Close changes and an
observation Dagster's staleness marks exactly the changed close/* assets as unsynced; their next
materialization (a delta run) makes them fresh again.

A version must stay the same while Close does not change and must not depend on our own extraction
(else a delta run would never catch up), so it is carried from one observation to the next:
- a record table (leads, contacts, opportunities, tasks, activities): the newest change Close reported
  (an event, or a record a date probe listed when the event log is refused), scanned from where the
  previous observation stopped (close_changes.RESCAN earlier); no newer change, same version. When the
  previous observation is older than the event log's retention, changes may be lost: a new version.
- a configuration table (small, and partly blind in the event log): a hash of its content.

The metadata of each observation holds what the next one needs (`scanned_to`, `newest_change`) and what
changed (counts, merges). The sensor (defs/close_changes_sensor.py) records the same observations.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated function's annotations.
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from migration_assets.clients.close.client import CloseClient
from migration_assets.clients.close.paging import parse_close_datetime
from migration_assets.defs.close import config_objects, lead_tables
from migration_assets.defs.close._common import DATA_VERSION_TAG, GROUP, content_hash, source_key
from migration_assets.extract.close_changes import (
    EVENT_RETENTION,
    RECORD_TABLES,
    Change,
    CloseChanges,
    scan_changes,
)
from migration_assets.extract.sources import api_config
from migration_assets.extract.tables import TABLES

OBSERVE_OP = f"{GROUP}__observe"
OBSERVED_TABLES = [t for t in TABLES if t in {**config_objects.DESCRIPTIONS, **lead_tables.DESCRIPTIONS}]
OBSERVED_KEYS = [source_key(t) for t in OBSERVED_TABLES]


@dataclass(frozen=True)
class Previous:
    """What the latest observation of one table recorded."""

    version: str
    scanned_to: datetime | None
    newest: Change | None


@dataclass(frozen=True)
class Observation:
    table: str
    version: str
    metadata: dict[str, Any]

    @property
    def key(self) -> dg.AssetKey:
        return source_key(self.table)

    def as_event(self) -> dg.AssetObservation:
        """The observation as a sensor records it (an observation op yields `ObserveResult`s instead)."""
        return dg.AssetObservation(
            asset_key=self.key, metadata=self.metadata, tags={DATA_VERSION_TAG: self.version}
        )


def _text(metadata: Any, name: str) -> str | None:
    value = metadata.get(name) if metadata else None
    return getattr(value, "value", value)


def previous_observation(instance: dg.DagsterInstance, table: str) -> Previous | None:
    record = instance.get_latest_data_version_record(source_key(table), is_source=True)
    observation = record.asset_observation if record else None
    if observation is None or not observation.tags or DATA_VERSION_TAG not in observation.tags:
        return None
    newest = _text(observation.metadata, "newest_change") or ""
    at, _, event_id = newest.partition(" ")
    parsed = parse_close_datetime(at) if at else None
    return Previous(
        observation.tags[DATA_VERSION_TAG],
        parse_close_datetime(_text(observation.metadata, "scanned_to")),
        Change(parsed, event_id) if parsed and event_id else None,
    )


def record_version(table: str, previous: Previous | None, changes: CloseChanges) -> tuple[str, Change | None]:
    """(version, newest change) of a record table after `changes`: the previous version unless Close
    reported a newer change (pure: see the module docstring)."""
    newest = changes.tables[table].newest
    carried = previous.newest if previous else None
    if previous is not None and previous.scanned_to is not None:
        if changes.scanned_at - previous.scanned_to > EVENT_RETENTION:
            return f"{changes.scanned_at.isoformat()} beyond the event log's retention", newest or carried
    if newest is not None and (carried is None or newest > carried):
        return newest.marker, newest
    if previous is not None:
        return previous.version, carried
    return f"observed from {changes.since.isoformat()}", None


def content_version(client: CloseClient, table: str) -> str:
    """A configuration table's version: the hash of what Close lists for it (a few small requests)."""
    return content_hash(api_config(client, table))


def observe_close(
    instance: dg.DagsterInstance, client: CloseClient, tables: Sequence[str], now: datetime | None = None
) -> list[Observation]:
    """One observation of Close for `tables`: one scan of the event log (or date probes) from where the
    previous observation stopped, content hashes of the configuration tables."""
    now = now or datetime.now(UTC)
    previous = {t: previous_observation(instance, t) for t in tables}
    records = [t for t in tables if t in RECORD_TABLES]
    out: list[Observation] = []
    if records:
        starts = [p.scanned_to for t in records if (p := previous[t]) and p.scanned_to]
        changes = scan_changes(client, min(starts, default=now), now=now, tables=records)
        for table in records:
            version, newest = record_version(table, previous[table], changes)
            metadata: dict[str, Any] = {
                "source": changes.source,
                "changes_since": changes.since.isoformat(),
                "scanned_to": now.isoformat(),
                "newest_change": newest.marker if newest else "",
                **changes.tables[table].counts,
            }
            if table == "leads":
                metadata["merges"] = ", ".join(f"{m.source} -> {m.destination}" for m in changes.merges)
            out.append(Observation(table, version, metadata))
    for table in tables:
        if table not in RECORD_TABLES:
            out.append(Observation(table, content_version(client, table), {"source": "content"}))
    order = {t: i for i, t in enumerate(tables)}
    return sorted(out, key=lambda o: order[o.table])


@dg.multi_observable_source_asset(
    name=OBSERVE_OP,
    specs=[
        dg.AssetSpec(
            source_key(t),
            group_name=GROUP,
            description=f"The {t.replace('_', ' ')} in Close itself: each observation records a data version "
            f"that changes exactly when Close changed them (close/{t} is unsynced until re-extracted).",
        )
        for t in OBSERVED_TABLES
    ],
    can_subset=True,
    required_resource_keys={"close"},
)
def close_objects(context: dg.AssetExecutionContext) -> Iterator[dg.ObserveResult]:
    selected = {key.path[-1] for key in context.selected_asset_keys}
    tables = [t for t in OBSERVED_TABLES if t in selected]
    client = context.resources.close.get_client()
    for observation in observe_close(context.instance, client, tables):
        yield dg.ObserveResult(
            asset_key=observation.key,
            data_version=dg.DataVersion(observation.version),
            metadata=observation.metadata,
        )
