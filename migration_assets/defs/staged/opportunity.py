"""staged/opportunity's hook: value in currency units, the lead's Account as customer, pipeline and status as
choice columns; won/lost deals carry `_close_action` (WinOpportunity/LoseOpportunity after create)."""

import polars as pl

from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.config import MappingConfig


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


HOOK = StagingHook(finish=closing, post=no_state_patch)
