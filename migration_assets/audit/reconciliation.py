"""The reconciliation's figures: per table, what Close held, what was staged, rejected, loaded and read back
from Dataverse, and an honest status (contract F): `ok`, `partial (N rejected, see <file>)` or
`halted (<reason>)`. Which steps halted in the run comes from the run's events (defs/reports)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from migration_assets.audit.accounting import TableState, table_fates
from migration_assets.audit.reconcile_status import Counts, status
from migration_assets.clients.dataverse.client import DataverseClient, DataverseError
from migration_assets.load.file_body import OVERSIZE_CODE
from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.custom_activities import activity_types
from migration_assets.mapping.tables import table_registry
from migration_assets.resources.warehouse import quote, table_exists
from migration_assets.target.checks import EXCLUSIONS, KEPT_IN_TARGET
from migration_assets.target.deploy import load_plan

REJECTED_COLUMNS = ["table", "close_id", "column", "value", "reason", "cascade"]
RECON_COLUMNS = [
    "table",
    "close_objects",
    "staged",
    "rejected_at_staging",
    "excluded",
    "merged",
    "loaded",
    "rejected_at_load",
    "rejected",
    "read_back",
    "status",
]


def _count(con: duckdb.DuckDBPyConnection, schema: str, table: str, expr: str = "count(*)") -> int | None:
    if not table_exists(con, schema, table):
        return None
    row = con.execute(f"SELECT {expr} FROM {schema}.{quote(table)}").fetchall()
    return int(row[0][0]) if row else 0


def target_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(Dataverse table, staged table) of every table the migration loads, in load order."""
    out = [(t.name, t.name) for t in table_registry().tables]
    try:
        plan = load_plan(con)
        out += [(t.logical_name, f"custom_activity_{t.logical_name}") for t in plan.tables]
    except Exception:  # noqa: BLE001 - no plan yet: standard tables only
        pass
    return out


def close_objects(con: duckdb.DuckDBPyConnection, config: MappingConfig, table: str) -> int | None:
    sources = sorted({o.source for o in config.objects if o.table == table})
    if not sources and table_exists(con, "close", "custom_activity_types"):
        raw = [
            json.loads(r[0]) for r in con.execute('SELECT raw FROM close."custom_activity_types"').fetchall()
        ]
        type_ids = [
            t.close_type_id for t in activity_types(raw, config.settings.publisher_prefix) if t.table == table
        ]
        if type_ids and table_exists(con, "close", "custom_activities"):
            rows = con.execute(
                'SELECT count(*) FROM close."custom_activities" WHERE custom_activity_type_id = ?',
                [type_ids[0]],
            ).fetchall()
            return int(rows[0][0])
    counts = [_count(con, "close", s) for s in sources]
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def read_back_ids(client: DataverseClient, table: str, closeid: str) -> set[str]:
    meta = client.metadata(table)
    flt = f"{closeid} ne null" if closeid in meta.attributes else None
    return {
        str(r[meta.primary_id]).lower() for r in client.query(table, select=[meta.primary_id], filter=flt)
    }


def last_migrate_run(con: duckdb.DuckDBPyConnection) -> str | None:
    if not table_exists(con, "ledger", "runs"):
        return None
    row = con.execute(
        "SELECT run_id FROM ledger.runs WHERE kind = 'migrate' ORDER BY started_at DESC LIMIT 1"
    ).fetchall()
    return row[0][0] if row else None


def derived(config: MappingConfig, table: str) -> bool:
    """Rows not one per Close object (an Account per distinct lead name): accounted from staged rows."""
    return any(o.table == table and "_id>" not in o.natural_key for o in config.objects)


def halt_reason(halts: dict[str, str], staged: str) -> str | None:
    for key in (f"staged/{staged}", f"loaded/{staged}"):
        if key in halts:
            return f"{key}: {halts[key]}"
    return None


def _staging_rejections(con: duckdb.DuckDBPyConnection, table: str, staged: str) -> list[dict[str, Any]]:
    if not table_exists(con, "staged", f"{staged}_rejected"):
        return []
    rows: list[dict[str, Any]] = []
    cur = con.execute(
        f'SELECT _close_id, "column", value, reason, check_name FROM staged.{quote(staged + "_rejected")}'
    )
    for cid, column, value, reason, check in cur.fetchall():
        cascade = reason if check == "cascade" or str(reason or "").startswith("because ") else ""
        rows.append(
            {
                "table": table,
                "close_id": cid,
                "column": column,
                "value": value,
                "reason": reason,
                "cascade": cascade,
                "excluded": check in EXCLUSIONS,
                "kept": check == KEPT_IN_TARGET,
            }
        )
    return rows


def _load_rejections(con: duckdb.DuckDBPyConnection, table: str, run: str | None) -> list[dict[str, Any]]:
    if run is None or not table_exists(con, "ledger", "rejected"):
        return []
    rows: list[dict[str, Any]] = []
    cur = con.execute(
        "SELECT close_id, record_id, code, message FROM ledger.rejected WHERE run_id = ? AND table_name = ?",
        [run, table],
    )
    for cid, rid, code, message in cur.fetchall():
        base = {"table": table, "close_id": cid or rid, "value": code, "cascade": ""}
        if code == OVERSIZE_CODE:  # a file above the upload limit: listed for the admin, not an error
            rows.append(
                {**base, "column": "_file_size", "reason": message, "excluded": True, "at_load": True}
            )
        else:
            rows.append(
                {
                    **base,
                    "column": "(record)",
                    "reason": f"rejected by Dataverse: {message}",
                    "excluded": False,
                }
            )
    return rows


def _rejections(
    con: duckdb.DuckDBPyConnection, table: str, staged: str, run: str | None
) -> list[dict[str, Any]]:
    """Rows rejected at staging (staged.<table>_rejected) and at load by run `run` (ledger.rejected)."""
    return _staging_rejections(con, table, staged) + _load_rejections(con, table, run)


@dataclass
class Reconciliation:
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per target table (RECON_COLUMNS)
    sources: list[dict[str, Any]] = field(default_factory=list)  # per table and Close source (accounting)
    merges: list[dict[str, Any]] = field(default_factory=list)  # Accounts that stand for several leads


def reconcile(
    con: duckdb.DuckDBPyConnection,
    client: DataverseClient,
    config: MappingConfig,
    halts: dict[str, str] | None = None,
    rejected_file: Callable[[str, list[dict[str, Any]]], str] | None = None,
) -> Reconciliation:
    """One row per target table, and every Close object of each by source and fate (audit/accounting).
    `halts` (asset key -> why it halted in this run) name what stopped; `rejected_file` writes a table's
    rejected rows and returns the file name the status points to."""
    closeid = f"{config.settings.publisher_prefix}_closeid"
    run = last_migrate_run(con)
    out = Reconciliation()
    rows = out.rows
    for table, staged in target_tables(con):
        try:
            pk: str | None = client.metadata(table).primary_id
        except DataverseError as exc:
            if "does not exist" not in str(exc):
                raise
            pk = None  # a custom table the run never created: a gate stopped it before schema/*
        staged_ids: set[str] | None = None
        if table_exists(con, "staged", staged):
            key = pk or "activityid"  # a custom table not created yet: custom activities key on activityid
            staged_ids = {
                str(r[0]).lower()
                for r in con.execute(f"SELECT {quote(key)} FROM staged.{quote(staged)}").fetchall()
            }
        back = read_back_ids(client, table, closeid) if pk is not None else set()
        missing = (
            None if pk is not None else "the table is not in the target: the run stopped before creating it"
        )
        rejections = _rejections(con, table, staged, run)
        at_staging = {r["close_id"] for r in rejections if r["column"] != "(record)" and not r["excluded"]}
        excluded = {r["close_id"] for r in rejections if r["excluded"] and not r.get("at_load")} - at_staging
        excluded_at_load = {r["close_id"] for r in rejections if r.get("at_load")} - excluded
        at_load = {r["close_id"] for r in rejections if r["column"] == "(record)"}
        loaded = len((staged_ids or set()) & back)
        counts = Counts(
            None if derived(config, table) else close_objects(con, config, table),
            None if staged_ids is None else len(staged_ids),
            len(at_staging),
            len(excluded),
            loaded,
            len(at_load),
            len(excluded_at_load),
            len({r["close_id"] for r in rejections if r.get("kept")} & excluded),
        )
        listed = [r for r in rejections if not r["excluded"] or r.get("kept")]
        name = rejected_file(table, listed) if rejected_file and listed else f"rejected_{table}.csv"
        halted_by = halt_reason(halts or {}, staged) or missing
        state = TableState(table, staged, pk, frozenset(back), halted_by is not None, run)
        fates = table_fates(con, config, state)
        out.sources += fates.sources
        out.merges += fates.merges
        rows.append(
            {
                "table": table,
                "close_objects": close_objects(con, config, table),
                "staged": counts.staged,
                "rejected_at_staging": counts.rejected_at_staging,
                "loaded": loaded,
                "excluded": counts.excluded + counts.excluded_at_load,
                "merged": fates.total("merged"),
                "rejected_at_load": counts.rejected_at_load,
                "rejected": counts.rejected_at_staging + counts.rejected_at_load,
                "read_back": len(back),
                "status": status(counts, halted_by, name, fates.total("unaccounted")),
            }
        )
    return out
