"""Routing of Close export lead documents into per-table Arrow IPC parts (no Dagster import: the
parallel split's worker processes load only this, Polars and the table specs)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from migration_assets.clients.close.export_file import QUARANTINED
from migration_assets.extract.tables import (
    ACTIVITY_TABLE_TYPES,
    ACTIVITY_TYPE_TABLE,
    TABLES,
    TableSpec,
    col,
    strip_lead,
)

EXPORT_TABLES = ("leads", "contacts", "opportunities", "tasks", *ACTIVITY_TABLE_TYPES)
BATCH_ROWS = 2_000
# Export lines that are not valid text (lib/close_export.QUARANTINED): listed, never migrated.
QUARANTINE = "quarantine"
QUARANTINE_SPEC = TableSpec(
    QUARANTINE, [col("id"), col("line"), col("reason")], sort_by=("line",), watermark=None
)


class Sink:
    """Rows of one table, flushed every `batch_rows` as `<directory>/<table>/part-<prefix><n>.arrow`."""

    def __init__(
        self, directory: Path, table: str, batch_rows: int, prefix: str = "", spec: TableSpec | None = None
    ):
        self.dir = directory / table
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec = spec or TABLES[table]
        self.batch_rows = batch_rows
        self.prefix = prefix
        self.rows: list[dict[str, Any]] = []
        self.parts = 0
        self.count = 0

    def put(self, obj: dict[str, Any]) -> None:
        self.rows.append(obj)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        # Arrow IPC: the cheapest format to write and read back (a scratch file, deleted after the run).
        # Plain (large) strings rather than Polars' default string views: DuckDB reads them ~8% faster.
        path = self.dir / f"part-{self.prefix}{self.parts:06d}.arrow"
        self.spec.frame(self.rows).write_ipc(path, compat_level=pl.CompatLevel.oldest())
        self.parts += 1
        self.count += len(self.rows)
        self.rows = []


def make_sinks(directory: Path, batch_rows: int = BATCH_ROWS, prefix: str = "") -> dict[str, Sink]:
    sinks = {t: Sink(directory, t, batch_rows, prefix) for t in EXPORT_TABLES}
    sinks[QUARANTINE] = Sink(directory, QUARANTINE, batch_rows, prefix, spec=QUARANTINE_SPEC)
    return sinks


def route(leads: Iterable[dict[str, Any]], sinks: dict[str, Sink], skipped: dict[str, int]) -> None:
    """Each lead → its row, its contacts, opportunities, tasks, and activities by `_type`.

    Activity types with no table (Created, TaskCompleted, ...) are counted under `skipped:<type>`.
    """
    for lead in leads:
        if QUARANTINED in lead:
            sinks[QUARANTINE].put(lead)
            continue
        sinks["leads"].put(strip_lead(lead))
        for contact in lead.get("contacts") or []:
            sinks["contacts"].put(contact)
        for opp in lead.get("opportunities") or []:
            sinks["opportunities"].put(opp)
        for task in lead.get("tasks") or []:
            sinks["tasks"].put(task)
        for act in lead.get("activities") or []:
            table = ACTIVITY_TYPE_TABLE.get(act.get("_type", ""))
            if table is None:
                key = f"skipped:{act.get('_type')}"
                skipped[key] = skipped.get(key, 0) + 1
            else:
                sinks[table].put(act)


def finish(sinks: dict[str, Sink], skipped: dict[str, int]) -> dict[str, int]:
    for sink in sinks.values():
        sink.flush()
    return {t: s.count for t, s in sinks.items()} | skipped
