"""staged.owner_map: Close users matched to Dataverse systemusers (by email, case-insensitive, owners.yaml
overrides), with how many records each owns, plus the owner reconciliation queue as a CSV for the admin
(`$CLOSE2D365_HOME/reports/owner_queue.csv`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from migration_assets.audit.files import write_frame_csv
from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.owners import OWNER_COLUMNS, match_owners
from migration_assets.mapping.staging import warehouse_write
from migration_assets.resources.warehouse import default_home, fetch_polars, table_exists
from migration_assets.target.metadata_cache import StagingError


@dataclass(frozen=True)
class OwnerMap:
    owners: pl.DataFrame  # one row per Close user, with its status
    queue: pl.DataFrame  # the users not matched nor overridden
    queue_csv: Path


def records_owned(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Close user id -> how many extracted records it owns."""
    parts = [
        f'SELECT "{c}" AS uid FROM close."{t}"'
        for t, c in OWNER_COLUMNS.items()
        if table_exists(con, "close", t)
    ]
    owned = (
        fetch_polars(
            con,
            f"SELECT uid, count(*) AS n FROM ({' UNION ALL '.join(parts)}) WHERE uid IS NOT NULL GROUP BY uid",
        )
        if parts
        else pl.DataFrame({"uid": [], "n": []})
    )
    return dict(zip(owned["uid"].to_list(), owned["n"].to_list(), strict=True))


def stage_owner_map(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> OwnerMap:
    """Match the owners, write staged.owner_map and the queue; raises StagingError without the target's
    users, and OwnerConfigError for an owners.yaml that names no usable user."""
    users = fetch_polars(con, "SELECT id, email, first_name, last_name, is_active FROM close.users")
    if not table_exists(con, "staged", "target_systemusers"):
        raise StagingError("staged.target_systemusers is missing: materialize staged/target_metadata first")
    systemusers = fetch_polars(con, "SELECT * FROM staged.target_systemusers")
    result = match_owners(
        users.to_dicts(),
        systemusers.to_dicts(),
        cfg.owners.overrides,
        cfg.owners.fallback_owner,
        cfg.owners.disabled_users,
        records_owned(con),
    )
    warehouse_write(con, "owner_map", result)
    queue = result.filter(~pl.col("status").is_in(["matched", "override"]))
    path = write_frame_csv(default_home() / "reports" / "owner_queue.csv", queue)
    return OwnerMap(result, queue, path)
