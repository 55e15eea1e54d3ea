"""staged/owner_map: Close users matched to Dataverse systemusers (by email, case-insensitive, owners.yaml
overrides), written to `staged.owner_map`, plus the owner reconciliation queue as a CSV for the admin
(`$CLOSE2D365_HOME/reports/owner_queue.csv`). An input to staging (DESIGN §3), so it sits in `staged/`.
Its blocking check `owners_resolved` fails while a user who owns records is unmatched or disabled and no
fallback owner takes their records.
"""

import dagster as dg

from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import GROUP, OWNER_MAP_KEY, TARGET_METADATA_KEY, markdown
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.owner_map_staging import stage_owner_map
from migration_assets.mapping.owners import (
    OWNER_COLUMNS,
    OwnerConfigError,
    blocking_owners,
    blocking_summary,
)
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.metadata_cache import StagingError


@dg.asset(
    key=OWNER_MAP_KEY,
    group_name=GROUP,
    deps=[
        dg.AssetKey(["close", "users"]),
        TARGET_METADATA_KEY,
        *(dg.AssetKey(["close", t]) for t in OWNER_COLUMNS),
    ],
    description="Close users -> Dataverse systemusers (email match, overrides, fallback) and the owner queue.",
)
def owner_map(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    with warehouse.connect() as con:
        try:
            staged = stage_owner_map(con, cfg)
        except (StagingError, OwnerConfigError) as exc:
            raise dg.Failure(str(exc)) from exc
    result, queue, path = staged.owners, staged.queue, staged.queue_csv
    counts = result.group_by("status").len().sort("status")
    context.log.info(f"owner map: {dict(counts.iter_rows())}; queue written to {path}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.height,
            "queue_rows": queue.height,
            "queue_csv": dg.MetadataValue.path(str(path)),
            "by_status": dg.MetadataValue.md(markdown(counts)),
            "queue": dg.MetadataValue.md(markdown(queue)),
        }
    )


@dg.asset_check(
    asset=OWNER_MAP_KEY,
    name="owners_resolved",
    blocking=True,
    description="Every Close user who owns records has an enabled Dataverse owner (match, override or fallback).",
)
def owners_resolved(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    owner_table = warehouse.read("SELECT * FROM staged.owner_map")
    blocking = blocking_owners(owner_table)
    n_records = int(blocking["records_owned"].sum()) if blocking.height else 0
    # Name the owners.yaml setting that fixes each case found (a disabled user with a fallback owner set
    # needs `disabled_users: fallback`, not another fallback_owner).
    fallback = load_mapping_config().owners.fallback_owner
    return dg.AssetCheckResult(
        passed=blocking.height == 0,
        severity=gate_severity(context),  # WARN in the dry run: staging goes on to show every problem
        description=(
            f"owners.yaml: {blocking_summary(blocking, fallback)}"
            if blocking.height
            else "every record owner resolves to an enabled Dataverse user"
        ),
        metadata={
            "unresolved_users": blocking.height,
            "records_blocked": n_records,
            "unresolved": dg.MetadataValue.md(markdown(blocking)),
        },
    )
