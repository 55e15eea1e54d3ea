"""What a staged row's owners and lookups resolve against: the owner map, the staged parents, enabled
systemusers, target currencies and (in a delta run) records an earlier run already loaded into the target."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import duckdb
import polars as pl

from migration_assets.clients.dataverse.errors import DataverseTableMissingError
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.owners import owner_lookup
from migration_assets.mapping.transform_exprs import TransformContext
from migration_assets.resources.warehouse import fetch_polars, quote, table_exists
from migration_assets.target.checks import BIND
from migration_assets.target.metadata_cache import SCHEMA, StagingError
from migration_assets.target.rules import CONFIG_TARGETS, TableRules

# (target table, ids) -> the ids that already exist in that target table.
TargetLookup = Callable[[str, list[str]], set[str]]


def owner_context(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> TransformContext:
    if not table_exists(con, SCHEMA, "owner_map"):
        raise StagingError("staged.owner_map is missing: materialize staged/owner_map first")
    owners = owner_lookup(fetch_polars(con, "SELECT * FROM staged.owner_map"))
    return cfg.context(owners=owners, fallback_owner=None)


def target_lookup(dataverse: Any | None, con: duckdb.DuckDBPyConnection | None = None) -> TargetLookup | None:
    """Which of some ids already exist in a target table (a delta run's parents loaded earlier). With the
    warehouse `con`, records whose Close source is gone count as absent: the delta removes them, and a
    fresh migration would not have them."""
    if dataverse is None:
        return None
    gone: set[str] | None = None

    def lookup(table: str, ids: list[str]) -> set[str]:
        nonlocal gone
        try:
            found = dataverse.get_client().existing_ids(table, ids)
        except DataverseTableMissingError:  # a custom table the schema step has not created yet
            return set()
        if con is not None and found:
            if gone is None:
                from migration_assets.load.deletions import gone_record_ids

                gone = gone_record_ids(con)
            found = {i for i in found if i.lower() not in gone}
        return found

    return lookup


def primary_id(con: duckdb.DuckDBPyConnection, table: str) -> str | None:
    row = con.execute(
        "SELECT primary_id FROM staged.target_entity_sets WHERE table_name = ?", [table]
    ).fetchall()
    return row[0][0] if row and row[0][0] else None


def staged_binds(con: duckdb.DuckDBPyConnection, table: str, entity_set: str) -> set[str]:
    if not table_exists(con, SCHEMA, table):
        return set()
    pk = primary_id(con, table)
    if pk is None:
        return set()
    # The bind texts built in DuckDB and read as one column: a Python string per id formatted from a fetched
    # row cost a delta's staging and checks a tenth of a second per parent table.
    binds = fetch_polars(
        con,
        f"SELECT '/' || ? || '(' || CAST({quote(pk)} AS VARCHAR) || ')' AS bind FROM staged.{quote(table)} "
        f"WHERE {quote(pk)} IS NOT NULL",
        [entity_set],
    )
    return set(binds["bind"].to_list())


def known_binds(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    rules: TableRules,
    sets: Mapping[str, str],
    target_lookup: TargetLookup | None = None,
) -> dict[str, set[str]]:
    """Valid bind values per lookup target: staged rows, enabled systemusers, target currencies, and
    (when a Dataverse client is given) records already in the target for the ids still unresolved."""
    out: dict[str, set[str]] = {}
    targets_of = {c: rules.lookup_targets(c[: -len(BIND)]) for c in frame.columns if c.endswith(BIND)}
    for target in {t for ts in targets_of.values() for t in ts}:
        es = sets.get(target, target + "s")
        if target == "systemuser":
            rows = con.execute(
                "SELECT systemuserid FROM staged.target_systemusers WHERE NOT isdisabled"
            ).fetchall()
            out[target] = {f"/{es}({r[0]})" for r in rows}
        elif target == "team":
            out[target] = set()  # migrated records are owned by users; a team bind is not produced
        elif target == "transactioncurrency":
            rows = con.execute("SELECT isocurrencycode FROM staged.target_currencies").fetchall()
            out[target] = {f"/{es}(isocurrencycode='{r[0]}')" for r in rows}
        else:
            out[target] = staged_binds(con, target, es)
        if target == rules.table and rules.primary_id in frame.columns:
            # A self-reference (a contact's assistant is a contact) resolves within the rows being staged.
            out[target] |= {f"/{es}({i})" for i in frame[rules.primary_id].drop_nulls().to_list()}
    if target_lookup is not None:
        for col, targets in targets_of.items():
            for target in targets:
                if target in ("systemuser", "team", "transactioncurrency"):
                    continue
                prefix = f"/{sets.get(target, target + 's')}("
                values = set(frame[col].drop_nulls().unique().to_list()) - out[target]
                ids = [v[len(prefix) : -1] for v in values if v.startswith(prefix) and "=" not in v]
                if ids:
                    out[target] |= {f"{prefix}{i})" for i in target_lookup(target, ids)}
    return out


def rejected_refs(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, rules: TableRules, sets: Mapping[str, str]
) -> dict[str, str]:
    """Bind value -> "<table> <close id>" of every rejected record the frame's lookups may point at (read
    from staged.<target>_rejected), to say which rejected record a lookup or a cascade is about."""
    targets = {t for c in frame.columns if c.endswith(BIND) for t in rules.lookup_targets(c[: -len(BIND)])}
    out: dict[str, str] = {}
    for target in sorted(targets - CONFIG_TARGETS - {rules.table}):
        rejected = f"{target}_rejected"
        if not table_exists(con, SCHEMA, rejected):
            continue
        pk = primary_id(con, target)
        cols = {r[0] for r in con.execute(f"DESCRIBE {SCHEMA}.{quote(rejected)}").fetchall()}
        if pk is None or pk not in cols:
            continue
        es = sets.get(target, target + "s")
        rows = con.execute(
            f"SELECT DISTINCT {quote(pk)}, _close_id FROM {SCHEMA}.{quote(rejected)} "
            f"WHERE {quote(pk)} IS NOT NULL"
        ).fetchall()
        out.update({f"/{es}({key})": f"{target} {close_id}" for key, close_id in rows})
    return out


def required_lookups(table: str) -> set[str]:
    """Lookups the field maps of `table` mark `required: true`: a rejected parent takes the row with it."""
    cfg = load_mapping_config()
    return {
        s.target
        for m in cfg.field_maps.values()
        if m.table == table
        for s in m.fields
        if s.lookup and s.required
    }
