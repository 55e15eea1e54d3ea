"""The SMS routing of staged/task. Close tasks (due date, completion, assignee as owner) and, by default,
Close SMS are staged as tasks (activities.yaml `sms.table: task`; defs/staged/tables.py). With
`sms.table: custom` the SMS go to their own custom activity table instead: staged/custom_activity_<prefix>_sms
(created by schema/* like the other custom activity tables), an asset that exists only with that routing, so
the definitions follow the reviewed mapping.
"""

import logging

import dagster as dg

from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    counted_sources,
    staged_key,
)
from migration_assets.mapping.activity_staging import ActivitySource, stage_activity
from migration_assets.mapping.config import load_activities
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.custom_activity_rules import sms_rules

log = logging.getLogger(__name__)


def build_sms_custom(table: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    staged = f"custom_activity_{table}"

    @dg.asset(
        key=[GROUP, staged],
        group_name=GROUP,
        deps=[close_key("sms"), staged_key("lead"), OWNER_MAP_KEY, TARGET_METADATA_KEY],
        description=f"Close SMS as rows of the custom activity table {table} (activities.yaml sms.table: custom).",
    )
    @reports_api_calls
    def _sms(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.MaterializeResult:
        result, counts = stage_activity(
            warehouse, dataverse, table, [ActivitySource("sms")], rules_for=sms_rules, staged_table=staged
        )
        return counted_sources(result, counts)

    return _sms, target_check(staged, sms_rules)


def sms_defs() -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    try:
        activities = load_activities()  # only the routing: the org's files may not be proposed yet
    except Exception as exc:  # a broken mapping must not break every definition; staging reports it
        log.warning("SMS custom activity asset not built: %s", exc)
        return [], []
    if activities.sms_table == "task":
        return [], []
    asset, check = build_sms_custom(activities.sms_table)
    return [asset], [check]
