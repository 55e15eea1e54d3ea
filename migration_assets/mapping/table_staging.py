"""The generic staging of a registry table (mapping/tables.py): each of its objects.yaml entries read from
close/*, mapped by its field file (custom fields included), validated against the target's metadata and
written to staged.<table>; small per-table steps adapt it (the lead's contacts joined in before mapping, the
opportunity's closing columns after it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.custom_fields import with_custom_fields
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.mapping.staged_lookups import owner_context, target_lookup
from migration_assets.mapping.staging import StageResult, validate_and_write
from migration_assets.mapping.staging_source import lead_contacts
from migration_assets.mapping.tables import Table
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.metadata_cache import cached_rules, entity_sets


@dataclass(frozen=True)
class TableSteps:
    owners: bool = True  # its rows get owners from the owner map (a dependency on it)
    # Per object: the source frame before mapping (e.g. the lead's contacts joined in).
    prepare: Callable[[duckdb.DuckDBPyConnection, pl.DataFrame], pl.DataFrame] | None = None
    # The mapped frame before validation (e.g. the loader's `_close_*` columns of an opportunity).
    finish: Callable[[pl.DataFrame, MappingConfig], pl.DataFrame] | None = None
    # Each validated slice before it is written (see `validate_and_write`).
    post: Callable[[pl.DataFrame], pl.DataFrame] | None = None


def routed_objects(cfg: MappingConfig, table: Table) -> tuple[list[str], dict[str, str]]:
    """The table's objects that write to it in this mapping, and the others with the table they write to
    (activities.yaml may route the SMS elsewhere)."""
    here, elsewhere = [], {}
    for name in table.objects:
        target = cfg.object(name).table
        if target == table.name:
            here.append(name)
        else:
            elsewhere[name] = target
    return here, elsewhere


def stage_records(
    warehouse: WarehouseResource,
    dataverse: Any | None,
    cfg: MappingConfig,
    table: str,
    names: list[str],
    steps: TableSteps,
) -> StageResult:
    """Map each object `names` of `table` (custom fields included), validate the rows and write
    staged.<table>."""
    for name in names:
        cfg = with_custom_fields(cfg, name)
    frames, rejections, notices = [], [], []
    with warehouse.connect() as con:
        ctx = None
        for name in names:
            src = read_object_source(con, cfg, name)
            if steps.prepare is not None:
                src = steps.prepare(con, src)
            ctx = ctx or (owner_context(con, cfg) if steps.owners else cfg.context())
            mapped = map_object(src, cfg, name, ctx, entity_sets(con))
            frames.append(steps.finish(mapped.frame, cfg) if steps.finish is not None else mapped.frame)
            rejections.append(mapped.rejections)
            notices.append(mapped.notices)
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        return validate_and_write(
            warehouse,
            con,
            table,
            cached_rules(con, table, cfg),
            frame,
            rejections,
            notices,
            post=steps.post,
            target_lookup=target_lookup(dataverse),
        )


def with_contacts(con: duckdb.DuckDBPyConnection, src: pl.DataFrame) -> pl.DataFrame:
    """Close embeds contacts in the lead; the extraction keeps them in close.contacts."""
    return src.drop("contacts", strict=False).join(
        lead_contacts(con), left_on="id", right_on="lead_id", how="left"
    )


def closing_columns(frame: pl.DataFrame, date_lost_column: str) -> pl.DataFrame:
    """Won/lost deals are closed by action, not by state PATCH: `_close_*` tell the loader how."""
    state = pl.col("statecode")
    lost = pl.col(date_lost_column) if date_lost_column in frame.columns else pl.lit(None, dtype=pl.String)
    return frame.with_columns(
        pl.when(state == 1).then(pl.lit("win")).when(state == 2).then(pl.lit("lose")).alias("_close_action"),
        pl.when(state.is_in([1, 2])).then(pl.col("statuscode")).alias("_close_statuscode"),
        pl.when(state == 1)
        .then(pl.col("estimatedclosedate"))
        .when(state == 2)
        .then(lost)
        .alias("_close_date"),
        pl.when(state == 1).then(pl.col("estimatedvalue").cast(pl.Float64)).alias("_actual_revenue"),
        pl.col("estimatedvalue").cast(pl.Float64),
    )


def no_state_patch(frame: pl.DataFrame) -> pl.DataFrame:
    """Opportunities are closed through `_close_action`; a state PATCH would be rejected by Dataverse."""
    return frame.with_columns(
        pl.lit(None, dtype=pl.Int64).alias("_statecode"), pl.lit(None, dtype=pl.Int64).alias("_statuscode")
    )


def closing(frame: pl.DataFrame, cfg: MappingConfig) -> pl.DataFrame:
    return closing_columns(frame, f"{cfg.settings.publisher_prefix}_closedatelost")
