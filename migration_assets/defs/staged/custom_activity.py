"""staged/custom_activity_<table>: one asset (and one blocking check) per Close custom activity type listed
in `mappings/custom_activities.yaml`.

Why generated from the mapping file: the set of types is data-dependent, but Dagster definitions should
be static. The reviewed mapping file is the contract (ids differ between orgs, so types are matched by
name), so the asset graph changes only when a human changes the mapping, and each type gets its own
check. Instances may hold values of fields deleted from the type in Close; the entry's `orphaned_values`
decides: `halt` (default: the type's check fails, its table is halted, the rows are listed, the other
types proceed; DESIGN §3, phase 3), `drop` (loaded without them, each value listed in
reports/<run_id>/orphaned_values_<table>.csv) or `column` (kept in a column per field the plan creates).

Columns, their types and choice option values come from the saved schema plan (schema/plan), the one
source of what is deployed: a Close label is written as the option value whose label it is.
"""

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from migration_assets.audit.files import report_dir, write_frame_csv
from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    StagingError,
    close_key,
    entity_sets,
    markdown,
    materialize_result,
    owner_context,
    staged_key,
    target_lookup,
    validate_and_write,
)
from migration_assets.mapping.config import DEFAULT_ROOT, MappingConfig, load_mapping_config
from migration_assets.mapping.custom_activities import activity_types, orphan_columns
from migration_assets.mapping.fields import FieldMap, parse_field
from migration_assets.mapping.frame import map_object
from migration_assets.resources import env
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars
from migration_assets.target.checks import REJECTION_SCHEMA
from migration_assets.target.custom_activity_plan import (
    PlanMismatchError,
    PlannedColumn,
    RoutedActivityType,
    entity_set_name,
    load_types,
    orphan_plan_columns,
    plan_columns,
)
from migration_assets.target.deploy import SchemaDeployError, load_plan
from migration_assets.target.proposal import FieldProposal, field_entries
from migration_assets.target.rules import TableRules, add_planned_column, planned_activity_table
from migration_assets.target.schema_build import closeid_column
from migration_assets.target.schema_plan import ColumnSpec, SchemaPlan
from migration_assets.target.schema_types import ColumnType

log = logging.getLogger(__name__)
PLAN_KEY = dg.AssetKey(["schema", "plan"])
BASE = ["id", "lead_id", "contact_id", "user_id", "activity_at", "date_created", "status"]


def mappings_root() -> Path:
    return Path(env.mappings_setting() or DEFAULT_ROOT)


def find_type(con: duckdb.DuckDBPyConnection, name: str, prefix: str) -> Any | None:
    """The Close type of that name with its table/column names (`custom_activities.activity_types`)."""
    raw = [json.loads(r[0]) for r in con.execute("SELECT raw FROM close.custom_activity_types").fetchall()]
    for t in activity_types(raw, prefix):
        if t.close_name.strip().casefold() == name.strip().casefold():
            return t
    return None


def instance_frame(con: duckdb.DuckDBPyConnection, type_id: str) -> tuple[pl.DataFrame, list[str]]:
    """The type's instances with every `custom.*` key they use, as text (lists as JSON lists)."""
    keys = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT k FROM (SELECT unnest(json_keys(raw)) AS k FROM close.custom_activities "
            "WHERE custom_activity_type_id = ?) WHERE k LIKE 'custom.%' ORDER BY k",
            [type_id],
        ).fetchall()
    ]
    cols = [f'"{c}"' for c in BASE if c != "status"] + ["json_extract_string(raw, '$.status') AS status"]
    for k in keys:
        path = '$."' + k + '"'
        cols.append(
            f"CASE WHEN json_type(raw, '{path}') = 'ARRAY' THEN NULL ELSE json_extract_string(raw, '{path}') END AS \"{k}\""
        )
        # The list twin also holds a lone value ("Pricing" where ["Pricing"] was expected): a multi-choice
        # field reads the twin, and must not lose it (the spot check against Close found such values dropped).
        cols.append(
            f"CASE WHEN json_type(raw, '{path}') = 'ARRAY' THEN json_transform(json_extract(raw, '{path}'), '[\"VARCHAR\"]') "
            f"WHEN json_type(raw, '{path}') NOT IN ('NULL', 'OBJECT') THEN [json_extract_string(raw, '{path}')] END AS \"{k}[]\""
        )
    sql = (
        f"SELECT {', '.join(cols)} FROM close.custom_activities WHERE custom_activity_type_id = ? ORDER BY id"
    )
    return fetch_polars(con, sql, [type_id]), keys


def _proposal(c: PlannedColumn, table: str) -> FieldProposal:
    """The plan's column as a confirmed proposal, so that the one translation of column types to transforms
    (`proposal.field_entries`) applies; choice options carry the plan's values (`values`)."""
    spec = c.spec
    col = ColumnType(
        spec.type,
        spec.max_length,
        spec.format,
        spec.lookup_target,
        tuple(label for _, label in spec.options),
        spec.precision,
    )
    values = tuple((label, value) for value, label in spec.options)
    return FieldProposal(
        "activity",
        c.close_field_id,
        c.close_name,
        c.close_type,
        c.multiple,
        table,
        "existing",
        spec.logical_name,
        col,
        1.0,
        "custom activity field",
        True,
        values,
    )


def field_map_for(
    cfg: MappingConfig,
    t: RoutedActivityType,
    columns: list[PlannedColumn],
    frame: pl.DataFrame,
    orphans: Mapping[str, ColumnSpec] | None = None,
) -> tuple[FieldMap, pl.DataFrame]:
    """The type's field map (standard activity columns + one per defined field, typed and numbered as the
    schema plan creates them, + one per kept orphaned field) and the source frame."""
    prefix, table = cfg.settings.publisher_prefix, t.table
    base: list[dict[str, Any]] = [
        {
            "target": "activityid",
            "source": "id",
            "transform": "record_id",
            "args": {"kind": "custom_activity"},
        },
        {"target": "subject", "source": "__type_name", "transform": "text", "max_length": 200},
        {
            "target": f"regardingobjectid_lead_{table}",
            "source": "lead_id",
            "transform": "record_id",
            "args": {"kind": "lead"},
            "lookup": "lead",
        },
        {"target": "ownerid", "source": "user_id", "transform": "owner", "lookup": "systemuser"},
        {"target": "actualend", "source": "activity_at", "transform": "datetime_utc"},
        {
            "target": "statecode",
            "source": "status",
            "transform": "choice",
            "args": {"map": {"published": 1, "draft": 0}},
        },
        {
            "target": "statuscode",
            "source": "status",
            "transform": "choice",
            "args": {"map": {"published": 2, "draft": 1}},
        },
        {"target": f"{prefix}_closeid", "source": "id", "transform": "text", "required": True},
        {"target": "overriddencreatedon", "source": "date_created", "transform": "datetime_utc"},
    ]
    proposals = [_proposal(c, table) for c in columns]
    entries = field_entries(proposals, cfg.settings.option_value_prefix).get(table, [])
    src = frame.with_columns(pl.lit(t.name).alias("__type_name"))
    for e in entries:
        if e.get("transform") in ("choice", "multi_choice"):
            e["args"]["fix"] = (
                f"the schema plan's options of {table}.{e['target']} do not include it (the data "
                "changed since the plan): materialize schema/plan again, then this asset"
            )
        if e.get("transform") in ("multi_choice", "join_list"):
            e["source"] = e["source"] + "[]"  # the list-typed twin column
        if e["source"] not in src.columns:
            src = src.with_columns(
                pl.lit(None, dtype=pl.List(pl.String) if e["source"].endswith("[]") else pl.String).alias(
                    e["source"]
                )
            )
    for fid, spec in (orphans or {}).items():
        # Values of a deleted field, kept as text (lists joined) in the column the plan made for them.
        src = src.with_columns(orphan_text(src, fid).alias(f"__orphan.{fid}"))
        entry: dict[str, Any] = {
            "target": spec.logical_name,
            "source": f"__orphan.{fid}",
            "transform": "text",
        }
        if spec.max_length:
            entry["max_length"] = spec.max_length
        entries.append(entry)
    specs = [
        parse_field(e, "custom_activities.yaml", f"{table}.fields[{n}]", None, prefix, table, cfg.choice_sets)
        for n, e in enumerate(base + entries)
    ]
    return FieldMap("custom_activity", table, "custom_activities.yaml", tuple(specs)), src


def orphan_text(frame: pl.DataFrame, field_id: str) -> pl.Expr:
    """One field's value per instance as text: the scalar, or the list joined with ', '."""
    key = f"custom.{field_id}"
    scalar = pl.col(key).cast(pl.String) if key in frame.columns else pl.lit(None, dtype=pl.String)
    if f"{key}[]" not in frame.columns:
        return scalar
    joined = pl.col(f"{key}[]").cast(pl.List(pl.String)).list.drop_nulls().list.join(", ")
    return pl.coalesce(scalar, pl.when(joined.str.len_chars() > 0).then(joined))


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


def _used_mask(key: str) -> pl.Expr:
    return pl.col(key).is_not_null() | (pl.col(f"{key}[]").list.len() > 0).fill_null(False)


def orphaned_ids(frame: pl.DataFrame, used: list[str], defined: set[str]) -> list[str]:
    """Ids of fields not defined on the type that hold a value in at least one instance."""
    return [
        k.removeprefix("custom.")
        for k in used
        if k.removeprefix("custom.") not in defined and frame.filter(_used_mask(k)).height
    ]


def undefined_field_rejections(
    frame: pl.DataFrame, used: list[str], defined: set[str], t: RoutedActivityType
) -> pl.DataFrame:
    """Instances that use a custom field the type does not define (`orphaned_values: halt`): its column
    would not exist, so the type is halted."""
    parts = []
    for key in used:
        if key.removeprefix("custom.") in defined:
            continue
        bad = frame.filter(_used_mask(key))
        parts.append(
            bad.select(
                pl.col("id").alias("_close_id"),
                pl.lit(key).alias("column"),
                pl.coalesce(pl.col(key), pl.col(f"{key}[]").cast(pl.List(pl.String)).list.join(", ")).alias(
                    "value"
                ),
                pl.lit(
                    f"uses custom field {key.removeprefix('custom.')}, which is not defined on custom activity type "
                    f"'{t.name}' (deleted in Close): table {t.table} has no column for it. Decide with "
                    f"orphaned_values in mappings/custom_activities.yaml (type '{t.name}'): drop (load without "
                    "these values, listed in a report) or column (keep them in a column per field); or define the "
                    "field on the type in Close. This type is halted, the other types proceed"
                ).alias("reason"),
                pl.lit("column_exists").alias("check_name"),
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=REJECTION_SCHEMA)


def dropped_values(frame: pl.DataFrame, field_ids: list[str]) -> pl.DataFrame:
    """(instance_id, field_id, value) of every orphaned value left out (`orphaned_values: drop`)."""
    parts = [
        frame.select(
            pl.col("id").alias("instance_id"),
            pl.lit(fid).alias("field_id"),
            orphan_text(frame, fid).alias("value"),
        ).filter(pl.col("value").is_not_null())
        for fid in field_ids
    ]
    schema = {"instance_id": pl.String, "field_id": pl.String, "value": pl.String}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def unplanned_orphans(frame: pl.DataFrame, field_ids: list[str], t: RoutedActivityType) -> pl.DataFrame:
    """`orphaned_values: column` for a field the saved plan has no column for (it changed since the plan)."""
    parts = [
        frame.filter(_used_mask(f"custom.{fid}")).select(
            pl.col("id").alias("_close_id"),
            pl.lit(f"custom.{fid}").alias("column"),
            orphan_text(frame, fid).alias("value"),
            pl.lit(
                f"values of deleted field {fid} go to a column (orphaned_values: column) but the schema plan has "
                f"no column for it on {t.table}: materialize schema/plan again"
            ).alias("reason"),
            pl.lit("column_exists").alias("check_name"),
        )
        for fid in field_ids
    ]
    return pl.concat(parts) if parts else pl.DataFrame(schema=REJECTION_SCHEMA)


def saved_plan(con: duckdb.DuckDBPyConnection, t: RoutedActivityType) -> SchemaPlan:
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


def stage_type(
    warehouse: WarehouseResource,
    t: RoutedActivityType,
    dataverse: Any | None = None,
    run_id: str | None = None,
) -> dg.MaterializeResult:
    base_cfg = load_mapping_config()
    prefix = base_cfg.settings.publisher_prefix
    with warehouse.connect() as con:
        close_type = find_type(con, t.name, prefix)
        if close_type is None:
            raise dg.Failure(
                f"custom activity type {t.name!r} (mappings/custom_activities.yaml) is not in the Close "
                "data: remove its entry or re-run close2d365 propose-mapping"
            )
        if close_type.table != t.table:
            raise dg.Failure(
                f"custom activity type {t.name!r} is named {close_type.table} by the schema step but "
                f"{t.table} in mappings/custom_activities.yaml: re-run close2d365 propose-mapping"
            )
        plan = saved_plan(con, t)
        frame, used = instance_frame(con, close_type.close_type_id)
        defined = {f.close_field_id for f in close_type.fields}
        try:
            columns = plan_columns(close_type, plan)
        except PlanMismatchError as exc:
            raise StagingError(str(exc)) from exc
        orphans = orphaned_ids(frame, used, defined)
        halted, dropped = pl.DataFrame(schema=REJECTION_SCHEMA), dropped_values(frame, [])
        kept: dict[str, ColumnSpec] = {}
        if t.orphaned_values == "halt":
            halted = undefined_field_rejections(frame, used, defined, t)
        elif t.orphaned_values == "drop":
            dropped = dropped_values(frame, orphans)
        else:
            names = orphan_columns(close_type, orphans, prefix, closeid_column(base_cfg))
            kept = orphan_plan_columns(plan, t.table, names)
            halted = unplanned_orphans(frame, [f for f in orphans if f not in kept], t)
        fmap, src = field_map_for(base_cfg, t, columns, frame, kept)
        cfg = base_cfg.__class__(
            **{**base_cfg.__dict__, "field_maps": {**base_cfg.field_maps, "custom_activity": fmap}}
        )
        mapped = map_object(
            src,
            cfg,
            "custom_activity",
            owner_context(con, cfg),
            entity_sets(con),
            key="id",
            close_object="custom_activity",
        )
        rules = table_rules(t, plan)
        result = validate_and_write(
            warehouse,
            con,
            f"custom_activity_{t.table}",
            rules,
            mapped.frame,
            [halted, mapped.rejections],
            [mapped.notices],
            pk="activityid",
            target_lookup=target_lookup(dataverse),
        )
    extra: dict[str, Any] = {
        "close_type_id": close_type.close_type_id,
        "table": t.table,
        "columns": ", ".join(c.logical_name for c in columns),
        "orphaned_values": t.orphaned_values,
        "orphaned_fields": ", ".join(orphans),
        "instances_using_undefined_fields": halted["_close_id"].n_unique(),
    }
    if t.orphaned_values == "column":
        extra["orphaned_value_columns"] = ", ".join(f"{fid} -> {c.logical_name}" for fid, c in kept.items())
    if dropped.height:
        path = write_frame_csv(report_dir(run_id or "manual") / f"orphaned_values_{t.table}.csv", dropped)
        extra.update(
            dropped_orphaned_values=dropped.height,
            dropped_values_file=dg.MetadataValue.path(str(path)),
            dropped_values=dg.MetadataValue.md(markdown(dropped)),
        )
    return materialize_result(result, extra)


def _rules_for(t: RoutedActivityType) -> Any:
    def rules(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> TableRules:
        return table_rules(t, saved_plan(con, t))

    return rules


def build(t: RoutedActivityType) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    name = f"custom_activity_{t.table}"

    @dg.asset(
        key=[GROUP, name],
        group_name=GROUP,
        deps=[
            close_key("custom_activities"),
            close_key("custom_activity_types"),
            PLAN_KEY,  # the columns and option values staging writes are the plan's
            staged_key("lead"),
            OWNER_MAP_KEY,
            TARGET_METADATA_KEY,
        ],
        description=f"Instances of the Close custom activity type '{t.name}' for the table {t.table}.",
    )
    @reports_api_calls
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
    ) -> dg.MaterializeResult:
        return stage_type(warehouse, t, dataverse, context.run.run_id)

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
