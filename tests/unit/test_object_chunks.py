"""Staging reads a Close table in rowid slices; after a delta's merge (rows deleted, changed rows appended)
the rowids have gaps and run past the row count: every row is still read, once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import duckdb
import polars as pl
import pytest

from migration_assets.mapping import frame as frame_module


def test_slices_cover_every_row_after_deletes_and_appends(monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA close")
    con.execute("CREATE TABLE close.calls AS SELECT 'a' || i AS id FROM range(20) t(i)")
    # What merge_delta does: the changed rows leave their place and come back at the end.
    con.execute("DELETE FROM close.calls WHERE id IN ('a1', 'a2', 'a3', 'a17')")
    con.execute("INSERT INTO close.calls VALUES ('a2'), ('a17'), ('b1')")

    def read(
        con: duckdb.DuckDBPyConnection, cfg: Any, name: str, extra: Any, where: str = "true"
    ) -> pl.DataFrame:
        return pl.DataFrame(
            {"id": [r[0] for r in con.execute(f"SELECT id FROM close.calls WHERE {where}").fetchall()]}
        )

    monkeypatch.setattr(frame_module, "read_object_source", read)
    cfg = SimpleNamespace(object=lambda name: SimpleNamespace(source="calls"))
    chunks = list(frame_module.object_chunks(con, cfg, "call", (), chunk_rows=4))  # type: ignore[arg-type]
    ids = [i for c in chunks for i in c["id"].to_list()]
    expected = sorted(r[0] for r in con.execute("SELECT id FROM close.calls").fetchall())
    assert sorted(ids) == expected and len(ids) == 19
