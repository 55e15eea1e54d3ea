"""The DuckDB warehouse every asset reads and writes: schemas close, staged, ledger, reports.

The file holds customer PII, so it is created owner-only (0600 in a 0700 folder) and is encrypted when
CLOSE2D365_WAREHOUSE_KEY is set. Writers stage each table in a scratch table and swap it in at the end, so a
failed or killed materialization never leaves a half-written table behind.

DuckDB's memory is bounded (CLOSE2D365_WAREHOUSE_MEMORY, default DEFAULT_MEMORY_LIMIT). DuckDB's own default
is 80% of the machine's RAM, and its buffer pool keeps the blocks it read until then: up to 499 MB of the
run's process on `typical`, more on `large` (a 1.1 GB file). Capped, DuckDB holds at most 488 MB on
`large`, and the tool's process peaks at 1,250 MB instead of 2,059 (with heap.py). Past the cap, sorts,
joins, aggregates and TEMP tables spill to `<warehouse>.tmp` next to the file. An encrypted warehouse spills
encrypted (`temp_file_encryption`): DuckDB writes its temporary files in plain text otherwise, even for an
encrypted database (measured; the setting is in https://duckdb.org/docs/stable/configuration/overview).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import dagster as dg
import duckdb
import polars as pl
from pydantic import PrivateAttr

from migration_assets.resources import env
from migration_assets.resources.heap import return_large_blocks_to_system

if TYPE_CHECKING:
    import pyarrow.dataset as pads

DEFAULT_HOME = ".close2d365"
# DuckDB's memory cap for the run (its buffer pool and operators; spills beyond it). The extraction writes
# each close.* table under 384 MB already (extract/writer.py); staging and the checks spill a little on
# `large` at this size, and the process keeps room for the load's file bodies under its 2 GB goal.
DEFAULT_MEMORY_LIMIT = "512MB"


def default_home() -> Path:
    """Folder for the warehouse, the Dagster instance and reports (CLOSE2D365_HOME, else ./.close2d365)."""
    return Path(os.environ.get(env.CLOSE2D365_HOME, DEFAULT_HOME))


def default_warehouse_path() -> str:
    return os.environ.get(env.CLOSE2D365_WAREHOUSE, str(default_home() / "warehouse.duckdb"))


def quote(name: str) -> str:
    """A DuckDB identifier, quoted (names come from Close and from mappings: anything may be in them)."""
    return '"' + name.replace('"', '""') + '"'


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    # A relation on the name binds it without running a query: 0.2 ms instead of 0.6 for a scan of
    # duckdb_tables(), and a delta asks this about a thousand times (the warehouse has no views).
    try:
        con.table(f"{quote(schema)}.{quote(table)}")
        return True
    except duckdb.CatalogException:
        return False
    except duckdb.Error:
        # DuckDB 2 builds no relation while a result of this connection is unread (a fetchone); a query
        # closes that result first.
        row = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, table]
        ).fetchall()
        return bool(row and row[0][0])


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened as configured."""


def memory_limit() -> str:
    """DuckDB's memory cap: CLOSE2D365_WAREHOUSE_MEMORY (a DuckDB size such as 1GB), else the default."""
    return os.environ.get(env.CLOSE2D365_WAREHOUSE_MEMORY) or DEFAULT_MEMORY_LIMIT


def spill_directory(path: str) -> str | None:
    """Where DuckDB spills for the warehouse at `path`: beside the file (None for an in-memory one)."""
    return None if path == ":memory:" else path + ".tmp"


# Spill folders found to be DuckDB's default for their file (bound_memory).
_DEFAULT_SPILL: set[str] = set()
# Held while a step records what the run's shared client learnt (bulk-message support, table definitions):
# those writes read what is recorded, then insert or replace the same keys, and DuckDB refuses the second of
# two overlapping transactions that write one key ("Duplicate key", "Conflict on update"). The warehouse has
# one writing process, so a lock of this process orders them.
SHARED_RECORDS = threading.Lock()
# Held while a step reads a whole source table into memory (a full staging): DuckDB builds such a result
# in memory, in order, and cannot spill it; two at once on a `typical` org exceeded the 512 MB cap.
WHOLE_TABLE_READS = threading.Lock()


def bound_memory(con: duckdb.DuckDBPyConnection, temp_directory: str | None, encrypted: bool) -> None:
    """Cap DuckDB's memory and say where and how it spills. Run before an encrypted file is attached.

    The settings belong to the database instance, which the run's connections share: the cap is set again
    on every connection (a step that changed it, like the extraction's, gives back DuckDB's default, not
    this one), the folder only when it differs (DuckDB refuses to move it once used, even to itself)."""
    limit = memory_limit()
    try:
        con.execute(f"SET memory_limit = {_sql_str(limit)}")
    except duckdb.Error as exc:
        raise WarehouseError(
            f"{env.CLOSE2D365_WAREHOUSE_MEMORY}={limit!r} is not a memory size DuckDB accepts ({exc}): "
            f"give one such as 1GB or 512MB, or unset it for the default {DEFAULT_MEMORY_LIMIT}."
        ) from exc
    if encrypted:
        # A fresh in-memory instance (the file is attached after): its folder is not in use yet.
        if temp_directory is not None:
            con.execute(f"SET temp_directory = {_sql_str(temp_directory)}")
        con.execute("SET temp_file_encryption = true")
    elif temp_directory is not None and temp_directory not in _DEFAULT_SPILL:
        current = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
        if current == temp_directory:
            # DuckDB's own default for a file (`<file>.tmp`): every instance of it starts there, so it is
            # not asked again (a connection costs a statement less; a delta opens about 750).
            _DEFAULT_SPILL.add(temp_directory)
        else:
            con.execute(f"SET temp_directory = {_sql_str(temp_directory)}")


def _bounded(con: duckdb.DuckDBPyConnection, path: str, encrypted: bool) -> duckdb.DuckDBPyConnection:
    try:
        bound_memory(con, spill_directory(path), encrypted)
    except WarehouseError:
        con.close()
        raise
    return con


def open_duckdb(path: str, key: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating owner-only) the warehouse file; with a key, as an encrypted database."""
    if path != ":memory:":
        p = Path(path)
        if not p.parent.exists():
            # Only a folder this tool creates is made owner-only; a folder the user chose keeps its mode
            # (the file mode below protects the data either way).
            p.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(p.parent, 0o700)
        if not p.exists():
            p.touch(mode=0o600)
            p.unlink()  # duckdb refuses an empty file; the umask-independent mode is set right after creation
    if key:
        con = _bounded(duckdb.connect(":memory:"), path, encrypted=True)
        try:
            # DuckDB writes encrypted files only with OpenSSL from its httpfs extension loaded.
            con.execute("LOAD httpfs")
            con.execute(f"ATTACH {_sql_str(path)} AS warehouse (ENCRYPTION_KEY {_sql_str(key)})")
        except duckdb.Error as exc:
            con.close()
            raise WarehouseError(
                f"{env.CLOSE2D365_WAREHOUSE_KEY} is set, but the warehouse {path} cannot be opened encrypted: {exc}. "
                "Encryption needs DuckDB's httpfs extension (run `python -c \"import duckdb; "
                "duckdb.sql('INSTALL httpfs')\"` once on a machine with internet access), or unset "
                f"{env.CLOSE2D365_WAREHOUSE_KEY} to use an unencrypted, owner-only file."
            ) from exc
        con.execute("USE warehouse")
    else:
        con = _bounded(duckdb.connect(path), path, encrypted=False)
    if path != ":memory:" and Path(path).exists():
        os.chmod(path, 0o600)
    return con


def fetch_polars(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> pl.DataFrame:
    """Run a query and return a Polars frame (DuckDB 2 dropped `.pl()` on results; Arrow is the bridge)."""
    result = pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())
    assert isinstance(result, pl.DataFrame)
    return result


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def swap_in(con: duckdb.DuckDBPyConnection, schema: str, scratch: str, table: str) -> None:
    """Replace `schema.table` by the finished scratch table in one transaction: readers see old or new."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DROP TABLE IF EXISTS {quote(schema)}.{quote(table)}")
        con.execute(f"ALTER TABLE {quote(schema)}.{quote(scratch)} RENAME TO {quote(table)}")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


class TableWriter:
    """Writes `schema.table` from chunks and swaps it in on success: readers see the old table or the new
    one, and a failed or killed write leaves the old one untouched.

    Unsorted, chunks are appended to a scratch table as they come. With `sort_by`, chunks (frames, and
    Arrow datasets read straight into the result) are collected in a TEMP table -- in memory, spilling
    to DuckDB's temp folder past the memory limit, never written to the WAL or checkpointed -- and
    `commit` writes the table to the file once, already sorted. With `dedupe_order` as well, an id seen
    twice (a record that moved while an API was paged) keeps one row: the first by `dedupe_order`; rows
    without an id are never duplicates of each other.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        empty_schema: Mapping[str, pl.DataType] | None = None,
        *,
        sort_by: Sequence[str] = (),
        dedupe_order: str | None = None,
    ) -> None:
        self._con = con
        self.schema = schema
        self.table = table
        self._empty_schema = empty_schema
        self._sort_by = tuple(sort_by)
        self._dedupe_order = dedupe_order
        token = uuid.uuid4().hex[:8]
        self._scratch = f"__scratch_{table}_{token}"
        # Where chunks go: the scratch table itself, or (sorted) a TEMP table read once by `commit`.
        self._chunks = quote(f"__chunks_{table}_{token}") if self._sort_by else self._scratch_ref
        self._created = False
        self._datasets: list[str] = []  # registered Arrow datasets, read straight into the sorted table
        self._ids: list[pl.Series] = []  # only the ids (a few MB even for large orgs): is a dedupe needed?
        self.rows = 0
        self.chunks = 0
        self.dropped = 0  # duplicate rows left out by the dedupe

    @property
    def _scratch_ref(self) -> str:
        return f"{quote(self.schema)}.{quote(self._scratch)}"

    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0 and self._created:
            return
        self._con.register("__chunk", df.to_arrow())
        try:
            if not self._created:
                temp = "TEMP " if self._sort_by else ""
                self._con.execute(f"CREATE {temp}TABLE {self._chunks} AS SELECT * FROM __chunk")
                self._created = True
            else:
                self._con.execute(f"INSERT INTO {self._chunks} BY NAME SELECT * FROM __chunk")
        finally:
            self._con.unregister("__chunk")
        if self._dedupe_order is not None and "id" in df.columns:
            self._ids.append(df.get_column("id"))
        self.rows += df.height
        self.chunks += 1

    def write_dataset(self, dataset: pads.Dataset) -> None:
        """Add an Arrow dataset (e.g. IPC part files) as is: DuckDB streams it into the sorted table."""
        if not self._sort_by:
            raise ValueError("datasets are read at commit: give the writer a sort order")
        name = f"__dataset_{len(self._datasets)}"
        self._con.register(name, dataset)
        self._datasets.append(name)
        if self._dedupe_order is not None and "id" in dataset.schema.names:
            ids = pl.from_arrow(dataset.to_table(columns=["id"]).column("id"))
            assert isinstance(ids, pl.Series)
            self._ids.append(ids)
        self.rows += dataset.count_rows()

    def _source(self) -> str:
        """The FROM clause over everything written: the TEMP table and/or the datasets."""
        names = ([self._chunks] if self._created else []) + self._datasets
        if len(names) == 1:
            return names[0]
        return "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {n}" for n in names) + ")"

    def _has_duplicates(self) -> bool:
        if self._dedupe_order is None or not self._ids:
            return False
        ids = pl.concat(self._ids).drop_nulls()
        return ids.n_unique() < ids.len()

    def before_sorted_write(self, source: str, duplicates: bool) -> None:
        """Called by `commit` before the sorted table is written from `source` (a FROM clause over every
        row, duplicates included); a subclass may inspect the rows or tune the connection."""

    def commit(self) -> None:
        if not self._created and not self._datasets:
            self.write(pl.DataFrame(schema=dict(self._empty_schema or {"id": pl.String})))
        if self._sort_by:
            self._write_sorted()
        swap_in(self._con, self.schema, self._scratch, self.table)

    def _write_sorted(self) -> None:
        duplicates = self._has_duplicates()
        self.before_sorted_write(self._source(), duplicates)
        dedupe = ""
        if duplicates:
            dedupe = (
                f"QUALIFY id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY {self._dedupe_order}) = 1"
            )
        order = ", ".join(quote(c) for c in self._sort_by)
        self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
        self._con.execute(
            f"CREATE TABLE {self._scratch_ref} AS SELECT * FROM {self._source()} {dedupe} ORDER BY {order}"
        )
        self._drop_sources()
        kept = self._con.execute(f"SELECT count(*) FROM {self._scratch_ref}").fetchone()
        self.dropped = self.rows - int(kept[0]) if kept else 0

    def _drop_sources(self) -> None:
        if self._sort_by:
            self._con.execute(f"DROP TABLE IF EXISTS {self._chunks}")
        for name in self._datasets:
            self._con.unregister(name)
        self._datasets = []

    def abort(self) -> None:
        self._drop_sources()
        self._con.execute(f"DROP TABLE IF EXISTS {self._scratch_ref}")

    def __enter__(self) -> Self:
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


def replace_table(con: duckdb.DuckDBPyConnection, schema: str, table: str, df: pl.DataFrame) -> int:
    """Replace `schema.table` by one frame on an open connection (readers see the old or the new table);
    returns the rows written."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    with TableWriter(con, schema, table, empty_schema=df.schema) as writer:
        writer.write(df)
    return df.height


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file shared by all assets. `path` empty means CLOSE2D365_WAREHOUSE or ./.close2d365/.

    During a run the resource keeps one connection open: DuckDB then reuses the open database for every
    `connect()` (~1 ms) instead of opening the file and checkpointing it on close each time (~20-50 ms,
    a few hundred times per run). The file is released at the end of the run, so other processes (a
    rollback, the next run) can open it.
    """

    path: str = ""
    _anchor: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run's process sets up this resource first, whoever launched it (the CLI, the UI's run
        # worker, a bench): the place to bound the process's C heap for the load's file bodies.
        tuning = return_large_blocks_to_system()
        if context.log is not None:
            context.log.debug(f"C heap: {tuning.detail}")
        path = self.resolved_path()
        if path != ":memory:":
            # Encrypted too: its file is attached to an in-memory database, which a second instance
            # could not attach while steps of the run (step_threads.py) hold the first.
            self._anchor = open_duckdb(path, env.warehouse_key())

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        assert self._anchor is not None
        con = self._anchor.cursor()
        try:
            if env.warehouse_key():
                con.execute("USE warehouse")  # the attached file, not the in-memory database around it
            # The cap again, as every connection of the warehouse sets it (bound_memory).
            bound_memory(con, None, encrypted=False)
        except (duckdb.Error, WarehouseError):
            con.close()
            raise
        return con

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None

    def resolved_path(self) -> str:
        return self.path or default_warehouse_path()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own (steps run in threads); during a run, to the run's open database."""
        con = (
            self._cursor()
            if self._anchor is not None
            else open_duckdb(self.resolved_path(), env.warehouse_key())
        )
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def table_writer(
        self, schema: str, table: str, empty_schema: Mapping[str, pl.DataType] | None = None
    ) -> Iterator[TableWriter]:
        """Write `schema.table` in chunks; it replaces the old table only if the block ends without error."""
        with self.connect() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            with TableWriter(con, schema, table, empty_schema) as writer:
                yield writer

    def replace(self, schema: str, table: str, df: pl.DataFrame) -> int:
        with self.connect() as con:
            return replace_table(con, schema, table, df)

    def read(self, sql: str, params: list[object] | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return fetch_polars(con, sql, params)

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as con:
            return table_exists(con, schema, table)
