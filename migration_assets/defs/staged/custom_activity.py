"""staged/custom_activity_<table>: one asset (and one blocking check) per Close custom activity type listed
in `mappings/custom_activities.yaml`.

Why generated from the mapping file: the set of types is data-dependent, but Dagster definitions should
be static. The reviewed mapping file is the contract (ids differ between orgs, so types are matched by
name), so the asset graph changes only when a human changes the mapping, and each type gets its own
check. Instances may hold values of fields deleted from the type in Close; the entry's `orphaned_values`
decides: `halt` (default: the type's check fails, its table is halted, the rows are listed, the other
types proceed; DESIGN §3, phase 3), `drop` (loaded without them, each value listed in
reports/<run_id>/orphaned_values_<table>.csv) or `column` (kept in a column per field the plan creates).
The staging itself is mapping/custom_activity_staging.py.
"""

import logging
from pathlib import Path
from typing import Any

import dagster as dg

from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    markdown,
    materialize_result,
    staged_key,
)
from migration_assets.mapping.config import DEFAULT_ROOT
from migration_assets.mapping.custom_activity_staging import (
    ActivityTypeMismatchError,
    stage_custom_activity,
)
from migration_assets.resources import env
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.custom_activity_plan import RoutedActivityType, load_types
from migration_assets.target.custom_activity_rules import saved_table_rules

log = logging.getLogger(__name__)
PLAN_KEY = dg.AssetKey(["schema", "plan"])


def mappings_root() -> Path:
    return Path(env.mappings_setting() or DEFAULT_ROOT)


def stage_type(
    warehouse: WarehouseResource,
    t: RoutedActivityType,
    dataverse: Any | None = None,
    run_id: str | None = None,
) -> dg.MaterializeResult:
    try:
        # In a delta run only the affected instances (the materialization says so, or why in full).
        staging = stage_custom_activity(warehouse, t, dataverse, run_id, incremental=True)
    except ActivityTypeMismatchError as exc:
        raise dg.Failure(str(exc)) from exc
    extra: dict[str, Any] = {
        "close_type_id": staging.close_type_id,
        "table": t.table,
        "columns": ", ".join(c.logical_name for c in staging.columns),
        "orphaned_values": t.orphaned_values,
        "orphaned_fields": ", ".join(staging.orphans),
        "instances_using_undefined_fields": staging.halted_instances,
    }
    if t.orphaned_values == "column":
        extra["orphaned_value_columns"] = ", ".join(
            f"{fid} -> {c.logical_name}" for fid, c in staging.kept.items()
        )
    if staging.dropped_file is not None:
        extra.update(
            # Of the instances staged in this run (in a delta run, the affected ones: those it loads).
            dropped_orphaned_values=staging.dropped.height,
            dropped_values_file=dg.MetadataValue.path(str(staging.dropped_file)),
            dropped_values=dg.MetadataValue.md(markdown(staging.dropped)),
        )
    return materialize_result(staging.result, extra)


def build(t: RoutedActivityType) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    name = f"custom_activity_{t.table}"

    @dg.asset(
        key=[GROUP, name],
        group_name=GROUP,
        deps=[
            close_key("custom_activities"),
            close_key("custom_activity_types"),
            PLAN_KEY,  # the columns and option values staging writes are the plan's
            staged_key("lead"),
            OWNER_MAP_KEY,
            TARGET_METADATA_KEY,
        ],
        description=f"Instances of the Close custom activity type '{t.name}' for the table {t.table}.",
    )
    @reports_api_calls
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.MaterializeResult:
        return stage_type(warehouse, t, dataverse, context.run.run_id)

    return _asset, target_check(name, lambda con, cfg: saved_table_rules(con, t))


def _build_all() -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    try:
        types = load_types(mappings_root())
    except (
        Exception
    ) as exc:  # a broken mapping file must not break every definition: mapping_confirmed reports it
        log.warning("custom activity assets not built: %s", exc)
        return [], []
    built = [build(t) for t in types]
    return [a for a, _ in built], [c for _, c in built]


CUSTOM_ACTIVITY_ASSETS, CUSTOM_ACTIVITY_CHECKS = _build_all()
