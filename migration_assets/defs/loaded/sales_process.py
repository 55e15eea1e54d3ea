"""loaded/opportunity_sales_process: every migrated opportunity placed on the sales process the reviewed
pipelines.yaml names (`sales_process`, the shipped "Opportunity Sales Process" by default): its business
process flow instance at the stage of its Close status, traversedpath through the earlier stages, won/lost
ones at the last stage, Finished (load/sales_process.py, load/sales_process_plan.py).

It follows loaded/opportunity (creating an opportunity gives it an instance at the first stage). Every write
is ledgered with the instance's before-image, so a rollback moves pre-existing instances (the ones Dataverse
gave the opportunities included) back a stage at a time and deletes the ones this load created, and those of
opportunities this same run created (a rollback deletes those opportunities too). A delta run
considers only the opportunities whose placement changed since the last completed load of this asset (none:
no request at all); any run writes only what differs. Rows that cannot be placed (a status missing from the
mapping, a stage the process does not have, a refused write) are rejected with the reason in
`loaded.<instance table>_rejected`.
"""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import (
    GROUP,
    MAPPING,
    POOL,
    is_delta_run,
    loaded_key,
    rejected_markdown,
    write_rejected_table,
)
from migration_assets.load.entity_meta_cache import prime_entity_metadata, record_entity_metadata
from migration_assets.load.ledger import Ledger, run_kind
from migration_assets.load.sales_process import (
    SalesProcessError,
    SalesProcessLoader,
    changed_since,
    created_by_run,
    in_process_order,
    last_placed,
    read_instances,
    resolve_process,
    save_definition,
    save_placed,
    saved_definition,
    staged_opportunities,
)
from migration_assets.load.sales_process_plan import status_stages
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource

KEY = loaded_key("opportunity_sales_process")


@dg.asset(
    key=KEY,
    group_name=GROUP,
    deps=[loaded_key("opportunity"), MAPPING],
    pool=POOL,
    description="Each migrated opportunity's business process flow instance (the sales process of "
    "pipelines.yaml) at the stage its Close status maps to, earlier stages traversed; won/lost ones at the "
    "last stage, finished. Ledgered with before-images: a rollback restores each instance's stage.",
    kinds={"dataverse"},
)
@reports_api_calls
def opportunity_sales_process(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    config = load_mapping_config()
    pipes = config.pipelines
    for note in pipes.notes:
        context.log.warning(note)
    statuses = status_stages(pipes)
    with warehouse.connect() as con:
        closeid = f"{config.settings.publisher_prefix}_closeid"
        wanted = staged_opportunities(con, pipes.status_column, closeid)
        earlier = last_placed(con) if is_delta_run(context) else None
        considered = wanted if earlier is None else changed_since(wanted, statuses, earlier)
        context.log.info(
            f"{pipes.sales_process}: {len(considered)} of {len(wanted)} opportunities to place"
            + (" (changed since the last load)" if earlier is not None else "")
        )
        if not considered:  # a delta that changed no placement reads nothing
            return dg.MaterializeResult(
                metadata={"sales_process": pipes.sales_process, "considered": 0, "dagster/row_count": 0}
            )
        client = dataverse.get_client()
        prime_entity_metadata(con, client)  # the instance table's definition, as an earlier run read it
        ids = [w.opportunity_id for w in considered] if earlier is not None else None
        # A delta reuses the process as the last run resolved it (load/sales_process.py saved_definition).
        process = saved_definition(con, pipes.sales_process) if earlier is not None else None
        if process is not None:
            instances = read_instances(client, process, ids)
        else:
            try:
                process = resolve_process(client, pipes.sales_process)
            except SalesProcessError as exc:
                raise dg.Failure(description=str(exc)) from exc
            instances = read_instances(client, process, ids)
            process = in_process_order(client, process, instances)
            save_definition(con, process)
        ledger = Ledger(con, context.run.run_id, kind=run_kind(context.run.job_name))
        created = created_by_run(con, context.run.run_id)
        loader = SalesProcessLoader(client, ledger, process, statuses, context.log.info, created)
        try:
            report = loader.load(considered, instances)
        finally:
            record_entity_metadata(con, client, context.run.run_id)
        save_placed(con, considered, statuses, report, earlier)
        ledger.close_run("loaded", f"last table: {process.table}")
        rejected = write_rejected_table(con, context.run.run_id, process.table)
        rejected_md = rejected_markdown(con, process.table)
    for line in report.rejected[:20]:
        context.log.warning(f"not placed: {line}")
    stages = [{"stage": k, "opportunities": v} for k, v in sorted(report.per_stage.items())]
    return dg.MaterializeResult(
        metadata={
            "sales_process": process.uniquename,
            "stages": ", ".join(s.name for s in process.stages),
            "considered": len(considered),
            "placed": report.placed,
            "created": report.created,
            "unchanged": report.unchanged,
            "writes": report.writes,
            "not_loaded": report.not_loaded,
            "rejected": rejected,
            "per_stage": dg.MetadataValue.md(markdown_table(stages) if stages else "None."),
            "rejected_rows": dg.MetadataValue.md(rejected_md),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in pipes.notes) or "None."),
            "dagster/row_count": report.placed,
        }
    )
