"""staged/target_metadata: what the target Dataverse environment says about the tables we write, cached in
DuckDB so the dry run is cheap to repeat (metadata reads are ~8 requests per table).

Tables: staged.target_metadata (validation rules per table, JSON), staged.target_entity_sets,
staged.target_systemusers (for owner matching), staged.target_currencies, staged.target_organization
(maxuploadfilesize). The cache is reused while younger than `max_age_minutes` unless `refresh`.
"""

import json
import time
from typing import Any

import dagster as dg
import polars as pl

from migration_assets.clients.dataverse.client import DataverseError
from migration_assets.defs.staged._common import GROUP, SCHEMA, warehouse_write
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource, table_exists
from migration_assets.target.rules import rules_from_metadata

LOOKUP_ONLY = ("systemuser", "transactioncurrency")


class TargetMetadataConfig(dg.Config):
    refresh: bool = False  # ignore the cache
    max_age_minutes: int = 60  # reuse a cache younger than this (schema/* deploys invalidate it anyway)


def _cache_fresh(con: Any, max_age_minutes: int) -> bool:
    if not table_exists(con, SCHEMA, "target_metadata") or not table_exists(
        con, SCHEMA, "target_organization"
    ):
        return False
    row = con.execute("SELECT min(fetched_at) FROM staged.target_metadata").fetchall()
    return bool(row and row[0][0] is not None and time.time() - float(row[0][0]) < max_age_minutes * 60)


def invalidate_cache(con: Any) -> None:
    """After a schema deploy created something the cache was read without it: the next staging re-reads."""
    if table_exists(con, SCHEMA, "target_metadata"):
        con.execute("UPDATE staged.target_metadata SET fetched_at = 0")


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
        if not config.refresh and _cache_fresh(con, config.max_age_minutes):
            n = con.execute("SELECT count(*) FROM staged.target_metadata").fetchall()[0][0]  # type: ignore[index]
            context.log.info("target metadata cache is fresh; reusing it (set refresh: true to re-read)")
            return dg.MaterializeResult(metadata={"dagster/row_count": int(n), "cached": True})
    client = dataverse.get_client()
    now = time.time()
    staged_tables = table_registry().names  # every table of mappings/objects.yaml
    try:
        rules, sets = [], []
        for table in staged_tables:
            meta = client.metadata(table, refresh=True)
            r = rules_from_metadata(meta)
            rules.append(
                {
                    "table_name": table,
                    "entity_set": r.entity_set,
                    "rules": json.dumps(r.to_json()),
                    "fetched_at": now,
                }
            )
            sets.append({"table_name": table, "entity_set": r.entity_set, "primary_id": r.primary_id})
        for table in LOOKUP_ONLY:
            meta = client.metadata(table)
            sets.append(
                {"table_name": table, "entity_set": meta.entity_set_name, "primary_id": meta.primary_id}
            )
        users = list(
            client.query(
                "systemuser",
                select=[
                    "systemuserid",
                    "internalemailaddress",
                    "domainname",
                    "fullname",
                    "isdisabled",
                    "applicationid",
                ],
            )
        )
        currencies = list(
            client.query("transactioncurrency", select=["transactioncurrencyid", "isocurrencycode"])
        )
        org = next(iter(client.query("organization", select=["organizationid", "maxuploadfilesize"])), {})
    except DataverseError as exc:
        raise dg.Failure(f"reading the target's metadata failed: {exc}") from exc
    user_schema = {
        "systemuserid": pl.String,
        "internalemailaddress": pl.String,
        "domainname": pl.String,
        "fullname": pl.String,
        "isdisabled": pl.Boolean,
        "applicationid": pl.String,
    }
    users_df = pl.DataFrame([{k: u.get(k) for k in user_schema} for u in users], schema=user_schema)
    cur_df = pl.DataFrame(
        [
            {
                "transactioncurrencyid": c.get("transactioncurrencyid"),
                "isocurrencycode": c.get("isocurrencycode"),
            }
            for c in currencies
        ],
        schema={"transactioncurrencyid": pl.String, "isocurrencycode": pl.String},
    )
    max_upload = int(org.get("maxuploadfilesize") or 5_242_880)
    with warehouse.connect() as con:
        warehouse_write(con, "target_metadata", pl.DataFrame(rules))
        warehouse_write(con, "target_entity_sets", pl.DataFrame(sets))
        warehouse_write(con, "target_systemusers", users_df)
        warehouse_write(con, "target_currencies", cur_df)
        warehouse_write(con, "target_organization", pl.DataFrame({"maxuploadfilesize": [max_upload]}))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rules),
            "cached": False,
            "tables": ", ".join(staged_tables),
            "systemusers": users_df.height,
            "currencies": ", ".join(sorted(str(c) for c in cur_df["isocurrencycode"].to_list())),
            "maxuploadfilesize": max_upload,
        }
    )
