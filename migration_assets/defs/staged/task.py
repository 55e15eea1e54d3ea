"""staged/task: Close tasks (due date, completion, assignee as owner) and, by default, Close SMS as
completed tasks (activities.yaml `sms.table: task`)."""

import dagster as dg

from migration_assets.defs.staged._activity import ActivitySource, activity_result, stage_activity
from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    StagingError,
    close_key,
    staged_key,
)
from migration_assets.lib.mapping_config import load_mapping_config
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


@dg.asset(
    key=[GROUP, "task"],
    group_name=GROUP,
    deps=[close_key("tasks"), close_key("sms"), staged_key("lead"), OWNER_MAP_KEY, TARGET_METADATA_KEY],
    description="Tasks from Close tasks and (by default) Close SMS, regarding their lead.",
)
def task(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    sources = [ActivitySource("task")]
    if cfg.activities.sms_table == "task":
        sources.append(ActivitySource("sms"))
    else:
        raise StagingError(
            f"activities.yaml routes SMS to the custom table {cfg.activities.sms_table!r}; staging SMS into a "
            "custom activity table is not supported yet: set `sms: {table: task}`"
        )
    result, counts = stage_activity(warehouse, dataverse, "task", sources)
    return activity_result(result, counts)


task_target_valid = target_check("task")
