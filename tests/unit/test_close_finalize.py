"""Sorting and de-duplicating close.* tables range by range (bounded memory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from migration_assets.extract.finalize import finalize_table
from migration_assets.extract.tables import TABLES
from migration_assets.resources.warehouse import WarehouseResource


@pytest.mark.parametrize("chunk_bytes", [1, 300, 1 << 30])
def test_sorted_by_id_and_newest_duplicate_kept(tmp_path: Path, chunk_bytes: int) -> None:
    spec = TABLES["notes"]
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    rows = [
        {"id": f"acti_{i:03d}", "date_updated": f"2024-01-01T00:00:{i % 60:02d}+00:00", "note": "x" * (i % 7)}
        for i in (5, 3, 9, 1, 7, 2)
    ]
    stale = {"id": "acti_003", "date_updated": "2023-01-01T00:00:00+00:00", "note": "old"}
    with wh.table_writer("close", "notes", empty_schema=spec.schema) as writer:
        writer.write(spec.frame(rows[:3]))
        writer.write(spec.frame([stale, *rows[3:]]))
    dropped = finalize_table(wh, spec, chunk_bytes=chunk_bytes)
    out = wh.read("SELECT id, date_updated, raw FROM close.notes")
    assert dropped == 1
    assert out["id"].to_list() == sorted(r["id"] for r in rows)
    kept = out.filter(pl.col("id") == "acti_003")
    assert kept["date_updated"][0] == datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC)


def test_tables_without_id_are_sorted_by_their_keys(tmp_path: Path) -> None:
    spec = TABLES["attachments"]
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    rows = [{"activity_id": a, "url": u} for a, u in (("acti_b", "u2"), ("acti_a", "u9"), ("acti_b", "u1"))]
    with wh.table_writer("close", "attachments", empty_schema=spec.schema) as writer:
        writer.write(spec.frame(rows))
    assert finalize_table(wh, spec) == 0
    out = wh.read("SELECT activity_id, url FROM close.attachments")
    assert out.rows() == [("acti_a", "u9"), ("acti_b", "u1"), ("acti_b", "u2")]


def test_the_memory_cap_is_given_back_to_the_runs_shared_database(tmp_path: Path) -> None:
    import duckdb

    spec = TABLES["notes"]
    path = str(tmp_path / "w.duckdb")
    wh = WarehouseResource(path=path)
    with wh.table_writer("close", "notes", empty_schema=spec.schema) as writer:
        writer.write(spec.frame([{"id": "acti_1", "note": "x"}]))
    shared = duckdb.connect(path)  # what the resource holds open during a run
    try:
        before = shared.execute("SELECT current_setting('memory_limit')").fetchone()
        finalize_table(wh, spec)
        assert shared.execute("SELECT current_setting('memory_limit')").fetchone() == before
    finally:
        shared.close()
