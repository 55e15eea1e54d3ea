"""Shared types and helpers of the vectorised transform builders (`transform_exprs`, `text_exprs`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from migration_assets.mapping.transforms import ChoiceSet

STR = pl.String


@dataclass(frozen=True)
class Source:
    expr: pl.Expr
    dtype: pl.DataType


@dataclass(frozen=True)
class Mapped:
    value: pl.Expr
    error: pl.Expr | None = None  # Utf8 reason; null where the row is fine


@dataclass(frozen=True)
class TransformContext:
    choice_sets: Mapping[str, ChoiceSet] = field(default_factory=dict)
    placeholder_account_name: str = "(No company name)"
    default_country_code: str | None = None
    # Close user id -> systemuserid, from staged/owner_map. None: not known yet (dry run without a target).
    owners: Mapping[str, str] | None = None
    fallback_owner: str | None = None  # systemuserid for users missing from `owners` (owners.yaml)


Builder = Callable[[list[Source], dict[str, Any], TransformContext], Mapped]
NULL_STR = pl.lit(None, dtype=STR)


def text_expr(e: pl.Expr) -> pl.Expr:
    """Trimmed text with blank -> null (the notion of 'empty' every builder shares)."""
    t = e.cast(STR).str.strip_chars()
    return pl.when(t.str.len_chars() > 0).then(t).otherwise(NULL_STR)


def src_text(src: Source) -> pl.Expr:
    """Text of a source; typed timestamps/dates (DuckDB columns) in ISO form, not Polars' display form."""
    if isinstance(src.dtype, pl.Datetime):
        e = (
            src.expr.dt.replace_time_zone("UTC")
            if src.dtype.time_zone is None
            else src.expr.dt.convert_time_zone("UTC")
        )
        return text_expr(e.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if src.dtype == pl.Date:
        return text_expr(src.expr.dt.strftime("%Y-%m-%d"))
    return text_expr(src.expr)


def err_when(cond: pl.Expr, reason: str | pl.Expr) -> pl.Expr:
    return pl.when(cond).then(reason if isinstance(reason, pl.Expr) else pl.lit(reason)).otherwise(NULL_STR)


def python_map(e: pl.Expr, fn: Callable[[Any], Any], dtype: pl.DataType = STR) -> pl.Expr:
    """Per-row Python over a whole batch (one call per batch, not per row through Polars)."""
    return e.map_batches(
        lambda s: pl.Series(s.name, [fn(v) for v in s.to_list()], dtype=dtype), return_dtype=dtype
    )
