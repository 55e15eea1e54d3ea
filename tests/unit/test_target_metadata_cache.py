"""The staging cache of the target's metadata is re-read after a schema deploy created something."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from migration_assets.target.metadata_cache import cache_fresh, invalidate_cache


def test_a_deploy_makes_the_cache_stale(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA staged")
    con.execute("CREATE TABLE staged.target_metadata (table_name VARCHAR, rules VARCHAR, fetched_at DOUBLE)")
    con.execute("CREATE TABLE staged.target_organization (maxuploadfilesize BIGINT)")
    con.execute("INSERT INTO staged.target_metadata VALUES ('lead', '{}', ?)", [time.time()])
    assert cache_fresh(con, 60)
    invalidate_cache(con)
    assert not cache_fresh(con, 60)
    invalidate_cache(duckdb.connect())  # no cache yet: nothing to do, no error
