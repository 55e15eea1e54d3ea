"""staged/email: Close emails, never sent: created, then completed as Sent/Received; from/to/cc/bcc as
activity parties (systemuser, contact, or the raw address)."""

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
from migration_assets.mapping.parties import PartyIndex, email_parties
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


def _parties(src: pl.DataFrame, idx: PartyIndex) -> pl.Series:
    return email_parties(src["envelope"], idx)


@dg.asset(
    key=[GROUP, "email"],
    group_name=GROUP,
    deps=[close_key("emails"), staged_key("lead"), staged_key("contact"), OWNER_MAP_KEY, TARGET_METADATA_KEY],
    description="Emails regarding their lead, parties resolved to users/contacts/addresses.",
)
@reports_api_calls
def email(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    result, counts = stage_activity(
        warehouse, dataverse, "email", [ActivitySource("email", ("envelope",), _parties)]
    )
    return activity_result(result, counts)


email_target_valid = target_check("email")
