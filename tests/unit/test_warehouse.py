from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import polars as pl
import pytest

from migration_assets.resources.warehouse import WarehouseError, WarehouseResource


def test_chunks_are_appended_and_swapped_in(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "w" / "wh.duckdb"))
    with wh.table_writer("close", "leads") as writer:
        writer.write(pl.DataFrame({"id": ["a", "b"], "n": [1, 2]}))
        writer.write(pl.DataFrame({"n": [3], "id": ["c"]}))  # columns matched by name
    assert writer.rows == 3
    assert wh.read("SELECT id, n FROM close.leads ORDER BY id").to_dicts() == [
        {"id": "a", "n": 1},
        {"id": "b", "n": 2},
        {"id": "c", "n": 3},
    ]


def test_failed_write_keeps_previous_table(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    wh.replace("close", "leads", pl.DataFrame({"id": ["a"]}))
    with pytest.raises(RuntimeError):
        with wh.table_writer("close", "leads") as writer:
            writer.write(pl.DataFrame({"id": ["x", "y"]}))
            raise RuntimeError("killed mid-extraction")
    assert wh.read("SELECT id FROM close.leads")["id"].to_list() == ["a"]
    tables = wh.read("SELECT table_name FROM information_schema.tables")["table_name"].to_list()
    assert tables == ["leads"], "the scratch table of the failed write must be dropped"


def test_empty_write_creates_typed_empty_table(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    with wh.table_writer("close", "sms", empty_schema={"id": pl.String, "n": pl.Int64}):
        pass
    df = wh.read("SELECT * FROM close.sms")
    assert df.height == 0 and df.columns == ["id", "n"]


def test_file_is_owner_only(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "dir" / "wh.duckdb"))
    wh.replace("s", "t", pl.DataFrame({"a": [1]}))
    assert stat.S_IMODE(os.stat(wh.resolved_path()).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "dir").st_mode) == 0o700


def test_default_path_follows_home(isolated_home: Path) -> None:
    assert WarehouseResource().resolved_path() == str(isolated_home / "warehouse.duckdb")


def test_encryption_key_without_support_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSE2D365_WAREHOUSE_KEY", "k")
    wh = WarehouseResource(path=str(tmp_path / "enc.duckdb"))
    try:
        wh.replace("s", "t", pl.DataFrame({"a": [1]}))
    except WarehouseError as exc:  # no httpfs extension on this machine: the message says what to do
        assert "httpfs" in str(exc) and "CLOSE2D365_WAREHOUSE_KEY" in str(exc)
    else:  # the extension is available: the file must really be encrypted
        monkeypatch.delenv("CLOSE2D365_WAREHOUSE_KEY")
        import duckdb

        with pytest.raises(duckdb.Error):
            WarehouseResource(path=str(tmp_path / "enc.duckdb")).read("SELECT * FROM s.t")


def test_a_run_shares_one_open_database_and_releases_the_file_at_its_end(tmp_path: Path) -> None:
    import dagster as dg

    from migration_assets.extract.writer import extraction_settings, reset_extraction_settings

    path = str(tmp_path / "w.duckdb")
    seen: dict[str, object] = {}

    @dg.asset
    def writes_twice(warehouse: WarehouseResource) -> None:
        seen["anchored"] = warehouse._anchor is not None
        with warehouse.connect() as con:
            con.execute("CREATE TABLE t AS SELECT 42 AS v")
            extraction_settings(con)  # global to the shared database ...
            reset_extraction_settings(con)  # ... and given back, or later steps would inherit them
        with warehouse.connect() as con:
            seen["threads"] = con.execute("SELECT current_setting('threads')").fetchone()
            seen["memory_limit"] = con.execute("SELECT current_setting('memory_limit')").fetchone()

    assert dg.materialize([writes_twice], resources={"warehouse": WarehouseResource(path=path)}).success
    assert seen["anchored"] is True
    assert seen["threads"] != (1,)
    assert seen["memory_limit"] != ("384.0 MiB",)
    # Released: another process (here a read-only connection, which DuckDB refuses beside a read-write
    # one of the same process) can open the file.
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT v FROM t").fetchall() == [(42,)]
    con.close()


def test_sorted_writer_dedupes_by_its_order_and_keeps_rows_without_id(tmp_path: Path) -> None:
    from migration_assets.resources.warehouse import TableWriter

    with duckdb.connect(str(tmp_path / "sorted.duckdb")) as con:
        with TableWriter(con, "s", "t", sort_by=("id",), dedupe_order="v DESC") as writer:
            writer.write(pl.DataFrame({"id": ["b", "a", None], "v": [1, 1, 0]}))
            writer.write(pl.DataFrame({"id": ["a", None], "v": [2, 0]}))
        rows = con.execute("SELECT id, v FROM s.t").fetchall()
    assert rows == [("a", 2), ("b", 1), (None, 0), (None, 0)] and writer.dropped == 1


def test_unsorted_writer_refuses_datasets(tmp_path: Path) -> None:
    import pyarrow.dataset as pads

    from migration_assets.resources.warehouse import TableWriter

    with duckdb.connect(":memory:") as con:
        writer = TableWriter(con, "main", "t")
        with pytest.raises(ValueError, match="sort order"):
            writer.write_dataset(pads.dataset(pl.DataFrame({"id": ["a"]}).to_arrow()))
