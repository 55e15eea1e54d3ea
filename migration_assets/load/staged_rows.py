"""The rows a table load writes: the staged table read in bounded chunks, or the few rows a delta changed.

A load holds one chunk of staged rows as Python dicts at a time (plus the batch it is sending), never the
whole staged table: a large org's hundreds of thousands of activities as dicts would take gigabytes
(issue 15). The staged table streams through its own cursor (a DuckDB connection of the same database), so
the ledger keeps writing on the main connection while the rows are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import polars as pl

from migration_assets.resources.warehouse import quote

# Rows turned into dicts at a time: a multiple of the loader's ledgered batch (1,000 rows), so batches end
# where they would over the whole table; about 50 MB of dicts for a wide table.
CHUNK_ROWS = 20_000


class RowSource(Protocol):
    """What a load reads of its rows: how many, one column's values, and the rows chunk by chunk."""

    @property
    def columns(self) -> list[str]: ...

    @property
    def total(self) -> int: ...

    def values(self, column: str) -> Iterator[Any]: ...

    def count(self, column: str) -> int:
        """How many rows have `column` set (none when there is no such column)."""
        ...

    def chunks(
        self, size: int = CHUNK_ROWS, column: str | None = None, is_set: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows, `size` at a time, in their stored order; with `column`, only those where it is set
        (`is_set`) or only those where it is null (a table without that column: none, or every row)."""
        ...


@dataclass(frozen=True)
class RowList:
    """Rows already in memory (a delta's changed rows, a test's rows)."""

    rows: list[dict[str, Any]]

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    @property
    def total(self) -> int:
        return len(self.rows)

    def values(self, column: str) -> Iterator[Any]:
        return (r.get(column) for r in self.rows)

    def count(self, column: str) -> int:
        return sum(1 for r in self.rows if r.get(column) is not None)

    def chunks(
        self, size: int = CHUNK_ROWS, column: str | None = None, is_set: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        rows = self.rows
        if column is not None:
            rows = [r for r in rows if (r.get(column) is not None) is is_set]
        for start in range(0, len(rows), size):
            yield rows[start : start + size]


class StagedTable:
    """`staged.<table>`, read in chunks in its stored order (what `SELECT *` returns)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, schema: str = "staged") -> None:
        self.con = con
        self.ref = f"{schema}.{quote(table)}"
        self._columns = [d[0] for d in con.execute(f"SELECT * FROM {self.ref} LIMIT 0").description]
        self._total = int(con.execute(f"SELECT count(*) FROM {self.ref}").fetchall()[0][0])

    @property
    def columns(self) -> list[str]:
        return self._columns

    @property
    def total(self) -> int:
        return self._total

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        catalog = self.con.execute("SELECT current_database()").fetchall()[0][0]
        cur = self.con.cursor()
        cur.execute(f"USE {quote(str(catalog))}")  # a cursor starts in the default catalog
        return cur

    def _stream(self, sql: str, size: int) -> Iterator[pl.DataFrame]:
        cur = self._cursor()
        try:
            for batch in cur.sql(sql).to_arrow_reader(size):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame
        finally:
            cur.close()

    def values(self, column: str) -> Iterator[Any]:
        """The column's distinct values (none when the table has no such column)."""
        if column not in self._columns:
            return
        col = quote(column)
        for frame in self._stream(
            f"SELECT DISTINCT {col} FROM {self.ref} WHERE {col} IS NOT NULL", CHUNK_ROWS
        ):
            yield from frame.to_series().to_list()

    def count(self, column: str) -> int:
        if column not in self._columns:
            return 0
        return int(self.con.execute(f"SELECT count({quote(column)}) FROM {self.ref}").fetchall()[0][0])

    def key_columns(self, primary_key: str, columns: list[str]) -> dict[str, dict[str, Any]]:
        """Record id (lower-cased) -> these columns, for every staged row (alternate keys' holders)."""
        columns = list(dict.fromkeys(columns))
        wanted = [c for c in columns if c in self._columns and c != primary_key]
        out: dict[str, dict[str, Any]] = {}
        select = ", ".join(quote(c) for c in [primary_key, *wanted])
        for frame in self._stream(f"SELECT {select} FROM {self.ref}", CHUNK_ROWS):
            # Built by columns, not row by row: every staged row of the table is read (0.2 s per delta).
            ids = frame[primary_key].cast(pl.String).fill_null("").str.to_lowercase().to_list()
            values = frame.select(
                pl.col(c) if c in wanted or c == primary_key else pl.lit(None).alias(c) for c in columns
            )
            out.update(zip(ids, values.to_dicts(), strict=True))
        return out

    def chunks(
        self, size: int = CHUNK_ROWS, column: str | None = None, is_set: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        # A filtered scan, not an ORDER BY: the rows stream as stored, no sort of the whole table.
        sql = f"SELECT * FROM {self.ref}"
        if column is not None:
            if column not in self._columns:
                if is_set:
                    return
            else:
                sql += f" WHERE {quote(column)} IS {'NOT ' if is_set else ''}NULL"
        for frame in self._stream(sql, size):
            yield frame.to_dicts()
