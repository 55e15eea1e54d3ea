"""schema/*: the Dataverse schema the load needs, planned from mappings/ and the Close configuration, then
deployed through the metadata API (DESIGN §3). schema/solution first ensures the publisher and the
solution every component is created in; custom activities come in phases: tables (1), columns (2), then
loaded/custom_activities (3); each phase checks the previous one is really in the target. Every component a
run creates is written ahead to the ledger, so that its rollback removes it.

Each deploy step records in the warehouse that it completed the saved plan; a deploy that created something
re-reads the staging cache rows of the tables it touched (staged.target_metadata stays fresh). In a `delta`
run whose plan inputs have the fingerprint of the last completely deployed plan, schema/plan reuses that plan
without reading the target and the deploy steps skip their reads, each saying so (target/plan_reuse.py).
"""

import dagster as dg
import duckdb
from dagster import AssetExecutionContext

from migration_assets.clients.dataverse.client import DataverseError
from migration_assets.load.ledger import SchemaLedger, run_kind
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.deploy import SchemaDeployError, deploy, load_plan, save_plan, subset
from migration_assets.target.metadata_cache import invalidate_cache, refresh_tables
from migration_assets.target.plan_reuse import (
    Decision,
    decide,
    mark_reused,
    plan_fingerprint,
    reused_in_run,
    step_completed,
    step_started,
)
from migration_assets.target.schema_plan import SchemaDiff, SchemaPlan, diff
from migration_assets.target.schema_planning import (
    LocalPlan,
    custom_field_proposals,
    local_plan,
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


def _plan_metadata(saved: SchemaPlan, local: LocalPlan, fingerprint: str, source: str) -> dict[str, object]:
    return {
        "planned_tables": len(saved.tables),
        "planned_columns": len(saved.columns),
        "planned_keys": len(saved.keys),
        "unconfirmed_proposals": local.proposals - local.confirmed,
        "fingerprint": fingerprint,
        "plan_source": source,
        "custom_activity_tables": dg.MetadataValue.json({t.close_type_id: t.table for t in local.types}),
    }


@dg.asset(
    key=PLAN,
    # Drawn with staging, which it feeds (a custom activity type's staged check compares with its columns):
    # the lineage then reads close -> staged -> schema -> loaded -> reports, the deploy steps after staging.
    group_name="staged",
    deps=[dg.AssetKey(["close", t]) for t in ("custom_activity_types", "custom_fields", "custom_activities")],
    pool=POOL,
    description="Custom columns, choices, alternate keys on the Close id and custom activity tables the load "
    "needs, diffed against the target's metadata. A delta run whose inputs (fingerprint: mappings/ and "
    "the Close configuration) equal those of the last completely deployed plan reuses that plan without "
    "reading the target. Its data version is the fingerprint.",
    kinds={"dataverse"},
)
@reports_api_calls
def plan(
    context: AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    config = load_mapping_config()
    proposals = custom_field_proposals(config)
    with warehouse.connect() as con:
        local = local_plan(config, proposals, plan_inputs(con))
        fingerprint = plan_fingerprint(config.root, local.plan)
        decision = decide(con, fingerprint, run_kind(context.run.job_name) == "delta")
        if decision.reuse:
            mark_reused(con, context.run.run_id)
            saved = load_plan(con)
    version = dg.DataVersion(fingerprint)
    if decision.reuse:
        context.log.info(f"schema plan {decision.reason}: the target's metadata is not read")
        return dg.MaterializeResult(
            metadata={
                **_plan_metadata(saved, local, fingerprint, decision.reason),
                "reused": True,
                "deployed_by_run": str(decision.deployed_by_run),
                "diff": dg.MetadataValue.md(
                    f"Not read: the plan is {decision.reason} (every deploy step completed it)."
                ),
            },
            data_version=version,
        )
    planned = plan_schema(config, local, dataverse.get_client())
    with warehouse.connect() as con:
        save_plan(con, planned.plan, fingerprint, context.run.run_id)
    d = diff(planned.plan, planned.existing)
    return dg.MaterializeResult(
        metadata={
            **_plan_metadata(
                planned.plan, local, fingerprint, f"planned against the target ({decision.reason})"
            ),
            "reused": False,
            **{f"to_create_{k}": v for k, v in d.summary().items()},
            "diff": dg.MetadataValue.md(d.markdown()),
        },
        data_version=version,
    )


def _ledger(context: AssetExecutionContext, con: duckdb.DuckDBPyConnection) -> SchemaLedger:
    return SchemaLedger(con, context.run.run_id, run_kind(context.run.job_name))


def _reused(context: AssetExecutionContext, warehouse: WarehouseResource) -> Decision | None:
    """This run's schema/plan reused a completely deployed plan: a deploy step has nothing to read."""
    with warehouse.connect() as con:
        reused = reused_in_run(con, context.run.run_id)
    if reused is not None:
        context.log.info(f"skipping the target's reads: {reused.reason}")
    return reused


def _skipped(reused: Decision) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"skipped": f"nothing read or created: {reused.reason}", "published": "nothing"}
    )


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
    if (reused := _reused(context, warehouse)) is not None:
        return _skipped(reused)
    target = SolutionTarget.from_settings(load_mapping_config().settings)
    with warehouse.connect() as con:
        step_started(con, "solution")
        # Conflicts raise SolutionSetupError (a SchemaDeployError) before any change.
        ensured = ensure_solution(dataverse.get_client(), target, _ledger(context, con), context.log.info)
        step_completed(con, "solution", context.run.run_id)
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


def _result(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
    step: str,
    d: SchemaDiff,
    touched: list[str],
) -> dg.MaterializeResult:
    refreshed: list[str] = []
    with warehouse.connect() as con:
        if touched:  # the staging cache of these tables' metadata predates what was just created
            try:
                refreshed = refresh_tables(con, dataverse.get_client(), touched)
            except DataverseError as exc:  # the next staging re-reads everything instead
                context.log.warning(f"re-reading the metadata of {', '.join(touched)} failed: {exc}")
                invalidate_cache(con)
        step_completed(con, step, context.run.run_id)
    return dg.MaterializeResult(
        metadata={
            **{f"created_{k}": v for k, v in d.summary().items()},
            "published": ", ".join(touched) or "nothing",
            "metadata_cache_refreshed": ", ".join(refreshed) or "nothing",
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
    if (reused := _reused(context, warehouse)) is not None:
        return _skipped(reused)
    solution_name = load_mapping_config().settings.solution_unique_name
    with warehouse.connect() as con:
        step_started(con, "deployed")
        schema_plan = subset(load_plan(con), custom_tables=False)
        d, touched = deploy(
            dataverse.get_client(), schema_plan, solution_name, context.log.info, ledger=_ledger(context, con)
        )
    return _result(context, warehouse, dataverse, "deployed", d, touched)


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
    if (reused := _reused(context, warehouse)) is not None:
        return _skipped(reused)
    solution_name = load_mapping_config().settings.solution_unique_name
    with warehouse.connect() as con:
        step_started(con, "custom_activity_tables")
        schema_plan = subset(load_plan(con), custom_tables=True)
        d, touched = deploy(
            dataverse.get_client(),
            schema_plan,
            solution_name,
            context.log.info,
            columns=False,
            ledger=_ledger(context, con),
        )
    return _result(context, warehouse, dataverse, "custom_activity_tables", d, touched)


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
    if (reused := _reused(context, warehouse)) is not None:
        return _skipped(reused)
    with warehouse.connect() as con:
        step_started(con, "custom_activity_columns")
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
    return _result(context, warehouse, dataverse, "custom_activity_columns", d, touched)
