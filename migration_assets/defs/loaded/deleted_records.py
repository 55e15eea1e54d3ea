"""loaded/deleted_records: records earlier runs loaded whose Close source is gone (deleted in Close, or the
source lead of a merge) are deactivated or deleted per `mappings/settings.yaml` `delta.deleted_records`,
through the ledger so that a rollback of the run restores them (DESIGN §8; load/deletions.py plans,
load/deletion_apply.py writes).

It runs after every load of the run (deps on the registry's loads; custom activity loads are not deps, as
one halted type must not stop it, and its priority runs it after them): re-parenting after a merge comes
from the children's changed staged rows, which must land before their old parent is deactivated. Only the
`delta` job writes; in any other run it reports what a delta would do and writes nothing. In delete mode,
records whose staged row still binds to a record being deleted go first (Dataverse would cascade the delete
to them outside the ledger; a fresh migration would not load them).
"""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import GROUP, POOL, is_delta_run, loaded_key
from migration_assets.defs.loaded.tables import ORDER
from migration_assets.load.deletion_apply import DeletionApplier
from migration_assets.load.deletions import (
    DeletionPlan,
    add_cascaded_children,
    loaded_tables,
    plan_deletions,
)
from migration_assets.load.ledger import Ledger, run_kind
from migration_assets.mapping.config import load_mapping_config, mappings_root
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote, table_exists
from migration_assets.target.custom_activity_plan import load_types

KEY = loaded_key("deleted_records")
AFTER_LOADS = {"dagster/priority": "-5"}  # after the custom activity loads; before the reports (-10)
LISTED = 50  # rows of the kept/gone lists shown in the UI


class DeletedRecordsError(RuntimeError):
    """Some deactivations or deletions were refused by the target (each is in ledger.rejected)."""


def _plan_tables(plan: DeletionPlan) -> str:
    rows = [{"table": t, **c} for t, c in sorted(plan.counts().items())]
    return markdown_table(rows) if rows else "Nothing vanished from the staged tables."


def _kept(plan: DeletionPlan) -> str:
    rows = [
        {"table": c.table, "record id": c.record_id, "close id": c.close_id or "", "why kept": why}
        for c, why in plan.kept[:LISTED]
    ]
    return markdown_table(rows) if rows else "None."


@dg.asset(
    key=KEY,
    group_name=GROUP,
    deps=[loaded_key(t) for t in ORDER],
    pool=POOL,
    op_tags=AFTER_LOADS,
    description="Delta runs: records loaded earlier whose Close source was deleted (or merged away) are "
    "deactivated or deleted per delta.deleted_records, through the ledger; rows that only vanished from "
    "staging are listed, not touched. Other runs only report the plan.",
    kinds={"dataverse"},
)
@reports_api_calls
def deleted_records(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    config = load_mapping_config()
    mode = config.settings.deleted_records
    registry = table_registry()
    custom = [t.table for t in load_types(mappings_root())]
    tables = loaded_tables(registry, config.objects, custom)
    with warehouse.connect() as con:
        plan = plan_deletions(con, tables, registry)
        cascaded = add_cascaded_children(con, plan, tables, registry) if mode == "delete" else 0
        meta: dict[str, object] = {
            "mode": mode,
            "source_gone": len(plan.gone) - cascaded,
            "children_of_deleted": cascaded,
            "kept": len(plan.kept),
            "per_table": dg.MetadataValue.md(_plan_tables(plan)),
            "kept_rows": dg.MetadataValue.md(_kept(plan)),
            "not_checked": dg.MetadataValue.md("\n".join(f"- {s}" for s in plan.skipped) or "None."),
        }
        for line in plan.skipped:
            context.log.warning(f"not checked for deletions: {line}")
        if not is_delta_run(context):
            context.log.info(
                f"not a delta run: {len(plan.gone)} record(s) whose Close source is gone are left as they are "
                "(`close2d365 delta` applies delta.deleted_records to them)"
            )
            return dg.MaterializeResult(metadata={**meta, "applied": False, "dagster/row_count": 0})
        staged_columns = {
            t.table: list(fetch_polars(con, f"SELECT * FROM staged.{quote(t.staged)} LIMIT 0").columns)
            for t in tables
            if table_exists(con, "staged", t.staged)
        }
        ledger = Ledger(con, context.run.run_id, kind=run_kind(context.run.job_name))
        client = dataverse.get_client()
        report = DeletionApplier(client, ledger, mode, staged_columns, context.log.info).apply(plan)
        ledger.close_run("loaded", "last step: deleted records")
    context.log.info(report.render())
    meta.update(
        applied=True,
        deactivated=report.deactivated,
        deleted=report.deleted,
        already_inactive=report.already_inactive,
        already_gone=report.already_gone,
        failed=len(report.failed),
        written=dg.MetadataValue.md(
            markdown_table([{"table": t, **c} for t, c in sorted(report.per_table.items())]) or "None."
        ),
    )
    meta["dagster/row_count"] = report.deactivated + report.deleted
    if report.failed:
        raise dg.Failure(
            description=f"{len(report.failed)} deactivations/deletions refused: "
            + "; ".join(report.failed[:10]),
            metadata=meta,  # type: ignore[arg-type]
        )
    return dg.MaterializeResult(metadata=meta)  # type: ignore[arg-type]
