"""Staging of staged.account: one Account per distinct normalised lead name (accounts.yaml), the flagged
placeholder Account for leads without a name. When several leads share a name, the oldest (or newest) valid
lead gives the url/addresses and every merged lead id is kept in `<prefix>_closeleadids`."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.mapping.normalise import normalise_account_name
from migration_assets.mapping.staging import StageResult, validate_and_write
from migration_assets.resources.warehouse import WarehouseResource
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


def stage_accounts(warehouse: WarehouseResource) -> AccountStaging:
    """No owners (an Account is owned by whoever loads it), no lookup of records already in the target."""
    cfg = load_mapping_config()
    with warehouse.connect() as con:
        src = read_object_source(con, cfg, "account", extra=["name", "date_created"])
        mapped = map_object(src, cfg, "account", cfg.context(), entity_sets(con))
        frame, rej = dedupe_accounts(
            mapped.frame, mapped.rejections, src["name"], cfg.accounts.keep, cfg.accounts.merged_ids_column
        )
        rules = cached_rules(con, "account", cfg)
        result = validate_and_write(warehouse, con, "account", rules, frame, [rej], [mapped.notices])
    merged = frame.filter(pl.col(cfg.accounts.merged_ids_column).str.contains("; ")).height
    return AccountStaging(result, src.height, merged)
