"""Jobs of the one Definitions: extract, dry_run, migrate (and rollback, an op job over the ledger)."""

from __future__ import annotations

import dagster as dg

CLOSE_SELECTION = dg.AssetSelection.groups("close")

# Assets that write to the Dataverse target. A dry run must leave the target untouched, so it stops at the
# schema plan: deploying columns and custom activity tables is part of the migration proper.
TARGET_WRITES = dg.AssetSelection.groups("loaded").downstream() | dg.AssetSelection.assets(
    ["schema", "deployed"], ["schema", "custom_activity_tables"], ["schema", "custom_activity_columns"]
)

DRY_RUN_SELECTION = dg.AssetSelection.all() - TARGET_WRITES
MIGRATE_SELECTION = dg.AssetSelection.all()


def all_jobs() -> list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]:
    from migration_assets.rollback import rollback_job

    return [
        dg.define_asset_job(
            "extract", selection=CLOSE_SELECTION, description="Extract every Close object into DuckDB."
        ),
        dg.define_asset_job(
            "dry_run",
            selection=DRY_RUN_SELECTION,
            description="Extract, stage and check everything, plan the schema; writes nothing to Dataverse.",
        ),
        dg.define_asset_job(
            "migrate",
            selection=MIGRATE_SELECTION,
            description="The whole migration: extract, stage, check, deploy the schema, load, reconcile.",
        ),
        rollback_job,
    ]
