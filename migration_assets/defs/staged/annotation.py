"""staged/annotation's hook: notes, status changes, attachments and call recordings staged their own way
(mapping/annotation_staging.py; in a delta run only the affected rows, the attachments and recordings by
their activities' changes); the oversize files are listed for the admin."""

import dagster as dg

from migration_assets.defs.staged._common import counted_sources
from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.annotation_staging import stage_annotations
from migration_assets.mapping.table_staging import DeltaInputs
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


def stage(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
    inputs: DeltaInputs,
) -> dg.MaterializeResult:
    staging = stage_annotations(warehouse, dataverse, inputs)
    return counted_sources(
        staging.result,
        staging.counts,
        {
            "upload_limit_bytes": staging.upload_limit,
            "oversize_files": staging.oversize_files,
            "oversize_csv": dg.MetadataValue.path(str(staging.oversize_csv)),
        },
    )


# Notes and files are owned by their parent record: no owner map.
HOOK = StagingHook(owners=False, stage=stage)
