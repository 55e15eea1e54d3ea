"""staged/target_metadata: what the target Dataverse environment says about the tables we write, cached in
DuckDB so the dry run is cheap to repeat (target/metadata_cache.py). The cache is reused while younger than
`max_age_minutes` unless `refresh`. A schema deploy that creates columns, keys or options re-reads the rows of
the tables it touched (target/metadata_cache.py `refresh_tables`), so the cache stays fresh for the next run.
"""

import dagster as dg

from migration_assets.clients.dataverse.client import DataverseError
from migration_assets.defs.staged._common import GROUP
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.metadata_cache import (
    cache_fresh,
    cached_tables,
    read_target_metadata,
    write_cache,
)


class TargetMetadataConfig(dg.Config):
    refresh: bool = False  # ignore the cache
    max_age_minutes: int = 60  # reuse a cache younger than this (schema/* deploys refresh what they touch)


@dg.asset(
    key=[GROUP, "target_metadata"],
    group_name=GROUP,
    description="Target Dataverse metadata (columns, MaxLength, choices, lookups), users, currencies and "
    "upload limit, cached in DuckDB for the staging checks.",
)
@reports_api_calls
def target_metadata(
    context: dg.AssetExecutionContext,
    config: TargetMetadataConfig,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        if not config.refresh and cache_fresh(con, config.max_age_minutes):
            context.log.info("target metadata cache is fresh; reusing it (set refresh: true to re-read)")
            return dg.MaterializeResult(metadata={"dagster/row_count": cached_tables(con), "cached": True})
    client = dataverse.get_client()
    staged_tables = table_registry().names  # every table of mappings/objects.yaml
    try:
        meta = read_target_metadata(client, staged_tables)
    except DataverseError as exc:
        raise dg.Failure(f"reading the target's metadata failed: {exc}") from exc
    with warehouse.connect() as con:
        write_cache(con, meta)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": meta.rules.height,
            "cached": False,
            "tables": ", ".join(staged_tables),
            "systemusers": meta.systemusers.height,
            "currencies": ", ".join(sorted(str(c) for c in meta.currencies["isocurrencycode"].to_list())),
            "maxuploadfilesize": meta.max_upload,
        }
    )
