"""Pandera schemas built from target metadata, and the row-level validation of a staged frame.

`build_schema(rules, columns, known_binds)` gives a `pandera.polars.DataFrameSchema` with one column per
staged column: MaxLength, required, choice values, number ranges, date formats, email/url/phone shape,
and lookups that must resolve to a record of the staged set or the target. Every check is a vectorised
Polars expression; nulls always pass (NULL = "do not send"), only `required` rejects them.

`validate(frame, schema)` runs it lazily (all failures at once) and returns the accepted rows and one
rejection row per (row, column, reason), shaped for `staged.<table>_rejected`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from migration_assets.target.rules import NUMERIC, ColumnRule, TableRules, required_relationship

BIND = "@odata.bind"
CLOSE_ID = "_close_id"
REJECTION_SCHEMA = {
    "_close_id": pl.String,
    "column": pl.String,
    "value": pl.String,
    "reason": pl.String,
    "check_name": pl.String,
}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]{2,}$"
URL = r"^(?i:https?)://[^\s/?#.]+(?:\.[^\s/?#.]+)+(?::\d{1,5})?(?:[/?#]\S*)?$"
# Phones are kept raw when they cannot be made E.164 (normalise.py); they must still look like a phone.
PHONE = r"^[0-9+().\-\s/#*xXextEXT.:]*[0-9][0-9+().\-\s/#*xXextEXT.:]*$"
DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
DATEONLY = r"^\d{4}-\d{2}-\d{2}$"

# check_name values of rejections that are expected exclusions, not data errors (listed, not counted).
# A record already in the target whose new values are invalid keeps its previous values; like a file above
# the upload limit it is listed for the admin and never counted against a rejection threshold.
KEPT_IN_TARGET = "kept_in_target"
MAX_UPLOAD_SIZE = "max_upload_size"  # a file above the target's upload limit (declared, or measured at load)
EXCLUSIONS = (MAX_UPLOAD_SIZE, KEPT_IN_TARGET)


class TargetSchemaError(ValueError):
    """The staged frame cannot be validated (e.g. a required column is absent from it)."""


def _check(name: str, error: str, ok: Callable[[pl.Expr], pl.Expr]) -> pa.Check:
    """A vectorised Pandera check: `ok(col)` is a boolean expression; null values pass."""

    def fn(data: PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select((c.is_null() | ok(c).fill_null(False)).alias(data.key))

    return pa.Check(fn, name=name, error=error)


def _text_checks(rule: ColumnRule) -> list[pa.Check]:
    checks = []
    if rule.max_length:
        limit = rule.max_length
        checks.append(
            _check(
                "max_length",
                f"longer than MaxLength {limit}",
                lambda c: c.cast(pl.String).str.len_chars() <= limit,
            )
        )
    shape = {
        "Email": (EMAIL, "not an email address"),
        "Url": (URL, "not a web address"),
        "Phone": (PHONE, "not a phone number"),
    }.get(rule.format or "")
    if shape and rule.attribute_type == "String":
        pattern, reason = shape
        checks.append(
            _check(
                f"{rule.format.lower()}_shape",
                reason,  # type: ignore[union-attr]
                lambda c: c.cast(pl.String).str.contains(pattern),
            )
        )
    return checks


def _choice_checks(rule: ColumnRule) -> list[pa.Check]:
    if rule.options is None:
        return []
    allowed = list(rule.options)
    shown = ", ".join(str(v) for v in allowed[:15]) + (" …" if len(allowed) > 15 else "")
    if rule.type_name == "MultiSelectPicklistType":
        return [
            _check(
                "choice_values",
                f"contains a value that is not an option ({shown})",
                lambda c: (
                    c.cast(pl.String)
                    .str.split(",")
                    .list.eval(pl.element().str.strip_chars().cast(pl.Int64, strict=False).is_in(allowed))
                    .list.all()
                ),
            )
        ]
    return [
        _check(
            "choice_value",
            f"not an option of the column ({shown})",
            lambda c: c.cast(pl.Int64, strict=False).is_in(allowed),
        )
    ]


def _number_checks(rule: ColumnRule) -> list[pa.Check]:
    lo, hi = rule.min_value, rule.max_value
    checks = [_check("number", "not a number", lambda c: c.cast(pl.Float64, strict=False).is_not_null())]
    if lo is not None or hi is not None:
        lo_v = float("-inf") if lo is None else float(lo)
        hi_v = float("inf") if hi is None else float(hi)
        checks.append(
            _check(
                "number_range",
                f"outside the column range {lo} .. {hi}",
                lambda c: c.cast(pl.Float64, strict=False).is_between(lo_v, hi_v),
            )
        )
    if rule.attribute_type in ("Integer", "BigInt"):
        checks.append(
            _check("whole_number", "not a whole number", lambda c: c.cast(pl.Float64, strict=False) % 1 == 0)
        )
    return checks


def column_checks(rule: ColumnRule) -> list[pa.Check]:
    kind = rule.attribute_type
    if kind in ("String", "Memo"):
        return _text_checks(rule)
    if kind in ("Picklist", "State", "Status") or rule.type_name == "MultiSelectPicklistType":
        return _choice_checks(rule)
    if kind in NUMERIC:
        return _number_checks(rule)
    if kind == "DateTime":
        date_only = rule.format == "DateOnly"
        pattern, what = (DATEONLY, "YYYY-MM-DD") if date_only else (DATETIME, "YYYY-MM-DDTHH:MM:SSZ")
        return [
            _check("date_format", f"not a {what} value", lambda c: c.cast(pl.String).str.contains(pattern))
        ]
    if kind == "Boolean":
        return [_check("boolean", "not true/false", lambda c: c.cast(pl.Boolean, strict=False).is_not_null())]
    if kind == "Uniqueidentifier":
        return [_check("uuid", "not a GUID", lambda c: c.cast(pl.String).str.contains(f"^{UUID}$"))]
    return []


def _bind_shape(targets: Sequence[str], entity_sets: Mapping[str, str]) -> str:
    alts = "|".join(re.escape(entity_sets.get(t, t + "s")) for t in targets)
    return rf"^/({alts})\(({UUID}|[a-z0-9_]+='[^']*')\)$"


def bind_checks(
    targets: Sequence[str], entity_sets: Mapping[str, str], known: Mapping[str, Collection[str]]
) -> list[pa.Check]:
    """`<nav>@odata.bind` must be `/<entityset>(<guid or alternate key>)` of one of the lookup's target
    tables and, when the known records of that table are given, one of them (staged or in the target)."""
    sets = [entity_sets.get(t, t + "s") for t in targets]
    shape = _bind_shape(targets, entity_sets)
    shown = " or ".join(f"/{s}(<id>)" for s in sets)
    checks = [
        _check("lookup_shape", f"not a {shown} reference", lambda c: c.cast(pl.String).str.contains(shape))
    ]
    if all(t in known for t in targets):
        values = pl.Series("known", [v for t in targets for v in known[t]], dtype=pl.String)
        what = " or ".join(targets)
        checks.append(
            _check(
                "lookup_resolves",
                f"refers to a {what} that is neither staged (it may have been rejected) nor in the target",
                lambda c: c.cast(pl.String).is_in(values.implode()),
            )
        )
    return checks


@dataclass
class BuiltSchema:
    schema: pa.DataFrameSchema
    unknown_columns: list[str]  # staged columns the target does not have and the plan does not create


def build_schema(
    rules: TableRules,
    columns: Sequence[str],
    known_binds: Mapping[str, Collection[str]] | None = None,
    entity_sets: Mapping[str, str] | None = None,
) -> BuiltSchema:
    """The Pandera schema for a staged frame with `columns` (meta columns `_*` are not validated).

    known_binds: target table -> every valid bind string (`/leads(<id>)`); missing target = shape only.
    entity_sets: target table -> entity set name (for lookup shape); defaults to `<table>s`."""
    known_binds = known_binds or {}
    entity_sets = entity_sets or {}
    cols: dict[str, pa.Column] = {}
    unknown: list[str] = []
    for name in columns:
        if name.startswith("_"):
            continue
        if name.endswith(BIND):
            targets = rules.lookup_targets(name[: -len(BIND)])
            if not targets:
                unknown.append(name)
                continue
            cols[name] = pa.Column(None, checks=bind_checks(targets, entity_sets, known_binds), nullable=True)
            continue
        rule = rules.columns.get(name)
        if rule is None:
            unknown.append(name)
            continue
        required = rule.required or name == rules.primary_id
        cols[name] = pa.Column(None, checks=column_checks(rule), nullable=not required)
    for name, rule in rules.columns.items():
        if rule.required and name not in columns and name not in cols:
            raise TargetSchemaError(
                f"{rules.table}.{name} is required by the target (SystemRequired) but the field map "
                f"does not produce it; add it to mappings/fields/{rules.table}.yaml"
            )
    return BuiltSchema(pa.DataFrameSchema(cols, name=rules.table, strict=False), unknown)


def _as_text(values: pl.Series) -> pl.Series:
    return values.cast(pl.String, strict=False)


def validate(frame: pl.DataFrame, built: BuiltSchema, table: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(accepted rows, rejections) of `frame` (which must have `_close_id`)."""
    if CLOSE_ID not in frame.columns:
        raise TargetSchemaError("the staged frame has no _close_id column")
    problems: list[pl.DataFrame] = []
    indexed = frame.with_row_index("__row")
    for name in built.unknown_columns:
        bad = indexed.filter(pl.col(name).is_not_null())
        if bad.height:
            problems.append(
                pl.DataFrame(
                    {
                        "__row": bad["__row"],
                        "column": [name] * bad.height,
                        "value": _as_text(bad[name]),
                        "reason": [
                            f"column {name} does not exist on table {table} in the target and no schema step creates it"
                        ]
                        * bad.height,
                        "check_name": ["column_exists"] * bad.height,
                    }
                )
            )
    try:
        built.schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        row_level = fc.filter(pl.col("index").is_not_null())
        table_level = fc.filter(pl.col("index").is_null() & (pl.col("check") != "not_nullable"))
        if table_level.height:
            raise TargetSchemaError(f"{table}: {table_level.select('column', 'check').rows()}") from exc
        checks = row_level["check"].cast(pl.String)
        problems.append(
            pl.DataFrame(
                {
                    "__row": row_level["index"].cast(pl.UInt32),
                    "column": row_level["column"].cast(pl.String),
                    "value": row_level["failure_case"].cast(pl.String),
                    "reason": checks.replace({"not_nullable": "required value is missing"}),
                    "check_name": checks.map_elements(_check_name, return_dtype=pl.String),
                }
            )
        )
        nulls = fc.filter(pl.col("index").is_null() & (pl.col("check") == "not_nullable"))
        for col in nulls["column"].unique().to_list():
            bad = indexed.filter(pl.col(col).is_null())
            problems.append(
                pl.DataFrame(
                    {
                        "__row": bad["__row"],
                        "column": [col] * bad.height,
                        "value": [None] * bad.height,
                        "reason": ["required value is missing"] * bad.height,
                        "check_name": ["required"] * bad.height,
                    },
                    schema_overrides={"value": pl.String},
                )
            )
    if not problems:
        return frame, pl.DataFrame(schema=REJECTION_SCHEMA)
    allp = pl.concat(problems, how="vertical_relaxed").unique(maintain_order=True)
    ids = indexed.select("__row", CLOSE_ID)
    rejections = allp.join(ids, on="__row", how="left").select(list(REJECTION_SCHEMA))
    bad_rows = allp["__row"].unique().implode()
    accepted = indexed.filter(~pl.col("__row").is_in(bad_rows)).drop("__row")
    return accepted, rejections


def _check_name(error: str) -> str:
    """Pandera reports a check by its error text; map it back to a stable check name."""
    if error == "not_nullable":
        return "required"
    for prefix, name in (
        ("longer than MaxLength", "max_length"),
        ("not an email", "email_shape"),
        ("not a web address", "url_shape"),
        ("not a phone", "phone_shape"),
        ("not an option", "choice_value"),
        ("contains a value that is not", "choice_values"),
        ("outside the column range", "number_range"),
        ("not a number", "number"),
        ("not a whole number", "whole_number"),
        ("not a YYYY", "date_format"),
        ("not true/false", "boolean"),
        ("not a GUID", "uuid"),
        ("not a /", "lookup_shape"),
        ("refers to a", "lookup_resolves"),
    ):
        if error.startswith(prefix):
            return name
    return "target_schema"


LOOKUP_EMPTIED = "lookup_emptied"
NOTICE_SCHEMA = {**REJECTION_SCHEMA, "action": pl.String}


def empty_optional_lookups(
    frame: pl.DataFrame,
    rules: TableRules,
    known: Mapping[str, Collection[str]],
    entity_sets: Mapping[str, str],
    rejected: Mapping[str, str],
    required: Collection[str] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(frame, notices): each optional lookup (`target_rules.required_relationship` False) that is well
    formed but resolves to no known record is set to null, so a rejected parent does not take the row with
    it; every emptied value is a notice ("contact cont_x was rejected: lookup left empty").

    rejected: bind value -> "<table> <close id>" of the rejected records it may point at."""
    notices = []
    for col in [c for c in frame.columns if c.endswith(BIND)]:
        nav = col[: -len(BIND)]
        targets = rules.lookup_targets(nav)
        if not targets or not all(t in known for t in targets) or required_relationship(rules, nav, required):
            continue
        values = pl.Series("known", [v for t in targets for v in known[t]], dtype=pl.String)
        text = pl.col(col).cast(pl.String)
        bad = (
            text.is_not_null()
            & text.str.contains(_bind_shape(targets, entity_sets))
            & ~text.is_in(values.implode())
        )
        rows = frame.filter(bad)
        if not rows.height:
            continue
        what = " or ".join(targets)
        binds = rows[col].cast(pl.String)
        reasons = [
            f"{rejected[b]} was rejected: lookup left empty"
            if b in rejected
            else f"{what} {b} is neither staged nor in the target: lookup left empty"
            for b in binds
        ]
        notices.append(
            pl.DataFrame(
                {
                    "_close_id": rows[CLOSE_ID].cast(pl.String),
                    "column": [col] * rows.height,
                    "value": binds,
                    "reason": reasons,
                    "check_name": [LOOKUP_EMPTIED] * rows.height,
                    "action": ["nulled"] * rows.height,
                },
                schema=NOTICE_SCHEMA,
            )
        )
        frame = frame.with_columns(pl.when(bad).then(None).otherwise(pl.col(col)).alias(col))
    return frame, (pl.concat(notices) if notices else pl.DataFrame(schema=NOTICE_SCHEMA))


def with_cascade(rejections: pl.DataFrame, rejected: Mapping[str, str]) -> pl.DataFrame:
    """Add `cascade` ("because lead lead_x was rejected") to rejections of a required lookup whose parent was
    rejected (null when the row itself is at fault), and say it in the reason too."""
    cause = (
        pl.when((pl.col("check_name") == "lookup_resolves") & pl.col("value").is_in(list(rejected)))
        .then(
            pl.format("because {} was rejected", pl.col("value").replace_strict(dict(rejected), default=None))
        )
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    out = rejections.with_columns(cause.alias("cascade"))
    return out.with_columns(
        pl.when(pl.col("cascade").is_not_null())
        .then(pl.format("{} ({})", pl.col("reason"), pl.col("cascade")))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
