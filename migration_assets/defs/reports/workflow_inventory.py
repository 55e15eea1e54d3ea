"""reports/workflow_inventory: Close Workflows, Smart Views and Custom Activity types with the Dynamics 365
equivalent to rebuild, and the sales process design (per pipeline: statuses, probabilities, open
opportunities, the business process flow to build), as Markdown (UI) and Markdown + CSV files."""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.audit.files import write_report
from migration_assets.audit.sales_process_design import design_pipelines, pipelines_in_order, status_counts
from migration_assets.audit.workflow_inventory import (
    InventoryItem,
    build_inventory,
    pipeline_item,
    render_markdown,
)
from migration_assets.extract.raw_objects import raw_objects
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.custom_activities import activity_types
from migration_assets.resources.warehouse import WarehouseResource

SOURCES = ("sequences", "smart_views", "custom_activity_types")
SALES_SOURCES = ("pipelines", "opportunities")  # the sales process design
COLUMNS = list(InventoryItem.__dataclass_fields__)


class InventoryInputError(RuntimeError):
    """A close/* table the inventory reads is missing."""


@dg.asset(
    key=dg.AssetKey(["reports", "workflow_inventory"]),
    group_name="reports",
    deps=[dg.AssetKey(["close", t]) for t in SOURCES + SALES_SOURCES],
    description="Every Close Workflow (sequence) with trigger, steps and conditions, every Smart View with its "
    "query, every Custom Activity type, each with the recommended Power Automate / Dynamics equivalent; and "
    "the sales process design: per pipeline its statuses, probabilities, open opportunities and the BPF to build.",
)
def workflow_inventory(context: AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        seqs, views, types = (raw_objects(con, t, InventoryInputError) for t in SOURCES)
        pipelines = pipelines_in_order(con)
        counts = status_counts(con)
    config = load_mapping_config()
    prefix = config.settings.publisher_prefix
    tables = {t.close_type_id: t.table for t in activity_types(types, prefix)}
    designs = design_pipelines(pipelines, counts, config.pipelines)
    items = build_inventory(seqs, views, types, tables) + [pipeline_item(d) for d in designs]
    md = render_markdown(items, designs)
    md_path, csv_path = write_report(
        context.run.run_id, "workflow_inventory", md, [i.row() for i in items], COLUMNS
    )
    return dg.MaterializeResult(
        metadata={
            "inventory": dg.MetadataValue.md(md),
            "report": str(md_path),
            "csv": str(csv_path),
            "workflows": len(seqs),
            "smart_views": len(views),
            "custom_activity_types": len(types),
            "pipelines": len(designs),
            "dagster/row_count": len(items),
        }
    )
