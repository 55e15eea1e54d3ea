"""The staged table read in chunks through its own cursor: the same rows as one `SELECT *`, in the same
order, while the main connection keeps writing (the ledger writes between batches)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from migration_assets.load.staged_rows import RowList, StagedTable


def _warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{tmp_path / 'w.duckdb'}' AS warehouse")
    con.execute("USE warehouse")  # as an encrypted warehouse is opened: a cursor must find the same catalog
    con.execute("CREATE SCHEMA staged")
    con.execute(
        "CREATE TABLE staged.contact AS SELECT 'ID-' || range AS contactid, range AS n, "
        "CASE WHEN range % 3 = 0 THEN 'k' || (range % 7) END AS c2d_key, [range, 1] AS l FROM range(2500)"
    )
    return con


def test_chunks_are_the_whole_table_in_order_while_the_connection_writes(tmp_path: Path) -> None:
    con = _warehouse(tmp_path)
    whole = pl.from_arrow(con.sql("SELECT * FROM staged.contact").to_arrow_table())
    assert isinstance(whole, pl.DataFrame)
    source = StagedTable(con, "contact")
    assert (source.total, source.columns) == (2500, ["contactid", "n", "c2d_key", "l"])
    con.execute("CREATE TABLE ledger_rows (n INTEGER)")
    seen: list[dict] = []
    sizes = []
    for chunk in source.chunks(1000):
        con.execute("INSERT INTO ledger_rows VALUES (?)", [len(chunk)])
        sizes.append(len(chunk))
        seen += chunk
    assert sizes == [1000, 1000, 500]
    assert seen == whole.to_dicts()
    assert con.execute("SELECT sum(n) FROM ledger_rows").fetchall() == [(2500,)]


def test_distinct_values_and_key_columns(tmp_path: Path) -> None:
    source = StagedTable(_warehouse(tmp_path), "contact")
    assert sorted(source.values("c2d_key")) == [f"k{i}" for i in range(7)]
    assert list(source.values("no_such_column")) == []
    keys = source.key_columns("contactid", ["c2d_key", "missing"])
    assert len(keys) == 2500 and keys["id-3"] == {"c2d_key": "k3", "missing": None}


def test_a_row_list_reads_like_a_table() -> None:
    rows = [{"a": i} for i in range(5)]
    source = RowList(rows)
    assert source.total == 5 and source.columns == ["a"]
    assert [len(c) for c in source.chunks(2)] == [2, 2, 1]
    assert list(source.values("a")) == [0, 1, 2, 3, 4]


def test_chunks_of_the_rows_where_a_column_is_set_or_null_each_in_stored_order(tmp_path: Path) -> None:
    con = _warehouse(tmp_path)
    source = StagedTable(con, "contact")
    with_key = [r["n"] for c in source.chunks(100, column="c2d_key") for r in c]
    without = [r["n"] for c in source.chunks(100, column="c2d_key", is_set=False) for r in c]
    assert with_key == list(range(0, 2500, 3))
    assert without == [n for n in range(2500) if n % 3]
    assert list(source.chunks(100, column="no_such_column")) == []
    assert sum(len(c) for c in source.chunks(100, column="no_such_column", is_set=False)) == 2500
    assert (source.count("c2d_key"), source.count("no_such_column")) == (834, 0)
    rows = RowList([{"a": i, "k": "x" if i % 2 else None} for i in range(5)])
    assert rows.count("k") == 2
    assert [r["a"] for c in rows.chunks(2, column="k") for r in c] == [1, 3]
    assert [r["a"] for c in rows.chunks(2, column="k", is_set=False) for r in c] == [0, 2, 4]
