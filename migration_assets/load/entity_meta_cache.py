"""The target tables' metadata as the loader last read it (`loaded.target_entity_metadata`), and the entity
sets it resolved (`loaded.target_entity_set_names`), kept in the warehouse so that a load does not read a
table's definition again (~8 requests) when nothing can have changed it since.

A recorded definition is used only while it is provably current:
- no schema component (column, key, relationship, option...) of the table was created after it was read
  (ledger.schema_components; a schema rollback drops every record, `forget_entity_metadata`);
- staging's cache of the table (staged.target_metadata, target/metadata_cache.py) is not invalidated;
- it knows every column and navigation property of the rows to load (`covers`), else the caller re-reads.
Anything else reads the table's metadata from Dataverse, as before, and records it for the next run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.metadata import (
    AttributeMeta,
    EntityMeta,
    KeyMeta,
    OptionMeta,
    RelationshipMeta,
)
from migration_assets.load import diff as ld
from migration_assets.load.ledger import SCHEMA as LEDGER_SCHEMA
from migration_assets.resources.warehouse import SHARED_RECORDS, table_exists

SCHEMA = "loaded"
METADATA = "target_entity_metadata"
SETS = "target_entity_set_names"
SOURCE = "GET EntityDefinitions (reference §6.5)"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{METADATA} (environment_url VARCHAR NOT NULL, "
        "table_name VARCHAR NOT NULL, meta_json VARCHAR NOT NULL, read_at TIMESTAMPTZ NOT NULL, "
        "source VARCHAR NOT NULL, run_id VARCHAR, PRIMARY KEY (environment_url, table_name))"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{SETS} (environment_url VARCHAR NOT NULL, table_name VARCHAR "
        "NOT NULL, entity_set VARCHAR NOT NULL, primary_id VARCHAR NOT NULL, PRIMARY KEY (environment_url, "
        "table_name))"
    )


def meta_to_json(meta: EntityMeta) -> str:
    return json.dumps(dataclasses.asdict(meta), sort_keys=True)


def meta_from_json(text: str) -> EntityMeta:
    """The inverse of `meta_to_json`; raises TypeError/KeyError/ValueError on a record of another shape."""
    data: dict[str, Any] = json.loads(text)
    attributes = {
        name: AttributeMeta(**{**a, "options": [OptionMeta(**o) for o in a["options"]]})
        for name, a in data["attributes"].items()
    }
    keys = [KeyMeta(k["schema_name"], tuple(k["key_attributes"]), k["status"]) for k in data["keys"]]
    relationships = [RelationshipMeta(**r) for r in data["many_to_one"]]
    return EntityMeta(**{**data, "attributes": attributes, "keys": keys, "many_to_one": relationships})


def _latest(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str, float]:
    return {
        str(t): float(v) for t, v in con.execute(sql, params).fetchall() if t is not None and v is not None
    }


def prime_entity_metadata(con: duckdb.DuckDBPyConnection, client: DataverseClient) -> set[str]:
    """Give `client` the recorded definitions of its environment that are still current, and every
    recorded entity set; returns the tables whose definition it took."""
    ensure_tables(con)
    env = client.environment_url
    client.prime_entity_sets(
        (str(t), str(s), str(p))
        for t, s, p in con.execute(
            f"SELECT table_name, entity_set, primary_id FROM {SCHEMA}.{SETS} WHERE environment_url = ?", [env]
        ).fetchall()
    )
    changed: dict[str, float] = {}
    if table_exists(con, LEDGER_SCHEMA, "schema_components"):
        changed = _latest(
            con,
            f"SELECT table_name, epoch(max(created_at)) FROM {LEDGER_SCHEMA}.schema_components GROUP BY 1",
            [],
        )
    restaged: dict[str, float] = {}
    if table_exists(con, "staged", "target_metadata"):
        restaged = _latest(
            con, "SELECT table_name, min(fetched_at) FROM staged.target_metadata GROUP BY 1", []
        )
    taken: set[str] = set()
    rows = con.execute(
        f"SELECT table_name, meta_json, epoch(read_at) FROM {SCHEMA}.{METADATA} WHERE environment_url = ?",
        [env],
    ).fetchall()
    for table, text, read_at in rows:
        if read_at < changed.get(table, 0.0):
            continue
        if table in restaged and restaged[table] <= 0:  # staging's cache was invalidated: re-read
            continue
        try:
            meta = meta_from_json(text)
        except (TypeError, KeyError, ValueError):
            continue  # recorded by another version of the client: read again
        if client.prime_metadata(meta):
            taken.add(str(table))
    return taken


def covers(meta: EntityMeta, columns: Iterable[str]) -> bool:
    """Whether `meta` knows every attribute column and navigation property of these staged columns (a
    definition read before a column was added does not)."""
    navs = {r.navigation_property for r in meta.many_to_one}
    for column in columns:
        if column.startswith("_"):
            continue
        if column.endswith(ld.BIND):
            if column[: -len(ld.BIND)] not in navs:
                return False
        elif column not in meta.attributes:
            return False
    return True


def record_entity_metadata(
    con: duckdb.DuckDBPyConnection, client: DataverseClient, run_id: str | None
) -> int:
    """Record the definitions `client` read itself, and the entity sets it knows; returns how many
    definitions were written."""
    with SHARED_RECORDS:
        return _record(con, client, run_id)


def _record(con: duckdb.DuckDBPyConnection, client: DataverseClient, run_id: str | None) -> int:
    ensure_tables(con)
    env = client.environment_url
    # Only the definitions read since they were recorded: the client is the run's, and every load step
    # recorded every definition it had read so far again (4 s of a tiny org's run, serialising them).
    recorded = dict(
        con.execute(
            f"SELECT table_name, read_at FROM {SCHEMA}.{METADATA} WHERE environment_url = ? AND source = ?",
            [env, SOURCE],
        ).fetchall()
    )
    read = {
        table: (meta, when)
        for table, (meta, at) in client.metadata_read().items()
        if recorded.get(table) != (when := datetime.fromtimestamp(at, UTC))
    }
    if read:
        con.executemany(
            f"INSERT OR REPLACE INTO {SCHEMA}.{METADATA} VALUES (?, ?, ?, ?, ?, ?)",
            [(env, table, meta_to_json(meta), when, SOURCE, run_id) for table, (meta, when) in read.items()],
        )
    sets = client.entity_sets_known()
    if sets:
        # Only the ones not recorded as they are (one write each: every load step of a delta wrote them all).
        recorded = set(
            con.execute(
                f"SELECT table_name, entity_set, primary_id FROM {SCHEMA}.{SETS} WHERE environment_url = ?",
                [env],
            ).fetchall()
        )
        new = [(t, s, pk) for t, (s, pk) in sets.items() if (t, s, pk) not in recorded]
        if new:
            con.executemany(
                f"INSERT OR REPLACE INTO {SCHEMA}.{SETS} VALUES (?, ?, ?, ?)", [(env, *row) for row in new]
            )
    return len(read)


def forget_entity_metadata(con: duckdb.DuckDBPyConnection, tables: Sequence[str] | None = None) -> int:
    """Drop recorded definitions (all, or of `tables`): the next load reads them again."""
    ensure_tables(con)
    clause, params = ("", []) if tables is None else (" WHERE list_contains(?, table_name)", [list(tables)])
    count = con.execute(f"SELECT count(*) FROM {SCHEMA}.{METADATA}{clause}", params).fetchall()[0][0]
    con.execute(f"DELETE FROM {SCHEMA}.{METADATA}{clause}", params)
    return int(count)
