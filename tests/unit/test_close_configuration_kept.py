"""A delta does not read a configuration table of Close again when this run's observation found it as it was
when last read (issue 13: every delta re-read and re-wrote all nine): the extraction records the version of
what it read, the same version an observation computes, and a table is kept only when that version, this
run's observation and the table itself all agree."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest

from migration_assets.defs.close import _common
from migration_assets.defs.close._common import (
    CONTENT_VERSION,
    CloseExtractConfig,
    ContentRead,
    content_hash,
    unchanged_configuration,
)
from migration_assets.resources.warehouse import WarehouseResource

USERS = [{"id": "user_1", "email": "a@x.io", "__is_active": True}, {"id": "user_2", "__is_active": False}]


def test_a_read_records_the_version_an_observation_computes() -> None:
    content = ContentRead()
    pages = list(content.through("users", iter([USERS[:1], USERS[1:]])))
    assert pages == [USERS[:1], USERS[1:]]
    assert content.version == content_hash(list(reversed(USERS)))  # the order of the records is not content
    assert content.version != content_hash([{**USERS[0], "__is_active": False}, USERS[1]])
    leads = ContentRead()
    list(leads.through("leads", iter([[{"id": "lead_1"}]])))
    assert leads.version is None  # a record table is versioned by its changes, not its content


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    with wh.connect() as con:
        con.execute("CREATE SCHEMA close")
        con.execute("CREATE TABLE close.users (id VARCHAR)")
    return wh


def _kept(
    monkeypatch: pytest.MonkeyPatch,
    warehouse: WarehouseResource,
    observed: str | None,
    read: str | None = "content abc",
    table: str = "users",
    mode: str = "delta",
) -> str | None:
    monkeypatch.setattr(_common, "observed_in_run", lambda instance, t, run_id: observed)
    context: Any = SimpleNamespace(instance=None, run=SimpleNamespace(run_id="run-2"))
    latest = {table: {CONTENT_VERSION: dg.MetadataValue.text(read)}} if read else {}
    return unchanged_configuration(context, warehouse, table, CloseExtractConfig(mode=mode), latest)


def test_only_an_unchanged_observed_configuration_table_is_kept(
    monkeypatch: pytest.MonkeyPatch, warehouse: WarehouseResource
) -> None:
    assert _kept(monkeypatch, warehouse, "content abc") == "content abc"
    assert _kept(monkeypatch, warehouse, "content xyz") is None  # Close changed it: read again
    assert _kept(monkeypatch, warehouse, None) is None  # not observed in this run
    assert _kept(monkeypatch, warehouse, "content abc", read=None) is None  # version of the read unknown
    assert _kept(monkeypatch, warehouse, "content abc", mode="full") is None
    assert _kept(monkeypatch, warehouse, "content abc", table="roles") is None  # close.roles is missing
    assert _kept(monkeypatch, warehouse, "content abc", table="leads") is None  # a record table
