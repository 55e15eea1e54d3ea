"""Jobs: dry_run (everything but loaded/*), extract (close/*); migrate, delta and rollback join as they land."""

from __future__ import annotations

import dagster as dg

CLOSE_SELECTION = dg.AssetSelection.groups("close")


def all_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            "extract", selection=CLOSE_SELECTION, description="Extract every Close object into DuckDB."
        ),
    ]
