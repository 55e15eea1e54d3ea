"""Every Close object of every target table accounted for, per Close source: loaded, rejected, merged,
halted or skipped (contract F; the audit pack's `reconciliation_by_source.csv`).

The Close objects are counted from the extraction (`close.*`), one per source a table reads (task = Close
tasks + SMS; annotation = notes + status changes + attachments + call recordings; a custom activity table =
the activities of its type). Each object's fate, by its Close id:

- loaded: its staged row is in Dataverse (read back by the reconciliation);
- rejected: rejected at staging or by Dataverse, with the reason listed in `rejected_<table>.csv` (a record
  already in the target whose new values were refused counts here too: the file lists it as kept);
- merged: a lead whose name another lead shares: one Account stands for all of them (`merged_accounts.csv`);
- skipped: left out by design and listed: a file above the upload limit (`oversize_attachments.csv`), a
  source the mapping does not migrate (`status_changes: skip` in activities.yaml);
- halted: the table halted in this run (a failed gate or step) and the object was not loaded;
- unaccounted: none of these. Never expected: the table's status says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb

from migration_assets.load.file_body import OVERSIZE_CODE
from migration_assets.mapping.account_staging import account_groups
from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.custom_activities import activity_types
from migration_assets.resources.warehouse import quote, table_exists
from migration_assets.target.checks import MAX_UPLOAD_SIZE

FATES = ("loaded", "rejected", "merged", "halted", "skipped", "unaccounted")
SOURCE_COLUMNS = ["table", "source", "close_table", "close_objects", *FATES, "status"]
MERGE_COLUMNS = ["account", "accountid", "leads", "close_lead_ids"]
ACCOUNT_TABLE = "account"  # one Account per distinct normalised lead name (mapping/account_staging)
# The Close id a staged row carries in `_close_id`, when it is not the source's key column: one activity
# can have several files, so annotation staging keys an attachment on activity id + file URL.
ID_SQL = {"attachment": "CAST(activity_id AS VARCHAR) || ':' || url"}


@dataclass(frozen=True)
class Source:
    """One Close source of a target table: its objects are the rows of `close.<close_table>`."""

    name: str  # objects.yaml entry (note, sms) or the custom activity type's name
    close_table: str
    id_sql: str
    where: str = ""  # SQL condition on close.<close_table>, with `params`
    params: tuple[Any, ...] = ()
    skipped_by: str = ""  # why the mapping does not migrate it (its objects are all skipped)


@dataclass
class TableFates:
    """What happened to each Close object of one target table, by source."""

    table: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    merges: list[dict[str, Any]] = field(default_factory=list)

    def total(self, fate: str) -> int:
        return sum(int(r[fate]) for r in self.sources)


@dataclass(frozen=True)
class TableState:
    """What the reconciliation knows of one target table in this run."""

    table: str
    staged: str  # the staged table's name
    primary_key: str | None  # None: the table is not in the target
    read_back: frozenset[str]  # primary ids read back from Dataverse (lower case)
    halted: bool
    load_run: str | None  # the run whose load refusals count (ledger.rejected)


def sources_of(con: duckdb.DuckDBPyConnection, config: MappingConfig, table: str) -> list[Source]:
    """The Close sources of `table`, in objects.yaml order (custom activity types for a custom table)."""
    out = []
    for obj in config.objects:
        if obj.table != table:
            continue
        skipped = ""
        if obj.name == "status_change" and config.activities.status_changes != "annotation":
            skipped = f"activities.yaml status_changes: {config.activities.status_changes}"
        out.append(Source(obj.name, obj.source, ID_SQL.get(obj.name, quote(obj.key)), skipped_by=skipped))
    if out or not table_exists(con, "close", "custom_activity_types"):
        return out
    raw = [json.loads(r[0]) for r in con.execute('SELECT raw FROM close."custom_activity_types"').fetchall()]
    for t in activity_types(raw, config.settings.publisher_prefix):
        if t.table == table:
            where = "custom_activity_type_id = ?"
            out.append(Source(t.close_name, "custom_activities", "id", where, (t.close_type_id,)))
    return out


def close_ids(con: duckdb.DuckDBPyConnection, source: Source) -> list[str] | None:
    if not table_exists(con, "close", source.close_table):
        return None
    where = f" WHERE {source.where}" if source.where else ""
    sql = f"SELECT CAST({source.id_sql} AS VARCHAR) FROM close.{quote(source.close_table)}{where}"
    return sorted({str(r[0]) for r in con.execute(sql, list(source.params)).fetchall()})


def _staged(con: duckdb.DuckDBPyConnection, staged: str, key: str) -> dict[str, str] | None:
    """Staged `_close_id` -> the row's primary id (lower case); None: the table was not staged."""
    if not table_exists(con, "staged", staged):
        return None
    cols = {r[0] for r in con.execute(f"DESCRIBE staged.{quote(staged)}").fetchall()}
    if key not in cols:
        return {
            str(r[0]): "" for r in con.execute(f"SELECT _close_id FROM staged.{quote(staged)}").fetchall()
        }
    rows = con.execute(f"SELECT _close_id, {quote(key)} FROM staged.{quote(staged)}").fetchall()
    return {str(cid): str(pk).lower() for cid, pk in rows}


def _staging_fates(con: duckdb.DuckDBPyConnection, staged: str) -> dict[str, str]:
    """`_close_id` -> rejected or skipped, from staged.<table>_rejected (a real rejection wins)."""
    if not table_exists(con, "staged", f"{staged}_rejected"):
        return {}
    out: dict[str, str] = {}
    for cid, check in con.execute(
        f"SELECT _close_id, check_name FROM staged.{quote(staged + '_rejected')}"
    ).fetchall():
        fate = "skipped" if check == MAX_UPLOAD_SIZE else "rejected"
        if out.get(str(cid)) != "rejected":
            out[str(cid)] = fate
    return out


def _load_fates(con: duckdb.DuckDBPyConnection, table: str, run: str | None) -> dict[str, str]:
    """Primary id (lower case) -> rejected or skipped, from the load refusals of run `run`."""
    if run is None or not table_exists(con, "ledger", "rejected"):
        return {}
    rows = con.execute(
        "SELECT record_id, code FROM ledger.rejected WHERE run_id = ? AND table_name = ?", [run, table]
    ).fetchall()
    return {str(rid).lower(): ("skipped" if code == OVERSIZE_CODE else "rejected") for rid, code in rows}


def _fate(
    key: str,
    staged: Mapping[str, str] | None,
    staging: Mapping[str, str],
    load: Mapping[str, str],
    state: TableState,
    source: Source,
) -> str:
    if staged is not None and key in staged:
        pk = staged[key]
        if pk and pk in state.read_back:
            return "loaded"
        if pk in load:
            return load[pk]
        return "halted" if state.halted else "unaccounted"
    if key in staging:
        return staging[key]
    if source.skipped_by:
        return "skipped"
    return "halted" if state.halted or staged is None or state.primary_key is None else "unaccounted"


def _status(row: Mapping[str, Any], halted: bool) -> str:
    if halted:
        return "halted"
    return "partial" if row["rejected"] or row["unaccounted"] else "ok"


def table_fates(con: duckdb.DuckDBPyConnection, config: MappingConfig, state: TableState) -> TableFates:
    """Each Close object of one target table by its fate, per source; the merged leads of the Accounts."""
    key_column = state.primary_key or "activityid"  # a custom table not created yet keys on activityid
    staged = _staged(con, state.staged, key_column)
    staging = _staging_fates(con, state.staged)
    load = _load_fates(con, state.table, state.load_run)
    result = TableFates(state.table)
    groups: dict[str, str] = {}
    if state.table == ACCOUNT_TABLE and table_exists(con, "close", "leads"):
        groups = dict(account_groups(con).iter_rows())
    for source in sources_of(con, config, state.table):
        ids = close_ids(con, source)
        counts = dict.fromkeys(FATES, 0)
        members: dict[str, list[str]] = {}
        for cid in ids or []:
            key = groups.get(cid, cid)
            members.setdefault(key, []).append(cid)
        for key, cids in members.items():
            counts[_fate(key, staged, staging, load, state, source)] += 1
            counts["merged"] += len(cids) - 1  # one record stands for every object merged into it
            if len(cids) > 1:
                result.merges.append(
                    {
                        "account": key,
                        "accountid": (staged or {}).get(key, ""),
                        "leads": len(cids),
                        "close_lead_ids": "; ".join(cids),
                    }
                )
        row: dict[str, Any] = {
            "table": state.table,
            "source": source.name + (f" (not migrated: {source.skipped_by})" if source.skipped_by else ""),
            "close_table": source.close_table,
            "close_objects": None if ids is None else len(ids),
            **counts,
        }
        row["status"] = _status(row, state.halted)
        result.sources.append(row)
    return result
