"""staged/<table>: one asset and one blocking target check per table of the table registry
(mapping/tables.py, from mappings/objects.yaml), like loaded/tables.py.

Each asset depends on the close/* tables its objects read, the staged tables their lookups and parties
resolve against (objects.yaml stage_after), the owner map and the target metadata. A table is staged
generically (map, validate, write) unless a hook says otherwise; in a delta run (close/* extracted in delta
mode) only its affected rows are re-staged and merged (mapping/delta_staging.py; the materialization says
how, or why in full): account (dedupe by name), lead (its contacts), opportunity (closed by action),
annotation (several sources, files derived from activities); activity tables stage their
objects in slices, with their parties (mapping/activity_staging.py); the SMS may go to a custom table (task.py).
"""

import dagster as dg

from migration_assets.defs.staged import account, annotation, lead, opportunity
from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    counted_sources,
    materialize_result,
    staged_key,
)
from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.defs.staged.task import sms_defs
from migration_assets.mapping.activity_staging import ACTIVITY_SOURCES, ActivitySource, stage_activity
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.table_staging import DeltaInputs, routed_objects, stage_records
from migration_assets.mapping.tables import Table, table_registry
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

HOOKS: dict[str, StagingHook] = {
    "account": account.HOOK,
    "lead": lead.HOOK,
    "opportunity": opportunity.HOOK,
    "annotation": annotation.HOOK,
}
NO_HOOK = StagingHook()


def deps(table: Table, hook: StagingHook = NO_HOOK) -> list[dg.AssetKey]:
    close = dict.fromkeys((*table.sources, *table.joined, *hook.reads))
    return [
        *(close_key(s) for s in close),
        *(staged_key(t) for t in table.stage_after),
        *([OWNER_MAP_KEY] if hook.owners else []),
        TARGET_METADATA_KEY,
    ]


def delta_inputs(table: Table, hook: StagingHook = NO_HOOK) -> DeltaInputs:
    """What the table reads, so that a delta run re-stages only its affected rows (mapping/delta_staging.py)."""
    return DeltaInputs(
        reads=tuple(dict.fromkeys((*table.sources, *table.joined, *hook.reads))), parents=table.stage_after
    )


def routed_here(context: dg.AssetExecutionContext, cfg: MappingConfig, table: Table) -> list[str]:
    """The table's objects that write to it in this mapping (activities.yaml may route the SMS elsewhere)."""
    here, elsewhere = routed_objects(cfg, table)
    for name, target in elsewhere.items():
        context.log.info(f"{name} rows are routed to {target} (activities.yaml), not to {table.name}")
    return here


def build(table: Table) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    hook = HOOKS.get(table.name, NO_HOOK)

    @dg.asset(
        key=staged_key(table.name),
        group_name=GROUP,
        deps=deps(table, hook),
        description=table.staged_description,
    )
    @reports_api_calls
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.MaterializeResult:
        inputs = delta_inputs(table, hook)
        if hook.stage is not None:
            return hook.stage(context, warehouse, dataverse, inputs)
        cfg = load_mapping_config()
        names = routed_here(context, cfg, table)
        if table.is_activity:
            sources = [ACTIVITY_SOURCES.get(name, ActivitySource(name)) for name in names]
            return counted_sources(*stage_activity(warehouse, dataverse, table.name, sources, inputs=inputs))
        return materialize_result(stage_records(warehouse, dataverse, cfg, table.name, names, hook, inputs))

    return _asset, target_check(table.name)


_BUILT = [build(t) for t in table_registry().tables]  # the mappings root in effect at definition time
SMS_CUSTOM_ASSETS, SMS_CUSTOM_CHECKS = sms_defs()
STAGED_TABLES = [asset for asset, _ in _BUILT]
STAGED_CHECKS = [check for _, check in _BUILT]
