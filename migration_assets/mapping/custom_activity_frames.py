"""The instances of a Close custom activity type as a frame, and what happens to values of fields deleted from
the type in Close (the entry's `orphaned_values` in mappings/custom_activities.yaml): `halt` rejects the
instances that use them, `drop` lists the values left out, `column` keeps them as text in a planned column."""

from __future__ import annotations

from collections.abc import Collection

import duckdb
import polars as pl

from migration_assets.resources.warehouse import fetch_polars
from migration_assets.target.checks import REJECTION_SCHEMA
from migration_assets.target.custom_activity_plan import RoutedActivityType

BASE = ["id", "lead_id", "contact_id", "user_id", "activity_at", "date_created", "status"]


def custom_keys(con: duckdb.DuckDBPyConnection, type_id: str) -> list[str]:
    """Every `custom.*` key an instance of the type holds (its frame's columns, whichever rows it reads)."""
    return [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT k FROM (SELECT unnest(json_keys(raw)) AS k FROM close.custom_activities "
            "WHERE custom_activity_type_id = ?) WHERE k LIKE 'custom.%' ORDER BY k",
            [type_id],
        ).fetchall()
    ]


def instance_frame(
    con: duckdb.DuckDBPyConnection, type_id: str, keys: list[str], ids: Collection[str] | None = None
) -> pl.DataFrame:
    """The type's instances (`ids` of them; None: all) with each of its `custom.*` `keys` as text (lists as
    JSON lists)."""
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
    where = "custom_activity_type_id = ?"
    if ids is not None:
        con.register("__instance_ids", pl.DataFrame({"id": sorted(ids)}, schema={"id": pl.String}).to_arrow())
        where += " AND id IN (SELECT id FROM __instance_ids)"
    try:
        return fetch_polars(
            con, f"SELECT {', '.join(cols)} FROM close.custom_activities WHERE {where} ORDER BY id", [type_id]
        )
    finally:
        if ids is not None:
            con.unregister("__instance_ids")


def orphan_text(frame: pl.DataFrame, field_id: str) -> pl.Expr:
    """One field's value per instance as text: the scalar, or the list joined with ', '."""
    key = f"custom.{field_id}"
    scalar = pl.col(key).cast(pl.String) if key in frame.columns else pl.lit(None, dtype=pl.String)
    if f"{key}[]" not in frame.columns:
        return scalar
    joined = pl.col(f"{key}[]").cast(pl.List(pl.String)).list.drop_nulls().list.join(", ")
    return pl.coalesce(scalar, pl.when(joined.str.len_chars() > 0).then(joined))


def _used_mask(key: str) -> pl.Expr:
    return pl.col(key).is_not_null() | (pl.col(f"{key}[]").list.len() > 0).fill_null(False)


def orphaned_ids(
    con: duckdb.DuckDBPyConnection, type_id: str, used: list[str], defined: set[str]
) -> list[str]:
    """Ids of fields not defined on the type that hold a value in at least one instance (of all of them,
    whichever a delta re-stages): a value as `_used_mask` reads the frame, a scalar or a non-empty list."""
    candidates = [k for k in used if k.removeprefix("custom.") not in defined]
    if not candidates:
        return []
    holds = []
    for k in candidates:
        path = '$."' + k + '"'
        holds.append(
            f"bool_or(CASE WHEN json_type(raw, '{path}') = 'ARRAY' THEN json_array_length(raw, '{path}') > 0 "
            f"ELSE json_extract_string(raw, '{path}') IS NOT NULL END)"
        )
    row = con.execute(
        f"SELECT {', '.join(holds)} FROM close.custom_activities WHERE custom_activity_type_id = ?", [type_id]
    ).fetchall()[0]
    return [k.removeprefix("custom.") for k, held in zip(candidates, row, strict=True) if held]


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
