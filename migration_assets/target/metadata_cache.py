"""The target's metadata as staging sees it: read once from Dataverse and cached in DuckDB (`staged.target_*`),
so the dry run is cheap to repeat (metadata reads are ~8 requests per table).

Tables: staged.target_metadata (validation rules per table, JSON), staged.target_entity_sets,
staged.target_systemusers (for owner matching), staged.target_currencies, staged.target_organization
(maxuploadfilesize). The rules of a table are read back from the cache, plus the columns the mapping plans.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from migration_assets.mapping.config import MappingConfig
from migration_assets.resources.warehouse import replace_table, table_exists
from migration_assets.target.rules import TableRules, add_planned_column, rules_from_metadata

SCHEMA = "staged"
# Tables staging only points lookups at: their entity sets and primary ids are cached, not their rules.
LOOKUP_ONLY = ("systemuser", "transactioncurrency")
DEFAULT_MAX_UPLOAD = 5_242_880  # Dataverse's default organization.maxuploadfilesize
USER_SCHEMA = {
    "systemuserid": pl.String,
    "internalemailaddress": pl.String,
    "domainname": pl.String,
    "fullname": pl.String,
    "isdisabled": pl.Boolean,
    "applicationid": pl.String,
}
CURRENCY_SCHEMA = {"transactioncurrencyid": pl.String, "isocurrencycode": pl.String}


class StagingError(RuntimeError):
    """Staging cannot run (missing metadata cache, missing upstream table): the message says what to do."""


@dataclass(frozen=True)
class TargetMetadata:
    """What the target says about the tables we write, as the frames of the cache."""

    rules: pl.DataFrame  # table_name, entity_set, rules (JSON), fetched_at
    entity_sets: pl.DataFrame  # table_name, entity_set, primary_id
    systemusers: pl.DataFrame
    currencies: pl.DataFrame
    max_upload: int


def read_target_metadata(client: Any, tables: Sequence[str]) -> TargetMetadata:
    """Read the metadata of `tables` (+ lookup-only tables), the users, currencies and upload limit;
    raises the client's DataverseError."""
    now = time.time()
    rules, sets = [], []
    for table in tables:
        r = rules_from_metadata(client.metadata(table, refresh=True))
        rules.append(
            {
                "table_name": table,
                "entity_set": r.entity_set,
                "rules": json.dumps(r.to_json()),
                "fetched_at": now,
            }
        )
        sets.append({"table_name": table, "entity_set": r.entity_set, "primary_id": r.primary_id})
    for table in LOOKUP_ONLY:
        meta = client.metadata(table)
        sets.append({"table_name": table, "entity_set": meta.entity_set_name, "primary_id": meta.primary_id})
    users = list(client.query("systemuser", select=list(USER_SCHEMA)))
    currencies = list(client.query("transactioncurrency", select=list(CURRENCY_SCHEMA)))
    org = next(iter(client.query("organization", select=["organizationid", "maxuploadfilesize"])), {})
    return TargetMetadata(
        rules=pl.DataFrame(rules),
        entity_sets=pl.DataFrame(sets),
        systemusers=pl.DataFrame([{k: u.get(k) for k in USER_SCHEMA} for u in users], schema=USER_SCHEMA),
        currencies=pl.DataFrame(
            [{k: c.get(k) for k in CURRENCY_SCHEMA} for c in currencies], schema=CURRENCY_SCHEMA
        ),
        max_upload=int(org.get("maxuploadfilesize") or DEFAULT_MAX_UPLOAD),
    )


def write_cache(con: duckdb.DuckDBPyConnection, meta: TargetMetadata) -> None:
    replace_table(con, SCHEMA, "target_metadata", meta.rules)
    replace_table(con, SCHEMA, "target_entity_sets", meta.entity_sets)
    replace_table(con, SCHEMA, "target_systemusers", meta.systemusers)
    replace_table(con, SCHEMA, "target_currencies", meta.currencies)
    replace_table(con, SCHEMA, "target_organization", pl.DataFrame({"maxuploadfilesize": [meta.max_upload]}))


def cache_fresh(con: duckdb.DuckDBPyConnection, max_age_minutes: int) -> bool:
    if not table_exists(con, SCHEMA, "target_metadata") or not table_exists(
        con, SCHEMA, "target_organization"
    ):
        return False
    row = con.execute("SELECT min(fetched_at) FROM staged.target_metadata").fetchall()
    return bool(row and row[0][0] is not None and time.time() - float(row[0][0]) < max_age_minutes * 60)


def cached_tables(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT count(*) FROM staged.target_metadata").fetchall()[0][0])


def invalidate_cache(con: duckdb.DuckDBPyConnection) -> None:
    """The cache no longer holds (a deploy created something and re-reading it failed): the next staging
    re-reads every table."""
    if table_exists(con, SCHEMA, "target_metadata"):
        con.execute("UPDATE staged.target_metadata SET fetched_at = 0")


def refresh_tables(con: duckdb.DuckDBPyConnection, client: Any, tables: Sequence[str]) -> list[str]:
    """After a schema deploy created something on `tables`: re-read the rules of those of them the cache
    holds (the cache predates what was created), so that the next staging finds a fresh cache instead of
    re-reading every table. Returns the tables re-read; raises the client's DataverseError."""
    if not table_exists(con, SCHEMA, "target_metadata"):
        return []  # no cache yet: the first staging reads everything
    cached = {r[0] for r in con.execute("SELECT table_name FROM staged.target_metadata").fetchall()}
    stale = sorted(set(tables) & cached)
    for table in stale:
        r = rules_from_metadata(client.metadata(table, refresh=True))
        con.execute(
            "UPDATE staged.target_metadata SET entity_set = ?, rules = ?, fetched_at = ? WHERE table_name = ?",
            [r.entity_set, json.dumps(r.to_json()), time.time(), table],
        )
        if table_exists(con, SCHEMA, "target_entity_sets"):
            con.execute(
                "UPDATE staged.target_entity_sets SET entity_set = ?, primary_id = ? WHERE table_name = ?",
                [r.entity_set, r.primary_id, table],
            )
    return stale


def load_rules(con: duckdb.DuckDBPyConnection, table: str) -> TableRules:
    if not table_exists(con, SCHEMA, "target_metadata"):
        raise StagingError("staged.target_metadata is missing: materialize staged/target_metadata first")
    rows = con.execute("SELECT rules FROM staged.target_metadata WHERE table_name = ?", [table]).fetchall()
    if not rows:
        raise StagingError(f"no target metadata for table {table!r}: re-materialize staged/target_metadata")
    return TableRules.from_json(json.loads(rows[0][0]))


def entity_sets(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    if not table_exists(con, SCHEMA, "target_entity_sets"):
        raise StagingError("staged.target_entity_sets is missing: materialize staged/target_metadata first")
    return dict(con.execute("SELECT table_name, entity_set FROM staged.target_entity_sets").fetchall())


def plan_columns(rules: TableRules, cfg: MappingConfig) -> TableRules:
    """Add the custom columns the field maps write (created by schema/* before loading)."""
    for name, custom in cfg.custom_columns().get(rules.table, {}).items():
        options = None
        if custom.choice_set and custom.choice_set in cfg.choice_sets:
            options = set(cfg.choice_sets[custom.choice_set].options.values())
        add_planned_column(rules, name, custom.type, custom.max_length, options)
    from migration_assets.mapping.custom_fields import plan_custom_fields

    plan_custom_fields(rules, cfg)
    flag = cfg.accounts.flag_column
    if rules.table == "account":
        add_planned_column(rules, flag, "Boolean")
        add_planned_column(rules, cfg.accounts.merged_ids_column, "Memo", 100_000)
    return rules


def cached_rules(con: duckdb.DuckDBPyConnection, table: str, cfg: MappingConfig) -> TableRules:
    """A table's rules as staging validates against them: the target's, plus the columns the mapping plans."""
    return plan_columns(load_rules(con, table), cfg)
