"""staged/phonecall: Close calls, completed after create (Made/Received), regarding the lead, user and
contact as parties; the recording becomes an annotation (staged/annotation)."""

import dagster as dg
import polars as pl

from migration_assets.defs.staged._activity import ActivitySource, activity_result, stage_activity
from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    staged_key,
)
from migration_assets.mapping.parties import PartyIndex, phonecall_parties
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


def _parties(src: pl.DataFrame, idx: PartyIndex) -> pl.Series:
    return phonecall_parties(src["direction"], src["user_id"], src["contact_id"], idx)


@dg.asset(
    key=[GROUP, "phonecall"],
    group_name=GROUP,
    deps=[close_key("calls"), staged_key("lead"), staged_key("contact"), OWNER_MAP_KEY, TARGET_METADATA_KEY],
    description="Phone calls regarding their lead, with parties; completed after create.",
)
@reports_api_calls
def phonecall(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    result, counts = stage_activity(
        warehouse,
        dataverse,
        "phonecall",
        [ActivitySource("call", ("direction", "user_id", "contact_id"), _parties)],
    )
    return activity_result(result, counts)


phonecall_target_valid = target_check("phonecall")
