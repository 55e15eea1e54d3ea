"""Write one close.* table in a single pass: chunks in, one sorted, de-duplicated table out.

Chunks (API pages turned into frames, or the export's Arrow parts) are appended to a TEMP table —
in memory, spilling to DuckDB's temp folder past the memory limit, never written to the WAL or
checkpointed — and on commit the table is written to the file once, already sorted by `sort_by` and,
only when the same id was seen twice (a record that moved while the API was paged), de-duplicated
keeping the newest version. Everything happens on one connection, then the new table is swapped in,
so a failed extraction leaves the previous table untouched.

Written this way a table costs one sort and one checkpoint, instead of chunked WAL writes, a
checkpoint, a range-by-range rewrite and a second checkpoint. The writing itself is the warehouse's
`TableWriter` (sorted mode); this module adds what is particular to close.* tables: which copy of an id
is kept, the conflicts list, and the extraction connection's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any, TypeVar

import duckdb
import polars as pl
import pyarrow.dataset as pads

from migration_assets.clients.prefetch import read_ahead
from migration_assets.extract.duplicates import record_conflicts
from migration_assets.extract.tables import TableSpec
from migration_assets.resources.warehouse import TableWriter, WarehouseResource

# No memory cap of its own: the cap belongs to the database instance, which the steps running meanwhile
# share (step_threads.py), and a lower one for the extraction would be theirs too. The warehouse's cap
# bounds the extraction's sort, which spills beyond it, as it bounds every step.

# `raw` holds JSON: FSST compression of it at checkpoint costs more time than everything else the
# extraction does in DuckDB (measured ~2x on `typical`) for a file ~1.8x smaller; dictionary
# compression and the other codecs stay on.
DISABLED_COMPRESSION = "fsst,dict_fsst"
# A commit whose WAL would exceed this is written by an immediate checkpoint, skipping the WAL. The
# default (16 MB) sends a table of less than one row group (122,880 rows, e.g. 40 MB of emails) through
# the WAL first and the file later: every byte serialised twice (measured: the 12 export tables of
# `typical` written in 1.5 s instead of 1.9 s).
CHECKPOINT_THRESHOLD = "1MB"
# An extraction connection runs on one DuckDB thread: below two row groups (122,880 rows each) a table
# is written by one thread anyway, and the others only add scheduling (measured: 1.41 s instead of
# 1.70 s for the 12 export tables of `typical` on 2 busy cores). A bigger table gets every thread back
# for its sort and parallel write.
SERIAL_WRITE_ROWS = 2 * 122_880

# A page: Close objects (API), a frame, or an Arrow dataset of a whole table's parts (the export split).
T = TypeVar("T")

Pages = Iterable[list[dict[str, Any]] | pl.DataFrame | pads.Dataset]


def extraction_settings(con: duckdb.DuckDBPyConnection) -> None:
    """Settings of a connection that writes close.* tables (codecs, direct checkpoint, one thread)."""
    con.execute(f"SET disabled_compression_methods = '{DISABLED_COMPRESSION}'")
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    con.execute("SET threads = 1")


EXTRACTION_SETTINGS = ("disabled_compression_methods", "checkpoint_threshold", "threads")


def reset_extraction_settings(con: duckdb.DuckDBPyConnection) -> None:
    """These settings are global to the DuckDB instance, which the run's other connections share (the
    warehouse keeps one instance open per run): give them back once the table is written or failed."""
    try:
        for name in EXTRACTION_SETTINGS:
            con.execute(f"RESET {name}")
    except duckdb.Error:  # the connection is unusable: it is being closed anyway
        return


def newest_copy_first(spec: TableSpec) -> str | None:
    """How the copies of one id rank (the first is kept): newest `date_updated`, then `raw` (or the id)
    for a stable pick; None when the table has no ids."""
    if "id" not in spec.schema:
        return None
    newest = "date_updated DESC NULLS LAST, " if "date_updated" in spec.schema else ""
    return newest + ("raw" if "raw" in spec.schema else "id")


class SortedTableWriter(TableWriter):
    """A close.* table: written once, sorted by `spec.sort_by`, one row per id (the newest copy); ids
    delivered twice with different, equally new content are listed in close_quality (duplicates.py)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, schema: str = "close") -> None:
        super().__init__(
            con, schema, spec.name, spec.schema, sort_by=spec.sort_by, dedupe_order=newest_copy_first(spec)
        )
        self.spec = spec
        self.conflicts = 0  # ids seen twice with different, equally new content (duplicates.py)

    def before_sorted_write(self, source: str, duplicates: bool) -> None:
        self.conflicts = record_conflicts(self._con, source, self.spec, duplicates)
        if self.rows >= SERIAL_WRITE_ROWS:  # big enough for DuckDB's parallel sort and write
            self._con.execute("RESET threads")


def write_table(
    warehouse: WarehouseResource,
    spec: TableSpec,
    pages: Pages,
    on_rows: Callable[[int], None] | None = None,
    schema: str = "close",
) -> tuple[int, int]:
    """Write every page of `spec`'s table; returns (rows read, duplicate rows dropped).

    API pages are lists of objects (turned into frames with `spec.frame`, while the next pages are
    requested: `read_ahead`); the export path hands over an Arrow dataset of the table's parts.
    `on_rows` is called with the running row count after each chunk (progress logs).
    """
    with ExitStack() as stack:
        con = stack.enter_context(warehouse.connect())
        extraction_settings(con)
        stack.callback(reset_extraction_settings, con)
        writer = stack.enter_context(SortedTableWriter(con, spec, schema))
        for page in read_ahead(pages):
            if isinstance(page, pads.Dataset):
                writer.write_dataset(page)
                if on_rows is not None:
                    on_rows(writer.rows)
                continue
            frame = page if isinstance(page, pl.DataFrame) else spec.frame(page)
            if frame.is_empty():
                continue
            writer.write(frame)
            if on_rows is not None:
                on_rows(writer.rows)
    return writer.rows, writer.dropped
