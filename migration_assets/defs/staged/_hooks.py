"""What a table's staging does beyond the generic steps (defs/staged/tables.py): small per-table hooks.

A table without a hook is staged generically: each of its objects.yaml entries is read from close/*,
mapped by its field file, validated against the target's metadata and written to staged.<table>.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from migration_assets.mapping.config import MappingConfig

# (context, warehouse, dataverse) -> the materialization: a table staged entirely its own way.
StageFn = Callable[[dg.AssetExecutionContext, Any, Any], dg.MaterializeResult]


@dataclass(frozen=True)
class StagingHook:
    reads: tuple[str, ...] = ()  # close/* tables read besides its objects' sources and joins
    owners: bool = True  # its rows get owners from the owner map (a dependency on it)
    # Per object: the source frame before mapping (e.g. the lead's contacts joined in).
    prepare: Callable[[duckdb.DuckDBPyConnection, pl.DataFrame], pl.DataFrame] | None = None
    # The mapped frame before validation (e.g. the loader's `_close_*` columns of an opportunity).
    finish: Callable[[pl.DataFrame, MappingConfig], pl.DataFrame] | None = None
    # Each validated slice before it is written (see `validate_and_write`).
    post: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    stage: StageFn | None = None  # replaces the generic staging altogether
