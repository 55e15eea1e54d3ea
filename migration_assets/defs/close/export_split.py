"""One pass over a Close JSON export → per-table Arrow parts, shared by the run's export-backed assets.

Parsing the export is the expensive part of the export path, so it happens once per run: each lead
document is routed (the lead itself, its contacts, opportunities, tasks, and activities by `_type`),
turned into table rows with the same `TableSpec.frame` the API path uses, and flushed in bounded
batches. Each asset then only reads its own Parquet parts.
"""

from __future__ import annotations

import gc
import json
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from migration_assets.defs.close.tables import ACTIVITY_TABLE_TYPES, ACTIVITY_TYPE_TABLE, TABLES, strip_lead
from migration_assets.resources.close import CloseResource

EXPORT_TABLES = ("leads", "contacts", "opportunities", "tasks", *ACTIVITY_TABLE_TYPES)
DONE_MARKER = "_complete.json"
BATCH_ROWS = 2_000

_lock = threading.Lock()


class _Sink:
    def __init__(self, directory: Path, table: str, batch_rows: int):
        self.dir = directory / table
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec = TABLES[table]
        self.batch_rows = batch_rows
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
        self.spec.frame(self.rows).write_ipc(self.dir / f"part-{self.parts:06d}.arrow")
        self.parts += 1
        self.count += len(self.rows)
        self.rows = []


def split_export(
    leads: Iterable[dict[str, Any]], directory: Path, batch_rows: int = BATCH_ROWS
) -> dict[str, int]:
    """Route every object of the export into `<directory>/<table>/part-*.arrow`; returns row counts.

    Activity types with no table (Created, TaskCompleted, ...) are counted under `skipped:<type>`.
    """
    sinks = {t: _Sink(directory, t, batch_rows) for t in EXPORT_TABLES}
    skipped: dict[str, int] = {}
    # Parsed JSON holds no reference cycles, but millions of fresh containers make the cyclic GC
    # rescan the live buffers over and over (half the parse time); pause it for this pass.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _route(leads, sinks, skipped)
    finally:
        if gc_was_enabled:
            gc.enable()
    for sink in sinks.values():
        sink.flush()
    counts = {t: s.count for t, s in sinks.items()} | skipped
    (directory / DONE_MARKER).write_text(json.dumps(counts))
    return counts


def _route(leads: Iterable[dict[str, Any]], sinks: dict[str, _Sink], skipped: dict[str, int]) -> None:
    for lead in leads:
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


def export_directory(close: CloseResource, run_key: str) -> Path:
    """The split export of this run, built on first use (under a lock) and reused by later assets."""
    directory = close.scratch_dir(f"export-{run_key}")
    with _lock:
        if not (directory / DONE_MARKER).exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, mode=0o700)
            split_export(close.export_leads(include_activities=True), directory)
    return directory


def export_frames(directory: Path, table: str) -> Iterator[pl.DataFrame]:
    for part in sorted((directory / table).glob("part-*.arrow")):
        yield pl.read_ipc(part)
