"""The `rollback` job: an op job over the ledger (no assets), the Dagster face of `load.rollback`.

No `from __future__ import annotations`: Dagster reads the `context` annotation at definition time.
"""

import dagster as dg

from migration_assets.load.rollback import RollbackError, rollback_runs
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


@dg.op(
    config_schema={
        "run_id": dg.Field(str, is_required=False),
        "all_runs": dg.Field(bool, default_value=False),
    },
    description="Undo migration runs: delete what they created, restore what they updated.",
)
def rollback_op(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> None:
    cfg = context.op_config
    client = dataverse.get_client()
    try:
        with warehouse.connect() as con:
            report = rollback_runs(
                con,
                client,
                cfg.get("run_id"),
                bool(cfg.get("all_runs")),
                context.run.run_id,
                context.log.info,
            )
    finally:
        client.close()
    context.log.info(report.render())
    if not report.ok:
        raise RollbackError(f"{len(report.failed)} rollback steps failed:\n" + "\n".join(report.failed[:20]))


@dg.job(
    name="rollback", description="Roll back a migration run (config: run_id) or every run (all_runs: true)."
)
def rollback_job() -> None:
    rollback_op()
