"""Validation and writing of a staged table: `staged.<table>` + `staged.<table>_rejected` +
`staged.<table>_notices`.

Validation runs during materialization, so a rejected row never reaches `staged.<table>` and a child
table resolves its lookups against parents that really will be loaded; the blocking check
(mapping/staged_check.py) then re-validates the written table with the same Pandera schema.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.staged_lookups import (
    TargetLookup,
    known_binds,
    rejected_refs,
    required_lookups,
)
from migration_assets.mapping.targets import unknown_columns
from migration_assets.resources.warehouse import (
    WarehouseResource,
    fetch_polars,
    quote,
    replace_table,
    table_exists,
)
from migration_assets.target.checks import (
    EXCLUSIONS,
    KEPT_IN_TARGET,
    REJECTION_SCHEMA,
    build_schema,
    empty_optional_lookups,
    validate,
    with_cascade,
)
from migration_assets.target.metadata_cache import SCHEMA, entity_sets
from migration_assets.target.rules import TableRules

PREVIEW_ROWS = 20
# Rows validated and written at a time (bounded memory on large orgs).
CHUNK_ROWS = 25_000
# The state columns are applied after create: staged under the names the loader reads them by.
META_STATE = {"statecode": "_statecode", "statuscode": "_statuscode"}
REJECTED_COLUMNS = ("column", "value", "reason", "check_name", "cascade")


@dataclass
class StageResult:
    table: str
    staged: int
    rejected: int  # distinct rejected rows, excluding expected exclusions
    excluded: int  # e.g. oversize attachments: listed for the admin, not loaded, not counted as errors
    notices: int
    rejected_preview: pl.DataFrame
    preview: pl.DataFrame | None = None
    # Incremental staging (mapping/delta_staging.py): "incremental" or "full" (None: not planned), why in
    # full, and how many rows an incremental staging re-staged.
    staging_mode: str | None = None
    full_reason: str | None = None
    restaged_rows: int | None = None

    def planned(self, full_reason: str | None, restaged: int | None) -> StageResult:
        self.staging_mode = "full" if full_reason is not None else "incremental"
        self.full_reason, self.restaged_rows = full_reason, restaged
        return self


def concat_or_empty(frames: Sequence[pl.DataFrame], schema: Mapping[str, Any]) -> pl.DataFrame:
    """The non-empty frames one under the other, or an empty frame of `schema`."""
    parts = [f for f in frames if f.height]
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=schema)


def validate_and_write(
    warehouse: WarehouseResource,
    con: duckdb.DuckDBPyConnection,
    table: str,
    rules: TableRules,
    frame: pl.DataFrame,
    rejections: Sequence[pl.DataFrame],
    notices: Sequence[pl.DataFrame],
    target_lookup: TargetLookup | None = None,
    pk: str | None = None,
    post: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    required_lookups_of: Collection[str] | None = None,
    replace_keys: Collection[str] | None = None,
) -> StageResult:
    """Pandera-validate `frame` against `rules`, write accepted/rejected/notices, return the counts.

    Validation and writing go slice by slice (CHUNK_ROWS), so memory stays bounded by one slice's
    working set on top of the mapped frame; DuckDB sorts the result by primary key at the end.

    replace_keys (incremental staging, mapping/delta_staging.py): `frame` holds only the rows of these
    `_close_id`s; they replace those rows of the staged, rejected and notices tables (a key without a row in
    `frame` is removed) and every other row stays as it was."""
    pk = pk or rules.primary_id
    sets = entity_sets(con)
    for name, rule in rules.columns.items():
        # The staged contract: every row carries its Close id and its original creation time.
        if name == "overriddencreatedon" or (name.endswith("_closeid") and rule.attribute_type == "String"):
            rule.required = rule.required or name in frame.columns
    pre = concat_or_empty(rejections, REJECTION_SCHEMA)
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
    if replace_keys is not None:
        register_keys(con, replace_keys)
    if replace_keys is not None and fits_into(con, scratch, table):
        # An incremental staging replaces its keys' rows in place: a rewrite of the whole table (and its
        # commit) would cost a delta as much as a full staging. The replaced rows sit at the table's end.
        con.execute(f"DELETE FROM {SCHEMA}.{quote(table)} WHERE _close_id IN (SELECT id FROM __replace_keys)")
        con.execute(f"INSERT INTO {SCHEMA}.{quote(table)} BY NAME SELECT * FROM {SCHEMA}.{quote(scratch)}")
    else:
        if replace_keys is None:
            rows = f"SELECT * FROM {SCHEMA}.{quote(scratch)}"
        else:  # the columns changed (a field mapped since): the rows are merged into a new table
            rows = (
                f"SELECT * FROM {SCHEMA}.{quote(table)} WHERE _close_id NOT IN (SELECT id FROM __replace_keys) "
                f"UNION ALL BY NAME SELECT * FROM {SCHEMA}.{quote(scratch)}"
            )
        con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{quote(table)} AS SELECT * FROM ({rows}){order}")
    con.execute(f"DROP TABLE {SCHEMA}.{quote(scratch)}")
    con.execute("COMMIT")
    all_rej = with_cascade(pl.concat([pre, *found_parts], how="vertical_relaxed"), refs)
    all_rej = all_rej.join(ids, on="_close_id", how="left").sort("_close_id", "column", maintain_order=True)
    rej_cols = ["_close_id", "_close_object", *([pk] if pk in ids.columns else []), *REJECTED_COLUMNS]
    all_rej = kept_in_target(all_rej.select(rej_cols), rules.table, pk, target_lookup)
    notes = concat_or_empty(notices, {**REJECTION_SCHEMA, "action": pl.String})
    if replace_keys is not None:
        # The other rows' rejections and notices stay; the order is a full staging's (rejections by id).
        all_rej = merged_rows(con, f"{table}_rejected", all_rej, replace_keys)
        all_rej = all_rej.sort("_close_id", "column", maintain_order=True)
        notes = merged_rows(con, f"{table}_notices", notes, replace_keys)
        staged = int(con.execute(f"SELECT count(*) FROM {SCHEMA}.{quote(table)}").fetchall()[0][0])
    warehouse_write(con, f"{table}_rejected", all_rej)
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


def current_result(con: duckdb.DuckDBPyConnection, table: str) -> StageResult:
    """The counts and previews of staged.<table> as it stands (an incremental staging with nothing to do)."""
    staged = int(con.execute(f"SELECT count(*) FROM {SCHEMA}.{quote(table)}").fetchall()[0][0])
    rejected = pl.DataFrame(schema={"_close_id": pl.String, "check_name": pl.String})
    if table_exists(con, SCHEMA, f"{table}_rejected"):
        rejected = fetch_polars(con, f"SELECT * FROM {SCHEMA}.{quote(table + '_rejected')}")
    notices = 0
    if table_exists(con, SCHEMA, f"{table}_notices"):
        notices = int(
            con.execute(f"SELECT count(*) FROM {SCHEMA}.{quote(table + '_notices')}").fetchall()[0][0]
        )
    excluded = pl.col("check_name").is_in(list(EXCLUSIONS))
    return StageResult(
        table,
        staged,
        rejected.filter(~excluded)["_close_id"].n_unique(),
        rejected.filter(excluded)["_close_id"].n_unique(),
        notices,
        rejected.head(PREVIEW_ROWS),
        fetch_polars(con, f"SELECT * FROM {SCHEMA}.{quote(table)} LIMIT 5"),
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


def fits_into(con: duckdb.DuckDBPyConnection, scratch: str, table: str) -> bool:
    """Every column of staged.<scratch> is a column of staged.<table> of the same type (so its rows can be
    inserted as they are, the others left NULL, as a merge BY NAME would leave them)."""
    if not table_exists(con, SCHEMA, table):
        return False

    def columns(name: str) -> set[tuple[str, str]]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?",
            [SCHEMA, name],
        ).fetchall()
        return {(str(c), str(t)) for c, t in rows}

    return columns(scratch) <= columns(table)


def register_keys(con: duckdb.DuckDBPyConnection, keys: Collection[str]) -> None:
    con.register("__replace_keys", pl.DataFrame({"id": sorted(keys)}, schema={"id": pl.String}).to_arrow())


def merged_rows(
    con: duckdb.DuckDBPyConnection, table: str, new: pl.DataFrame, keys: Collection[str]
) -> pl.DataFrame:
    """staged.<table>'s rows of the `_close_id`s not in `keys`, then `new` (an incremental staging)."""
    if not table_exists(con, SCHEMA, table):
        return new
    old = fetch_polars(con, f"SELECT * FROM {SCHEMA}.{quote(table)}")
    kept = old.filter(~pl.col("_close_id").is_in(pl.Series(sorted(keys), dtype=pl.String).implode()))
    if not kept.height:
        return new
    if not new.height:
        return kept
    return pl.concat([kept, new], how="diagonal_relaxed").select(new.columns)


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
