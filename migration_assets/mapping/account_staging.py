"""Staging of staged.account: one Account per distinct normalised lead name (accounts.yaml), the flagged
placeholder Account for leads without a name. When several leads share a name, the oldest (or newest) valid
lead gives the url/addresses and every merged lead id is kept in `<prefix>_closeleadids`."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.delta_staging import (
    INDEX,
    SCHEMA,
    DeltaPlan,
    StatesBefore,
    index_groups,
    index_members,
    plan,
    record,
    register_ids,
    write_index,
)
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.mapping.normalise import normalise_account_name
from migration_assets.mapping.staging import StageResult, validate_and_write
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote
from migration_assets.target.metadata_cache import cached_rules, entity_sets

PLACEHOLDER_CLOSE_ID = "__placeholder__"


@dataclass(frozen=True)
class AccountStaging:
    result: StageResult
    leads_read: int
    accounts_with_merged_leads: int


def account_close_id(names: pl.Series) -> pl.Series:
    """The staged `_close_id` of an Account: its normalised name (placeholder key for unnamed leads)."""
    return pl.Series(
        "_close_id",
        [normalise_account_name(n) or PLACEHOLDER_CLOSE_ID for n in names.to_list()],
        dtype=pl.String,
    )


def dedupe_accounts(
    frame: pl.DataFrame, rejections: pl.DataFrame, names: pl.Series, keep: str, merged_column: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per accountid: valid leads first, then oldest/newest; rejections re-keyed to the Account."""
    bad = rejections["_close_id"].unique().implode()
    rows = frame.with_columns(
        pl.col("_close_id").alias("__lead"),
        account_close_id(names),
        pl.col("_close_id").is_in(bad).alias("__bad"),
    )
    ordered = rows.sort(
        ["__bad", "overriddencreatedon"], descending=[False, keep == "newest"], nulls_last=True
    )
    merged = (
        rows.sort("overriddencreatedon", nulls_last=True)
        .group_by("accountid", maintain_order=True)
        .agg(pl.col("__lead").str.join("; ").alias(merged_column))
    )
    kept = ordered.unique(subset="accountid", keep="first", maintain_order=True).drop(
        merged_column, strict=False
    )
    kept = kept.join(merged, on="accountid", how="left")
    lead_to_account = kept.filter(pl.col("__bad")).select("__lead", "_close_id")
    rej = rejections.join(lead_to_account, left_on="_close_id", right_on="__lead", how="inner")
    rej = rej.drop("_close_id").rename({"_close_id_right": "_close_id"}).select(rejections.columns)
    return kept.drop("__lead", "__bad"), rej


def stage_accounts(warehouse: WarehouseResource, incremental: bool = False) -> AccountStaging:
    """No owners (an Account is owned by whoever loads it), no lookup of records already in the target.

    incremental: when close.leads was extracted in delta mode, re-stage only the Accounts of the changed
    leads' names, old (the index of the last staging) and new, from every lead of those names."""
    cfg = load_mapping_config()
    with warehouse.connect() as con:
        rules = cached_rules(con, "account", cfg)
        delta = plan(con, "account", ("leads",), (), False, rules) if incremental else None
        keys, members = account_scope(con, delta)
        where = None
        if members is not None:
            where = f"CAST(id AS VARCHAR) IN (SELECT id FROM {register_ids(con, '__account_leads', members)})"
        src = read_object_source(con, cfg, "account", extra=["name", "date_created"], where=where)
        mapped = map_object(src, cfg, "account", cfg.context(), entity_sets(con))
        frame, rej = dedupe_accounts(
            mapped.frame, mapped.rejections, src["name"], cfg.accounts.keep, cfg.accounts.merged_ids_column
        )
        states = StatesBefore.take(con, "account", keys, rules.primary_id) if keys else None
        result = validate_and_write(
            warehouse, con, "account", rules, frame, [rej], [mapped.notices], replace_keys=keys
        )
        merged = frame.filter(pl.col(cfg.accounts.merged_ids_column).str.contains("; ")).height
        if keys is not None:  # the Accounts of the whole table, not only the re-staged ones
            merged = merged_accounts(con, cfg.accounts.merged_ids_column)
        leads_read = src.height
        if delta is not None:
            leads_read = con.execute("SELECT count(*) FROM close.leads").fetchall()[0][0]
            record(con, delta, restaged_groups(keys, changed_members(con, keys, members, states)), keys)
            write_index(con, "account", "leads", account_groups(con))
            result = result.planned(delta.full_reason, None if keys is None else len(keys))
    return AccountStaging(result, int(leads_read), int(merged))


def merged_accounts(con: duckdb.DuckDBPyConnection, column: str) -> int:
    cols = {r[0] for r in con.execute("DESCRIBE staged.account").fetchall()}
    if column not in cols:
        return 0
    return int(
        con.execute(f"SELECT count(*) FROM staged.account WHERE contains({quote(column)}, '; ')").fetchall()[
            0
        ][0]
    )


def account_groups(con: duckdb.DuckDBPyConnection, ids: set[str] | None = None) -> pl.DataFrame:
    """id, group_key: each lead (of `ids`, else every lead) with its Account's `_close_id` (normalised name)."""
    where = ""
    if ids is not None:
        where = f" WHERE CAST(id AS VARCHAR) IN (SELECT id FROM {register_ids(con, '__group_ids', ids)})"
    leads = fetch_polars(con, f"SELECT CAST(id AS VARCHAR) AS id, name FROM close.leads{where}")
    return leads.select("id", account_close_id(leads["name"]).alias("group_key"))


def account_scope(
    con: duckdb.DuckDBPyConnection, delta: DeltaPlan | None
) -> tuple[set[str] | None, set[str] | None]:
    """(Account keys to re-stage, the leads to read for them); (None, None): every Account."""
    if delta is None or not delta.incremental:
        return None, None
    changed = delta.changed.get("leads", set())
    keys = index_groups(con, "account", "leads", changed)
    keys |= set(account_groups(con, changed)["group_key"].to_list()) if changed else set()
    return keys, index_members(con, "account", keys) | changed


def changed_members(
    con: duckdb.DuckDBPyConnection,
    keys: set[str] | None,
    members: set[str] | None,
    states_before: StatesBefore | None,
) -> set[str] | None:
    """The leads `members` of the re-staged Accounts `keys` whose Account (the one of their name at the last
    staging, from the index, or now) changed in what the tables staged after read of it (whether it is
    staged, under which id, or rejected: delta_staging.StatesBefore): a lead re-read with its name unchanged
    leaves its Account as it was, and those tables need not re-stage its rows for it. Run before the index
    is rewritten."""
    if keys is None or members is None or states_before is None:
        return members
    changed = states_before.changed(con, keys)
    if not changed or not members:
        return set()
    view = register_ids(con, "__member_ids", members)
    before = fetch_polars(
        con,
        f"SELECT id, group_key FROM {SCHEMA}.{INDEX} WHERE table_name = 'account' AND source = 'leads' "
        f"AND id IN (SELECT id FROM {view})",
    )
    pairs = pl.concat([before, account_groups(con, members)], how="vertical_relaxed")
    return set(pairs.filter(pl.col("group_key").is_in(sorted(changed)))["id"].to_list())


def restaged_groups(keys: set[str] | None, members: set[str] | None) -> pl.DataFrame | None:
    """The re-staged Accounts with every lead they had or have (the tables staged after take those leads)."""
    if keys is None or members is None:
        return None
    return pl.DataFrame(
        {"close_id": [None] * len(members), "lead_id": sorted(members), "ref": [None] * len(members)},
        schema={"close_id": pl.String, "lead_id": pl.String, "ref": pl.String},
    )
