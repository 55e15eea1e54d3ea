"""The entity sets the Dataverse client knows are recorded once (issue 13: every load step of a delta wrote
every one of them again, a write each): a step records only those new or changed since, and the record ends
up the same."""

from __future__ import annotations

from typing import Any

import duckdb

from migration_assets.load.entity_meta_cache import SCHEMA, SETS, record_entity_metadata

ENV = "https://org.example.crm.dynamics.com"


class Client:
    environment_url = ENV

    def __init__(self, sets: dict[str, tuple[str, str]]) -> None:
        self.sets = sets

    def metadata_read(self) -> dict[str, Any]:
        return {}

    def entity_sets_known(self) -> dict[str, tuple[str, str]]:
        return self.sets


class CountingConnection:
    """A DuckDB connection that counts the rows written through executemany."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.written = con, 0

    def executemany(self, sql: str, rows: list[Any]) -> Any:
        self.written += len(rows)
        return self.con.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_only_new_or_changed_entity_sets_are_written() -> None:
    con = CountingConnection(duckdb.connect(":memory:"))
    sets = {"account": ("accounts", "accountid"), "contact": ("contacts", "contactid")}
    record_entity_metadata(con, Client(sets), "run-1")  # type: ignore[arg-type]
    assert con.written == 2
    record_entity_metadata(con, Client(dict(sets)), "run-2")  # type: ignore[arg-type]
    assert con.written == 2  # nothing new: nothing written
    sets["lead"] = ("leads", "leadid")
    sets["contact"] = ("contacts", "contactid2")
    record_entity_metadata(con, Client(sets), "run-3")  # type: ignore[arg-type]
    assert con.written == 4
    rows = con.execute(
        f"SELECT table_name, entity_set, primary_id FROM {SCHEMA}.{SETS} ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("account", "accounts", "accountid"),
        ("contact", "contacts", "contactid2"),
        ("lead", "leads", "leadid"),
    ]
