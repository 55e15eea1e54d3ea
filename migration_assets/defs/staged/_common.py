"""What the staged/* declarations share: their asset keys, the Markdown previews and the materialization of a
staged table (its counts and previews in the UI). The staging itself is in mapping/staging.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl

from migration_assets.mapping.staging import PREVIEW_ROWS, StageResult
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.progress import show_finished

GROUP = "staged"
TARGET_METADATA_KEY = dg.AssetKey([GROUP, "target_metadata"])
OWNER_MAP_KEY = dg.AssetKey([GROUP, "owner_map"])


def close_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["close", table])


def staged_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


def markdown(df: pl.DataFrame, max_rows: int = PREVIEW_ROWS, max_width: int = 70) -> str:
    """A staged preview for the Dagster UI: the first rows, narrow cells, and how many were left out."""
    return markdown_table(df, max_rows=max_rows, max_width=max_width, count_more=True)


def materialize_result(result: StageResult, extra: Mapping[str, Any] | None = None) -> dg.MaterializeResult:
    considered = result.staged + result.rejected + result.excluded
    total = considered if result.restaged_rows is None else None  # incremental: only the re-staged rows
    show_finished(f"{GROUP}/{result.table}", result.staged, total, unit="rows staged")
    meta: dict[str, Any] = {
        "dagster/row_count": result.staged,
        "rejected_rows": result.rejected,
        "excluded_rows": result.excluded,
        "notices (truncated/nulled values)": result.notices,
        "rejected_preview": dg.MetadataValue.md(markdown(result.rejected_preview)),
    }
    if result.staging_mode is not None:
        # A delta run re-stages only the affected rows (mapping/delta_staging.py), else says why in full.
        meta["staging_mode"] = result.staging_mode
        meta["full_restage_reason"] = result.full_reason or "none"
        if result.restaged_rows is not None:
            meta["restaged_rows"] = result.restaged_rows
    if result.preview is not None:
        meta["preview"] = dg.MetadataValue.md(markdown(result.preview, max_width=40))
    meta.update(extra or {})
    return dg.MaterializeResult(metadata=meta)


def counted_sources(
    result: StageResult, counts: Mapping[str, int], extra: Mapping[str, Any] | None = None
) -> dg.MaterializeResult:
    """A staged table read from several Close objects: the rows read from each, as `source_rows_<object>`."""
    return materialize_result(result, {**{f"source_rows_{k}": v for k, v in counts.items()}, **(extra or {})})
