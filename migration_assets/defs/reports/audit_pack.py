"""reports/audit_pack: the run's audit pack, `$CLOSE2D365_HOME/reports/<run_id>/` (audit/audit_pack): this
run's owner queue and oversize attachment list, then `index.html` linking every file the run wrote.

Why it has no upstream dependencies: a failed or halted step would skip every asset downstream of it, and
the pack must describe the run that failed too. The lowest priority of all runs it after every other step
of the run, the reports and the dry run's review included (the run's executor starts a step only once every
step of a higher priority has ended: step_threads.py).
"""

import dagster as dg
import duckdb

from migration_assets.audit.audit_pack import warehouse_phases, write_admin_lists, write_index
from migration_assets.audit.files import report_dir
from migration_assets.audit.reconciliation import last_migrate_run
from migration_assets.defs.reports.reconciliation import GROUP
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.resources.warehouse import WarehouseResource


def _phases(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection) -> list[dict[str, str]]:
    try:
        config = load_mapping_config()
    except MappingError as exc:  # the run's review or failed step reports it; the pack still lists the files
        context.log.warning(f"no chart of records per phase: {exc}")
        return []
    return warehouse_phases(con, config)


KEY = dg.AssetKey([GROUP, "audit_pack"])
LAST_OF_ALL = {"dagster/priority": "-1000"}  # after reports/dry_run_review (-100) and the reports (-10)


@dg.asset(
    key=KEY,
    group_name=GROUP,
    op_tags=LAST_OF_ALL,
    description="The run's audit pack in its own folder: its owner queue and oversize attachments, and "
    "index.html (summary, records per phase per table, links to every report of the run).",
)
def audit_pack(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    run_id = context.run.run_id
    with warehouse.connect() as con:
        # The loads this pack reports: this run's, or (a verify or dry run) the last migration's.
        written = write_admin_lists(con, run_id, last_migrate_run(con) or run_id)
        # Without this run's reconciliation (a dry run), the chart shows what the warehouse holds.
        reconciled = (report_dir(run_id) / "reconciliation.csv").is_file()
        phases = [] if reconciled else _phases(context, con)
    index, files = write_index(run_id, context.run.job_name, phases)
    return dg.MaterializeResult(
        metadata={
            "index": dg.MetadataValue.path(str(index)),
            "files": files,
            "admin_lists": dg.MetadataValue.md("\n".join(f"- {p}" for p in written)),
        }
    )
