"""loaded/file_bodies: the attachments and call recordings loaded/annotation will send, downloaded from Close
ahead of it (load/file_spool.py).

It needs only the staged annotations and a deployed schema (so that a run which cannot write fetches
nothing), not the loads before annotation: it runs while they do, in the time Dataverse's service
protection leaves the machine waiting, and loaded/annotation then sends what it finds on disk. It holds no
Dataverse pool: it sends no Dataverse request but the upload limit's one read.
"""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import GROUP, SCHEMA_DEPLOYED, max_upload_bytes, staged_key
from migration_assets.load.engine import DOWNLOAD_WORKERS, UNDECLARED_FILE_BYTES
from migration_assets.load.file_body import too_big
from migration_assets.load.file_spool import FileSpool, files_to_send, prefetch, spool_path_for
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources import env
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.progress import StepProgress
from migration_assets.resources.warehouse import WarehouseResource

FILE_BODIES = dg.AssetKey([GROUP, "file_bodies"])


def file_spool(warehouse: WarehouseResource) -> tuple[FileSpool | None, str]:
    """The warehouse's spool of file bodies, or None and why there is none."""
    if env.warehouse_key():
        return None, "the warehouse is encrypted: file bodies are not written to disk beside it"
    path = spool_path_for(warehouse.resolved_path())
    if path is None:
        return None, "the warehouse is in memory: there is no disk to keep file bodies on"
    return FileSpool(path), str(path)


@dg.asset(
    key=FILE_BODIES,
    group_name=GROUP,
    deps=[staged_key("annotation"), SCHEMA_DEPLOYED],
    description=(
        "Attachments and call recordings of the annotations to create, downloaded from Close while the "
        "tables before them load, kept on disk (base64) until loaded/annotation sends them."
    ),
    kinds={"close"},
)
@reports_api_calls
def file_bodies(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
    close: CloseResource,
) -> dg.MaterializeResult:
    spool, where = file_spool(warehouse)
    if spool is None:
        context.log.info(f"loaded/file_bodies: nothing fetched ahead ({where}); loaded/annotation downloads")
        return dg.MaterializeResult(metadata={"spool": where, "files_fetched": 0})
    settings = load_mapping_config().settings
    with warehouse.connect() as con:
        limit = max_upload_bytes(dataverse.get_client(), settings.max_attachment_bytes, con)
        files = [(url, size) for url, size in files_to_send(con) if not too_big(size, limit)]
    progress = StepProgress("loaded/file_bodies", len(files), log=context.log.info, unit="files")
    result = prefetch(
        spool,
        files,
        close.download,
        limit,
        budget_bytes=settings.prefetch_max_bytes,
        workers=DOWNLOAD_WORKERS,
        guess_size=UNDECLARED_FILE_BYTES,
        advance=progress.advance,
    )
    progress.finish()
    for url, reason in list(result.failed.items())[:5]:
        context.log.warning(f"download of {url} failed ({reason}): loaded/annotation will try it again")
    meta = {**result.metadata(), "spool": dg.MetadataValue.path(where), "spool_bytes": spool.bytes_held()}
    context.log.info(f"loaded/file_bodies: {meta}")
    return dg.MaterializeResult(metadata=meta)
