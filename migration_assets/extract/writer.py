"""Write one close.* table in a single pass: chunks in, one sorted, de-duplicated table out.

Chunks (API pages turned into frames, or the export's Arrow parts) are appended to a TEMP table —
in memory, spilling to DuckDB's temp folder past the memory limit, never written to the WAL or
checkpointed — and on commit the table is written to the file once, already sorted by `sort_by` and,
only when the same id was seen twice (a record that moved while the API was paged), de-duplicated
keeping the newest version. Everything happens on one connection, then the new table is swapped in,
so a failed extraction leaves the previous table untouched.

Written this way a table costs one sort and one checkpoint, instead of chunked WAL writes, a
checkpoint, a range-by-range rewrite and a second checkpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, TypeVar

import duckdb
import polars as pl
import pyarrow.dataset as pads

from migration_assets.clients.prefetch import read_ahead
from migration_assets.extract.duplicates import record_conflicts
from migration_assets.extract.tables import TableSpec
from migration_assets.resources.warehouse import WarehouseResource, quote, swap_in

# DuckDB memory cap of an extraction connection: the sort spills beyond it, so peak RSS stays bounded
# whatever the size of the org.
EXTRACT_MEMORY_LIMIT = "384MB"
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
    """Settings of a connection that writes close.* tables (memory cap, codecs, direct checkpoint,
    one thread)."""
    con.execute(f"SET memory_limit = '{EXTRACT_MEMORY_LIMIT}'")
    con.execute(f"SET disabled_compression_methods = '{DISABLED_COMPRESSION}'")
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    con.execute("SET threads = 1")


EXTRACTION_SETTINGS = ("memory_limit", "disabled_compression_methods", "checkpoint_threshold", "threads")


def reset_extraction_settings(con: duckdb.DuckDBPyConnection) -> None:
    """These settings are global to the DuckDB instance, which the run's other connections share (the
    warehouse keeps one instance open per run): give them back once the table is written or failed."""
    for name in EXTRACTION_SETTINGS:
        try:
            con.execute(f"RESET {name}")
        except duckdb.Error:  # the connection is unusable: it is being closed anyway
            return


class SortedTableWriter:
    """Collects chunks of `schema.<spec.name>`; `commit()` writes the table sorted and de-duplicated."""

    def __init__(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, schema: str = "close") -> None:
        self._con = con
        self.spec = spec
        self.schema = schema
        token = uuid.uuid4().hex[:8]
        self._temp = quote(f"__chunks_{spec.name}_{token}")
        self._scratch = f"__sorted_{spec.name}_{token}"
        self._created = False
        self._datasets: list[str] = []  # registered Arrow datasets, read straight into the final table
        self._ids: list[pl.Series] = []
        self.rows = 0
        self.dropped = 0
        self.conflicts = 0  # ids seen twice with different, equally new content (duplicates.py)

    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0 and self._created:
            return
        self._con.register("__chunk", df.to_arrow())
        try:
            if not self._created:
                self._con.execute(f"CREATE TEMP TABLE {self._temp} AS SELECT * FROM __chunk")
                self._created = True
            else:
                self._con.execute(f"INSERT INTO {self._temp} BY NAME SELECT * FROM __chunk")
        finally:
            self._con.unregister("__chunk")
        if "id" in df.columns:
            # Only the ids are kept (a few MB even for large orgs) to tell whether a dedupe is needed.
            self._ids.append(df.get_column("id"))
        self.rows += df.height

    def write_dataset(self, dataset: pads.Dataset) -> None:
        """Add an Arrow dataset (e.g. IPC part files) as is: DuckDB streams it into the final table."""
        name = f"__dataset_{len(self._datasets)}"
        self._con.register(name, dataset)
        self._datasets.append(name)
        if "id" in dataset.schema.names:
            ids = pl.from_arrow(dataset.to_table(columns=["id"]).column("id"))
            assert isinstance(ids, pl.Series)
            self._ids.append(ids)
        self.rows += dataset.count_rows()

    def _source(self) -> str:
        """The FROM clause over everything written: the TEMP table and/or the datasets."""
        names = ([self._temp] if self._created else []) + self._datasets
        if len(names) == 1:
            return names[0]
        return "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {n}" for n in names) + ")"

    def _has_duplicates(self) -> bool:
        if "id" not in self.spec.schema or not self._ids:
            return False
        ids = pl.concat(self._ids).drop_nulls()
        return ids.n_unique() < ids.len()

    def commit(self) -> int:
        """Write the table (sorted, one row per id) and swap it in; returns the duplicate rows dropped."""
        if not self._created and not self._datasets:
            self.write(pl.DataFrame(schema=self.spec.schema))
        order = ", ".join(quote(c) for c in self.spec.sort_by)
        dedupe = ""
        duplicates = self._has_duplicates()
        self.conflicts = record_conflicts(self._con, self._source(), self.spec, duplicates)
        if duplicates:
            newest = "date_updated DESC NULLS LAST, " if "date_updated" in self.spec.schema else ""
            tie = "raw" if "raw" in self.spec.schema else "id"
            # NULL ids are never duplicates of each other: each is kept.
            dedupe = f"QUALIFY id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY {newest}{tie}) = 1"
        scratch = f"{quote(self.schema)}.{quote(self._scratch)}"
        con = self._con
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
        if self.rows >= SERIAL_WRITE_ROWS:  # big enough for DuckDB's parallel sort and write
            con.execute("RESET threads")
        con.execute(f"CREATE TABLE {scratch} AS SELECT * FROM {self._source()} {dedupe} ORDER BY {order}")
        self._drop_sources()
        kept = con.execute(f"SELECT count(*) FROM {scratch}").fetchone()
        self.dropped = self.rows - int(kept[0]) if kept else 0
        swap_in(con, self.schema, self._scratch, self.spec.name)
        return self.dropped

    def _drop_sources(self) -> None:
        self._con.execute(f"DROP TABLE IF EXISTS {self._temp}")
        for name in self._datasets:
            self._con.unregister(name)
        self._datasets = []

    def abort(self) -> None:
        self._drop_sources()
        self._con.execute(f"DROP TABLE IF EXISTS {quote(self.schema)}.{quote(self._scratch)}")

    def __enter__(self) -> SortedTableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


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
