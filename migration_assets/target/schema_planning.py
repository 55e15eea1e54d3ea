"""The schema plan of a migration from the extracted Close configuration and the reviewed mapping, and what
each phase of the custom activities still misses in the target (DESIGN §3: tables, columns, then rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.extract.raw_objects import raw_objects
from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.custom_activities import ActivityType, activity_types
from migration_assets.target.custom_activity_plan import TYPES_FILE, load_types
from migration_assets.target.deploy import SchemaDeployError, read_existing
from migration_assets.target.proposal import FieldProposal, parse_proposal
from migration_assets.target.schema_build import align_options, build_plan, closeid_column
from migration_assets.target.schema_plan import SchemaPlan, missing_from


def plan_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The Close configuration the plan needs (custom activity types, their field definitions, instances)."""
    types = raw_objects(con, "custom_activity_types", SchemaDeployError)
    field_defs = {
        f["id"]: f
        for f in raw_objects(con, "custom_fields", SchemaDeployError)
        if f.get("custom_activity_type_id")
    }
    instances = raw_objects(con, "custom_activities", SchemaDeployError)
    return {"types": types, "field_defs": field_defs, "instances": instances}


@dataclass(frozen=True)
class LocalPlan:
    """The plan as the inputs alone make it, before the target is read (its choice values unaligned)."""

    plan: SchemaPlan
    types: list[ActivityType]  # the Close custom activity types the plan creates tables for
    proposals: int  # custom field proposals in mappings/custom_fields.yaml
    confirmed: int  # of which confirmed (only these are planned)


@dataclass(frozen=True)
class PlannedSchema:
    plan: SchemaPlan
    existing: dict[str, EntityMeta | None]  # the target's metadata of every table the plan touches
    types: list[ActivityType]  # the Close custom activity types the plan creates tables for
    proposals: int  # custom field proposals in mappings/custom_fields.yaml
    confirmed: int  # of which confirmed (only these are planned)


def custom_field_proposals(config: MappingConfig) -> list[FieldProposal]:
    """The entries of mappings/custom_fields.yaml ([] before propose-mapping wrote it)."""
    proposal_file = config.root / "custom_fields.yaml"
    if not proposal_file.is_file():
        return []
    return parse_proposal(proposal_file, "mappings/custom_fields.yaml", config.settings.publisher_prefix)


def local_plan(config: MappingConfig, proposals: list[FieldProposal], inputs: dict[str, Any]) -> LocalPlan:
    """Custom columns, choices, alternate keys and custom activity tables the load needs (confirmed custom
    field proposals only), from the mappings and the Close configuration alone (pure)."""
    confirmed = [p for p in proposals if p.confirmed]
    types = activity_types(inputs["types"], config.settings.publisher_prefix, closeid_column(config))
    keep_orphans: set[str] = set()
    if (config.root / TYPES_FILE).is_file():  # only the types the reviewed mapping lists
        routed = load_types(config.root)
        listed = {t.name.strip().casefold() for t in routed}
        types = [t for t in types if t.close_name.strip().casefold() in listed]
        keep_orphans = {t.table for t in routed if t.orphaned_values == "column"}
    plan = build_plan(config, confirmed, types, inputs["field_defs"], inputs["instances"], keep_orphans)
    return LocalPlan(plan, types, len(proposals), len(confirmed))


def plan_schema(config: MappingConfig, local: LocalPlan, client: DataverseClient) -> PlannedSchema:
    """The local plan against the target: the option values of choice columns already in the target kept
    (staging reads them from the plan)."""
    existing = read_existing(client, local.plan.touched_tables())
    custom_tables = {t.logical_name for t in local.plan.tables}
    plan = align_options(local.plan, existing, config.settings.option_value_prefix, custom_tables)
    return PlannedSchema(plan, existing, local.types, local.proposals, local.confirmed)


def missing_tables(client: DataverseClient, schema_plan: SchemaPlan) -> list[str]:
    existing = read_existing(client, [t.logical_name for t in schema_plan.tables])
    return [t for t, meta in existing.items() if meta is None]


def phase_two_gaps(client: DataverseClient, schema_plan: SchemaPlan) -> dict[str, str]:
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
