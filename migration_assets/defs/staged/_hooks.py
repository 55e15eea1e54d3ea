"""What a table's staging does beyond the generic steps (defs/staged/tables.py): small per-table hooks.

A table without a hook is staged generically (mapping/table_staging.py): each of its objects.yaml entries is
read from close/*, mapped by its field file, validated against the target's metadata and written to
staged.<table>.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from migration_assets.mapping.table_staging import DeltaInputs, TableSteps

# (context, warehouse, dataverse, what the table reads for its incremental staging) -> the materialization:
# a table staged entirely its own way.
StageFn = Callable[[dg.AssetExecutionContext, Any, Any, DeltaInputs], dg.MaterializeResult]


@dataclass(frozen=True)
class StagingHook(TableSteps):
    reads: tuple[str, ...] = ()  # close/* tables read besides its objects' sources and joins
    stage: StageFn | None = None  # replaces the generic staging altogether
