"""reports/load_plan: the Dynamics gotchas made visible before anything is loaded.

- The edition's custom table limit (Sales Professional: 15 custom tables, reference §11) counted against
  the custom activity tables the mapping plans (plus any the target already has); a blocking check
  `custom_table_limit` fails when the plan exceeds it.
- The Power Platform request entitlement the planned load consumes (reference §5.2): every created row,
  state change, Win/Lose action and chunked-upload call, against the tenant pool of application users,
  and the service-protection time floor (6,000 requests / 5 min / user).
"""

import dagster as dg
import polars as pl

from migration_assets.defs.staged import custom_activity as _custom_activity
from migration_assets.defs.staged._common import markdown, staged_key
from migration_assets.lib.custom_activity_plan import load_types
from migration_assets.lib.load_estimate import TableLoad, custom_tables_used, estimate, upload_blocks
from migration_assets.lib.mapping_config import load_mapping_config
from migration_assets.lib.staging_source import table_exists
from migration_assets.resources.warehouse import WarehouseResource

GROUP = "reports"
TABLES = (
    "account",
    "contact",
    "lead",
    "opportunity",
    "phonecall",
    "email",
    "task",
    "appointment",
    "annotation",
)


class LoadPlanConfig(dg.Config):
    edition: str = "sales_professional"  # sales_professional | sales_enterprise | sales_premium
    existing_custom_tables: int = 0  # custom tables the target already uses (count them in the maker portal)
    licences: int = -1  # Dynamics 365 user licences in the tenant; -1: enabled users of the target
    app_users: int = 1  # application users the load spreads across


def _count(con: object, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])  # type: ignore[attr-defined]


@dg.asset(
    key=[GROUP, "load_plan"],
    group_name=GROUP,
    deps=[
        *(staged_key(t) for t in TABLES),
        *(a.key for a in _custom_activity.CUSTOM_ACTIVITY_ASSETS),
        staged_key("mapping"),
    ],
    description="Custom table limit of the edition and the request entitlement the planned load needs.",
)
def load_plan(
    context: dg.AssetExecutionContext, config: LoadPlanConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    types = load_types(cfg.root)
    planned_tables = len(types) + (0 if cfg.activities.sms_table == "task" else 1)
    loads = []
    with warehouse.connect() as con:
        staged = [t for t in TABLES if table_exists(con, "staged", t)]
        staged += [
            f"custom_activity_{t.table}"
            for t in types
            if table_exists(con, "staged", f"custom_activity_{t.table}")
        ]
        for t in staged:
            cols = {c[0] for c in con.execute(f'DESCRIBE staged."{t}"').fetchall()}
            rows = _count(con, f'SELECT count(*) FROM staged."{t}"')
            states = (
                _count(con, f'SELECT count(*) FROM staged."{t}" WHERE _statecode IS NOT NULL')
                if "_statecode" in cols
                else 0
            )
            actions = (
                _count(con, f'SELECT count(*) FROM staged."{t}" WHERE _close_action IS NOT NULL')
                if "_close_action" in cols
                else 0
            )
            sizes = [r[0] for r in con.execute(f'SELECT _file_size FROM staged."{t}" WHERE _file_size IS NOT NULL').fetchall()] \
                if "_file_size" in cols else []  # fmt: skip
            loads.append(TableLoad(t, rows, states, actions, upload_blocks(sizes)))
        licences = config.licences
        if licences < 0:
            licences = _count(con, "SELECT count(*) FROM staged.target_systemusers WHERE NOT isdisabled AND applicationid IS NULL") \
                if table_exists(con, "staged", "target_systemusers") else 0  # fmt: skip
    est = estimate(loads, licences, app_users=config.app_users)
    limit = custom_tables_used(planned_tables, config.existing_custom_tables, config.edition)
    per_table = pl.DataFrame([t.__dict__ for t in loads]) if loads else pl.DataFrame()
    if not limit["within_limit"]:
        context.log.warning(
            f"{limit['total']} custom tables exceed the {config.edition} limit of {limit['limit']}"
        )
    return dg.MaterializeResult(metadata={
        "edition": config.edition,
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
        "per_table": dg.MetadataValue.md(markdown(per_table, max_rows=50)),
    })  # fmt: skip


@dg.asset_check(
    asset=dg.AssetKey([GROUP, "load_plan"]),
    name="custom_table_limit",
    blocking=True,
    description="The planned custom tables fit the Dynamics 365 edition's custom table limit.",
)
def custom_table_limit(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(dg.AssetKey([GROUP, "load_plan"]))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    within = meta.get("custom_tables_within_limit")
    ok = bool(within.value) if within is not None else False
    total, limit = meta.get("custom_tables_total"), meta.get("custom_table_limit")
    return dg.AssetCheckResult(
        passed=ok,
        description=f"{total.value if total else '?'} custom tables for a limit of {limit.value if limit else '?'}"
        + (
            ""
            if ok
            else ": remove custom activity types from mappings/custom_activities.yaml, route SMS to task, "
            "or license Sales Enterprise"
        ),
    )
