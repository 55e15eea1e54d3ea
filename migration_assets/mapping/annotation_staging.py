"""Staging of staged.annotation: Close notes (html to text, on the lead by default), lead/opportunity status
changes (so the history survives), email/note attachments and call recordings (the loader downloads the
bytes from `_file_url` at load time). Files above the upload limit (organization.maxuploadfilesize, measured
on the base64 size, or settings.yaml attachments.max_size_bytes) are not loaded: they are listed in
`staged.annotation_rejected` (check `max_upload_size`, not counted as errors) and in
`$CLOSE2D365_HOME/reports/oversize_attachments.csv` for the admin; a body served larger than declared is
refused by the loader and added to that list (load/oversize.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from migration_assets.audit.files import oversize_csv_path, write_frame_csv
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.delta_staging import plan, register_ids, staged_addresses
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.mapping.staged_lookups import target_lookup
from migration_assets.mapping.staging import StageResult, current_result, validate_and_write
from migration_assets.mapping.table_staging import DeltaInputs, affected_keys, finish_delta, only_ids
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars, quote, table_exists
from migration_assets.target.checks import MAX_UPLOAD_SIZE, REJECTION_SCHEMA
from migration_assets.target.metadata_cache import cached_rules, entity_sets

ATTACHMENT_KEY = "_attachment_key"


@dataclass(frozen=True)
class AnnotationStaging:
    result: StageResult
    counts: dict[str, int]  # rows read per Close object
    upload_limit: int
    oversize_files: int
    oversize_csv: Path


def upload_limit(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> int:
    if cfg.settings.max_attachment_bytes is not None:
        return cfg.settings.max_attachment_bytes
    return int(con.execute("SELECT maxuploadfilesize FROM staged.target_organization").fetchall()[0][0])


def oversize_rejections(frame: pl.DataFrame, limit: int) -> pl.DataFrame:
    """Attachments whose base64 size exceeds the limit: not loaded, listed for the admin."""
    sized = frame.filter(pl.col("_file_size").is_not_null())
    b64 = (pl.col("_file_size").cast(pl.Float64) / 3).ceil().cast(pl.Int64) * 4
    big = sized.filter(b64 > limit)
    return big.select(
        "_close_id",
        pl.lit("_file_size").alias("column"),
        pl.col("_file_size").cast(pl.String).alias("value"),
        pl.format(
            "file of {} bytes ({} as base64) exceeds the upload limit of " + f"{limit} bytes: not loaded; "
            "listed for the admin (raise organization.maxuploadfilesize up to 131072000 to load it)",
            pl.col("_file_size"),
            b64,
        ).alias("reason"),
        pl.lit(MAX_UPLOAD_SIZE).alias("check_name"),
    ).select(list(REJECTION_SCHEMA))


def with_status_change_kind(frame: pl.DataFrame, src: pl.DataFrame) -> pl.DataFrame:
    """A status change's `_close_object`: a lead's or an opportunity's (Close's `_type`)."""
    types = src.select(
        pl.col("id").alias("_close_id"),
        pl.col("_type") if "_type" in src.columns else pl.lit(None),
    )
    frame = frame.drop("_close_object").join(
        types.rename({types.columns[1]: "_t"}), on="_close_id", how="left"
    )
    return frame.with_columns(
        pl.when(pl.col("_t") == "OpportunityStatusChange")
        .then(pl.lit("opportunity_status_change"))
        .otherwise(pl.lit("lead_status_change"))
        .alias("_close_object")
    ).drop("_t")


def with_file(frame: pl.DataFrame, src: pl.DataFrame, name: str, key: str | None) -> pl.DataFrame:
    """An attachment's or a recording's `_file_url` and `_file_size` (the loader downloads the bytes)."""
    url = "url" if "url" in src.columns else "recording_url"
    files = src.select(
        pl.col(key or "activity_id").alias("_close_id"),
        pl.col(url).alias("_file_url"),
        (pl.col("size") if name == "attachment" else pl.lit(None, dtype=pl.Int64)).alias("_file_size"),
    )
    return frame.join(files, on="_close_id", how="left")


def stage_annotations(
    warehouse: WarehouseResource, dataverse: Any | None, inputs: DeltaInputs | None = None
) -> AnnotationStaging:
    """Map, validate and write staged.annotation; with `inputs`, only the affected rows when the close
    tables were extracted in delta mode (mapping/delta_staging.py: the result equals a full staging)."""
    cfg = load_mapping_config()
    objects = ["note", "attachment", "call_recording"]
    if cfg.activities.status_changes == "annotation":
        objects.insert(1, "status_change")
    frames, rejections, notices, counts = [], [], [], {}
    with warehouse.connect() as con:
        sets, ctx = entity_sets(con), cfg.context()
        limit = upload_limit(con, cfg)
        rules = cached_rules(con, "annotation", cfg)
        delta = None
        if inputs is not None:
            delta = plan(con, "annotation", inputs.reads, inputs.parents, False, rules)
        # A note and its attachments share their Close id (the note's): one key re-stages both.
        keys = affected_keys(con, cfg, "annotation", objects, delta)
        if delta is not None and keys is not None and not keys:
            finish_delta(
                con, cfg, "annotation", objects, delta, keys, staged_addresses(con, "annotation", ())
            )
            oversize = listed_oversize(con)
            result = current_result(con, "annotation").planned(None, 0)
            path = write_frame_csv(oversize_csv_path(), oversize)
            return AnnotationStaging(result, dict.fromkeys(objects, 0), limit, oversize.height, path)
        for n, name in enumerate(objects):
            extra = ("size", "url") if name == "attachment" else ("url",) if name == "call_recording" else ()
            where = only_ids(con, cfg, name, keys, n)
            src = read_object_source(con, cfg, name, extra=extra, where=where)
            counts[name] = src.height
            kind = "lead_status_change" if name == "status_change" else name
            key = None
            if name == "attachment":
                # One activity can have several files: the annotation key is activity id + file URL.
                src = src.with_columns(
                    pl.concat_str([pl.col("activity_id"), pl.lit(":"), pl.col("url")]).alias(ATTACHMENT_KEY)
                )
                key = ATTACHMENT_KEY
            mapped = map_object(src, cfg, name, ctx, sets, key=key, close_object=kind)
            frame = mapped.frame
            if name == "status_change":
                frame = with_status_change_kind(frame, src)
            if name in ("attachment", "call_recording"):
                frame = with_file(frame, src, name, key)
            frames.append(frame)
            rejections.append(mapped.rejections)
            notices.append(mapped.notices)
        frame = pl.concat(frames, how="diagonal_relaxed")
        oversize = oversize_rejections(frame, limit)
        replace = None if keys is None else keys | attachment_keys(con, keys, frame)
        result = validate_and_write(
            warehouse,
            con,
            "annotation",
            rules,
            frame,
            [*rejections, oversize],
            notices,
            target_lookup=target_lookup(dataverse, con),
            replace_keys=replace,
        )
        if delta is not None:  # the rows it re-staged: the attachments by their own keys too
            finish_delta(
                con, cfg, "annotation", objects, delta, replace, staged_addresses(con, "annotation", ())
            )
            result = result.planned(delta.full_reason, None if keys is None else len(keys))
        if keys is not None:  # the admin's list keeps the files of the rows not re-staged
            oversize = listed_oversize(con)
    path = write_frame_csv(oversize_csv_path(), oversize)
    return AnnotationStaging(result, counts, limit, oversize.height, path)


def attachment_keys(con: duckdb.DuckDBPyConnection, activities: set[str], frame: pl.DataFrame) -> set[str]:
    """The annotation keys (`<activity id>:<url>`) of the attachments of `activities`: those staged.annotation
    and its rejected and notices tables hold (replaced: a file may be gone) and those of `frame` (new)."""
    out = set(frame.filter(pl.col("_close_object") == "attachment")["_close_id"].to_list())
    view = register_ids(con, "__attachment_activities", activities)
    for table in ("annotation", "annotation_rejected", "annotation_notices"):
        if table_exists(con, "staged", table):
            rows = con.execute(
                f"SELECT DISTINCT _close_id FROM staged.{table} WHERE strpos(_close_id, ':') > 0 "
                f"AND split_part(_close_id, ':', 1) IN (SELECT id FROM {view})"
            ).fetchall()
            out |= {str(r[0]) for r in rows}
    return out


def listed_oversize(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every oversize file staged.annotation_rejected lists (an incremental staging's whole list)."""
    cols = ", ".join(quote(c) for c in REJECTION_SCHEMA)
    return fetch_polars(
        con,
        f"SELECT {cols} FROM staged.annotation_rejected WHERE check_name = ? ORDER BY _close_id, value",
        [MAX_UPLOAD_SIZE],
    ).cast(REJECTION_SCHEMA)
