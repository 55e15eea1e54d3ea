"""Staging of one Close custom activity type (mappings/custom_activities.yaml) into its custom activity table.

Columns, their types and choice option values come from the saved schema plan (schema/plan), the one
source of what is deployed: a Close label is written as the option value whose label it is. Values of
fields deleted from the type follow the entry's `orphaned_values` (mapping/custom_activity_frames.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from migration_assets.audit.files import report_dir, write_frame_csv
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.custom_activities import activity_types, orphan_columns
from migration_assets.mapping.custom_activity_frames import (
    custom_keys,
    dropped_values,
    instance_frame,
    orphan_text,
    orphaned_ids,
    undefined_field_rejections,
    unplanned_orphans,
)
from migration_assets.mapping.delta_staging import (
    DeltaPlan,
    affected_source_ids,
    lookup_paths,
    record,
    register_ids,
    source_leads,
    table_digest,
)
from migration_assets.mapping.delta_staging import plan as delta_plan
from migration_assets.mapping.fields import FieldMap, parse_field
from migration_assets.mapping.frame import map_object
from migration_assets.mapping.staged_lookups import owner_context, target_lookup
from migration_assets.mapping.staging import StageResult, current_result, validate_and_write
from migration_assets.resources.warehouse import WarehouseResource, quote
from migration_assets.target.checks import REJECTION_SCHEMA
from migration_assets.target.custom_activity_plan import (
    PlanMismatchError,
    PlannedColumn,
    RoutedActivityType,
    orphan_plan_columns,
    plan_columns,
)
from migration_assets.target.custom_activity_rules import saved_plan, table_rules
from migration_assets.target.metadata_cache import StagingError, entity_sets
from migration_assets.target.proposal import FieldProposal, field_entries
from migration_assets.target.schema_build import closeid_column
from migration_assets.target.schema_plan import ColumnSpec
from migration_assets.target.schema_types import ColumnType


class ActivityTypeMismatchError(StagingError):
    """The reviewed mapping names a type the Close data lacks, or names its table differently."""


@dataclass
class CustomActivityStaging:
    """What staging one type did: the staged table's counts and what became of the orphaned values."""

    result: StageResult
    close_type_id: str
    columns: list[PlannedColumn]
    orphans: list[str]  # ids of deleted fields holding values
    halted: pl.DataFrame  # the rejections that halt the type
    dropped: pl.DataFrame  # orphaned values left out (`drop`)
    kept: dict[str, ColumnSpec]  # field id -> the planned column keeping its values (`column`)
    halted_instances: int = 0  # instances of the staged table halted (every one, also when incremental)
    dropped_file: Path | None = None


def find_type(con: duckdb.DuckDBPyConnection, name: str, prefix: str) -> Any | None:
    """The Close type of that name with its table/column names (`custom_activities.activity_types`)."""
    raw = [json.loads(r[0]) for r in con.execute("SELECT raw FROM close.custom_activity_types").fetchall()]
    for t in activity_types(raw, prefix):
        if t.close_name.strip().casefold() == name.strip().casefold():
            return t
    return None


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


def base_fields(prefix: str, table: str) -> list[dict[str, Any]]:
    """The standard activity columns every custom activity table gets."""
    return [
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
        for n, e in enumerate(base_fields(prefix, table) + entries)
    ]
    return FieldMap("custom_activity", table, "custom_activities.yaml", tuple(specs)), src


def stage_custom_activity(
    warehouse: WarehouseResource,
    t: RoutedActivityType,
    dataverse: Any | None = None,
    run_id: str | None = None,
    incremental: bool = False,
) -> CustomActivityStaging:
    """Map, validate and write staged.custom_activity_<table>; the dropped orphaned values go to
    reports/<run_id>/orphaned_values_<table>.csv. `incremental`: when close.custom_activities was extracted
    in delta mode, only the affected instances (mapping/delta_staging.py; the result equals a full staging).
    What is decided over the whole type (the fields deleted from it that hold values) is read from every
    instance and is part of the fingerprint: a change re-stages the type in full."""
    base_cfg = load_mapping_config()
    prefix = base_cfg.settings.publisher_prefix
    staged_table = f"custom_activity_{t.table}"
    with warehouse.connect() as con:
        close_type = find_type(con, t.name, prefix)
        if close_type is None:
            raise ActivityTypeMismatchError(
                f"custom activity type {t.name!r} (mappings/custom_activities.yaml) is not in the Close "
                "data: remove its entry or re-run close2d365 propose-mapping"
            )
        if close_type.table != t.table:
            raise ActivityTypeMismatchError(
                f"custom activity type {t.name!r} is named {close_type.table} by the schema step but "
                f"{t.table} in mappings/custom_activities.yaml: re-run close2d365 propose-mapping"
            )
        plan = saved_plan(con, t)
        used = custom_keys(con, close_type.close_type_id)
        defined = {f.close_field_id for f in close_type.fields}
        try:
            columns = plan_columns(close_type, plan)
        except PlanMismatchError as exc:
            raise StagingError(str(exc)) from exc
        orphans = orphaned_ids(con, close_type.close_type_id, used, defined)
        kept: dict[str, ColumnSpec] = {}
        if t.orphaned_values == "column":
            names = orphan_columns(close_type, orphans, prefix, closeid_column(base_cfg))
            kept = orphan_plan_columns(plan, t.table, names)
        columns_only = instance_frame(con, close_type.close_type_id, used, ids=())
        fmap, _ = field_map_for(base_cfg, t, columns, columns_only, kept)
        rules = table_rules(t, plan)
        delta = None
        if incremental:
            extra = {
                "close.custom_activity_types": table_digest(con, "close", "custom_activity_types"),
                "schema_plan": repr([c for c in plan.columns if c.table == t.table]),
                "orphaned_fields": json.dumps(sorted(orphans)),
                "orphan_columns": repr(sorted(kept.items())),
            }
            delta = delta_plan(con, staged_table, ("custom_activities",), ("lead",), True, rules, extra)
        keys = type_keys(con, delta, close_type.close_type_id, lookup_paths(fmap.fields), staged_table)
        # A delta reads only the instances it re-stages (the whole-type decisions above read every one).
        frame = instance_frame(con, close_type.close_type_id, used, keys)
        halted, dropped = pl.DataFrame(schema=REJECTION_SCHEMA), dropped_values(frame, [])
        if t.orphaned_values == "halt":
            halted = undefined_field_rejections(frame, used, defined, t)
        elif t.orphaned_values == "drop":
            dropped = dropped_values(frame, orphans)
        else:
            halted = unplanned_orphans(frame, [f for f in orphans if f not in kept], t)
        if delta is not None and keys is not None and not keys:
            record(con, delta, restaged_rows(con, keys))
            result = current_result(con, staged_table).planned(None, 0)
        else:
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
            result = validate_and_write(
                warehouse,
                con,
                staged_table,
                rules,
                mapped.frame,
                [halted, mapped.rejections],
                [mapped.notices],
                pk="activityid",
                target_lookup=target_lookup(dataverse, con),
                replace_keys=keys,
            )
            if delta is not None:
                record(con, delta, restaged_rows(con, keys) if keys is not None else None)
                result = result.planned(delta.full_reason, None if keys is None else len(keys))
        halted_instances = halted["_close_id"].n_unique() if keys is None else halted_in(con, staged_table)
    staging = CustomActivityStaging(
        result, close_type.close_type_id, columns, orphans, halted, dropped, kept, halted_instances
    )
    if dropped.height:
        path = report_dir(run_id or "manual") / f"orphaned_values_{t.table}.csv"
        staging.dropped_file = write_frame_csv(path, dropped)
    return staging


def type_keys(
    con: duckdb.DuckDBPyConnection,
    delta: DeltaPlan | None,
    type_id: str,
    lookups: dict[str, list[str]],
    staged_table: str,
) -> set[str] | None:
    """The instance ids of the type to re-stage (None: all): the affected ones of this type (changed, of a
    dirty lead or a re-staged parent) and the deleted ones it staged (or rejected) last time."""
    if delta is None or not delta.incremental:
        return None
    keys = affected_source_ids(con, delta, "custom_activities", "id", lookups=lookups)
    if not keys:
        return keys
    view = register_ids(con, "__custom_activity_keys", keys)
    mine = con.execute(
        f"SELECT id FROM close.custom_activities WHERE id IN (SELECT id FROM {view}) "
        "AND custom_activity_type_id = ? UNION "
        f"SELECT _close_id FROM staged.{quote(staged_table)} WHERE _close_id IN (SELECT id FROM {view}) UNION "
        f"SELECT _close_id FROM staged.{quote(staged_table + '_rejected')} WHERE _close_id IN (SELECT id FROM {view})",
        [type_id],
    ).fetchall()
    return {str(r[0]) for r in mine}


def restaged_rows(con: duckdb.DuckDBPyConnection, keys: set[str]) -> pl.DataFrame:
    """The re-staged instances with their leads (delta_staging.record), for the tables staged after."""
    leads = source_leads(con, "custom_activities", "id", keys)
    ids = pl.DataFrame({"close_id": sorted(keys)}, schema={"close_id": pl.String})
    return ids.join(leads.unique("close_id"), on="close_id", how="left").with_columns(
        pl.lit(None, dtype=pl.String).alias("ref")
    )


def halted_in(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """The instances staged.<table>_rejected holds as halted (an incremental staging's whole count)."""
    row = con.execute(
        f"SELECT count(DISTINCT _close_id) FROM staged.{quote(table + '_rejected')} "
        "WHERE check_name = 'column_exists'"
    ).fetchone()
    return int(row[0]) if row else 0
