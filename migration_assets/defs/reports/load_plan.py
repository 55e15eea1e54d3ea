"""schema/load_plan: the Dynamics gotchas made visible before anything is loaded.

It feeds the preflight (schema/preflight reads its figures), so it sits in the `schema` group: the lineage
reads close -> staged -> schema -> loaded -> reports, left to right.

- The edition's custom table limit (`target.edition` in mappings/settings.yaml; Sales Professional: 15
  custom tables, reference §11) against the custom activity tables the mapping plans, as figures. The
  blocking check is the preflight's (schema/preflight target_ready), which counts the target's real tables.
- The Power Platform request entitlement the planned load consumes (reference §5.2): every created row,
  state change, Win/Lose action and chunked-upload call, against the tenant pool of application users,
  and the service-protection time floor (6,000 requests / 5 min / user).
"""

import dagster as dg
import polars as pl

from migration_assets.defs.staged._common import TARGET_METADATA_KEY, markdown
from migration_assets.load.estimate import custom_tables_used, estimate
from migration_assets.load.planned_loads import enabled_licensed_users, load_sources, planned_loads
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.custom_activity_plan import load_types

GROUP = "schema"  # the step it feeds (schema/preflight); the module stays with the report it renders
# From the table registry (mappings/objects.yaml) in effect when the definitions are built.
SOURCES = load_sources(table_registry())


class LoadPlanConfig(dg.Config):
    existing_custom_tables: int = 0  # custom tables the target already uses (count them in the maker portal)
    licences: int = -1  # Dynamics 365 user licences in the tenant; -1: enabled users of the target
    app_users: int = 1  # application users the load spreads across


@dg.asset(
    key=[GROUP, "load_plan"],
    group_name=GROUP,
    deps=[
        *(dg.AssetKey(["close", t]) for ts, _ in SOURCES.values() for t in ts),
        dg.AssetKey(["close", "leads"]),
        dg.AssetKey(["close", "custom_activities"]),
        TARGET_METADATA_KEY,
    ],
    description="Custom tables against the edition's limit and the request entitlement the planned load needs "
    "(figures; schema/preflight blocks on them).",
)
def load_plan(
    context: dg.AssetExecutionContext, config: LoadPlanConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    types = load_types(cfg.root)
    planned_tables = len(types) + (0 if cfg.activities.sms_table == "task" else 1)
    with warehouse.connect() as con:
        loads = planned_loads(
            con, SOURCES, cfg.activities.sms_table == "task", cfg.activities.status_changes == "annotation"
        )
        licences = config.licences if config.licences >= 0 else enabled_licensed_users(con)
    est = estimate(loads, licences, app_users=config.app_users)
    edition = cfg.settings.edition
    limit = custom_tables_used(planned_tables, config.existing_custom_tables, edition)
    per_table = pl.DataFrame([t.__dict__ for t in loads])
    if not limit["within_limit"]:
        context.log.warning(f"{limit['total']} custom tables exceed the {edition} limit of {limit['limit']}")
    return dg.MaterializeResult(
        metadata={
            "edition": edition,
            "custom_tables_planned": planned_tables,
            "custom_tables_total": int(limit["total"]),  # type: ignore[call-overload]
            "custom_table_limit": str(limit["limit"] or "none"),
            "custom_tables_within_limit": bool(limit["within_limit"]),
            "entitlement_requests": est.entitlement_requests,
            "http_requests": est.http_requests,
            "daily_entitlement_pool": est.daily_pool,
            "days_of_entitlement": est.days,
            "min_minutes_service_protection": est.min_minutes_per_user,
            "licences_assumed": licences,
            "app_users": config.app_users,
            "per_table (upper bound from the Close data)": dg.MetadataValue.md(
                markdown(per_table, max_rows=50)
            ),
        }
    )
