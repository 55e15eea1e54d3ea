"""schema/*: the Dataverse schema the load needs, planned from mappings/ and the Close configuration, then
deployed through the metadata API (DESIGN §3). schema/solution first ensures the publisher and the
solution every component is created in; custom activities come in phases: tables (1), columns (2), then
loaded/custom_activities (3); each phase checks the previous one is really in the target. Every component a
run creates is written ahead to the ledger, so that its rollback removes it.
"""

import json
from typing import Any

import dagster as dg
import duckdb
from dagster import AssetExecutionContext

from migration_assets.defs.staged.target_metadata import invalidate_cache
from migration_assets.load.ledger import SchemaLedger, run_kind
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.custom_activities import activity_types
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.custom_activity_plan import TYPES_FILE, load_types
from migration_assets.target.deploy import (
    SchemaDeployError,
    deploy,
    load_plan,
    read_existing,
    save_plan,
    subset,
)
from migration_assets.target.proposal import parse_proposal
from migration_assets.target.schema_build import align_options, build_plan, closeid_column
from migration_assets.target.schema_plan import SchemaPlan, diff, missing_from
from migration_assets.target.solution import SolutionTarget
from migration_assets.target.solution_deploy import ensure_solution

GROUP = "schema"
POOL = "dataverse_api"
PLAN = dg.AssetKey([GROUP, "plan"])
PREFLIGHT = dg.AssetKey([GROUP, "preflight"])
SOLUTION = dg.AssetKey([GROUP, "solution"])
TABLES_PHASE = dg.AssetKey([GROUP, "custom_activity_tables"])
COLUMNS_PHASE = dg.AssetKey([GROUP, "custom_activity_columns"])


def close_raw(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    try:
        rows = con.execute(f'SELECT raw FROM close."{table}"').fetchall()
    except duckdb.CatalogException as exc:
        raise SchemaDeployError(f"close.{table} is missing: materialize close/{table} first") from exc
    return [json.loads(r[0]) for r in rows]


def plan_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The Close configuration the plan needs (custom activity types, their field definitions, instances)."""
    types = close_raw(con, "custom_activity_types")
    field_defs = {f["id"]: f for f in close_raw(con, "custom_fields") if f.get("custom_activity_type_id")}
    instances = close_raw(con, "custom_activities")
    return {"types": types, "field_defs": field_defs, "instances": instances}


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
    proposal_file = config.root / "custom_fields.yaml"
    proposals = (
        parse_proposal(proposal_file, "mappings/custom_fields.yaml", config.settings.publisher_prefix)
        if proposal_file.is_file()
        else []
    )
    confirmed = [p for p in proposals if p.confirmed]
    with warehouse.connect() as con:
        inputs = plan_inputs(con)
        types = activity_types(inputs["types"], config.settings.publisher_prefix, closeid_column(config))
        keep_orphans: set[str] = set()
        if (config.root / TYPES_FILE).is_file():  # only the types the reviewed mapping lists
            routed = load_types(config.root)
            listed = {t.name.strip().casefold() for t in routed}
            types = [t for t in types if t.close_name.strip().casefold() in listed]
            keep_orphans = {t.table for t in routed if t.orphaned_values == "column"}
        schema_plan = build_plan(
            config, confirmed, types, inputs["field_defs"], inputs["instances"], keep_orphans
        )
    existing = read_existing(dataverse.get_client(), schema_plan.touched_tables())
    # Custom activity columns already in the target keep their option values (staging reads them from here).
    custom_tables = {t.logical_name for t in schema_plan.tables}
    schema_plan = align_options(schema_plan, existing, config.settings.option_value_prefix, custom_tables)
    with warehouse.connect() as con:
        save_plan(con, schema_plan)
    d = diff(schema_plan, existing)
    return dg.MaterializeResult(
        metadata={
            "planned_tables": len(schema_plan.tables),
            "planned_columns": len(schema_plan.columns),
            "planned_keys": len(schema_plan.keys),
            "unconfirmed_proposals": len(proposals) - len(confirmed),
            **{f"to_create_{k}": v for k, v in d.summary().items()},
            "diff": dg.MetadataValue.md(d.markdown()),
            "custom_activity_tables": dg.MetadataValue.json({t.close_type_id: t.table for t in types}),
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


def _result(warehouse: WarehouseResource, d: Any, touched: list[str]) -> dg.MaterializeResult:
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


def missing_tables(client: Any, schema_plan: SchemaPlan) -> list[str]:
    existing = read_existing(client, [t.logical_name for t in schema_plan.tables])
    return [t for t, meta in existing.items() if meta is None]


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


def phase_two_gaps(client: Any, schema_plan: SchemaPlan) -> dict[str, str]:
    """Per custom activity table, what is missing in the target for phase 3 ('' when ready)."""
    existing = read_existing(client, [t.logical_name for t in schema_plan.tables], refresh=False)
    out: dict[str, str] = {}
    for t in schema_plan.tables:
        meta = existing[t.logical_name]
        if meta is None:
            out[t.logical_name] = (
                f"table {t.logical_name} does not exist (phase 1: schema/custom_activity_tables)"
            )
            continue
        cols = missing_from([c for c in schema_plan.columns if c.table == t.logical_name], meta)
        out[t.logical_name] = (
            f"columns {', '.join(cols)} missing on {t.logical_name} (phase 2: schema/custom_activity_columns)"
            if cols
            else ""
        )
    return out
