"""THE mapping engine: applies a field map to a Polars frame of Close rows, vectorised.

Every target column is one Polars expression built from the field map (sources -> transform steps ->
condition -> required check -> MaxLength policy). Rows that cannot be mapped are never dropped: each
problem is a row of `MappingResult.problems` (close id, column, value, reason, action) and the staging
asset routes rejected rows to `staged/<table>_rejected`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from migration_assets.mapping.fields import FieldMap, FieldSpec
from migration_assets.mapping.transform_exprs import BUILDERS, NULL_STR, Mapped, Source, TransformContext

CLOSE_ID = "close_id"
PROBLEM_SCHEMA = {
    "close_id": pl.String,
    "column": pl.String,
    "value": pl.String,
    "reason": pl.String,
    "action": pl.String,
}
REJECTED, NULLED, TRUNCATED, CLEANED = "rejected", "nulled", "truncated", "cleaned"
# C0 control characters other than tab, newline and carriage return: invalid in XML 1.0, which the SDK's
# SOAP endpoint and Outlook need, and never meaningful in CRM text. Removed from every text value, reported.
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F]"
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


class SourceError(ValueError):
    """A field map refers to a column the source frame does not have (or cannot be navigated)."""


@dataclass(frozen=True)
class MappingResult:
    frame: pl.DataFrame  # close_id + one column per target, every source row (rejected ones included)
    problems: pl.DataFrame  # PROBLEM_SCHEMA; action: rejected | nulled | truncated | cleaned

    @property
    def rejected_ids(self) -> pl.Series:
        return self.problems.filter(pl.col("action") == REJECTED)[CLOSE_ID].unique(maintain_order=True)

    def accepted(self) -> pl.DataFrame:
        return self.frame.filter(~pl.col(CLOSE_ID).is_in(self.rejected_ids.implode()))

    def rejected(self) -> pl.DataFrame:
        """Rejected rows with a readable `reason` ("column: reason (value); ...")."""
        reasons = (
            self.problems.filter(pl.col("action") == REJECTED)
            .group_by(CLOSE_ID, maintain_order=True)
            .agg(
                pl.format("{}: {} ({})", "column", "reason", pl.col("value").fill_null("null"))
                .str.join("; ")
                .alias("reason")
            )
        )
        return self.frame.join(reasons, on=CLOSE_ID, how="inner")


def _dtype(schema: pl.Schema, expr: pl.Expr) -> pl.DataType:
    return pl.LazyFrame(schema=schema).select(expr.alias("x")).collect_schema()["x"]


def resolve_source(path: str, schema: pl.Schema, spec: FieldSpec | None = None) -> Source:
    """A source path -> expression: an exact column name first (Close has dotted keys such as
    `custom.cf_x` and joined `lead.name`), else `col[0].field[1].sub` navigation of lists and structs."""
    where = f"{spec.file} line {spec.line}: source {path!r}" if spec else f"source {path!r}"
    if path in schema:
        return Source(pl.col(path), schema[path])
    segments = [
        (m.group(1), [int(i) for i in re.findall(r"\d+", m.group(2))]) for m in _SEGMENT.finditer(path)
    ]
    if not segments or segments[0][0] not in schema:
        known = ", ".join(sorted(schema.names()))
        raise SourceError(
            f"{where}: {segments[0][0] if segments else path!r} is not a column (columns: {known})"
        )
    expr, dtype = pl.col(segments[0][0]), schema[segments[0][0]]
    if dtype == pl.Null:  # no record had a value: every nested path under it is null as well
        return Source(pl.lit(None), pl.Null())
    for n, (name, indices) in enumerate(segments):
        if n > 0:
            if not isinstance(dtype, pl.Struct) or name not in {f.name for f in dtype.fields}:
                raise SourceError(f"{where}: cannot read field {name!r} of a {dtype} value")
            expr = expr.struct.field(name)
            dtype = _dtype(schema, expr)
        for index in indices:
            if not isinstance(dtype, pl.List):
                raise SourceError(f"{where}: cannot index [{index}] into a {dtype} value")
            expr = expr.list.get(index, null_on_oob=True)
            dtype = _dtype(schema, expr)
    return Source(expr, dtype)


def _value_col(i: int) -> str:
    return f"__step_value{i}"


def _error_col(i: int) -> str:
    return f"__step_error{i}"


def _step_values(
    source: pl.DataFrame, specs: Sequence[FieldSpec], ctx: TransformContext, missing: str
) -> tuple[pl.DataFrame, set[int]]:
    """Each field's transform steps, one step of every field per pass, each step's value (and first error)
    materialized as a column (`_value_col`, `_error_col`): a step reads the previous step's column, never
    its expression. Nested expressions grow with every step that uses its input more than once (a name
    split of a picked contact: seconds to plan per call, whatever the row count). Returns the frame and
    the fields that have an error column."""
    schema = source.schema
    inputs: dict[int, list[Source]] = {}
    constants: list[pl.Expr] = []
    for i, spec in enumerate(specs):
        sources, absent = [], False
        for path in spec.sources:
            try:
                sources.append(resolve_source(path, schema, spec))
            except SourceError:
                if missing != "null" or path.split(".")[0].split("[")[0] in schema:
                    raise
                absent = True  # a column no extracted record had: the target is null (transforms skipped)
        if absent:
            constants.append(pl.lit(None).alias(_value_col(i)))
        else:
            inputs[i] = sources
    work = source.with_columns(constants) if constants else source
    with_error: set[int] = set()
    depth = max((len(specs[i].steps) for i in inputs), default=0)
    for n in range(depth):
        exprs: list[pl.Expr] = []
        for i, sources in inputs.items():
            steps = specs[i].steps
            if n >= len(steps):
                continue
            step_inputs = sources if n == 0 else [Source(pl.col(_value_col(i)), work.schema[_value_col(i)])]
            mapped = BUILDERS[steps[n].name](step_inputs, dict(steps[n].args), ctx)
            exprs.append(mapped.value.alias(_value_col(i)))
            if mapped.error is not None:
                before = pl.col(_error_col(i)) if i in with_error else NULL_STR
                exprs.append(pl.coalesce(before, mapped.error).alias(_error_col(i)))
                with_error.add(i)
        work = work.with_columns(exprs)
    return work, with_error


def _field_exprs(
    spec: FieldSpec, i: int, schema: pl.Schema, has_error: bool, policy: str
) -> tuple[Mapped, pl.Expr, pl.Expr]:
    """(value + error, truncated-away text, text cleaned of control characters) for one target column,
    over its materialized step value (`_step_values`, whose frame's `schema` is given)."""
    value: pl.Expr = pl.col(_value_col(i))
    is_text = schema[_value_col(i)] == pl.String
    error: pl.Expr = pl.col(_error_col(i)) if has_error else NULL_STR
    if spec.when is not None:
        applies = pl.col(spec.when.source).cast(pl.String).is_in(list(spec.when.values)).fill_null(False)
        value, error = pl.when(applies).then(value), pl.when(applies).then(error).otherwise(NULL_STR)
    if spec.required:
        error = pl.coalesce(
            error, pl.when(value.is_null()).then(pl.lit("required value is missing")).otherwise(NULL_STR)
        )
    cleaned = NULL_STR
    if is_text:
        dirty = value.str.contains(CONTROL_CHARS)
        stripped = value.str.replace_all(CONTROL_CHARS, "").str.strip_chars()  # as text_expr trims
        cleaned = pl.when(dirty).then(stripped)
        value = pl.when(dirty).then(pl.when(stripped.str.len_chars() > 0).then(stripped)).otherwise(value)
    cut = NULL_STR
    limit = spec.max_length or (spec.custom.max_length if spec.custom else None)
    if limit and is_text:
        too_long = value.str.len_chars() > limit
        if policy == "truncate":
            cut = pl.when(too_long).then(value.str.slice(limit)).otherwise(NULL_STR)
            value = pl.when(too_long).then(value.str.slice(0, limit)).otherwise(value)
        else:
            reason = pl.format(f"longer than MaxLength {limit} ({{}} characters)", value.str.len_chars())
            error = pl.coalesce(error, pl.when(too_long).then(reason).otherwise(NULL_STR))
    value = pl.when(error.is_null()).then(value)
    return Mapped(value, error), cut, cleaned


def apply_field_map(
    source: pl.DataFrame,
    field_map: FieldMap,
    ctx: TransformContext,
    key: str = "id",
    truncation: Mapping[str, str] | None = None,
    missing_columns: str = "error",
) -> MappingResult:
    """Map Close rows to Dataverse-shaped columns.

    key:           source column with the Close id (becomes `close_id`, the key of problems)
    truncation:    target column -> "reject" | "truncate" (Settings.truncation_policy gives these)
    missing_columns: "error" (a misspelt source fails loudly) or "null" (a top-level column absent from
                   the extraction, e.g. a field no record had, maps to null)
    """
    if key not in source.columns:
        raise SourceError(
            f"key column {key!r} is not in the source frame (columns: {', '.join(source.columns)})"
        )
    policy = dict(truncation or {})
    schema = source.schema
    work, with_error = _step_values(source, field_map.fields, ctx, missing_columns)
    selects: list[pl.Expr] = [pl.col(key).cast(pl.String).alias(CLOSE_ID)]
    for i, spec in enumerate(field_map.fields):
        mapped, cut, cleaned = _field_exprs(
            spec, i, work.schema, i in with_error, policy.get(spec.target, "reject")
        )
        selects += [
            mapped.value.alias(spec.target),
            mapped.error.alias(f"__err{i}"),
            cut.alias(f"__cut{i}"),
            cleaned.alias(f"__cln{i}"),
        ]
    out = work.select(selects)
    for spec in field_map.fields:
        if spec.unless:
            out = out.with_columns(
                pl.when(pl.col(spec.unless).is_null()).then(pl.col(spec.target)).alias(spec.target)
            )
    problems = _problems(source, out, field_map.fields, schema, key)
    targets = [CLOSE_ID, *(s.target for s in field_map.fields)]
    return MappingResult(out.select(targets), problems)


def _problems(
    source: pl.DataFrame, out: pl.DataFrame, specs: Sequence[FieldSpec], schema: pl.Schema, key: str
) -> pl.DataFrame:
    frames = []
    for i, spec in enumerate(specs):
        err, cut, cleaned = out[f"__err{i}"], out[f"__cut{i}"], out[f"__cln{i}"]
        if cleaned.null_count() < len(cleaned):
            rows = out.with_columns(__c=cleaned).filter(pl.col("__c").is_not_null())
            frames.append(
                pl.DataFrame(
                    {
                        "close_id": rows[CLOSE_ID],
                        "column": [spec.target] * rows.height,
                        "value": rows["__c"],
                        "reason": [
                            "control characters removed (invalid in XML 1.0); the cleaned text is in value"
                        ]
                        * rows.height,
                        "action": [CLEANED] * rows.height,
                    },
                    schema=PROBLEM_SCHEMA,
                )
            )
        if err.null_count() < len(err):
            action = NULLED if spec.on_error == "keep_row" else REJECTED
            rows = source.with_columns(__e=err).filter(pl.col("__e").is_not_null())
            values = [_repr(rows, spec, schema)[n] for n in range(rows.height)]
            frames.append(
                pl.DataFrame(
                    {
                        "close_id": rows[key].cast(pl.String),
                        "column": [spec.target] * rows.height,
                        "value": values,
                        "reason": rows["__e"],
                        "action": [action] * rows.height,
                    },
                    schema=PROBLEM_SCHEMA,
                )
            )
        if cut.null_count() < len(cut):
            rows = out.with_columns(__c=cut).filter(pl.col("__c").is_not_null())
            frames.append(
                pl.DataFrame(
                    {
                        "close_id": rows[CLOSE_ID],
                        "column": [spec.target] * rows.height,
                        "value": rows["__c"],
                        "reason": ["truncated to MaxLength; cut text in value"] * rows.height,
                        "action": [TRUNCATED] * rows.height,
                    },
                    schema=PROBLEM_SCHEMA,
                )
            )
    return pl.concat(frames) if frames else pl.DataFrame(schema=PROBLEM_SCHEMA)


def _repr(rows: pl.DataFrame, spec: FieldSpec, schema: pl.Schema) -> list[str | None]:
    """The offending source value(s) as text, computed only for problem rows (few), so Python is fine."""
    if not spec.sources:
        return [None] * rows.height
    exprs = []
    for n, path in enumerate(spec.sources):
        try:
            exprs.append(resolve_source(path, schema).expr.alias(f"s{n}"))
        except SourceError:
            exprs.append(pl.lit(None).alias(f"s{n}"))
    values = rows.select(exprs).rows()
    return [None if all(v is None for v in r) else ", ".join(_short(v) for v in r) for r in values]


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def join_sources(
    base: pl.DataFrame, others: Mapping[str, pl.DataFrame], joins: Sequence[Any]
) -> pl.DataFrame:
    """Left-join the columns an object map declares (objects.yaml `joins`) onto its source rows.
    The joined side is de-duplicated on its key first, so a join never multiplies source rows."""
    out = base
    for j in joins:
        if j.source not in others:
            raise SourceError(f"join needs the close.{j.source} table, which was not provided")
        right = others[j.source].select([j.right_on, *j.columns]).unique(subset=j.right_on, keep="first")
        right = right.rename({c: f"{j.prefix}{c}" for c in j.columns})
        out = out.join(right, left_on=j.left_on, right_on=j.right_on, how="left", coalesce=True)
    return out


def dedupe_rows(
    frame: pl.DataFrame, key: str, order_by: str, keep: str = "oldest", merged_column: str | None = None
) -> pl.DataFrame:
    """One row per `key` (e.g. accountid), keeping the oldest/newest by `order_by`; `merged_column`
    lists every close_id merged into the kept row (oldest first), so each merge stays auditable."""
    ordered = frame.sort(order_by, descending=keep == "newest", nulls_last=True, maintain_order=True)
    kept = ordered.unique(subset=key, keep="first", maintain_order=True)
    if merged_column:
        merged = (
            frame.sort(order_by, nulls_last=True, maintain_order=True)
            .group_by(key, maintain_order=True)
            .agg(pl.col(CLOSE_ID).str.join("; ").alias(merged_column))
        )
        kept = kept.join(merged, on=key, how="left")
    return kept
