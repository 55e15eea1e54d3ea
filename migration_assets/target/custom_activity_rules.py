"""The rules of a custom activity table, which is not in the target until schema/* creates it: the activity
columns plus every column the saved schema plan (or the SMS routing) creates on it."""

from __future__ import annotations

from typing import Any

import duckdb

from migration_assets.mapping.config import MappingConfig
from migration_assets.target.custom_activity_plan import RoutedActivityType, entity_set_name
from migration_assets.target.deploy import SchemaDeployError, load_plan
from migration_assets.target.metadata_cache import StagingError, plan_columns
from migration_assets.target.rules import TableRules, add_planned_column, planned_activity_table
from migration_assets.target.schema_plan import SchemaPlan


def saved_plan(con: duckdb.DuckDBPyConnection, t: RoutedActivityType) -> SchemaPlan:
    """The saved schema plan, which must plan the type's table."""
    try:
        plan = load_plan(con)
    except SchemaDeployError as exc:
        raise StagingError(str(exc)) from exc
    if not any(pt.logical_name == t.table for pt in plan.tables):
        raise StagingError(
            f"the schema plan has no table {t.table} (custom activity type {t.name!r}): "
            "materialize schema/plan again (it plans the types custom_activities.yaml lists)"
        )
    return plan


def table_rules(t: RoutedActivityType, plan: SchemaPlan) -> TableRules:
    """Rules of the custom activity table: the activity columns plus every column the plan creates on it
    (with the plan's option values: the only ones the deployed columns have)."""
    rules = planned_activity_table(t.table, entity_set_name(t.table))
    for c in plan.columns:
        if c.table != t.table:
            continue
        options = [v for v, _ in c.options] if c.type in ("Picklist", "MultiSelectPicklist") else None
        fmt = c.format if c.type == "DateTime" else None
        add_planned_column(rules, c.logical_name, c.type, c.max_length, options, fmt, c.lookup_target)
    return rules


def saved_table_rules(con: duckdb.DuckDBPyConnection, t: RoutedActivityType) -> TableRules:
    return table_rules(t, saved_plan(con, t))


def sms_rules(con: Any, cfg: MappingConfig) -> TableRules:
    """The custom SMS activity table as schema/* will create it: activity columns + the SMS columns."""
    table = cfg.activities.sms_table
    rules = plan_columns(
        planned_activity_table(table, cfg.activities.sms_entity_set or entity_set_name(table)), cfg
    )
    add_planned_column(rules, f"{cfg.settings.publisher_prefix}_closeid", "String", 100)
    return rules
