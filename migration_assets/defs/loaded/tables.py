"""loaded/<table>: staged rows written to Dataverse in dependency order (DESIGN §3, §7), one asset per table
of the table registry (mapping/tables.py, from mappings/objects.yaml).

Lineage carries the ordering: accounts before contacts/leads/opportunities, contacts before opportunities
and activities, every parent before activities, the records annotations hang off (leads, contacts, accounts,
opportunities, emails, phone calls) before annotations. Each asset reports created/updated/unchanged/
rejected/retried counts and throughput.

The annotation load sends the attachments and call recordings: its pace is set by the bytes it moves, not
by the service's request budget, which the other loads wait on. It has a pool of its own (FILES_POOL), so it
runs beside the tables no annotation hangs off (tasks, appointments, ...) instead of after them, and the
tables it follows carry a positive priority (FIRST), so they load first (step_threads.py: a positive
priority orders the ready steps and holds none back). Both pools' steps share the run's one Dataverse
client, whose application users keep one throttle budget each.
"""

import dagster as dg
from dagster import AssetExecutionContext

from migration_assets.defs.loaded._common import (
    GROUP,
    MAPPING,
    POOL,
    SCHEMA_DEPLOYED,
    loaded_key,
    max_upload_bytes,
    run_load,
    staged_key,
)
from migration_assets.defs.loaded.file_bodies import FILE_BODIES, file_spool
from migration_assets.defs.staged._common import OWNER_MAP_KEY
from migration_assets.load.oversize import write_oversize_list
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.close import CloseResource
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource

REGISTRY = table_registry()  # the mappings root in effect when the definitions are built
# table -> loaded tables it must follow (besides its staged table, the schema, owners and the mapping), in
# load order: objects.yaml depends_on.
ORDER: dict[str, tuple[str, ...]] = {t.name: t.depends_on for t in REGISTRY.tables}
DESCRIPTIONS = {t.name: t.loaded_description for t in REGISTRY.tables}
FILES_TABLE = "annotation"  # the table whose rows carry files to download from Close (loaded/file_bodies)
FILES_POOL = "dataverse_files"  # the annotation load's pool (see the module docstring)
FIRST = {"dagster/priority": "1"}  # the tables the annotation load follows


def upstream_of(table: str) -> set[str]:
    """Every table `table` follows, directly or not."""
    seen: set[str] = set()
    todo = list(ORDER[table])
    while todo:
        if (t := todo.pop()) not in seen:
            seen.add(t)
            todo.extend(ORDER[t])
    return seen


BEFORE_FILES = upstream_of(FILES_TABLE) if FILES_TABLE in ORDER else set()


def _deps(table: str) -> list[dg.AssetKey]:
    return [
        staged_key(table),
        SCHEMA_DEPLOYED,
        OWNER_MAP_KEY,
        MAPPING,
        *(loaded_key(t) for t in ORDER[table]),
        *([FILE_BODIES] if table == FILES_TABLE else []),
    ]


def _make(table: str) -> dg.AssetsDefinition:
    needs_close = table == FILES_TABLE

    @dg.asset(
        key=loaded_key(table),
        group_name=GROUP,
        deps=_deps(table),
        pool=FILES_POOL if table == FILES_TABLE else POOL,
        op_tags=FIRST if table in BEFORE_FILES else None,
        description=DESCRIPTIONS[table],
        kinds={"dataverse"},
    )
    @reports_api_calls
    def _asset(
        context: AssetExecutionContext,
        warehouse: WarehouseResource,
        dataverse: DataverseResource,
        close: CloseResource,
    ) -> dg.MaterializeResult:
        client = dataverse.get_client()
        download, max_upload = None, None
        spool = file_spool(warehouse)[0] if needs_close else None
        with warehouse.connect() as con:
            if needs_close:
                download = close.download
                max_upload = max_upload_bytes(
                    client, load_mapping_config().settings.max_attachment_bytes, con
                )
            stats, meta = run_load(
                context, con, client, table, download=download, max_upload=max_upload, spool=spool
            )
            if spool is not None:  # every body in it was sent (or its row refused with the reason)
                spool.clear()
            if needs_close:  # files measured above the limit join the admin's list of oversize files
                path, listed = write_oversize_list(con, context.run.run_id)
                meta.update(oversize_files=listed, oversize_csv=dg.MetadataValue.path(str(path)))
        context.log.info(f"loaded/{table}: {stats.metadata()}")
        return dg.MaterializeResult(metadata=meta)

    return _asset


LOADED_TABLES = [_make(t) for t in ORDER]
