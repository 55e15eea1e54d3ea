"""reports/spot_check: sampled records read back from Dataverse and compared with Close, the source
(audit/spot_check). The asset's check `matches_close` fails on any mismatch.
"""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.audit import spot_compare as sc
from migration_assets.audit.files import write_csv, write_report
from migration_assets.audit.spot_check import COLUMNS, SAMPLE, render, run_spot_check
from migration_assets.defs.reports.reconciliation import AFTER_LOADS, GROUP, LOADED
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource

KEY = dg.AssetKey([GROUP, "spot_check"])
CHECK = "matches_close"


@dg.asset(
    key=KEY,
    group_name=GROUP,
    deps=LOADED,
    op_tags=AFTER_LOADS,
    pool="dataverse_api",
    check_specs=[
        # Blocking: a difference fails the step, so the run (and `close2d365 run`) reports it as failed.
        dg.AssetCheckSpec(
            CHECK, asset=KEY, blocking=True, description="Every sampled value equals its Close value."
        )
    ],
    description=f"Up to {SAMPLE} records per table read back from Dataverse (formatted values) and compared "
    "column by column with the same records read from Close.",
)
@reports_api_calls
def spot_check(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
    close: CloseResource,
) -> dg.MaterializeResult:
    api = None if close.source == "file" else close.get_client()
    with warehouse.connect() as con:
        sampled, rows, source = run_spot_check(con, dataverse.get_client(), api, context.run.run_id)
    md = render(sampled, rows, source)
    kept = [r for r in rows if r["status"] != sc.MATCH]
    md_path, csv_path = write_report(context.run.run_id, "spot_check", md, kept, COLUMNS)
    # The sample (seeded by the run id) as a CSV only: spot_check.md already gives its size per table.
    ids = [{"table": t, "close_id": i} for t, lst in sampled.items() for i in lst]
    ids_path = write_csv(context.run.run_id, "spot_check_sampled", ids, ["table", "close_id"])
    bad = [r for r in rows if r["status"] == sc.MISMATCH]
    return dg.MaterializeResult(
        metadata={
            "spot_check": dg.MetadataValue.md(md),
            "report": str(md_path),
            "csv": str(csv_path),
            "sampled_ids": dg.MetadataValue.json(sampled),
            "sampled_csv": str(ids_path),
            "close_source": source,
            "mismatches": len(bad),
            "compared": sum(1 for r in rows if r["status"] != sc.NOT_COMPARED),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK,
                passed=not bad,
                description=(
                    f"{len(bad)} values differ from Close (see {csv_path})"
                    if bad
                    else "every compared value equals its Close value"
                ),
                metadata={
                    "mismatches": len(bad),
                    "first": dg.MetadataValue.md(markdown_table(bad[:20], COLUMNS)),
                },
            )
        ],
    )
