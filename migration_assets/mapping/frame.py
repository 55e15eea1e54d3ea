"""Map one Close object (a field map of `mappings/fields/*.yaml`) to a Dataverse-shaped frame.

Reads the source columns the field map names out of `close.<table>`, applies THE mapping engine, then
puts the result in staged-contract form: `_close_id`/`_close_object`, lookups as
`<navigation property>@odata.bind` = `/<entity set>(<id>)`. Mapping problems come back as rejection rows
(`rejected`) and notices (`truncated`/`nulled` values that are still loaded, reported, never silent).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from migration_assets.extract.tables import schema as close_schema
from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.engine import REJECTED, apply_field_map, join_sources
from migration_assets.mapping.staging_source import read_source, root_of
from migration_assets.mapping.transform_exprs import TransformContext
from migration_assets.target.checks import BIND, REJECTION_SCHEMA

# Close object name (objects.yaml) -> the `_close_object` kind of the staged contract.
CLOSE_OBJECT = {
    "account": "lead",
    "lead": "lead",
    "contact": "contact",
    "opportunity": "opportunity",
    "call": "call",
    "email": "email",
    "sms": "sms",
    "task": "task",
    "meeting": "meeting",
    "note": "note",
    "attachment": "attachment",
    "call_recording": "call_recording",
}
# Output column -> extraction column, where the field maps use the Close field name and the extraction
# table (derived rows, no `raw`) stores it under another name.
ALIASES: dict[str, dict[str, str]] = {
    "attachments": {"activity_type": "source_type", "date_created": "activity_date_created"},
    "call_recordings": {"recording_url": "url", "date_created": "activity_date_created"},
}
NOTICE_SCHEMA = {**REJECTION_SCHEMA, "action": pl.String}
# Source rows mapped at a time (`map_object`): the mapping's intermediate columns of one slice, about
# 100 MB for the widest object, instead of those of the whole table.
MAP_CHUNK_ROWS = 20_000
# Transforms whose input is a list: multi-valued custom fields are read as lists of text.
LIST_STEPS = ("multi_choice", "join_list")


@dataclass
class Mapped:
    frame: pl.DataFrame  # every source row, staged-contract columns (rejected ones included)
    rejections: pl.DataFrame  # REJECTION_SCHEMA (+ nothing else): rows that must not be loaded
    notices: pl.DataFrame  # NOTICE_SCHEMA: truncated / nulled values of rows that are loaded


def source_columns(cfg: MappingConfig, obj_name: str, extra: Sequence[str] = ()) -> list[str]:
    obj, fmap = cfg.object(obj_name), cfg.field_map(obj_name)
    joined = {f"{j.prefix}{c}" for j in obj.joins for c in j.columns}
    cols: list[str] = [obj.key, *extra, *(j.left_on for j in obj.joins)]
    for spec in fmap.fields:
        for path in spec.sources:
            if path not in joined:
                cols.append(root_of(path))
        if spec.when is not None:
            cols.append(spec.when.source)
    return list(dict.fromkeys(c for c in cols if c not in joined))


def read_object_source(
    con: duckdb.DuckDBPyConnection,
    cfg: MappingConfig,
    obj_name: str,
    extra: Sequence[str] = (),
    where: str | None = None,
) -> pl.DataFrame:
    """The source frame of an object: its columns plus the joins objects.yaml declares."""
    obj = cfg.object(obj_name)
    typed = close_schema(obj.source)
    lists = {
        s.sources[0]
        for s in cfg.field_map(obj_name).fields
        if s.sources and s.sources[0].startswith("custom.") and s.steps[0].name in LIST_STEPS
    }
    frame = read_source(
        con,
        obj.source,
        typed,
        source_columns(cfg, obj_name, extra),
        ALIASES.get(obj.source),
        where,
        list_columns=lists,
    )
    if obj.joins:
        others = {}
        for j in obj.joins:
            others[j.source] = read_source(con, j.source, close_schema(j.source), [j.right_on, *j.columns])
        frame = join_sources(frame, others, obj.joins)
    return frame


def object_chunks(
    con: duckdb.DuckDBPyConnection,
    cfg: MappingConfig,
    obj_name: str,
    extra: Sequence[str] = (),
    chunk_rows: int = 10_000,
) -> Iterator[pl.DataFrame]:
    """The object's source frame in slices of `chunk_rows` rowids, so that reading the JSON out of
    `raw` and mapping never hold a whole large table (300k activities) at once. The slices run to the
    highest rowid, not to the row count: a delta's merge deletes and appends rows, leaving gaps below."""
    source = cfg.object(obj_name).source
    end = (
        con.execute(f'SELECT coalesce(max(rowid) + 1, 0) FROM close."{source}"').fetchall()[0][0]
        if has_close(con, source)
        else 0
    )
    if not end:
        yield read_object_source(con, cfg, obj_name, extra)
        return
    for start in range(0, end, chunk_rows):
        yield read_object_source(
            con, cfg, obj_name, extra, where=f"rowid >= {start} AND rowid < {start + chunk_rows}"
        )


def has_close(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    from migration_assets.resources.warehouse import table_exists

    return table_exists(con, "close", table)


def bind_expr(column: str, entity_set: str, lookup_by: str | None) -> pl.Expr:
    value = pl.col(column).cast(pl.String)
    if lookup_by:
        body = pl.concat_str(
            [pl.lit(f"/{entity_set}({lookup_by}='"), value.str.replace_all("'", "''"), pl.lit("')")]
        )
    else:
        body = pl.concat_str([pl.lit(f"/{entity_set}("), value, pl.lit(")")])
    return body.alias(column + BIND)


def map_object(
    source: pl.DataFrame,
    cfg: MappingConfig,
    obj_name: str,
    ctx: TransformContext,
    entity_sets: Mapping[str, str],
    key: str | None = None,
    close_object: str | None = None,
) -> Mapped:
    """Apply the object's field map; lookups become `@odata.bind` columns; problems are split into
    rejections (row not loaded) and notices (value truncated or dropped, row loaded).

    A field map is row-local, so it is applied to slices of MAP_CHUNK_ROWS source rows and the results
    concatenated: the columns each transform step materializes are held for one slice at a time, not for
    a large org's whole table (issue 15)."""
    if source.height <= MAP_CHUNK_ROWS:
        return _map_slice(source, cfg, obj_name, ctx, entity_sets, key, close_object)
    parts = [
        _map_slice(source.slice(start, MAP_CHUNK_ROWS), cfg, obj_name, ctx, entity_sets, key, close_object)
        for start in range(0, source.height, MAP_CHUNK_ROWS)
    ]
    return Mapped(
        pl.concat([p.frame for p in parts], how="diagonal_relaxed"),
        pl.concat([p.rejections for p in parts], how="diagonal_relaxed"),
        pl.concat([p.notices for p in parts], how="diagonal_relaxed"),
    )


def _map_slice(
    source: pl.DataFrame,
    cfg: MappingConfig,
    obj_name: str,
    ctx: TransformContext,
    entity_sets: Mapping[str, str],
    key: str | None,
    close_object: str | None,
) -> Mapped:
    fmap = cfg.field_map(obj_name)
    table = fmap.table
    key = key or cfg.object(obj_name).key
    policies = {s.target: cfg.settings.truncation_policy(table, s.target) for s in fmap.fields}
    result = apply_field_map(source, fmap, ctx, key=key, truncation=policies, missing_columns="null")
    kind = close_object or CLOSE_OBJECT.get(obj_name, obj_name)
    frame = result.frame.rename({"close_id": "_close_id"})
    binds = []
    for spec in fmap.fields:
        if spec.lookup:
            es = entity_sets.get(spec.lookup, spec.lookup + "s")
            binds.append((spec.target, bind_expr(spec.target, es, spec.lookup_by)))
    if binds:
        frame = frame.with_columns([e for _, e in binds]).drop([t for t, _ in binds])
    frame = frame.with_columns(pl.lit(kind).alias("_close_object"))
    probs = result.problems.rename({"close_id": "_close_id"}).with_columns(
        pl.col("column").replace({t: t + BIND for t, _ in binds}),
        pl.lit("mapping").alias("check_name"),
    )
    rejections = probs.filter(pl.col("action") == REJECTED).select(list(REJECTION_SCHEMA))
    notices = probs.filter(pl.col("action") != REJECTED).select(list(NOTICE_SCHEMA))
    return Mapped(frame, rejections, notices)
