"""Shared machinery of the staged/* assets: target rules from the metadata cache, lookup resolution,
validation, writing `staged.<table>` + `staged.<table>_rejected` + `staged.<table>_notices`, and the
blocking check every staged table gets.

Validation runs during materialization, so a rejected row never reaches `staged.<table>` and a child
table resolves its lookups against parents that really will be loaded; the blocking check then
re-validates the written table with the same Pandera schema and holds the rejected rows against
`mappings/settings.yaml` thresholds, showing them as a Markdown table in the UI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from migration_assets.clients.dataverse.errors import DataverseTableMissingError
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.owners import owner_lookup
from migration_assets.mapping.targets import unknown_columns
from migration_assets.mapping.transform_exprs import TransformContext
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import (
    WarehouseResource,
    fetch_polars,
    quote,
    replace_table,
    table_exists,
)
from migration_assets.target.checks import (
    BIND,
    EXCLUSIONS,
    KEPT_IN_TARGET,
    REJECTION_SCHEMA,
    build_schema,
    empty_optional_lookups,
    validate,
    with_cascade,
)
from migration_assets.target.rules import CONFIG_TARGETS, TableRules, add_planned_column

SCHEMA = GROUP = "staged"
TARGET_METADATA_KEY = dg.AssetKey([GROUP, "target_metadata"])
OWNER_MAP_KEY = dg.AssetKey([GROUP, "owner_map"])
PREVIEW_ROWS = 20
# Rows validated and written at a time (bounded memory on large orgs).
CHUNK_ROWS = 25_000
META_STATE = {"statecode": "_statecode", "statuscode": "_statuscode"}


class StagingError(RuntimeError):
    """Staging cannot run (missing metadata cache, missing upstream table): the message says what to do."""


def close_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["close", table])


def staged_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


# -- target metadata cache ---------------------------------------------------------------------------
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


def owner_context(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> TransformContext:
    if not table_exists(con, SCHEMA, "owner_map"):
        raise StagingError("staged.owner_map is missing: materialize staged/owner_map first")
    owners = owner_lookup(fetch_polars(con, "SELECT * FROM staged.owner_map"))
    return cfg.context(owners=owners, fallback_owner=None)


# -- lookups -------------------------------------------------------------------------------------------
TargetLookup = Callable[[str, list[str]], set[str]]


def target_lookup(dataverse: Any | None) -> TargetLookup | None:
    """Which of some ids already exist in a target table (a delta run's parents loaded earlier)."""
    if dataverse is None:
        return None

    def lookup(table: str, ids: list[str]) -> set[str]:
        try:
            return dataverse.get_client().existing_ids(table, ids)
        except DataverseTableMissingError:  # a custom table the schema step has not created yet
            return set()

    return lookup


def staged_binds(con: duckdb.DuckDBPyConnection, table: str, entity_set: str) -> set[str]:
    if not table_exists(con, SCHEMA, table):
        return set()
    pk = con.execute(
        "SELECT primary_id FROM staged.target_entity_sets WHERE table_name = ?", [table]
    ).fetchall()
    if not pk or not pk[0][0]:
        return set()
    rows = con.execute(f"SELECT {quote(pk[0][0])} FROM staged.{quote(table)}").fetchall()
    return {f"/{entity_set}({r[0]})" for r in rows}


def known_binds(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    rules: TableRules,
    sets: Mapping[str, str],
    target_lookup: Any | None = None,
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
        if not table_exists(con, SCHEMA, f"{target}_rejected"):
            continue
        pk = con.execute(
            "SELECT primary_id FROM staged.target_entity_sets WHERE table_name = ?", [target]
        ).fetchall()
        cols = {r[0] for r in con.execute(f"DESCRIBE {SCHEMA}.{quote(target + '_rejected')}").fetchall()}
        if not pk or pk[0][0] not in cols:
            continue
        es = sets.get(target, target + "s")
        rows = con.execute(
            f"SELECT DISTINCT {quote(pk[0][0])}, _close_id FROM {SCHEMA}.{quote(target + '_rejected')} "
            f"WHERE {quote(pk[0][0])} IS NOT NULL"
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


# -- validation and output ----------------------------------------------------------------------------
@dataclass
class StageResult:
    table: str
    staged: int
    rejected: int  # distinct rejected rows, excluding expected exclusions
    excluded: int  # e.g. oversize attachments: listed for the admin, not loaded, not counted as errors
    notices: int
    rejected_preview: pl.DataFrame
    preview: pl.DataFrame | None = None


def validate_and_write(
    warehouse: WarehouseResource,
    con: duckdb.DuckDBPyConnection,
    table: str,
    rules: TableRules,
    frame: pl.DataFrame,
    rejections: Sequence[pl.DataFrame],
    notices: Sequence[pl.DataFrame],
    target_lookup: Any | None = None,
    pk: str | None = None,
    post: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    required_lookups_of: Collection[str] | None = None,
) -> StageResult:
    """Pandera-validate `frame` against `rules`, write accepted/rejected/notices, return the counts.

    Validation and writing go slice by slice (CHUNK_ROWS), so memory stays bounded by one slice's
    working set on top of the mapped frame; DuckDB sorts the result by primary key at the end."""
    pk = pk or rules.primary_id
    sets = entity_sets(con)
    for name, rule in rules.columns.items():
        # The staged contract: every row carries its Close id and its original creation time.
        if name == "overriddencreatedon" or (name.endswith("_closeid") and rule.attribute_type == "String"):
            rule.required = rule.required or name in frame.columns
    pre = (
        pl.concat([r for r in rejections if r.height], how="vertical_relaxed")
        if any(r.height for r in rejections)
        else pl.DataFrame(schema=REJECTION_SCHEMA)
    )
    # A field map's target the target lacks is the mapping's mistake, reported once by file and line at the
    # mapping_confirmed gate (which stops every write): its values are left out, no row is rejected for them.
    # A custom activity table (planned) keeps rejecting them: its type halts alone (DESIGN §3).
    unknown = [] if rules.planned_table else unknown_columns(load_mapping_config().field_maps.values(), rules)
    unknown = [c for c in unknown if c in frame.columns]  # the columns the mapped frame carries
    pre = pre.filter(~pl.col("column").is_in(unknown))
    pre_ids = pre["_close_id"].unique().implode()
    candidates = frame.filter(~pl.col("_close_id").is_in(pre_ids)).drop(unknown)
    binds = known_binds(con, candidates, rules, sets, target_lookup)
    refs = rejected_refs(con, candidates, rules, sets)
    required = required_lookups(rules.table) if required_lookups_of is None else required_lookups_of
    # A rejected (or missing) parent empties an optional lookup instead of taking the row with it.
    candidates, emptied = empty_optional_lookups(candidates, rules, binds, sets, refs, required)
    notices = [*notices, emptied]
    built = build_schema(rules, candidates.columns, binds, sets)
    ids = frame.select("_close_id", "_close_object", *([pk] if pk in frame.columns else [])).unique(
        "_close_id"
    )
    del frame

    def finish(df: pl.DataFrame) -> pl.DataFrame:
        df = df.rename({k: v for k, v in META_STATE.items() if k in df.columns})
        return post(df) if post else df

    scratch = f"__{table}_accepted"
    warehouse_write(con, scratch, finish(candidates.clear()))
    found_parts, staged = [], 0
    for offset in range(0, candidates.height, CHUNK_ROWS):
        accepted, found = validate(candidates.slice(offset, CHUNK_ROWS), built, table)
        found_parts.append(found)
        staged += accepted.height
        append(con, scratch, finish(accepted))
        del accepted
    del candidates
    order = f" ORDER BY {quote(pk)}" if pk in ids.columns else ""
    con.execute("BEGIN TRANSACTION")
    con.execute(
        f"CREATE OR REPLACE TABLE {SCHEMA}.{quote(table)} AS SELECT * FROM {SCHEMA}.{quote(scratch)}{order}"
    )
    con.execute(f"DROP TABLE {SCHEMA}.{quote(scratch)}")
    con.execute("COMMIT")
    all_rej = with_cascade(pl.concat([pre, *found_parts], how="vertical_relaxed"), refs)
    all_rej = all_rej.join(ids, on="_close_id", how="left").sort("_close_id", "column", maintain_order=True)
    rej_cols = [
        "_close_id",
        "_close_object",
        *([pk] if pk in ids.columns else []),
        "column",
        "value",
        "reason",
        "check_name",
        "cascade",
    ]
    all_rej = kept_in_target(all_rej.select(rej_cols), rules.table, pk, target_lookup)
    note = (
        pl.concat([n for n in notices if n.height], how="vertical_relaxed")
        if any(n.height for n in notices)
        else None
    )
    warehouse_write(con, f"{table}_rejected", all_rej)
    notes = note if note is not None else pl.DataFrame(schema={**REJECTION_SCHEMA, "action": pl.String})
    warehouse_write(con, f"{table}_notices", notes)
    counted = all_rej.filter(~pl.col("check_name").is_in(list(EXCLUSIONS)))
    excluded = all_rej.filter(pl.col("check_name").is_in(list(EXCLUSIONS)))
    preview = fetch_polars(con, f"SELECT * FROM {SCHEMA}.{quote(table)} LIMIT 5")
    return StageResult(
        table,
        staged,
        counted["_close_id"].n_unique(),
        excluded["_close_id"].n_unique(),
        notes.height,
        all_rej.head(PREVIEW_ROWS),
        preview,
    )


def kept_in_target(
    rejected: pl.DataFrame, table: str, pk: str, target_lookup: TargetLookup | None
) -> pl.DataFrame:
    """Rejections of records that already exist in the target (an earlier run loaded them) become
    `kept_in_target`: the record is not written this run, so it keeps its previous values, and it is listed
    with the reason its new values were refused. Nothing is lost, so no threshold counts it and nothing
    downstream halts for it; a record not in the target yet stays an ordinary rejection."""
    if target_lookup is None or pk not in rejected.columns or not rejected.height:
        return rejected
    excluded = pl.col("check_name").is_in(list(EXCLUSIONS))
    ids = rejected.filter(~excluded & pl.col(pk).is_not_null())[pk].unique().to_list()
    existing = target_lookup(table, [str(i) for i in ids]) if ids else set()
    if not existing:
        return rejected
    kept = ~excluded & pl.col(pk).cast(pl.String).str.to_lowercase().is_in(sorted(existing))
    return rejected.with_columns(
        pl.when(kept)
        .then(pl.lit("already in the target, keeps its previous values: ") + pl.col("reason"))
        .otherwise(pl.col("reason"))
        .alias("reason"),
        pl.when(kept).then(pl.lit(KEPT_IN_TARGET)).otherwise(pl.col("check_name")).alias("check_name"),
    )


def append(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame) -> None:
    if not df.height:
        return
    con.register("__staged_chunk", df.to_arrow())
    try:
        con.execute(f"INSERT INTO {SCHEMA}.{quote(table)} BY NAME SELECT * FROM __staged_chunk")
    finally:
        con.unregister("__staged_chunk")


def warehouse_write(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame) -> None:
    """Replace staged.<table> atomically (same connection: the staging asset holds one open)."""
    replace_table(con, SCHEMA, table, df)


def markdown(df: pl.DataFrame, max_rows: int = PREVIEW_ROWS, max_width: int = 70) -> str:
    """A staged preview for the Dagster UI: the first rows, narrow cells, and how many were left out."""
    return markdown_table(df, max_rows=max_rows, max_width=max_width, count_more=True)


def materialize_result(result: StageResult, extra: Mapping[str, Any] | None = None) -> dg.MaterializeResult:
    meta: dict[str, Any] = {
        "dagster/row_count": result.staged,
        "rejected_rows": result.rejected,
        "excluded_rows": result.excluded,
        "notices (truncated/nulled values)": result.notices,
        "rejected_preview": dg.MetadataValue.md(markdown(result.rejected_preview)),
    }
    if result.preview is not None:
        meta["preview"] = dg.MetadataValue.md(markdown(result.preview, max_width=40))
    meta.update(extra or {})
    return dg.MaterializeResult(metadata=meta)
