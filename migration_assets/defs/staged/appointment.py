"""staged/appointment: Close meetings (saved without sending invites), organizer and attendees as parties."""

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
from migration_assets.mapping.parties import PartyIndex, appointment_parties
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


def _parties(src: pl.DataFrame, idx: PartyIndex) -> pl.Series:
    return appointment_parties(src["attendees"], idx)


@dg.asset(
    key=[GROUP, "appointment"],
    group_name=GROUP,
    deps=[
        close_key("meetings"),
        staged_key("lead"),
        staged_key("contact"),
        OWNER_MAP_KEY,
        TARGET_METADATA_KEY,
    ],
    description="Appointments from Close meetings, regarding their lead, attendees as parties.",
)
@reports_api_calls
def appointment(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    result, counts = stage_activity(
        warehouse, dataverse, "appointment", [ActivitySource("meeting", ("attendees",), _parties)]
    )
    return activity_result(result, counts)


appointment_target_valid = target_check("appointment")
