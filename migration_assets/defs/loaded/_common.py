"""Shared pieces of the loaded/* assets: upstream keys, reading staged rows, running a TableLoader with the
ledger, and the `loaded.<table>_rejected` tables.

In a `delta` run a load reads only the staged rows that changed since the last completed load
(`load.snapshot`), so that its requests follow the change, not the org; every completed load records what
it loaded for the next delta. Other runs diff every staged row against the target."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import dagster as dg
import duckdb

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.load.bulk_support import prime_bulk_support, record_bulk_support
from migration_assets.load.engine import LoadStats, TableLoader
from migration_assets.load.entity_meta_cache import covers, prime_entity_metadata, record_entity_metadata
from migration_assets.load.file_spool import FileSpool
from migration_assets.load.ledger import SCHEMA as LEDGER_SCHEMA
from migration_assets.load.ledger import Ledger, run_kind
from migration_assets.load.snapshot import changed_rows, parties_as_loaded, save_snapshot
from migration_assets.load.staged_rows import RowList, RowSource, StagedTable
from migration_assets.load.target_cache import cached_key_binds, cached_max_upload
from migration_assets.resources.warehouse import quote, table_exists

GROUP = "loaded"
POOL = "dataverse_api"
SCHEMA_DEPLOYED = dg.AssetKey(["schema", "deployed"])
# The asset carrying the blocking `mapping_confirmed` check (STAGED/MAPPING own it).
MAPPING = dg.AssetKey(["staged", "mapping"])
BATCH_ROWS = 1000  # rows per ledgered batch; the client splits it into parallel bulk requests


def is_delta_run(context: dg.AssetExecutionContext) -> bool:
    """Whether this run loads only what changed since the last load (the `delta` job)."""
    return run_kind(context.run.job_name) == "delta"


class MissingUpstreamError(RuntimeError):
    """A table the load needs is not there: the message names the asset to materialize first."""


def staged_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["staged", table])


def loaded_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table])


def staged_rows(con: duckdb.DuckDBPyConnection, table: str) -> StagedTable:
    """The staged table, read chunk by chunk by the load (load/staged_rows.py)."""
    if not table_exists(con, "staged", table):
        raise MissingUpstreamError(
            f"staged.{table} does not exist: materialize staged/{table} before loaded/{table}"
        )
    return StagedTable(con, table)


def max_upload_bytes(
    client: DataverseClient, configured: int | None, con: duckdb.DuckDBPyConnection | None = None
) -> int | None:
    """The upload limit: configured, else the staging cache's (read with the target's metadata), else the
    organization's as Dataverse says now."""
    if configured is not None:
        return configured
    cached = cached_max_upload(con) if con is not None else None
    if cached is not None:
        return cached
    rows = client.get_json("organizations?$select=maxuploadfilesize").get("value", [])
    return int(rows[0]["maxuploadfilesize"]) if rows and rows[0].get("maxuploadfilesize") else None


def write_rejected_table(con: duckdb.DuckDBPyConnection, run_id: str, table: str) -> int:
    """`loaded.<table>_rejected`: this run's refused rows with the server's status, code and message."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {GROUP}")
    con.execute(
        f"CREATE OR REPLACE TABLE {GROUP}.{quote(table + '_rejected')} AS SELECT record_id, close_id, operation, "
        f"status, code, message, rejected_at FROM {LEDGER_SCHEMA}.rejected WHERE run_id = ? AND table_name = ? "
        f"ORDER BY rejected_at, record_id",
        [run_id, table],
    )
    row = con.execute(f"SELECT count(*) FROM {GROUP}.{quote(table + '_rejected')}").fetchall()
    return int(row[0][0]) if row else 0


def rejected_markdown(con: duckdb.DuckDBPyConnection, table: str, limit: int = 20) -> str:
    rows = con.execute(
        f"SELECT close_id, operation, code, message FROM {GROUP}.{quote(table + '_rejected')} LIMIT {limit}"
    ).fetchall()
    if not rows:
        return "No rejected rows."
    lines = ["| close id | operation | code | message |", "|---|---|---|---|"]
    lines += [f"| {c} | {o} | {k or ''} | {str(m).replace('|', '/')[:300]} |" for c, o, k, m in rows]
    return "\n".join(lines)


def run_load(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    table: str,
    staged_table: str | None = None,
    download: Callable[[str], Iterator[bytes]] | None = None,
    max_upload: int | None = None,
    spool: FileSpool | None = None,
) -> tuple[LoadStats, dict[str, Any]]:
    staged = staged_table or table
    whole = staged_rows(con, staged)  # which records staging still wants, with which alternate-key values
    columns, rows = whole.columns, cast(RowSource, whole)
    changed_only: list[dict[str, Any]] = []
    delta_meta: dict[str, Any] = {}
    if is_delta_run(context):
        changed = changed_rows(con, staged)
        if changed is None:
            context.log.info(f"{table}: no snapshot of the last load; every staged row is diffed")
            delta_meta = {"delta": "no snapshot: full diff", "staged_total": whole.total}
        else:
            delta_meta = {"delta": "changed rows only", "staged_total": whole.total}
            columns, changed_only = changed
            rows = RowList(changed_only)
            context.log.info(f"{table}: {rows.total} of {whole.total} staged rows changed")
    ledger = Ledger(con, context.run.run_id, kind=run_kind(context.run.job_name))
    if delta_meta and not rows.total:
        # Nothing changed since the last load: not even the table's metadata is read.
        stats = LoadStats(table)
    else:
        # Facts of the environment an earlier run learned (bulk messages) and the staging cache's lookups
        # (currencies): not asked again.
        prime_bulk_support(con, client)
        primed = prime_entity_metadata(con, client)
        if table in primed and not covers(client.metadata(table), columns):
            client.metadata(table, refresh=True)  # recorded before a column the rows now carry existed
        loader = TableLoader(
            client, ledger, table, columns, BATCH_ROWS, download, max_upload, context.log.info
        )
        if loader.keys:
            loader.staged_keys = whole.key_columns(loader.pk, [c for _, cols in loader.keys for c in cols])
        loader.known_key_binds(cached_key_binds(con))
        loader.spool = spool
        if "_parties" in columns:
            # Where activity parties are read: resolved (once per environment, then recorded) with the
            # table's first load, not when a later delta first finds a changed party.
            client.entity_set("activityparty")
        if delta_meta.get("delta") == "changed rows only":
            # The target holds about the whole staged table: a scan of it would read more than the changed
            # rows' In-queries do.
            loader.target_rows_hint = whole.total
            # Parties are read (and compared) only for rows whose parties changed since they were loaded.
            loader.parties_as_loaded = parties_as_loaded(con, staged, loader.pk, changed_only)
        try:
            stats = loader.load(rows)
        finally:
            record_bulk_support(con, client, context.run.run_id)
            record_entity_metadata(con, client, context.run.run_id)
        changed_known = delta_meta.get("delta") == "changed rows only"
        save_snapshot(con, staged, loader.pk, context.run.run_id, table, changed_known)
    ledger.close_run("loaded", f"last table: {table}")  # finished_at = the run's latest completed table
    rejected = write_rejected_table(con, context.run.run_id, table)
    # Files above the upload limit are ledgered refusals too, but expected exclusions, not errors.
    meta: dict[str, Any] = {
        **stats.metadata(),
        "rejected": rejected - stats.excluded,
        "excluded": stats.excluded,
        "dagster/row_count": stats.loaded,
        **delta_meta,
    }
    meta["rejected_rows"] = dg.MetadataValue.md(rejected_markdown(con, table))
    return stats, meta
