"""staged/annotation's hook: notes, status changes, attachments and call recordings staged their own way
(mapping/annotation_staging.py); the oversize files are listed for the admin."""

import dagster as dg

from migration_assets.defs.staged._common import counted_sources
from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.annotation_staging import stage_annotations
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

FULL_REASON = "annotation: notes, status changes, attachments and recordings re-staged in full every run"


def stage(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    staging = stage_annotations(warehouse, dataverse)
    return counted_sources(
        staging.result,
        staging.counts,
        {
            "upload_limit_bytes": staging.upload_limit,
            "oversize_files": staging.oversize_files,
            "oversize_csv": dg.MetadataValue.path(str(staging.oversize_csv)),
            # Several sources, derived rows (attachments, recordings) and file metadata: no incremental staging.
            "staging_mode": "full",
            "full_restage_reason": FULL_REASON,
        },
    )


# Notes and files are owned by their parent record: no owner map.
HOOK = StagingHook(owners=False, stage=stage)
