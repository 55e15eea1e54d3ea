"""The target check every staged table gets: what was written to `staged.<table>` re-validated with the
Pandera schema built from the cached target metadata (it must be clean: nothing invalid may reach the
loader), and `staged.<table>_rejected` held against the table's threshold in `mappings/settings.yaml`.

Some failures are never covered by a threshold: a column that neither the target nor the schema plan has
(a custom activity instance using an undefined field halts its type).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.delta_staging import incremental_keys, register_ids
from migration_assets.mapping.staged_lookups import TargetLookup, known_binds
from migration_assets.mapping.staging import META_STATE
from migration_assets.mapping.targets import column_errors
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote, table_exists
from migration_assets.target.checks import BIND, EXCLUSIONS, BuiltSchema, build_schema, validate
from migration_assets.target.metadata_cache import SCHEMA, StagingError, cached_rules, entity_sets
from migration_assets.target.rules import TableRules

HARD_FAILURES = ("column_exists",)
RulesFor = Callable[..., TableRules]


@dataclass(frozen=True)
class StagedCheck:
    """The verdict on one staged table and the frames that explain it."""

    passed: bool
    reasons: list[str]
    staged_rows: int
    rejected_rows: int  # distinct rejected rows, exclusions not counted
    threshold: str
    rejected: pl.DataFrame  # the counted rejections
    excluded: pl.DataFrame  # listed for the admin, not errors
    by_check: pl.DataFrame  # rows per check and column
    still_bad: pl.DataFrame  # problems in the written table (a bug)
    notices: pl.DataFrame | None  # values truncated or nulled

    @property
    def description(self) -> str:
        return "; ".join(self.reasons) or (
            f"{self.staged_rows} rows valid, {self.rejected_rows} rejected (within threshold)"
        )


def revalidate(
    frame: pl.DataFrame,
    built: BuiltSchema,
    table: str,
    restaged: set[str] | None,
    known: Mapping[str, Collection[str]] | None = None,
) -> pl.DataFrame:
    """The problems of the written rows. After an incremental staging (`restaged`: the rows it wrote, validated
    against the same rules) the row-local checks (types, formats, lengths, options, required values, unknown
    columns, a lookup's shape) run on those rows only: the other rows passed them at an earlier staging. The
    cross-row check, that a lookup names a staged (or loaded) record, runs on every other row whose lookups
    are not all among the `known` binds (lookup column -> the binds the schema was built with; a column not
    given is checked on every row): a parent may have been rejected or removed since."""
    if restaged is None:
        return validate(frame, built, table)[1]
    is_new = pl.col("_close_id").is_in(pl.Series(sorted(restaged), dtype=pl.String).implode())
    _, local = validate(frame.filter(is_new), built, table)
    kept = frame.filter(~is_new)
    lookups = [c for c in kept.columns if c in built.schema.columns and c.endswith(BIND)]
    if known is not None and lookups:
        # A row whose every lookup is empty or a known bind passes the cross-row check (a known bind has
        # its table's shape): only the others go through Pandera again (all of a `large` table otherwise).
        unknown = [
            pl.col(c).is_not_null()
            & ~pl.col(c).cast(pl.String).is_in(pl.Series(list(known[c]), dtype=pl.String).implode())
            if c in known
            else pl.col(c).is_not_null()
            for c in lookups
        ]
        kept = kept.filter(pl.any_horizontal(unknown))
        if not kept.height:  # Pandera's fixed cost per table, for no row
            return local
    cross = BuiltSchema(built.schema.select_columns(lookups), [])
    _, resolved = validate(kept.select("_close_id", *lookups), cross, table)
    return pl.concat([local, resolved], how="vertical_relaxed")


def lookup_binds(
    rules: TableRules, columns: Sequence[str], binds: Mapping[str, set[str]]
) -> dict[str, set[str]]:
    """Lookup column -> every bind it may hold (its target tables' known binds, as build_schema checks them);
    a column whose targets are not all known is left out."""
    out = {}
    for c in columns:
        if c.endswith(BIND):
            targets = rules.lookup_targets(c[: -len(BIND)])
            if targets and all(t in binds for t in targets):
                out[c] = set().union(*(binds[t] for t in targets))
    return out


def read_staged(
    con: duckdb.DuckDBPyConnection, table: str, rules: TableRules, restaged: set[str] | None
) -> pl.DataFrame:
    """staged.<table> as `revalidate` needs it: every column of the rows the last staging wrote
    (`restaged`; all rows after a full staging), and of the others only what the checks still read (the
    Close id, the primary id a self-reference resolves to, the lookups); their other columns are null.
    After a delta that is a few hundred whole rows instead of the table (a `large` table is ~100 MB)."""
    if restaged is None:
        return fetch_polars(con, f"SELECT * FROM staged.{quote(table)}")
    columns = [r[0] for r in con.execute(f"DESCRIBE staged.{quote(table)}").fetchall()]
    narrow = [c for c in columns if c in ("_close_id", rules.primary_id) or c.endswith(BIND)]
    view = register_ids(con, "__restaged_rows", restaged)
    new = fetch_polars(con, f"SELECT * FROM staged.{quote(table)} WHERE _close_id IN (SELECT id FROM {view})")
    kept = fetch_polars(
        con,
        f"SELECT {', '.join(quote(c) for c in narrow)} FROM staged.{quote(table)} "
        f"WHERE _close_id IS NULL OR _close_id NOT IN (SELECT id FROM {view})",
    )
    con.unregister(view)
    return pl.concat([new, kept], how="diagonal_relaxed").select(columns)


def check_staged(
    warehouse: WarehouseResource,
    table: str,
    rules_for: RulesFor | None = None,
    target_lookup: TargetLookup | None = None,
) -> StagedCheck:
    cfg = load_mapping_config()
    with warehouse.connect() as con:
        for t in (table, f"{table}_rejected"):
            if not table_exists(con, SCHEMA, t):
                raise StagingError(f"staged.{t} is missing: materialize staged/{table} first")
        rejected = fetch_polars(con, f'SELECT * FROM staged."{table}_rejected"')
        notices = (
            fetch_polars(con, f'SELECT * FROM staged."{table}_notices"')
            if table_exists(con, SCHEMA, f"{table}_notices")
            else None
        )
        rules = rules_for(con, cfg) if rules_for else cached_rules(con, table, cfg)
        restaged = incremental_keys(con, table, rules)
        staged = read_staged(con, table, rules, restaged)
        back = {v: k for k, v in META_STATE.items() if v in staged.columns}
        frame = staged.rename(back)
        # The same knowledge staging had: a parent rejected in this run that is already in the target
        # (loaded by an earlier run) still resolves its children's lookups.
        binds = known_binds(con, frame, rules, entity_sets(con), target_lookup)
        built = build_schema(rules, frame.columns, binds, entity_sets(con))
        still_bad = revalidate(frame, built, table, restaged, lookup_binds(rules, frame.columns, binds))
    counted = rejected.filter(~pl.col("check_name").is_in(list(EXCLUSIONS)))
    n_rejected = counted["_close_id"].n_unique()
    total = staged.height + n_rejected
    threshold = cfg.settings.threshold(table)
    hard = counted.filter(pl.col("check_name").is_in(list(HARD_FAILURES)))
    # Staged values in a column the target or the plan no longer has (the metadata or the mapping changed
    # since staging) are the same mapping problem as a column rejected at staging, not a bug of staging.
    gone = still_bad.filter(pl.col("check_name").is_in(list(HARD_FAILURES)))
    still_bad = still_bad.filter(~pl.col("check_name").is_in(list(HARD_FAILURES)))
    # (A field map's target the target lacks is left out at staging and stops the run at the mapping_confirmed
    # gate, by file and line: no row of this table is rejected for it, so it does not fail here.)
    hard_columns = {*hard["column"].to_list(), *gone["column"].to_list()}
    within = threshold.allows(n_rejected, total)
    passed = still_bad.height == 0 and within and not hard_columns
    reasons = []
    if still_bad.height:
        reasons.append(f"{still_bad.height} problems in the written staged.{table} (a bug: please report)")
    # A field map writing such a column is named by file and line (the mapping_confirmed gate stops every
    # write on it); other columns are a custom activity type's fields (orphaned values, below).
    errors, others = column_errors(cfg.field_maps.values(), rules, hard_columns)
    reasons += [f"{e} (this table is halted)" for e in errors]
    if others:
        cols = ", ".join(others)
        reasons.append(f"columns not in the target nor the schema plan: {cols} (this table is halted)")
        if table.startswith("custom_activity_") and any(
            c.startswith("custom.") for c in hard["column"].to_list()
        ):
            reasons.append(
                "these are values of fields deleted from the type in Close: set its orphaned_values "
                "in mappings/custom_activities.yaml to drop or column to load it"
            )
    if not within:
        reasons.append(
            f"{n_rejected} of {total} rows rejected, above the threshold "
            f"(max_rows={threshold.max_rows}, max_fraction={threshold.max_fraction}): fix the rejected rows "
            f"(the run's rejected_*.csv), or raise rejection_thresholds.{table} (or .default) in "
            "mappings/settings.yaml"
        )
    by_check = (
        counted.group_by("check_name", "column")
        .agg(pl.col("_close_id").n_unique().alias("rows"))
        .sort("rows", descending=True)
    )
    return StagedCheck(
        passed=passed,
        reasons=reasons,
        staged_rows=staged.height,
        rejected_rows=n_rejected,
        threshold=f"max_rows={threshold.max_rows}, max_fraction={threshold.max_fraction}",
        rejected=counted,
        excluded=rejected.filter(pl.col("check_name").is_in(list(EXCLUSIONS))),
        by_check=by_check,
        still_bad=still_bad,
        notices=notices,
    )
