"""schema/*: the Dataverse schema the load needs, planned from mappings/ and the Close configuration, then
deployed through the metadata API (DESIGN §3). schema/solution first ensures the publisher and the
solution every component is created in; custom activities come in phases: tables (1), columns (2), then
loaded/custom_activities (3); each phase checks the previous one is really in the target. Every component a
run creates is written ahead to the ledger, so that its rollback removes it.
"""

import dagster as dg
import duckdb
from dagster import AssetExecutionContext

from migration_assets.load.ledger import SchemaLedger, run_kind
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.deploy import SchemaDeployError, deploy, load_plan, save_plan, subset
from migration_assets.target.metadata_cache import invalidate_cache
from migration_assets.target.schema_plan import SchemaDiff, diff
from migration_assets.target.schema_planning import (
    custom_field_proposals,
    missing_tables,
    plan_inputs,
    plan_schema,
)
from migration_assets.target.solution import SolutionTarget
from migration_assets.target.solution_deploy import ensure_solution

GROUP = "schema"
POOL = "dataverse_api"
PLAN = dg.AssetKey([GROUP, "plan"])
PREFLIGHT = dg.AssetKey([GROUP, "preflight"])
SOLUTION = dg.AssetKey([GROUP, "solution"])
TABLES_PHASE = dg.AssetKey([GROUP, "custom_activity_tables"])
COLUMNS_PHASE = dg.AssetKey([GROUP, "custom_activity_columns"])


@dg.asset(
    key=PLAN,
    group_name=GROUP,
    deps=[dg.AssetKey(["close", t]) for t in ("custom_activity_types", "custom_fields", "custom_activities")],
    pool=POOL,
    description="Custom columns, choices, alternate keys on the Close id and custom activity tables the load "
    "needs, diffed against the target's metadata.",
    kinds={"dataverse"},
)
@reports_api_calls
def plan(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    config = load_mapping_config()
    proposals = custom_field_proposals(config)
    with warehouse.connect() as con:
        inputs = plan_inputs(con)
    planned = plan_schema(config, proposals, inputs, dataverse.get_client())
    with warehouse.connect() as con:
        save_plan(con, planned.plan)
    d = diff(planned.plan, planned.existing)
    return dg.MaterializeResult(
        metadata={
            "planned_tables": len(planned.plan.tables),
            "planned_columns": len(planned.plan.columns),
            "planned_keys": len(planned.plan.keys),
            "unconfirmed_proposals": planned.proposals - planned.confirmed,
            **{f"to_create_{k}": v for k, v in d.summary().items()},
            "diff": dg.MetadataValue.md(d.markdown()),
            "custom_activity_tables": dg.MetadataValue.json(
                {t.close_type_id: t.table for t in planned.types}
            ),
        }
    )


def _ledger(context: AssetExecutionContext, con: duckdb.DuckDBPyConnection) -> SchemaLedger:
    return SchemaLedger(con, context.run.run_id, run_kind(context.run.job_name))


@dg.asset(
    key=SOLUTION,
    group_name=GROUP,
    deps=[PREFLIGHT, PLAN],
    pool=POOL,
    description="The publisher (unique name, prefix, option value prefix) and the unmanaged solution every "
    "column, choice, key and table of the migration is created in (mappings/settings.yaml); created when "
    "missing. A prefix or solution of another publisher stops the run before any change.",
    kinds={"dataverse"},
)
@reports_api_calls
def solution(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    target = SolutionTarget.from_settings(load_mapping_config().settings)
    with warehouse.connect() as con:
        # Conflicts raise SolutionSetupError (a SchemaDeployError) before any change.
        ensured = ensure_solution(dataverse.get_client(), target, _ledger(context, con), context.log.info)
    return dg.MaterializeResult(
        metadata={
            "publisher": f"{target.publisher_unique_name} (prefix {target.prefix}, option values "
            f"{target.option_value_prefix}0000+)",
            "solution": f"{target.solution_unique_name} {target.version}",
            "created_publisher": ensured.created_publisher,
            "created_solution": ensured.created_solution,
            "publisher_id": ensured.publisher_id,
            "solution_id": ensured.solution_id,
        }
    )


def _result(warehouse: WarehouseResource, d: SchemaDiff, touched: list[str]) -> dg.MaterializeResult:
    if touched:  # the staging cache of the target's metadata predates what was just created
        with warehouse.connect() as con:
            invalidate_cache(con)
    return dg.MaterializeResult(
        metadata={
            **{f"created_{k}": v for k, v in d.summary().items()},
            "published": ", ".join(touched) or "nothing",
            "changes": dg.MetadataValue.md(d.markdown()),
        }
    )


@dg.asset(
    key=dg.AssetKey([GROUP, "deployed"]),
    group_name=GROUP,
    deps=[PLAN, SOLUTION],
    pool=POOL,
    description="Applies the plan's columns, choices and alternate keys on the standard tables and publishes "
    "them. Idempotent: a second run finds nothing to create.",
    kinds={"dataverse"},
)
@reports_api_calls
def deployed(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    solution_name = load_mapping_config().settings.solution_unique_name
    with warehouse.connect() as con:
        schema_plan = subset(load_plan(con), custom_tables=False)
        d, touched = deploy(
            dataverse.get_client(), schema_plan, solution_name, context.log.info, ledger=_ledger(context, con)
        )
    return _result(warehouse, d, touched)


@dg.asset(
    key=TABLES_PHASE,
    group_name=GROUP,
    deps=[PLAN, SOLUTION],
    pool=POOL,
    description="Phase 1 of custom activities: one custom activity table per Close Custom Activity type.",
    kinds={"dataverse"},
)
@reports_api_calls
def custom_activity_tables(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    solution_name = load_mapping_config().settings.solution_unique_name
    with warehouse.connect() as con:
        schema_plan = subset(load_plan(con), custom_tables=True)
        d, touched = deploy(
            dataverse.get_client(),
            schema_plan,
            solution_name,
            context.log.info,
            columns=False,
            ledger=_ledger(context, con),
        )
    return _result(warehouse, d, touched)


@dg.asset(
    key=COLUMNS_PHASE,
    group_name=GROUP,
    deps=[TABLES_PHASE],
    pool=POOL,
    description="Phase 2 of custom activities: the columns (one per Close custom field), choices and Close id "
    "keys of the custom activity tables.",
    kinds={"dataverse"},
)
@reports_api_calls
def custom_activity_columns(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        schema_plan = subset(load_plan(con), custom_tables=True)
    client = dataverse.get_client()
    missing = missing_tables(client, schema_plan)
    if missing:
        raise SchemaDeployError(
            f"phase 1 is missing: custom activity tables {', '.join(missing)} do not exist in the target; "
            "materialize schema/custom_activity_tables first"
        )
    solution_name = load_mapping_config().settings.solution_unique_name
    with warehouse.connect() as con:
        d, touched = deploy(
            client, schema_plan, solution_name, context.log.info, tables=False, ledger=_ledger(context, con)
        )
    return _result(warehouse, d, touched)
