"""The transforms of the registry in `transforms.py` (same names), as vectorised Polars builders.

A builder gets its source expressions with their dtypes and returns a `Mapped`: the value expression and
an error expression (a reason string, null when the row is fine). Python runs per row only where a
library call is the specification (uuid5, NFKC/casefold of account names, rare HTML entities).
Text-shaped builders (HTML, email, phone, URL, names) live in `text_exprs.py`.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from migration_assets.mapping import ids, text_exprs
from migration_assets.mapping.expr_base import NULL_STR, STR, Builder, Mapped, Source, TransformContext
from migration_assets.mapping.expr_base import err_when as _err
from migration_assets.mapping.expr_base import python_map as _python
from migration_assets.mapping.expr_base import src_text as _src_text
from migration_assets.mapping.expr_base import text_expr as _text
from migration_assets.mapping.transforms import (
    FALSE_WORDS,
    MINOR_UNIT_EXPONENTS,
    MONEY_LIMIT,
    TRUE_WORDS,
    ChoiceSet,
)

__all__ = ["BUILDERS", "NULL_STR", "Builder", "Mapped", "Source", "TransformContext"]
MONEY_DTYPE = pl.Decimal(38, 4)  # Dataverse Money supports up to 4 decimals


def b_copy(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(src[0].expr)


def b_text(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(_src_text(src[0]))


def b_const(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(pl.lit(args["value"]))


def b_coalesce(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(pl.coalesce([_src_text(s) for s in src]))


def b_template(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    texts = [_src_text(s) for s in src]
    # All parts missing -> null, not a template of empty parts (" / " would look like a real value).
    formatted = pl.format(args["format"], *[t.fill_null("") for t in texts])
    return Mapped(pl.when(pl.any_horizontal([t.is_not_null() for t in texts])).then(_text(formatted)))


def b_cents_to_money(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    raw = src[0].expr
    number = raw.cast(pl.Float64, strict=False)
    cur = _text(src[1].expr).str.to_uppercase() if len(src) > 1 else pl.lit(None, dtype=STR)
    cur = cur.fill_null(args.get("default_currency") or "USD")
    divisor = cur.replace_strict(
        {k: 10**v for k, v in MINOR_UNIT_EXPONENTS.items()}, default=100, return_dtype=pl.Int64
    )
    amount = number.round(0).cast(pl.Int64).cast(MONEY_DTYPE) / divisor
    error = (
        pl.when(raw.is_not_null() & number.is_null())
        .then(pl.lit("money value is not a number"))
        .when(number.is_not_null() & (number % 1 != 0))
        .then(pl.lit("money value is not a whole number of minor units"))
        .when(raw.is_not_null() & ~cur.str.contains(r"^[A-Z]{3}$"))
        .then(pl.lit("unknown currency code"))
        .when((number / divisor).abs() > float(MONEY_LIMIT))
        .then(pl.lit("amount outside the Dataverse money range ±1e12"))
        .otherwise(NULL_STR)
    )
    return Mapped(pl.when(error.is_null()).then(amount), error)


def _utc(src: Source) -> tuple[pl.Expr, pl.Expr]:
    """(UTC datetime, 'present but unparseable' flag) for a Close timestamp column of any dtype."""
    if isinstance(src.dtype, pl.Datetime):
        e = src.expr
        value = (
            e.dt.replace_time_zone("UTC") if src.dtype.time_zone is None else e.dt.convert_time_zone("UTC")
        )
        return value, pl.lit(False)
    if src.dtype == pl.Date:
        return src.expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), pl.lit(False)
    t = _text(src.expr)
    aware = pl.Datetime("us", "UTC")
    value = pl.coalesce(
        t.str.strptime(aware, "%Y-%m-%dT%H:%M:%S%.f%:z", strict=False),
        t.str.strptime(aware, "%Y-%m-%dT%H:%M:%S%.fZ", strict=False),
        t.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"),
        # A bare date (task due dates) means midnight UTC.
        t.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
    )
    return value, t.is_not_null() & value.is_null()


# Dataverse stores date-times in SQL datetime: 1753-01-01 is the earliest value it takes (the emulator
# answers 0x80040203 "outside the supported range" below it, like the service).
DATAVERSE_MIN_YEAR = 1753
OUT_OF_RANGE = f"date before {DATAVERSE_MIN_YEAR}-01-01, outside the Dataverse date range"


def _in_range(value: pl.Expr) -> pl.Expr:
    return value.dt.year() >= DATAVERSE_MIN_YEAR


def b_datetime_utc(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    value, bad = _utc(src[0])
    error = pl.coalesce(_err(bad, "unparseable timestamp"), _err(~_in_range(value), OUT_OF_RANGE))
    return Mapped(pl.when(_in_range(value)).then(value.dt.strftime("%Y-%m-%dT%H:%M:%SZ")), error)


def b_date_only(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    s = src[0]
    if s.dtype == pl.Date:
        return Mapped(
            pl.when(_in_range(s.expr)).then(s.expr.dt.strftime("%Y-%m-%d")),
            _err(~_in_range(s.expr), OUT_OF_RANGE),
        )
    if isinstance(s.dtype, pl.Datetime):
        value = _utc(s)[0]
        return Mapped(
            pl.when(_in_range(value)).then(value.dt.strftime("%Y-%m-%d")),
            _err(~_in_range(value), OUT_OF_RANGE),
        )
    t = _text(s.expr)
    as_date = t.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    as_dt, _ = _utc(Source(t, STR))
    parsed = (
        pl.when(t.str.len_chars() == 10)
        .then(as_date.cast(pl.Datetime("us")))
        .otherwise(as_dt.dt.replace_time_zone(None))
    )
    value = pl.when(_in_range(parsed)).then(parsed.dt.strftime("%Y-%m-%d"))
    error = pl.coalesce(
        _err(t.is_not_null() & parsed.is_null(), "unparseable date"), _err(~_in_range(parsed), OUT_OF_RANGE)
    )
    return Mapped(value, error)


def choice_set_for(args: dict[str, Any], ctx: TransformContext) -> ChoiceSet:
    if "map" in args:
        name = args.get("column", "inline map")  # an unknown label's reason names the column
        return ChoiceSet(name, {str(k): int(v) for k, v in args["map"].items()}, args.get("default"))
    base = ctx.choice_sets[args["set"]]
    return ChoiceSet(base.name, base.options, args.get("default", base.default))


def _known(cs: ChoiceSet, limit: int = 20) -> str:
    names = list(cs.options)
    more = f", … {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def b_choice(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    cs = choice_set_for(args, ctx)
    t = _text(src[0].expr)
    value = t.str.to_lowercase().replace_strict(dict(cs.folded), default=cs.default, return_dtype=pl.Int64)
    reason = pl.format(_unknown(cs, args), t)
    return Mapped(value, pl.when(t.is_not_null() & value.is_null()).then(reason).otherwise(NULL_STR))


def _unknown(cs: ChoiceSet, args: dict[str, Any]) -> str:
    """Reason template ({} = the label) for a label that is not an option, with the fix when given."""
    fix = f": {args['fix']}" if args.get("fix") else ""
    known = _known(cs).replace("{", "{{").replace("}", "}}")
    return f"unknown choice '{{}}' for {cs.name.replace('{', '{{').replace('}', '}}')} (known: {known}){fix}"


def b_multi_choice(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    cs = choice_set_for(args, ctx)
    s = src[0]
    labels = s.expr if isinstance(s.dtype, pl.List) else pl.concat_list(_text(s.expr)).list.drop_nulls()
    folded = labels.list.eval(pl.element().cast(STR).str.strip_chars().str.to_lowercase())
    codes = folded.list.eval(
        pl.element().replace_strict(dict(cs.folded), default=None, return_dtype=pl.Int64)
    )
    bad = codes.list.eval(pl.element().is_null()).list.any()
    value = codes.list.eval(pl.element().cast(STR)).list.join(",")
    value = pl.when(value.str.len_chars() > 0).then(value).otherwise(NULL_STR)
    bad = bad.fill_null(False)
    unknown = labels.list.eval(pl.element().cast(STR)).list.join(", ")
    reason = pl.format(_unknown(cs, args).replace("choice '{}'", "choice among '{}'", 1), unknown)
    return Mapped(pl.when(~bad).then(value), pl.when(bad).then(reason).otherwise(NULL_STR))


def b_boolean(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    s = src[0]
    if s.dtype == pl.Boolean:
        return Mapped(s.expr)
    words = {w.lower(): True for w in args.get("true") or TRUE_WORDS}
    words.update({w.lower(): False for w in args.get("false") or FALSE_WORDS})
    t = _text(s.expr).str.to_lowercase()
    value = t.replace_strict(words, default=None, return_dtype=pl.Boolean)
    return Mapped(
        value, _err(t.is_not_null() & value.is_null(), f"not a yes/no value (known: {sorted(words)})")
    )


def b_number(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    raw = src[0].expr
    blank = raw.is_null() | (raw.cast(STR).str.strip_chars() == "")
    n = raw.cast(STR).str.strip_chars().cast(pl.Float64, strict=False)
    checks = pl.when(~blank & n.is_null()).then(pl.lit("not a number"))
    if args.get("integer"):
        checks = checks.when(n % 1 != 0).then(pl.lit("not a whole number"))
    if args.get("min") is not None:
        checks = checks.when(n < args["min"]).then(pl.lit(f"below the minimum {args['min']}"))
    if args.get("max") is not None:
        checks = checks.when(n > args["max"]).then(pl.lit(f"above the maximum {args['max']}"))
    error = checks.otherwise(NULL_STR)
    value = n.cast(pl.Int64) if args.get("integer") else n
    return Mapped(pl.when(error.is_null()).then(value), error)


def b_seconds_to_minutes(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    n = src[0].expr.cast(pl.Int64, strict=False)
    error = (
        pl.when(src[0].expr.is_not_null() & n.is_null())
        .then(pl.lit("not a number"))
        .when(n < 0)
        .then(pl.lit("negative duration"))
        .otherwise(NULL_STR)
    )
    return Mapped(pl.when(n >= 0).then((n + 59) // 60), error)


def _typed(items: pl.Expr, args: dict[str, Any]) -> pl.Expr:
    if args.get("types"):
        items = items.list.filter(pl.element().struct.field("type").is_in(list(args["types"])))
    if args.get("exclude_types"):
        items = items.list.filter(
            ~pl.element().struct.field("type").is_in(list(args["exclude_types"])).fill_null(False)
        )
    return items


def _empty_list(s: Source) -> bool:
    """A list column whose elements have no type yet (every value empty or null): nothing to pick."""
    return s.dtype == pl.Null or (isinstance(s.dtype, pl.List) and s.dtype.inner == pl.Null)


def b_pick(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    if _empty_list(src[0]):
        return Mapped(NULL_STR)
    item = _typed(src[0].expr, args).list.get(args.get("index", 0), null_on_oob=True)
    return Mapped(item.struct.field(args["field"]))


def b_join_list(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    if _empty_list(src[0]):
        return Mapped(NULL_STR)
    items = src[0].expr.list.slice(args.get("skip", 0))
    elem = pl.element().struct.field(args["field"]) if args.get("field") else pl.element()
    joined = items.list.eval(elem.cast(STR)).list.drop_nulls().list.join(args.get("separator", "; "))
    return Mapped(_text(joined))


def _uuid(keys: pl.Expr) -> pl.Expr:
    return keys.map_batches(
        lambda s: pl.Series(s.name, ids.ids_for_keys(s.to_list()), dtype=STR), return_dtype=STR
    )


def b_record_id(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    cid = _text(src[0].expr)
    value = _uuid(pl.concat_str([pl.lit(f"{args['kind']}:"), cid]))
    error = _err(cid.is_null(), "missing Close id") if args.get("required", True) else None
    return Mapped(value, error)


def b_account_id(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(_uuid(_python(src[0].expr.cast(STR), ids.account_key)))


def b_account_name(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(_text(src[0].expr).fill_null(ctx.placeholder_account_name))


def _stable_part(text: pl.Expr) -> pl.Expr:
    """ids.stable_part as an expression: a URL keeps only its path."""
    path = text.str.replace(ids.URL_ORIGIN, "").str.replace(ids.URL_QUERY, "")
    return pl.when(text.str.contains("://", literal=True)).then(path).otherwise(text)


def b_annotation_id(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    parts = [_stable_part(_text(s.expr)) for s in src]
    key = pl.concat_str([pl.lit(f"annotation:{args['kind']}"), *parts], separator=":")
    return Mapped(_uuid(key), _err(key.is_null(), "missing id part for the annotation key"))


def b_is_blank(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(_text(src[0].expr).is_null())


def b_equals(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped((_text(src[0].expr).str.to_lowercase() == str(args["value"]).lower()).fill_null(False))


def b_owner(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    cid = _text(src[0].expr)
    if ctx.owners is None:
        return Mapped(NULL_STR)  # dry run before the owner map exists: the default owner applies
    value = cid.replace_strict(dict(ctx.owners), default=ctx.fallback_owner, return_dtype=STR)
    reason = (
        "Close user has no enabled Dataverse user (see the owner queue; or set owners.yaml fallback_owner)"
    )
    return Mapped(value, _err(cid.is_not_null() & value.is_null(), reason))


BUILDERS: dict[str, Builder] = {
    name.removeprefix("b_"): fn
    for module in (globals(), vars(text_exprs))
    for name, fn in module.items()
    if name.startswith("b_") and callable(fn)
}
