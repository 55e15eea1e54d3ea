"""Vectorised builders for text-shaped values: HTML, emails, phones, URLs, person names.

Their row-at-a-time specification is the test oracle `tests/unit/transform_oracle.py`; unit tests check
that both give the same results.
"""

from __future__ import annotations

import html
from typing import Any

import polars as pl

from migration_assets.mapping.expr_base import NULL_STR, STR, Mapped, Source, TransformContext
from migration_assets.mapping.expr_base import err_when as _err
from migration_assets.mapping.expr_base import python_map as _python
from migration_assets.mapping.expr_base import text_expr as _text

_CJK = r"[\x{3040}-\x{30ff}\x{3400}-\x{4dbf}\x{4e00}-\x{9fff}\x{ac00}-\x{d7af}\x{f900}-\x{faff}]"


def b_html_to_text(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    t = src[0].expr.cast(STR)
    for tag in ("script", "style", "head"):
        t = t.str.replace_all(rf"(?is)<{tag}\b.*?</{tag}\s*>", "")
    t = t.str.replace_all(r"(?i)<\s*(br\s*/?|/p|/div|/li|/h[1-6]|/tr)\s*>", "\n").str.replace_all(
        r"<[^>]*>", ""
    )
    t = _python(t, lambda v: html.unescape(v) if v is not None and "&" in v else v)
    t = t.str.replace_all("\xa0", " ", literal=True).str.replace_all(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n")
    return Mapped(_text(t))


_LOCAL = r"^[\w.!#$%&'*+/=?^`{|}~-]+$"
_DOMAIN = r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}$"


def b_email(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    t = _text(src[0].expr)
    parts = t.str.splitn("@", 2)
    local, domain = parts.struct.field("field_0"), parts.struct.field("field_1")
    error = (
        pl.when(t.is_null())
        .then(NULL_STR)
        .when(t.str.contains(r"\s"))
        .then(pl.lit("contains whitespace"))
        .when(t.str.count_matches("@", literal=True) != 1)
        .then(pl.lit("must contain exactly one '@'"))
        .when(local.str.len_chars() == 0)
        .then(pl.lit("empty local part"))
        .when(local.str.len_chars() > 64)
        .then(pl.lit("local part longer than 64 characters"))
        .when(t.str.len_chars() > 254)
        .then(pl.lit("longer than 254 characters"))
        .when(local.str.starts_with(".") | local.str.ends_with(".") | local.str.contains("..", literal=True))
        .then(pl.lit("misplaced dot in local part"))
        .when(~local.str.contains(_LOCAL))
        .then(pl.lit("invalid character in local part"))
        .when(~domain.str.contains(_DOMAIN))
        .then(pl.lit("invalid domain"))
        .otherwise(NULL_STR)
    )
    value = pl.concat_str([local, pl.lit("@"), domain.str.to_lowercase()])
    return Mapped(pl.when(error.is_null()).then(value), error)


def b_phone(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    t = _text(src[0].expr)
    c = t.str.replace_all(r"[\s().\-/]", "")
    c = pl.when(c.str.starts_with("00")).then(pl.lit("+") + c.str.slice(2)).otherwise(c)
    value = pl.when(c.str.contains(r"^\+[0-9]{8,15}$")).then(c)
    cc = args.get("default_country_code") or ctx.default_country_code
    if cc:
        national = pl.when(c.str.starts_with("0")).then(c.str.slice(1)).otherwise(c)
        full = pl.lit(cc) + national
        ok = c.str.contains(r"^[0-9]+$") & full.str.len_chars().is_between(8, 15)
        if cc == "1":
            ok = ok & (national.str.len_chars() == 10)
        value = value.when(ok).then(pl.lit("+") + full)
    return Mapped(value.otherwise(t))


def b_url(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    t = _text(src[0].expr)
    value = pl.when(t.str.contains(r"(?i)^[a-z][a-z0-9+.-]*://")).then(t).otherwise(pl.lit("https://") + t)
    ok = value.str.contains(r"^(?i:https?)://[^\s/?#.]+(?:\.[^\s/?#.]+)+(?::\d{1,5})?(?:[/?#]\S*)?$")
    bad = t.is_not_null() & ~ok
    return Mapped(
        pl.when(~bad).then(value), _err(bad, "not a web address (expected e.g. https://example.com)")
    )


def _name_parts(e: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    t = _text(e.cast(STR).str.replace_all(r"\s+", " "))
    one_comma = t.str.count_matches(",", literal=True) == 1
    halves = t.str.splitn(",", 2)
    before, after = _text(halves.struct.field("field_0")), _text(halves.struct.field("field_1"))
    comma = one_comma & before.is_not_null() & after.is_not_null()
    t2 = pl.when(one_comma & ~comma).then(pl.coalesce(before, after)).otherwise(t)
    words = t2.str.splitn(" ", 2)
    head, rest = words.struct.field("field_0"), words.struct.field("field_1")
    spaced, cjk = t2.str.contains(" ", literal=True), t2.str.contains(_CJK)
    first = pl.when(comma).then(after).when(~spaced).then(NULL_STR).when(cjk).then(rest).otherwise(head)
    last = pl.when(comma).then(before).when(~spaced).then(t2).when(cjk).then(head).otherwise(rest)
    return first, last


def b_first_name(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(_name_parts(src[0].expr)[0])


def b_last_name(src: list[Source], args: dict[str, Any], ctx: TransformContext) -> Mapped:
    return Mapped(_name_parts(src[0].expr)[1])
