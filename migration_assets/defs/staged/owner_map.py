"""staged/owner_map: Close users matched to Dataverse systemusers (by email, case-insensitive, owners.yaml
overrides), written to `staged.owner_map`, plus the owner reconciliation queue as a CSV for the admin
(`$CLOSE2D365_HOME/reports/owner_queue.csv`). An input to staging (DESIGN §3), so it sits in `staged/`.
Its blocking check `owners_resolved` fails while a user who owns records is unmatched or disabled and no
fallback owner takes their records.
"""

import dagster as dg
import polars as pl

from migration_assets.audit.files import write_frame_csv
from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    markdown,
    warehouse_write,
)
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.owners import (
    OWNER_COLUMNS,
    OwnerConfigError,
    blocking_owners,
    blocking_summary,
    match_owners,
)
from migration_assets.resources.warehouse import WarehouseResource, default_home, fetch_polars, table_exists


def queue_path() -> str:
    return str(default_home() / "reports" / "owner_queue.csv")


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
        users = fetch_polars(con, "SELECT id, email, first_name, last_name, is_active FROM close.users")
        if not table_exists(con, "staged", "target_systemusers"):
            raise dg.Failure("staged.target_systemusers is missing: materialize staged/target_metadata first")
        systemusers = fetch_polars(con, "SELECT * FROM staged.target_systemusers")
        parts = [
            f'SELECT "{c}" AS uid FROM close."{t}"'
            for t, c in OWNER_COLUMNS.items()
            if table_exists(con, "close", t)
        ]
        owned = (
            fetch_polars(
                con,
                f"SELECT uid, count(*) AS n FROM ({' UNION ALL '.join(parts)}) WHERE uid IS NOT NULL "
                "GROUP BY uid",
            )
            if parts
            else pl.DataFrame({"uid": [], "n": []})
        )
        try:
            result = match_owners(
                users.to_dicts(),
                systemusers.to_dicts(),
                cfg.owners.overrides,
                cfg.owners.fallback_owner,
                cfg.owners.disabled_users,
                dict(zip(owned["uid"].to_list(), owned["n"].to_list(), strict=True)),
            )
        except OwnerConfigError as exc:
            raise dg.Failure(str(exc)) from exc
        warehouse_write(con, "owner_map", result)
    queue = result.filter(~pl.col("status").is_in(["matched", "override"]))
    path = write_frame_csv(default_home() / "reports" / "owner_queue.csv", queue)
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
