"""reports/reconciliation: per table, what Close held, what was staged, rejected, loaded and read back from
Dataverse, and an honest status (contract F): `ok`, `partial (N rejected, see <file>)` or
`halted (<reason>)` -- the halting check or step of THIS run, or a load that did not run. The figures are
computed in audit/reconciliation; this module reads the run's events and writes the report: per table
(`reconciliation.md/.csv`), every Close object per source by its fate (`reconciliation_by_source.csv`:
loaded + rejected + merged + halted + skipped = Close objects, audit/accounting), the Accounts that stand for
several leads (`merged_accounts.csv`) and the rejected rows with their reasons (`rejected_<table>.csv`).

The report that compares with Close, the source, is reports/spot_check."""

from typing import Any

import dagster as dg
from dagster import AssetExecutionContext, DagsterEventType

from migration_assets.audit.accounting import MERGE_COLUMNS, SOURCE_COLUMNS
from migration_assets.audit.files import write_csv, write_report
from migration_assets.audit.reconciliation import RECON_COLUMNS, REJECTED_COLUMNS, reconcile
from migration_assets.defs.loaded._common import loaded_key
from migration_assets.defs.loaded.tables import ORDER
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource

GROUP = "reports"
# Custom activity loads are not deps: one halted type (its phase check failed) must not hide the
# reconciliation of everything else. A low priority runs the reports after them in the same run (the
# run's executor starts a step only once every step of a higher priority has ended: step_threads.py).
LOADED = [loaded_key(t) for t in ORDER]
AFTER_LOADS = {"dagster/priority": "-10"}


def run_halts(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Asset key (`staged/contact`) -> why it halted in this run: a failed blocking check (its name and
    description), a failed step, or a planned materialization that did not happen."""
    types = {
        DagsterEventType.ASSET_CHECK_EVALUATION,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    }
    halts: dict[str, str] = {}
    planned: set[str] = set()
    done: set[str] = set()
    first_failure = ""
    for record in instance.all_logs(run_id, of_type=types):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.asset_check_evaluation_data
            # A failed check halts only at severity ERROR (a dry run records WARN and goes on).
            if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
                key = data.asset_key.to_user_string()
                why = f"check {data.check_name} failed: {data.description or 'see the check in the UI'}"
                halts.setdefault(key, why)
                first_failure = first_failure or f"{key} {why}"
        elif event.event_type == DagsterEventType.STEP_FAILURE and event.step_key:
            error = event.step_failure_data.error if event.step_failure_data else None
            message = error.message.strip().splitlines()[0] if error and error.message else "failed"
            key = event.step_key.replace("__", "/", 1)
            halts.setdefault(key, f"step failed: {message}")
            first_failure = first_failure or f"{key}: {message}"
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED and event.asset_key:
            planned.add(event.asset_key.to_user_string())
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION and event.asset_key:
            done.add(event.asset_key.to_user_string())
    for key in sorted(planned - done):
        if key.startswith("loaded/") and key not in halts:
            halts[key] = f"{key} did not run" + (
                f"; the run halted at {first_failure}" if first_failure else ""
            )
    return halts


def _cell(value: Any) -> str | int:
    text = "" if value is None else str(value)
    return int(text) if text.lstrip("-").isdigit() else text


def per_table(rows: list[dict[str, Any]]) -> dg.TableMetadataValue:
    """The reconciliation as a table the UI draws in the asset's metadata (numbers as numbers)."""
    types = {c: "string" if c in ("table", "status") else "int" for c in RECON_COLUMNS}
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: _cell(r.get(c)) for c in RECON_COLUMNS}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types[c]) for c in RECON_COLUMNS]),
    )


def render(rows: list[dict[str, Any]], sources: list[dict[str, Any]], merges: list[dict[str, Any]]) -> str:
    """The reconciliation as Markdown: per table, then every Close object per source by its fate."""
    leads = sum(int(m["leads"]) for m in merges)
    return (
        "# Reconciliation\n\n"
        + markdown_table(rows, RECON_COLUMNS)
        + "\n\n## Every Close object by source\n\nloaded + rejected + merged + halted + skipped = "
        "close_objects (`unaccounted`: none of these). Rejected rows and their reasons: rejected_<table>.csv; "
        "skipped files: oversize_attachments.csv.\n\n"
        + markdown_table(sources, SOURCE_COLUMNS)
        + f"\n\n## Leads merged into one Account\n\n{len(merges)} Accounts stand for {leads} leads that "
        "share a normalised name (accounts.yaml); each counts once as the Account, its other leads as merged. "
        "Every one: merged_accounts.csv.\n\n"
        + markdown_table(merges, MERGE_COLUMNS, max_rows=20, count_more=True)
    )


@dg.asset(
    key=dg.AssetKey([GROUP, "reconciliation"]),
    group_name=GROUP,
    op_tags=AFTER_LOADS,
    pool="dataverse_api",
    description="Per table: Close objects, staged, rejected at staging, excluded, merged, loaded, rejected at "
    "load, read back from Dataverse, and the status: ok, partial (N rejected, see <file>) or halted (<reason>); "
    "every Close object per source by its fate (loaded, rejected, merged, halted, skipped).",
)
@reports_api_calls
def reconciliation(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    # No deps on loaded/*: a failed load would skip this step, and the failure is what it must report.
    # Its priority (AFTER_LOADS) runs it after every load of the run; the dry run leaves it out (jobs.py).
    config = load_mapping_config()
    run_id = context.run.run_id
    halts = run_halts(context.instance, run_id)

    def rejected_file(table: str, rows: list[dict[str, Any]]) -> str:
        _, path = write_report(run_id, f"rejected_{table}", "", rows, REJECTED_COLUMNS)
        path.with_suffix(".md").unlink(missing_ok=True)
        return path.name

    with warehouse.connect() as con:
        recon = reconcile(con, dataverse.get_client(), config, halts, rejected_file)
    rows = recon.rows
    sources_path = write_csv(run_id, "reconciliation_by_source", recon.sources, SOURCE_COLUMNS)
    merges_path = write_csv(run_id, "merged_accounts", recon.merges, MERGE_COLUMNS)
    md = render(rows, recon.sources, recon.merges)
    md_path, csv_path = write_report(run_id, "reconciliation", md, rows, RECON_COLUMNS)
    return dg.MaterializeResult(
        metadata={
            "per_table": per_table(rows),
            "reconciliation": dg.MetadataValue.md(md),
            "report": str(md_path),
            "csv": str(csv_path),
            "by_source_csv": str(sources_path),
            "merged_accounts_csv": str(merges_path),
            "close_objects_unaccounted": sum(int(r["unaccounted"]) for r in recon.sources),
            "tables_not_ok": sum(1 for r in rows if r["status"] != "ok"),
            "dagster/row_count": len(rows),
            "halted": sum(1 for r in rows if str(r["status"]).startswith("halted")),
        }
    )
