"""staged/custom_activity_<table>: one asset (and one blocking check) per Close custom activity type listed
in `mappings/custom_activities.yaml`.

Why generated from the mapping file: the set of types is data-dependent, but Dagster definitions should
be static. The reviewed mapping file is the contract (ids differ between orgs, so types are matched by
name), so the asset graph changes only when a human changes the mapping, and each type gets its own
check: a type whose instances use a custom field that is not defined on it fails its own check (its
table is halted, the rows are listed) while the other types proceed (DESIGN §3, phase 3).
"""

import json
import logging
import os
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    entity_sets,
    materialize_result,
    owner_context,
    staged_key,
    target_lookup,
    validate_and_write,
)
from migration_assets.defs.staged._mapping import map_object
from migration_assets.lib.custom_activities import activity_types
from migration_assets.lib.custom_activity_plan import (
    PlannedColumn,
    RoutedActivityType,
    entity_set_name,
    load_types,
    plan_columns,
)
from migration_assets.lib.mapping_config import DEFAULT_ROOT, MappingConfig, load_mapping_config
from migration_assets.lib.mapping_fields import FieldMap, parse_field
from migration_assets.lib.proposal import FieldProposal, field_entries
from migration_assets.lib.target_checks import REJECTION_SCHEMA
from migration_assets.lib.target_rules import TableRules, add_planned_column, planned_activity_table
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars

log = logging.getLogger(__name__)
BASE = ["id", "lead_id", "contact_id", "user_id", "activity_at", "date_created", "status"]


def mappings_root() -> Path:
    return Path(os.environ.get("CLOSE2D365_MAPPINGS") or DEFAULT_ROOT)


def find_type(con: duckdb.DuckDBPyConnection, name: str, prefix: str) -> Any | None:
    """The Close type of that name with its table/column names (`custom_activities.activity_types`)."""
    raw = [json.loads(r[0]) for r in con.execute("SELECT raw FROM close.custom_activity_types").fetchall()]
    for t in activity_types(raw, prefix):
        if t.close_name.strip().casefold() == name.strip().casefold():
            return t
    return None


def instance_frame(con: duckdb.DuckDBPyConnection, type_id: str) -> tuple[pl.DataFrame, list[str]]:
    """The type's instances with every `custom.*` key they use, as text (lists as JSON lists)."""
    keys = [r[0] for r in con.execute(
        "SELECT DISTINCT k FROM (SELECT unnest(json_keys(raw)) AS k FROM close.custom_activities "
        "WHERE custom_activity_type_id = ?) WHERE k LIKE 'custom.%' ORDER BY k", [type_id]).fetchall()]  # fmt: skip
    cols = [f'"{c}"' for c in BASE if c != "status"] + ["json_extract_string(raw, '$.status') AS status"]
    for k in keys:
        path = '$."' + k + '"'
        cols.append(
            f"CASE WHEN json_type(raw, '{path}') = 'ARRAY' THEN NULL ELSE json_extract_string(raw, '{path}') END AS \"{k}\""
        )
        cols.append(
            f"CASE WHEN json_type(raw, '{path}') = 'ARRAY' THEN json_transform(json_extract(raw, '{path}'), '[\"VARCHAR\"]') END AS \"{k}[]\""
        )
    sql = (
        f"SELECT {', '.join(cols)} FROM close.custom_activities WHERE custom_activity_type_id = ? ORDER BY id"
    )
    return fetch_polars(con, sql, [type_id]), keys


def _samples(frame: pl.DataFrame, field_id: str) -> list[Any]:
    key = f"custom.{field_id}"
    values: list[Any] = []
    if key in frame.columns:
        values += frame[key].drop_nulls().to_list()
    if f"{key}[]" in frame.columns:
        values += frame[f"{key}[]"].drop_nulls().to_list()
    return values


def field_map_for(
    cfg: MappingConfig, t: RoutedActivityType, columns: list[PlannedColumn], frame: pl.DataFrame
) -> tuple[FieldMap, pl.DataFrame]:
    """The type's field map (standard activity columns + one per defined field) and the source frame."""
    prefix, table = cfg.settings.publisher_prefix, t.table
    base: list[dict[str, Any]] = [
        {"target": "activityid", "source": "id", "transform": "record_id", "args": {"kind": "custom_activity"}},
        {"target": "subject", "source": "__type_name", "transform": "text", "max_length": 200},
        {"target": f"regardingobjectid_lead_{table}", "source": "lead_id", "transform": "record_id",
         "args": {"kind": "lead"}, "lookup": "lead"},
        {"target": "ownerid", "source": "user_id", "transform": "owner", "lookup": "systemuser"},
        {"target": "actualend", "source": "activity_at", "transform": "datetime_utc"},
        {"target": "statecode", "source": "status", "transform": "choice", "args": {"map": {"published": 1, "draft": 0}}},
        {"target": "statuscode", "source": "status", "transform": "choice", "args": {"map": {"published": 2, "draft": 1}}},
        {"target": f"{prefix}_closeid", "source": "id", "transform": "text", "required": True},
        {"target": "overriddencreatedon", "source": "date_created", "transform": "datetime_utc"},
    ]  # fmt: skip
    proposals = [FieldProposal("activity", c.close_field_id, c.close_name, c.close_type, c.multiple, table, "new",
                               c.logical_name, c.column, 1.0, "custom activity field", True) for c in columns]  # fmt: skip
    entries = field_entries(proposals, cfg.settings.option_value_prefix).get(table, [])
    src = frame.with_columns(pl.lit(t.name).alias("__type_name"))
    for e in entries:
        if e.get("transform") in ("multi_choice", "join_list"):
            e["source"] = e["source"] + "[]"  # the list-typed twin column
        if e["source"] not in src.columns:
            src = src.with_columns(
                pl.lit(None, dtype=pl.List(pl.String) if e["source"].endswith("[]") else pl.String).alias(
                    e["source"]
                )
            )
    specs = [parse_field(e, "custom_activities.yaml", f"{table}.fields[{n}]", None, prefix, table, cfg.choice_sets)
             for n, e in enumerate(base + entries)]  # fmt: skip
    return FieldMap("custom_activity", table, "custom_activities.yaml", tuple(specs)), src


def table_rules(t: RoutedActivityType, columns: list[PlannedColumn], cfg: MappingConfig) -> TableRules:
    rules = planned_activity_table(t.table, entity_set_name(t.table))
    add_planned_column(rules, f"{cfg.settings.publisher_prefix}_closeid", "String", 100)
    opv = cfg.settings.option_value_prefix * 10000
    for c in columns:
        options = [opv + i for i in range(len(c.column.options))] if c.column.options else None
        fmt = c.column.format if c.column.attribute_type == "DateTime" else None
        add_planned_column(rules, c.logical_name, c.column.attribute_type, c.column.max_length, options, fmt,
                           c.column.lookup_target)  # fmt: skip
    return rules


def undefined_field_rejections(
    frame: pl.DataFrame, used: list[str], defined: set[str], t: RoutedActivityType
) -> pl.DataFrame:
    """Instances that use a custom field the type does not define: its column would not exist."""
    parts = []
    for key in used:
        if key.removeprefix("custom.") in defined:
            continue
        mask = pl.col(key).is_not_null() | (pl.col(f"{key}[]").list.len() > 0).fill_null(False)
        bad = frame.filter(mask)
        parts.append(bad.select(
            pl.col("id").alias("_close_id"), pl.lit(key).alias("column"),
            pl.coalesce(pl.col(key), pl.col(f"{key}[]").cast(pl.List(pl.String)).list.join(", ")).alias("value"),
            pl.lit(f"uses custom field {key.removeprefix('custom.')}, which is not defined on custom activity type "
                   f"'{t.name}': table {t.table} has no column for it. Define the field on the type in Close (or fix "
                   "the data) and re-run; this type is halted, the other types proceed").alias("reason"),
            pl.lit("column_exists").alias("check_name"),
        ))  # fmt: skip
    return pl.concat(parts) if parts else pl.DataFrame(schema=REJECTION_SCHEMA)


def stage_type(
    warehouse: WarehouseResource, t: RoutedActivityType, dataverse: Any | None = None
) -> dg.MaterializeResult:
    base_cfg = load_mapping_config()
    with warehouse.connect() as con:
        close_type = find_type(con, t.name, base_cfg.settings.publisher_prefix)
        if close_type is None:
            raise dg.Failure(f"custom activity type {t.name!r} (mappings/custom_activities.yaml) is not in the Close "
                             "data: remove its entry or re-run close2d365 propose-mapping")  # fmt: skip
        if close_type.table != t.table:
            raise dg.Failure(f"custom activity type {t.name!r} is named {close_type.table} by the schema step but "
                             f"{t.table} in mappings/custom_activities.yaml: re-run close2d365 propose-mapping")  # fmt: skip
        frame, used = instance_frame(con, close_type.close_type_id)
        ids = [f.close_field_id for f in close_type.fields]
        columns = plan_columns(close_type, {i: _samples(frame, i) for i in ids})
        fmap, src = field_map_for(base_cfg, t, columns, frame)
        cfg = base_cfg.__class__(
            **{**base_cfg.__dict__, "field_maps": {**base_cfg.field_maps, "custom_activity": fmap}}
        )
        undefined = undefined_field_rejections(frame, used, set(ids), t)
        mapped = map_object(src, cfg, "custom_activity", owner_context(con, cfg), entity_sets(con), key="id",
                            close_object="custom_activity")  # fmt: skip
        rules = table_rules(t, columns, cfg)
        result = validate_and_write(warehouse, con, f"custom_activity_{t.table}", rules, mapped.frame,
                                    [undefined, mapped.rejections], [mapped.notices], pk="activityid", target_lookup=target_lookup(dataverse))  # fmt: skip
    return materialize_result(result, {"close_type_id": close_type.close_type_id, "table": t.table,
                                       "columns": ", ".join(c.logical_name for c in columns),
                                       "instances_using_undefined_fields": undefined["_close_id"].n_unique()})  # fmt: skip


def _rules_for(t: RoutedActivityType) -> Any:
    def rules(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> TableRules:
        close_type = find_type(con, t.name, cfg.settings.publisher_prefix)
        if close_type is None:
            return table_rules(t, [], cfg)
        frame, _ = instance_frame(con, close_type.close_type_id)
        samples = {f.close_field_id: _samples(frame, f.close_field_id) for f in close_type.fields}
        return table_rules(t, plan_columns(close_type, samples), cfg)

    return rules


def build(t: RoutedActivityType) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    name = f"custom_activity_{t.table}"

    @dg.asset(
        key=[GROUP, name],
        group_name=GROUP,
        deps=[
            close_key("custom_activities"),
            close_key("custom_activity_types"),
            staged_key("lead"),
            OWNER_MAP_KEY,
            TARGET_METADATA_KEY,
        ],  # fmt: skip
        description=f"Instances of the Close custom activity type '{t.name}' for the table {t.table}.",
    )
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.MaterializeResult:
        return stage_type(warehouse, t, dataverse)

    rules = _rules_for(t)
    return _asset, target_check(name, lambda con, cfg: rules(con, cfg))


def _build_all() -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    try:
        types = load_types(mappings_root())
    except (
        Exception
    ) as exc:  # a broken mapping file must not break every definition: mapping_confirmed reports it
        log.warning("custom activity assets not built: %s", exc)
        return [], []
    built = [build(t) for t in types]
    return [a for a, _ in built], [c for _, c in built]


CUSTOM_ACTIVITY_ASSETS, CUSTOM_ACTIVITY_CHECKS = _build_all()
