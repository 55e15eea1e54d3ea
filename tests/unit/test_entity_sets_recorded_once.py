"""The entity sets the Dataverse client knows are recorded once (issue 13: every load step of a delta wrote
every one of them again, a write each): a step records only those new or changed since, and the record ends
up the same. The same for the table definitions the run's client read: each is written when it was read,
not again by every later load step."""

from __future__ import annotations

from typing import Any

import duckdb

from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.load.entity_meta_cache import (
    METADATA,
    SCHEMA,
    SETS,
    meta_from_json,
    record_entity_metadata,
)

ENV = "https://org.example.crm.dynamics.com"


class Client:
    environment_url = ENV

    def __init__(self, sets: dict[str, tuple[str, str]], read: dict[str, Any] | None = None) -> None:
        self.sets, self.read = sets, read or {}

    def metadata_read(self) -> dict[str, Any]:
        return self.read

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


def _meta(table: str, primary_name: str) -> EntityMeta:
    return EntityMeta(table, table.title(), f"{table}s", f"{table}id", primary_name, None, False)


def test_a_definition_is_written_when_it_was_read_and_not_again_by_later_steps() -> None:
    con = CountingConnection(duckdb.connect(":memory:"))
    read = {"account": (_meta("account", "name"), 1_790_000_000.25)}
    assert record_entity_metadata(con, Client({}, read), "run-1") == 1  # type: ignore[arg-type]
    read["contact"] = (_meta("contact", "fullname"), 1_790_000_001.5)
    # The next step: the account's definition as it was recorded, the contact's read since.
    assert record_entity_metadata(con, Client({}, read), "run-1") == 1  # type: ignore[arg-type]
    assert record_entity_metadata(con, Client({}, read), "run-1") == 0  # type: ignore[arg-type]
    assert con.written == 2
    read["account"] = (_meta("account", "accountname"), 1_790_000_060.0)  # read again after a schema change
    assert record_entity_metadata(con, Client({}, read), "run-2") == 1  # type: ignore[arg-type]
    recorded = dict(con.execute(f"SELECT table_name, meta_json FROM {SCHEMA}.{METADATA}").fetchall())
    assert meta_from_json(recorded["account"]).primary_name == "accountname"
    assert meta_from_json(recorded["contact"]) == read["contact"][0]
