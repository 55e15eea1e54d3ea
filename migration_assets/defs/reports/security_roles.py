"""reports/security_roles: the security-role plan (audit/security_roles): each Close user's role, its
matched Dynamics user's current security roles and teams read from Dataverse, and a proposed role with the
reason, as Markdown (UI) and Markdown + CSV files in the run's audit folder. It reads Dataverse and writes
nothing: every assignment is the admin's."""

from dataclasses import asdict

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.audit.files import write_report
from migration_assets.audit.security_roles import (
    ACCESS_EXPAND,
    COLUMNS,
    build_plan,
    read_access,
    read_close,
    read_owner_map,
    render_markdown,
)
from migration_assets.defs.staged._common import OWNER_MAP_KEY
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

REPORT = "security_roles"


@dg.asset(
    key=dg.AssetKey(["reports", REPORT]),
    group_name="reports",
    deps=[dg.AssetKey(["close", "users"]), dg.AssetKey(["close", "roles"]), OWNER_MAP_KEY],
    pool="dataverse_api",
    description="The security-role plan, for admin review (nothing is assigned automatically): each Close user "
    "with its Close role and permissions, its matched Dynamics user's current security roles and teams, and "
    "the proposed Dynamics 365 Sales role with the reason.",
)
@reports_api_calls
def security_roles(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        users, roles, fields = read_close(con)
        owners = read_owner_map(con)
    matched = [
        str(o["systemuserid"])
        for o in owners.values()
        if o["systemuserid"] and o["status"] in ("matched", "override")
    ]
    client = dataverse.get_client()
    access = read_access(
        lambda sid: client.get("systemuser", sid, select=["fullname"], expand=ACCESS_EXPAND), matched
    )
    rows = build_plan(users, roles, owners, access, fields)
    unknown = [r.close_user for r in rows if r.close_role_kind == "unknown"]
    if unknown:
        context.log.warning(
            f"security-role plan: the Close role of {len(unknown)} users is unknown ({', '.join(unknown[:5])}"
            f"{', ...' if len(unknown) > 5 else ''}): "
            + (
                "close.roles is empty (Close refused GET /role/ to a non-admin API key); re-extract with an "
                "admin's key"
                if not roles
                else "their role ids are not in close.roles"
            )
        )
    unreadable = [r.close_user for r in rows if r.current_roles.startswith("not readable")]
    if unreadable:
        context.log.warning(
            f"security-role plan: Dataverse refused reading the roles of {len(unreadable)} users (see the report)"
        )
    md = render_markdown(rows, roles_readable=bool(roles))
    md_path, csv_path = write_report(context.run.run_id, REPORT, md, [asdict(r) for r in rows], COLUMNS)
    proposed: dict[str, int] = {}
    for r in rows:
        proposed[r.proposed_role] = proposed.get(r.proposed_role, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "plan": dg.MetadataValue.md(md),
            "report": str(md_path),
            "csv": str(csv_path),
            "users": len(rows),
            "roles_unknown": len(unknown),
            "proposed": dg.MetadataValue.json(proposed),
            "dagster/row_count": len(rows),
        }
    )
