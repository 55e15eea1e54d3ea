"""loaded/custom_activity_<table>: phase 3 of custom activities, one asset per type listed in
`mappings/custom_activities.yaml` (the same list that generates staged/custom_activity_<table>). A type
whose table or columns are not in the target halts with a message naming what is missing.
"""

import logging
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import GROUP, MAPPING, POOL, loaded_key, run_load, staged_key
from migration_assets.defs.schema.assets import COLUMNS_PHASE
from migration_assets.defs.staged._common import OWNER_MAP_KEY
from migration_assets.mapping.config import DEFAULT_ROOT
from migration_assets.mapping.tables import table_registry
from migration_assets.resources import env
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.custom_activity_plan import RoutedActivityType, load_types
from migration_assets.target.deploy import SchemaDeployError, load_plan, subset
from migration_assets.target.schema_planning import phase_two_gaps

log = logging.getLogger(__name__)


def _mappings_root() -> Path:
    return Path(env.mappings_setting() or DEFAULT_ROOT)


def build(t: RoutedActivityType) -> dg.AssetsDefinition:
    name = f"custom_activity_{t.table}"

    @dg.asset(
        key=loaded_key(name),
        group_name=GROUP,
        deps=[
            staged_key(name),
            COLUMNS_PHASE,
            OWNER_MAP_KEY,
            MAPPING,
            *(loaded_key(parent) for parent in table_registry().activity_parents),
        ],
        pool=POOL,
        description=f"Phase 3: rows of the Close custom activity type '{t.name}' in the table {t.table}.",
        kinds={"dataverse"},
    )
    @reports_api_calls
    def _asset(
        context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.MaterializeResult:
        client = dataverse.get_client()
        with warehouse.connect() as con:
            schema_plan = subset(load_plan(con), custom_tables=True)
            gaps = phase_two_gaps(client, schema_plan)
            if t.table not in gaps:
                raise SchemaDeployError(
                    f"{t.table} is not in the schema plan (phase 1: re-materialize schema/plan and "
                    "schema/custom_activity_tables after updating mappings/custom_activities.yaml)"
                )
            if gaps[t.table]:
                raise SchemaDeployError(f"custom activity type '{t.name}' cannot load: {gaps[t.table]}")
            stats, meta = run_load(context, con, client, t.table, staged_table=name)
        context.log.info(f"loaded/{name}: {stats.metadata()}")
        return dg.MaterializeResult(metadata=meta)

    return _asset


def _build_all() -> list[dg.AssetsDefinition]:
    try:
        types = load_types(_mappings_root())
    except Exception as exc:  # noqa: BLE001 - a broken mapping file must not break every definition
        log.warning("loaded custom activity assets not built: %s", exc)
        return []
    return [build(t) for t in types]


CUSTOM_ACTIVITY_LOADS = _build_all()
