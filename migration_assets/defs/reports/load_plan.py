"""reports/load_plan: the Dynamics gotchas made visible before anything is loaded.

- The edition's custom table limit (Sales Professional: 15 custom tables, reference §11) counted against
  the custom activity tables the mapping plans (plus any the target already has); a blocking check
  `custom_table_limit` fails when the plan exceeds it.
- The Power Platform request entitlement the planned load consumes (reference §5.2): every created row,
  state change, Win/Lose action and chunked-upload call, against the tenant pool of application users,
  and the service-protection time floor (6,000 requests / 5 min / user).
"""

from typing import Any

import dagster as dg
import polars as pl

from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import TARGET_METADATA_KEY, markdown
from migration_assets.lib.custom_activity_plan import load_types
from migration_assets.lib.load_estimate import TableLoad, custom_tables_used, estimate, upload_blocks
from migration_assets.lib.mapping_config import load_mapping_config
from migration_assets.lib.staging_source import table_exists
from migration_assets.resources.warehouse import WarehouseResource

GROUP = "reports"
# Dataverse table -> (close tables whose rows it receives, every row also costs a state change after create)
SOURCES: dict[str, tuple[tuple[str, ...], bool]] = {
    "contact": (("contacts",), False), "lead": (("leads",), True), "opportunity": (("opportunities",), False),
    "phonecall": (("calls",), True), "email": (("emails",), True), "task": (("tasks", "sms"), True),
    "appointment": (("meetings",), True), "annotation": (("notes", "status_changes", "attachments", "call_recordings"), False),
}  # fmt: skip


class LoadPlanConfig(dg.Config):
    edition: str = "sales_professional"  # sales_professional | sales_enterprise | sales_premium
    existing_custom_tables: int = 0  # custom tables the target already uses (count them in the maker portal)
    licences: int = -1  # Dynamics 365 user licences in the tenant; -1: enabled users of the target
    app_users: int = 1  # application users the load spreads across


def _count(con: Any, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def planned_loads(con: Any, sms_to_task: bool, status_changes: bool) -> list[TableLoad]:
    """Upper bound of the load from the extracted Close data (rows rejected in staging only lower it),
    so the figures are there even while staging checks still fail."""

    def rows(table: str) -> int:
        return (
            _count(con, f'SELECT count(*) FROM close."{table}"') if table_exists(con, "close", table) else 0
        )

    loads = [TableLoad("account", _count(con, "SELECT count(DISTINCT lower(trim(coalesce(name, '')))) FROM close.leads")
                       if table_exists(con, "close", "leads") else 0)]  # fmt: skip
    for target, (tables, state) in SOURCES.items():
        used = [
            t for t in tables if (t != "sms" or sms_to_task) and (t != "status_changes" or status_changes)
        ]
        n = sum(rows(t) for t in used)
        actions = (_count(con, "SELECT count(*) FROM close.opportunities WHERE status_type IN ('won', 'lost')")
                   if target == "opportunity" and table_exists(con, "close", "opportunities") else 0)  # fmt: skip
        sizes = ([r[0] for r in con.execute("SELECT size FROM close.attachments WHERE size IS NOT NULL").fetchall()]
                 if target == "annotation" and table_exists(con, "close", "attachments") else [])  # fmt: skip
        loads.append(TableLoad(target, n, n if state else 0, actions, upload_blocks(sizes)))
    if table_exists(con, "close", "custom_activities"):
        loads.append(TableLoad("custom activities", rows("custom_activities"), rows("custom_activities")))
    return loads


@dg.asset(
    key=[GROUP, "load_plan"],
    group_name=GROUP,
    deps=[
        *(dg.AssetKey(["close", t]) for ts, _ in SOURCES.values() for t in ts),
        dg.AssetKey(["close", "leads"]),
        dg.AssetKey(["close", "custom_activities"]),
        TARGET_METADATA_KEY,
    ],  # fmt: skip
    description="Custom table limit of the edition and the request entitlement the planned load needs.",
)
def load_plan(
    context: dg.AssetExecutionContext, config: LoadPlanConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    types = load_types(cfg.root)
    planned_tables = len(types) + (0 if cfg.activities.sms_table == "task" else 1)
    with warehouse.connect() as con:
        loads = planned_loads(
            con, cfg.activities.sms_table == "task", cfg.activities.status_changes == "annotation"
        )
        licences = config.licences
        if licences < 0:
            licences = (
                _count(
                    con,
                    "SELECT count(*) FROM staged.target_systemusers WHERE NOT isdisabled AND applicationid IS NULL",
                )
                if table_exists(con, "staged", "target_systemusers")
                else 0
            )
    est = estimate(loads, licences, app_users=config.app_users)
    limit = custom_tables_used(planned_tables, config.existing_custom_tables, config.edition)
    per_table = pl.DataFrame([t.__dict__ for t in loads])
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
        "per_table (upper bound from the Close data)": dg.MetadataValue.md(markdown(per_table, max_rows=50)),
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
        severity=gate_severity(context),  # WARN in the dry run: the review lists it with the rest
        description=f"{total.value if total else '?'} custom tables for a limit of {limit.value if limit else '?'}"
        + (
            ""
            if ok
            else ": remove custom activity types from mappings/custom_activities.yaml, route SMS to task, "
            "or license Sales Enterprise"
        ),
    )
