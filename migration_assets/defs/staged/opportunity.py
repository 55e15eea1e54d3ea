"""staged/opportunity: value in currency units, the lead's Account as customer, pipeline and status as
choice columns; won/lost deals carry `_close_action` (WinOpportunity/LoseOpportunity after create)."""

import dagster as dg
import polars as pl

from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    entity_sets,
    load_rules,
    materialize_result,
    owner_context,
    plan_columns,
    staged_key,
    target_lookup,
    validate_and_write,
)
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.custom_fields import with_custom_fields
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


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


@dg.asset(
    key=[GROUP, "opportunity"],
    group_name=GROUP,
    deps=[
        close_key("opportunities"),
        close_key("leads"),
        staged_key("account"),
        staged_key("contact"),
        OWNER_MAP_KEY,
        TARGET_METADATA_KEY,
    ],
    description="Opportunities, customer = the lead's Account; won/lost closed by action after create.",
)
@reports_api_calls
def opportunity(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    cfg = with_custom_fields(load_mapping_config(), "opportunity")
    with warehouse.connect() as con:
        src = read_object_source(con, cfg, "opportunity")
        mapped = map_object(src, cfg, "opportunity", owner_context(con, cfg), entity_sets(con))
        frame = closing_columns(mapped.frame, f"{cfg.settings.publisher_prefix}_closedatelost")
        rules = plan_columns(load_rules(con, "opportunity"), cfg)
        result = validate_and_write(
            warehouse,
            con,
            "opportunity",
            rules,
            frame,
            [mapped.rejections],
            [mapped.notices],
            post=no_state_patch,
            target_lookup=target_lookup(dataverse),
        )
    return materialize_result(result)


opportunity_target_valid = target_check("opportunity")
