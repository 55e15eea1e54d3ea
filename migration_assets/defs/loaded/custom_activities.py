"""loaded/custom_activities: phase 3 of custom activities. Every Close Custom Activity type's rows
(`staged.custom_activity_<table>`) go to its custom activity table. A type whose table or columns are not
in the target is halted with a message naming what is missing; the other types still load.
"""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import (
    GROUP,
    MAPPING,
    OWNER_MAP,
    POOL,
    loaded_key,
    run_load,
    table_exists,
)
from migration_assets.defs.schema._deploy import load_plan, subset
from migration_assets.defs.schema.assets import COLUMNS_PHASE, phase_two_gaps
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


class CustomActivityLoadError(RuntimeError):
    """Some custom activity types could not be loaded; the message lists them and why."""


@dg.asset(
    key=loaded_key("custom_activities"),
    group_name=GROUP,
    deps=[
        COLUMNS_PHASE,
        OWNER_MAP,
        MAPPING,
        loaded_key("lead"),
        loaded_key("contact"),
        loaded_key("opportunity"),
    ],
    pool=POOL,
    description="Phase 3 of custom activities: rows of every Close Custom Activity type in its custom activity table.",
    kinds={"dataverse"},
)
def custom_activities(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    client = dataverse.get_client()
    metadata: dict[str, object] = {}
    halted: list[str] = []
    total = 0
    with warehouse.connect() as con:
        schema_plan = subset(load_plan(con), custom_tables=True)
        gaps = phase_two_gaps(client, schema_plan)
        for t in schema_plan.tables:
            staged = f"custom_activity_{t.logical_name}"
            if gaps[t.logical_name]:
                halted.append(f"{t.display_name} ({t.logical_name}): {gaps[t.logical_name]}")
                continue
            if not table_exists(con, "staged", staged):
                halted.append(
                    f"{t.display_name} ({t.logical_name}): staged.{staged} is missing (materialize staged/{staged})"
                )
                continue
            stats, meta = run_load(context, con, client, t.logical_name, staged_table=staged)
            total += stats.loaded
            for k in ("created", "updated", "unchanged", "rejected", "retried", "records_per_second"):
                metadata[f"{t.logical_name}.{k}"] = meta[k]
    metadata["dagster/row_count"] = total
    if halted:
        raise CustomActivityLoadError("custom activity types not loaded:\n- " + "\n- ".join(halted))
    return dg.MaterializeResult(metadata=metadata)
